"""``knowmix quality-train`` and ``knowmix quality-eval``: build and check a fastText quality classifier.

Training texts come from knowmix docs outputs (``DIR:KIND,KIND`` keeps only those source kinds; ``DIR/dropped``
reads the documents a ``keep_dropped`` clean run removed) or from files (JSON lines with a ``text`` field, or
plain text, one document a line). Each class is split into train and validation with a seeded shuffle; the
validation precision, recall and ROC-AUC are printed and written beside the model (``MODEL.json``).
"""

from __future__ import annotations

import html
import json
import os
import random
import tempfile

from knowmix import fileio
from knowmix.errors import UserError
from knowmix.pipelines.quality_model import (
    BAD, GOOD, TOKENIZERS, QualityModel, fasttext_line, metrics, pr_curve, sha256_of, sidecar_path,
)

DROPPED_DIR = "dropped"  # pipelines.dropped.DROPPED_DIR (kept import-free: this module needs no Beam)


# ---------------------------------------------------------------------------------------------- reading


def _split_spec(spec: str) -> tuple[str, list[str] | None]:
    path, sep, kinds = spec.rpartition(":")
    if not sep or "/" in kinds or not path or path.endswith(":/"):
        return spec, None
    return path, [k for k in kinds.split(",") if k]


def texts_from_output(spec: str) -> list[str]:
    """Texts of a docs output ``DIR[:KIND,...]`` (its shards, checksums verified); ``DIR/dropped[:KIND,...]``:
    the dropped documents a ``keep_dropped`` run wrote (listed in DIR's manifest as ``dropped_shards``)."""
    from knowmix.manifest import MANIFEST_NAME, open_shard_dir, read_arrow, verify_shard

    path, kinds = _split_spec(spec)
    path = path.rstrip("/")
    if not os.path.exists(os.path.join(path, MANIFEST_NAME)) and os.path.basename(path) == DROPPED_DIR:
        parent = open_shard_dir(os.path.dirname(path) or ".", kind="docs", verify=False)
        entries = parent.manifest.get("dropped_shards")
        if entries is None:
            raise UserError(f"{spec}: {parent.root} was cleaned without keep_dropped (no dropped_shards in its manifest)")
        paths = []
        for entry in entries:
            full = os.path.join(parent.root, entry["path"])
            verify_shard(full, entry)
            paths.append(full)
    else:
        paths = open_shard_dir(path, kind="docs").shard_paths
    texts: list[str] = []
    for shard in paths:
        table = read_arrow(shard)
        for kind, text in zip(table.column("source_kind").to_pylist(), table.column("text").to_pylist()):
            if (kinds is None or kind in kinds) and text:
                texts.append(text)
    return texts


def texts_from_file(path: str) -> list[str]:
    """JSON lines (``.jsonl``/``.json``: a ``text`` field each) or plain text, one document a line."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: file not found")
    texts: list[str] = []
    jsonl = path.endswith((".jsonl", ".json", ".ndjson"))
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if jsonl:
                try:
                    text = json.loads(line).get("text")
                except (ValueError, AttributeError):
                    raise UserError(f"{path}:{n}: not a JSON object with a \"text\" field") from None
                if not isinstance(text, str):
                    raise UserError(f"{path}:{n}: no \"text\" string")
                texts.append(text)
            else:
                texts.append(line.rstrip("\n"))
    return texts


def gather(specs: list[str], files: list[str], what: str) -> list[str]:
    texts = [t for s in specs for t in texts_from_output(s)] + [t for f in files for t in texts_from_file(f)]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UserError(f"no {what} texts (give --{what} DIR[:KINDS] or --{what}-file FILE)")
    return texts


def seeded_split(texts: list[str], valid_fraction: float, rng: random.Random) -> tuple[list[str], list[str]]:
    texts = list(texts)
    rng.shuffle(texts)
    n_valid = int(round(len(texts) * valid_fraction)) if len(texts) > 1 else 0
    n_valid = min(max(n_valid, 1 if len(texts) > 1 else 0), len(texts) - 1)
    return texts[n_valid:], texts[:n_valid]


# ---------------------------------------------------------------------------------------------- training


_FIT = """
import json, sys
import fasttext
params, out = json.loads(sys.argv[1]), sys.argv[2]
try:
    fasttext.train_supervised(**params).save_model(out)
except RuntimeError as exc:
    print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, file=sys.stderr)
    sys.exit(3)
"""


def _fit_in_fresh_process(params: dict, out: str) -> str | None:
    """Train in a new interpreter that imports only fastText; returns fastText's error or None.

    Why: the floating-point state of the calling process depends on what it imported before (measured:
    after ``import transformers`` the same data, seed and lr diverge to NaN that train fine in a fresh
    process), so a model would depend on the caller's imports. A fresh process makes it a function of the
    data and the options only."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _FIT, json.dumps(params), out], capture_output=True, text=True)
    if proc.returncode == 3:
        return proc.stderr.strip() or "fastText error"
    if proc.returncode != 0:
        raise RuntimeError(f"fastText training process failed: {proc.stderr.strip()[-500:]}")
    return None


def train(
    positive: list[str], negative: list[str], output: str, *, dim: int = 64, epoch: int = 5, ngrams: int = 2,
    lr: float = 0.2, bucket: int = 50_000, seed: int = 0, valid_fraction: float = 0.1, tokenizer: str = "jieba",
) -> dict:
    """Train on a seeded split, save ``output`` and ``output.json``; return the record written."""
    import fasttext

    if not hasattr(fasttext, "train_supervised"):
        raise UserError(
            "the installed fastText package can only predict (fasttext-predict); training needs fasttext-numpy2"
        )
    rng = random.Random(seed)
    pos_train, pos_valid = seeded_split(positive, valid_fraction, rng)
    neg_train, neg_valid = seeded_split(negative, valid_fraction, rng)
    rows = [(GOOD, t) for t in pos_train] + [(BAD, t) for t in neg_train]
    rng.shuffle(rows)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="knowmix-quality-") as tmp:
        train_file = os.path.join(tmp, "train.txt")
        with open(train_file, "w", encoding="utf-8") as fh:
            for label, text in rows:
                line = fasttext_line(text, tokenizer)
                if line:
                    fh.write(f"{label} {line}\n")
        tmp_model = os.path.join(tmp, "model.bin")
        params = dict(input=train_file, dim=dim, epoch=epoch, wordNgrams=ngrams, lr=lr, minCount=1, bucket=bucket,
                      loss="softmax", thread=1, seed=seed, verbose=0)
        error = _fit_in_fresh_process(params, tmp_model)
        if error is not None:  # "Encountered NaN.": the learning rate is too high for this set
            raise UserError(f"fastText training failed ({error}); try a lower --lr than {lr}")
        fileio.copy_file(tmp_model, output)  # a copy: the temporary directory may be on another device
    record = {
        "tokenizer": tokenizer,
        "labels": [GOOD, BAD],
        "options": {"dim": dim, "epoch": epoch, "ngrams": ngrams, "lr": lr, "bucket": bucket, "seed": seed,
                    "valid_fraction": valid_fraction},
        "train": {"positives": len(pos_train), "negatives": len(neg_train)},
        "sha256": sha256_of(output),
    }
    scorer = QualityModel(output, record["sha256"], tokenizer)
    if pos_valid and neg_valid:
        record["validation"] = metrics(scorer.score_many(pos_valid), scorer.score_many(neg_valid))
    fileio.write_text(sidecar_path(output), json.dumps(record, ensure_ascii=False, indent=2) + "\n")
    return record


def _summary(m: dict) -> str:
    return (f"ROC-AUC {m['roc_auc']:.4f}, precision {m['precision']:.4f}, recall {m['recall']:.4f} at {m['threshold']}"
            f" ({m['positives']} positive, {m['negatives']} negative)")


def parse_args(argv: list[str]):
    """``knowmix quality-train``'s flags, checked (a bad value: one-line UserError)."""
    from knowmix.args import Parser

    ap = Parser("knowmix quality-train", "Train a fastText quality classifier.")
    ap.add_argument("--positive", action="append", default=[], metavar="DIR[:KIND,...]",
                    help="good text: a docs output, only those source kinds after ':' (or DIR/dropped); repeatable")
    ap.add_argument("--negative", action="append", default=[], metavar="DIR[:KIND,...]",
                    help="bad text, as --positive (e.g. a keep_dropped run's OUT/dropped:web); repeatable")
    ap.add_argument("--positive-file", action="append", default=[], metavar="FILE",
                    help="good text from JSON lines (a text field) or one document a line; repeatable")
    ap.add_argument("--negative-file", action="append", default=[], metavar="FILE", help="bad text, as --positive-file")
    ap.add_argument("--output", required=True, help="the model file (its record goes to OUTPUT.json)")
    ap.add_argument("--dim", type=int, default=64, help="fastText vector size")
    ap.add_argument("--epoch", type=int, default=5, help="fastText training epochs")
    ap.add_argument("--ngrams", type=int, default=2, help="fastText word n-grams")
    ap.add_argument("--lr", type=float, default=0.2, help="learning rate (fastText diverges to NaN from about 0.5 on small sets)")
    ap.add_argument("--bucket", type=int, default=50_000, help="hash buckets for n-grams (model size ~ bucket x dim x 4 B)")
    ap.add_argument("--tokenizer", choices=TOKENIZERS, default="jieba", help="jieba words, or single characters")
    ap.add_argument("--valid-fraction", type=float, default=0.1,
                    help="share of each class held out for the validation figures")
    ap.add_argument("--seed", type=int, default=0, help="the train/validation split and fastText's seed")
    args = ap.parse_args(argv)
    for name in ("dim", "epoch", "ngrams", "bucket"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be positive")
    if not 0.0 <= args.valid_fraction < 1.0:
        raise UserError("--valid-fraction must be in [0, 1)")
    return args


def quality_train_main(argv: list[str]) -> int:
    args = parse_args(argv)
    positive = gather(args.positive, args.positive_file, "positive")
    negative = gather(args.negative, args.negative_file, "negative")
    record = train(
        positive, negative, args.output, dim=args.dim, epoch=args.epoch, ngrams=args.ngrams, lr=args.lr,
        bucket=args.bucket, seed=args.seed, valid_fraction=args.valid_fraction, tokenizer=args.tokenizer,
    )
    print(f"knowmix quality-train: {len(positive)} positive, {len(negative)} negative texts -> {args.output}")
    if "validation" in record:
        print(f"  validation: {_summary(record['validation'])}")
    print(f"  sha256 {record['sha256']}; record: {sidecar_path(args.output)}")
    return 0


# ---------------------------------------------------------------------------------------------- evaluation


def _texts(items: list[str], what: str) -> list[str]:
    specs = [i for i in items if os.path.isdir(_split_spec(i)[0])]
    files = [i for i in items if i not in specs]
    return gather(specs, files, what)


def pr_curve_svg(curve: list[tuple[float, float, float]], width: int = 480, height: int = 360) -> str:
    pad = 40
    w, h = width - 2 * pad, height - 2 * pad
    points = " ".join(f"{pad + r * w:.1f},{pad + (1 - p) * h:.1f}" for _, p, r in curve)
    ticks = "".join(
        f'<text x="{pad + t * w:.0f}" y="{height - 20}" text-anchor="middle">{t:.1f}</text>'
        f'<text x="{pad - 6}" y="{pad + (1 - t) * h + 4:.0f}" text-anchor="end">{t:.1f}</text>'
        for t in (0.0, 0.5, 1.0)
    )
    return (
        f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" font-size="12">'
        f'<rect x="{pad}" y="{pad}" width="{w}" height="{h}" fill="none" stroke="#999"/>'
        f'<polyline points="{points}" fill="none" stroke="#4e79a7" stroke-width="2"/>{ticks}'
        f'<text x="{width / 2:.0f}" y="{height - 4}" text-anchor="middle">recall</text>'
        f'<text x="10" y="{pad - 10}">precision</text></svg>'
    )


def eval_html(model: str, m: dict, curve: list[tuple[float, float, float]]) -> str:
    rows = "".join(
        f"<tr><td>{t:.3f}</td><td>{p:.3f}</td><td>{r:.3f}</td></tr>" for t, p, r in curve[:: max(1, len(curve) // 40)]
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>knowmix quality-eval</title></head>'
        f'<body style="font-family:sans-serif"><h1>quality-eval: {html.escape(model)}</h1>'
        f"<p>{html.escape(_summary(m))}</p><h2>precision-recall curve</h2>{pr_curve_svg(curve)}"
        f"<h2>thresholds</h2><table><tr><th>threshold</th><th>precision</th><th>recall</th></tr>{rows}</table>"
        "</body></html>\n"
    )


def quality_eval_main(argv: list[str]) -> int:
    from knowmix.args import Parser

    ap = Parser("knowmix quality-eval", "ROC-AUC and PR curve of a quality model.")
    ap.add_argument("model", help="a model file written by knowmix quality-train")
    ap.add_argument("--positive", action="append", default=[], required=True, metavar="FILE|DIR[:KIND,...]",
                    help="held-out good text: a file or a docs output, as quality-train takes it; repeatable")
    ap.add_argument("--negative", action="append", default=[], required=True, metavar="FILE|DIR[:KIND,...]",
                    help="held-out bad text, as --positive")
    ap.add_argument("--threshold", type=float, default=0.5, help="the score below which a text counts as bad")
    ap.add_argument("--html", metavar="FILE", help="write the PR curve (inline SVG) and a threshold table")
    ap.add_argument("--json", action="store_true", help="print the metrics as JSON")
    args = ap.parse_args(argv)
    scorer = QualityModel(args.model).check()
    pos = scorer.score_many(_texts(args.positive, "positive"))
    neg = scorer.score_many(_texts(args.negative, "negative"))
    m = metrics(pos, neg, args.threshold)
    curve = pr_curve(pos, neg)
    if args.html:
        fileio.write_text(args.html, eval_html(args.model, m, curve))
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        print(f"knowmix quality-eval {args.model}: {_summary(m)}")
        if args.html:
            print(f"  PR curve: {args.html}")
    return 0
