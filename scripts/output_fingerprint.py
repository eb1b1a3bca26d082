"""Fingerprint of what knowmix produces on the bundled fixtures: the sha256 of every shard file that ``clean``,
``kg-samples`` and ``tokenize`` (both tokenizer kinds, docs and knowledge) write, and the tiny trainer's losses.

A refactor that promises "behaviour and shard bytes unchanged" proves it with this script:

    python scripts/output_fingerprint.py --write before.json     # on the old code
    python scripts/output_fingerprint.py --check before.json     # on the new code: exit 1 on any difference

Manifests are left out (they hold durations); every ``*.arrow``, ``relations.json`` and dead-letter file is in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sha(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _files(root: str, top: str) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, names in os.walk(top):
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            if name.endswith((".arrow", ".jsonl")) or name == "relations.json":
                out[os.path.relpath(path, root)] = _sha(path)
            elif name == "manifest.json":
                out[os.path.relpath(path, root)] = _manifest_digest(path, root)
    return out


def _manifest_digest(path: str, root: str) -> str:
    """A manifest without what names the run rather than the data (the command line, the tool version) and with
    the work directory written as WORK and the checkout as REPO (the fixtures' paths are recorded), so runs in
    different temp dirs and checkouts compare."""
    with open(path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    manifest.pop("command", None)
    manifest.pop("tool", None)
    if isinstance(manifest.get("tokenizer"), dict):
        manifest["tokenizer"].pop("sha256", None)  # the spm file's hash: its pieces are compared instead
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = json.dumps(manifest, sort_keys=True, ensure_ascii=False).replace(root, "WORK").replace(repo, "REPO")
    return hashlib.sha256(text.encode()).hexdigest()


# one good record, an exact duplicate of it under another id, a line that is not JSON, a short one: the dead
# letters, the dedup and the id paths of clean
EXTRA_JSONL = (
    '{"id": "x1", "text": "北京是中华人民共和国的首都，也是全国的政治中心和文化中心，有三千多年建城史。"}\n'
    '{"id": "x2", "text": "北京是中华人民共和国的首都，也是全国的政治中心和文化中心，有三千多年建城史。"}\n'
    '{"id": "x3", "text": "这一行没有结束\n'
    '{"id": "x4", "text": "短"}\n'
)


def fingerprint(work: str, train_steps: int) -> dict:
    from knowmix.cli import main as knowmix
    from knowmix.demo import demo_job_toml, fixture

    def run(*cmd: str) -> None:
        rc = knowmix(list(cmd))
        if rc != 0:
            raise SystemExit(f"knowmix {' '.join(cmd)} exited {rc}")

    docs, knowledge = os.path.join(work, "docs"), os.path.join(work, "knowledge")
    job = os.path.join(work, "job.toml")
    extra = os.path.join(work, "extra.jsonl")
    with open(extra, "w", encoding="utf-8") as fh:
        fh.write(EXTRA_JSONL)
    with open(job, "w", encoding="utf-8") as fh:
        fh.write(demo_job_toml(docs, keep_dropped=True)
                 + f'\n[[sources]]\nkind = "web"\nformat = "jsonl"\npaths = [{json.dumps(extra)}]\n')
    run("clean", "--config", job)
    run("kg-samples", "--kg", fixture("admin_triples_county_up.tsv"), "--kg", fixture("world_triples.tsv"),
        "--docs", docs, "--output", knowledge, "--seed", "0")
    spm = os.path.join(work, "tok", "spm")
    run("spm-train", "--docs", docs, "--vocab-size", "8000", "--output", spm)
    vocab = os.path.join(work, "tok", "vocab.txt")
    _bert_vocab(docs, vocab)
    for tok, tag in ((f"spm:{spm}.model", "spm"), (f"wordpiece:{vocab}", "wp")):
        run("tokenize", "--input", docs, "--tokenizer", tok, "--max-seq-len", "128",
            "--output", os.path.join(work, f"pretrain-{tag}"))
        run("tokenize", "--input", knowledge, "--tokenizer", tok, "--max-seq-len", "128",
            "--output", os.path.join(work, f"ktok-{tag}"))
    result = {"files": {}}
    for name in ("docs", "knowledge", "pretrain-spm", "ktok-spm", "pretrain-wp", "ktok-wp"):
        result["files"].update(_files(work, os.path.join(work, name)))
    result["files"]["tok/spm.model pieces"] = _spm_pieces(spm + ".model")
    result["losses"] = _train_losses(work, train_steps)
    return result


def _spm_pieces(path: str) -> str:
    """The model's pieces and scores (the file itself also records its training input's temp path)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=path)
    pieces = [(sp.id_to_piece(i), round(sp.get_score(i), 6)) for i in range(sp.get_piece_size())]
    return hashlib.sha256(json.dumps(pieces, ensure_ascii=False).encode()).hexdigest()


def _bert_vocab(docs: str, path: str) -> None:
    """A character vocabulary from the cleaned docs (specials first): the WordPiece side of tokenize."""
    from knowmix.manifest import open_shard_dir

    chars = set()
    for table in open_shard_dir(docs).iter_tables():
        for text in table.column("text").to_pylist():
            chars.update(text)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"[unused{i}]" for i in range(1, 5)]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(specials + sorted(c for c in chars if not c.isspace())) + "\n")


def _train_losses(work: str, steps: int) -> list:
    from knowmix.cli import main as knowmix
    from knowmix.trainer.config import BUNDLED_CONFIGS

    run_dir = os.path.join(work, "run")
    rc = knowmix(["train", os.path.join(BUNDLED_CONFIGS, "tiny.toml"),
                  f"data.pretrain={os.path.join(work, 'pretrain-spm')}", f"data.knowledge={os.path.join(work, 'ktok-spm')}",
                  f"train.output_dir={run_dir}", f"train.max_steps={steps}", "train.log_every=1",
                  f"checkpoint.interval={steps}"])
    if rc != 0:
        raise SystemExit(f"knowmix train exited {rc}")
    keep = ("step", "loss", "mlm_loss", "knowledge_loss", "grad_norm")
    rows = []
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            rows.append({k: v for k, v in row.items() if k in keep or k.startswith("loss")})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="JSON", help="write the fingerprint here")
    mode.add_argument("--check", metavar="JSON", help="compare with this fingerprint; exit 1 on a difference")
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--keep", metavar="DIR", help="run in DIR and keep the outputs (default: a temp dir)")
    args = ap.parse_args()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        got = fingerprint(os.path.abspath(args.keep), args.train_steps)
    else:
        with tempfile.TemporaryDirectory() as work:
            got = fingerprint(work, args.train_steps)
    if args.write:
        with open(args.write, "w", encoding="utf-8") as fh:
            json.dump(got, fh, indent=1, sort_keys=True)
        print(f"{len(got['files'])} files and {len(got['losses'])} loss rows -> {args.write}")
        return 0
    with open(args.check, encoding="utf-8") as fh:
        want = json.load(fh)
    diffs = [f"{k}: {want['files'].get(k, 'missing')[:12]} -> {got['files'].get(k, 'missing')[:12]}"
             for k in sorted(set(want["files"]) | set(got["files"])) if want["files"].get(k) != got["files"].get(k)]
    if want["losses"] != got["losses"]:
        diffs.append(f"losses differ: first {want['losses'][:1]} -> {got['losses'][:1]}")
    for d in diffs:
        print("DIFF", d)
    print(f"{len(got['files'])} files, {len(got['losses'])} loss rows: "
          + ("identical" if not diffs else f"{len(diffs)} differences"))
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
