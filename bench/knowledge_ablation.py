"""What does the knowledge path buy? The same small encoder, from the same initial weights, pretrained on the same
general-path tokens three ways, then fine-tuned and probed with ``knowmix eval``:

  (a) general MLM only (single path)
  (b) dual path: general MLM + the knowledge tasks (relation, substitution, triple-mask)
  (c) dual path + the training techniques (R-Drop, layer-wise self-distillation, the cross-layer attention
      residual, multi-round MLM)

Everything is built from the bundled fixtures through the real ``knowmix clean`` / ``kg-samples`` / ``spm-train``
/ ``tokenize`` / ``train`` / ``eval`` code paths (as ``knowmix demo`` chains them):

- relation classification: ``corpora/fixtures/finre_valid.txt`` split by sentence (a sentence and its near-copies,
  equal after dropping punctuation and spaces, all go to one side); the train side's sentences join the pretraining
  corpus and its triples form an untyped company KG; the script checks that no test sentence occurs in the
  cleaned pretraining text (the same canonical form) and stops if one does;
- pretraining corpus: the demo's clean job (encyclopedia, news, medical Q&A, web fixtures) + those sentences;
- knowledge: the admin and world KGs + the company KG;
- probe: admin/world triples whose head and tail both occur in the pretraining text (so the fact could have been
  seen), sampled deterministically, with one Chinese template per relation.

The pretraining runs differ only in ``data.knowledge`` and the technique switches: same ``model.init_from``
(written once here), same seed, same steps and general micro-batch, hence the same general-path tokens in the same
order. Eval: ``--seeds`` fine-tuning seeds per model (the same seeds for every model, so differences are paired by
seed); the table shows mean ± std and (b − a), (c − a) with a 95% t-interval over the paired seed differences.
That interval covers fine-tuning noise only: each arm is one pretraining run.

    python bench/knowledge_ablation.py --quick          # a few minutes on 2 CPU cores: the script end to end
    python bench/knowledge_ablation.py                  # the default size (<= 30 min on 2 CPU cores)
    python bench/knowledge_ablation.py --size base      # a GPU
    python bench/knowledge_ablation.py --corpus-job my_job.toml --kg my_kg.tsv --re-data my_nre.txt \\
        --relations my_relation2id.txt --probe-kg my_kg.tsv --templates my_probe.toml
"""

from __future__ import annotations

import os
import sys

import _repo_path  # noqa: E402,F401  (first: the repository root on sys.path, bench/ off it)

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

from knowmix.demo import demo_job_toml, fixture  # noqa: E402
from knowmix.errors import UserError  # noqa: E402
from knowmix.manifest import open_shard_dir  # noqa: E402

# size presets: encoder dims, pretraining steps/batch, tokenizer, fine-tuning
SIZES = {
    "quick": dict(hidden=64, layers=2, heads=2, inter=256, steps=100, batch=16, seq=128, vocab=6000, lr=2e-3,
                  ft_lr=1e-3, epochs=6, ft_batch=32, probe=150),
    "small": dict(hidden=128, layers=2, heads=2, inter=512, steps=400, batch=16, seq=128, vocab=8000, lr=1e-3,
                  ft_lr=1e-3, epochs=8, ft_batch=32, probe=300),
    "base": dict(hidden=768, layers=12, heads=12, inter=3072, steps=3000, batch=32, seq=128, vocab=8000, lr=1e-4,
                 ft_lr=3e-5, epochs=3, ft_batch=32, probe=1000),
}
TECHNIQUES = ["distill.rdrop_alpha=1.0", "distill.layer_beta=0.5", "model.attn_residual_decay=0.5",
              'mlm.mode="multiround"', "mlm.rounds=2"]
TEMPLATES = {
    "located_in": "{head}位于{tail}。",
    "capital": "{head}的首都是{tail}。",
    "country": "{head}是{tail}的城市。",
    "full_name": "{head}的全称是{tail}。",
}
_NOT_WORD = re.compile(r"[\W_]+")


def canon(text: str) -> str:
    """A sentence without punctuation and white space: near-copies compare equal."""
    return _NOT_WORD.sub("", text)


def unit_hash(text: str, salt: str = "") -> float:
    return int.from_bytes(hashlib.blake2b((salt + text).encode("utf-8"), digest_size=8).digest(), "big") / 2.0**64


def knowmix(args: list[str]) -> None:
    from knowmix.cli import main

    t0 = time.perf_counter()
    print(f"\n== knowmix {' '.join(args)}", flush=True)
    rc = main(args)
    if rc != 0:
        raise SystemExit(f"knowmix {args[0]} failed (exit {rc})")
    print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)


# ---------------------------------------------------------------------------------------------- data


def split_re(path: str, test_share: float, out_dir: str) -> dict:
    """NRE TSV -> train.txt / test.txt (by canonical sentence), the train side's unique sentences for the
    corpus, and its non-NA triples as an untyped company KG."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) == 4 and all(p.strip() for p in parts):
                records.append(parts)
    if not records:
        raise UserError(f"{path}: no `head \\t tail \\t relation \\t sentence` lines")
    train, test = [], []
    for r in records:
        (test if unit_hash(canon(r[3]), "re-split") < test_share else train).append(r)
    os.makedirs(out_dir, exist_ok=True)
    files = {k: os.path.join(out_dir, f"{k}.txt") for k in ("train", "test")}
    for key, rows in (("train", train), ("test", test)):
        with open(files[key], "w", encoding="utf-8") as fh:
            fh.writelines("\t".join(r) + "\n" for r in rows)
    sentences = sorted({r[3] for r in train})
    files["sentences"] = os.path.join(out_dir, "train_sentences.txt")
    with open(files["sentences"], "w", encoding="utf-8") as fh:
        fh.writelines(s + "\n" for s in sentences)
    return {"files": files, "train": train, "test": test}


def write_company_kg(train, na: str, path: str) -> int:
    triples = sorted({(h, rel, t) for h, t, rel, _ in train if rel != na and h != t})
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("head\trelation\ttail\n")
        fh.writelines(f"{h}\t{r}\t{t}\n" for h, r, t in triples)
    return len(triples)


def na_relation(path: str) -> str:
    """The relation with id 0 in relation2id.txt (FinRE's `unknown`)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[-1] == "0":
                return " ".join(parts[:-1])
    return "NA"


def corpus_job(user_job: str | None, docs: str, sentences: str) -> str:
    """The clean job: the demo's fixture sources (or the user's job) plus the RE train sentences as news lines."""
    if user_job:
        with open(user_job, encoding="utf-8") as fh:
            text = fh.read()
    else:
        text = demo_job_toml(docs)
    extra = f'\n[[sources]]\nkind = "news"\nformat = "txt"\npaths = [{json.dumps(sentences)}]\n'
    head, sep, tail = text.partition("\n[output]")  # [[sources]] must come before the other tables
    return head + extra + sep + tail if sep else text + extra


def docs_texts(docs: str) -> list[str]:
    out = []
    for table in open_shard_dir(docs, "docs", verify=False).iter_tables():
        out += [t for t in table.column("text").to_pylist() if t]
    return out


def check_no_leak(test_rows, texts: list[str]) -> int:
    """Stop if a test sentence (canonical form) occurs in the pretraining text; return how many were checked."""
    corpus = "\n".join(canon(t) for t in texts)
    sentences = sorted({canon(r[3]) for r in test_rows})
    leaked = [s for s in sentences if s and s in corpus]
    if leaked:
        raise SystemExit(f"leak: {len(leaked)} test sentences occur in the pretraining text, e.g. {leaked[0][:60]}")
    return len(sentences)


def probe_triples(kg_files: list[str], relations, texts: list[str], n: int, out: str) -> dict:
    """Triples of ``relations`` (those with a template) whose head and tail both occur in the pretraining text; at
    most ``n``, chosen by hash; written as a typed TSV (untyped tails: the relation's tail role). KG files: TSV, as
    ``knowmix eval``'s probe reads them."""
    from knowmix.trainer.eval_tasks import read_kg

    corpus = "\n".join(texts)
    rows = []
    for path in kg_files:
        for t in read_kg(path).examples:
            if t.relation in relations:
                rows.append((t.head, t.relation, t.tail, t.tail_type))
    seen = [r for r in rows if r[0] in corpus and r[2] in corpus]
    seen.sort(key=lambda r: unit_hash("\t".join(r), "probe"))
    picked = sorted(seen[:n])
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("head\trelation\ttail\ttail_type\n")
        fh.writelines("\t".join(r) + "\n" for r in picked)
    return {"kg_triples": len(rows), "in_corpus": len(seen), "probed": len(picked),
            "per_relation": {rel: sum(r[1] == rel for r in picked) for rel in relations}}


def write_init(work: str, pretrain: str, size: dict, seed: int = 0) -> str:
    """The initial weights every arm starts from: a Hugging Face folder (model + the shards' tokenizer)."""
    import torch

    from knowmix.trainer.hf import save_hf
    from knowmix.trainer.heads import KnowmixForPretraining
    from knowmix.trainer.model import EncoderConfig

    manifest = open_shard_dir(pretrain, "pretrain", verify=False).manifest
    tok = manifest["tokenizer"]
    cfg = EncoderConfig(vocab_size=int(tok["vocab_size"]), hidden_size=size["hidden"],
                        num_hidden_layers=size["layers"], num_attention_heads=size["heads"],
                        intermediate_size=size["inter"], max_position_embeddings=max(128, size["seq"]),
                        pad_token_id=int(tok["special_ids"]["pad"]))
    torch.manual_seed(seed)
    model = KnowmixForPretraining(cfg)
    out = os.path.join(work, "init")
    save_hf(model, cfg, out, tok, os.path.join(pretrain, tok["file"]))
    return out


def pretrain_config(work: str, init: str, size: dict, steps: int, device: str) -> str:
    path = os.path.join(work, "pretrain.toml")
    precision = "bf16" if device == "cuda" else "fp32"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"""# written by bench/knowledge_ablation.py: the config all three arms share
[model]
init_from = {json.dumps(init)}
dropout = 0.1
attention_dropout = 0.1

[data]
pretrain = {json.dumps(os.path.join(work, 'pretrain'))}
knowledge = {json.dumps(os.path.join(work, 'ktok'))}
seq_len = {size['seq']}

[optim]
lr = {size['lr']}
warmup_steps = {max(1, steps // 10)}
schedule = "linear"

[train]
max_steps = {steps}
micro_batch_size = {size['batch']}
precision = "{precision}"
zero = 0
device = "{device}"
seed = 0
log_every = {max(1, steps // 20)}
tensorboard = false

[checkpoint]
interval = 0
keep = 1
""")
    return path


# ---------------------------------------------------------------------------------------------- statistics

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def t975(df: int) -> float:
    return T975.get(df, 1.96 + 2.4 / df)  # beyond the table: within 0.01 of the exact quantile for df > 10


def paired_diff(a: list[float], b: list[float]) -> tuple[float, float | None]:
    """Mean of b_i - a_i and the half-width of its 95% t-interval (None with one pair)."""
    d = [y - x for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    return mean, t975(n - 1) * sd / math.sqrt(n)


def table(results: dict[str, dict]) -> str:
    arms = list(results)
    base = results[arms[0]]["tasks"]
    rows = [["task", "metric", *[f"({k}) mean ± std" for k in arms],
             *[f"({k}) − ({arms[0]}) [95% CI]" for k in arms[1:]]]]
    for task in base:
        for metric in base[task]["metrics"]:
            vals = {k: results[k]["tasks"][task]["metrics"][metric] for k in arms}
            row = [task, metric, *[f"{100 * v['mean']:.2f} ± {100 * v['std']:.2f}" for v in vals.values()]]
            for k in arms[1:]:
                mean, half = paired_diff(vals[arms[0]]["per_seed"], vals[k]["per_seed"])
                ci = (f" [{100 * (mean - half):+.2f}, {100 * (mean + half):+.2f}]" if half is not None
                      else " (one value)")
                row.append(f"{100 * mean:+.2f}{ci}")
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="out/ablation", help="working directory (replaced)")
    ap.add_argument("--size", choices=("small", "base"), default="small")
    ap.add_argument("--quick", action="store_true", help="the smallest size: the script end to end in minutes")
    ap.add_argument("--steps", type=int, default=0, help="pretraining steps (default: from the size)")
    ap.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds per model")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: small models gain little from more, and lose a lot on a busy machine)")
    ap.add_argument("--corpus-job", help="a `knowmix clean` job TOML with your corpus (default: the fixture corpora)")
    ap.add_argument("--kg", action="append", default=[], help="KG files for the knowledge path (default: admin+world)")
    ap.add_argument("--re-data", default=fixture("finre_valid.txt"), help="NRE TSV to split into train/test")
    ap.add_argument("--relations", default=fixture("finre_relation2id.txt"), help="relation2id.txt of --re-data")
    ap.add_argument("--test-share", type=float, default=0.3, help="share of sentences in the RE test split")
    ap.add_argument("--probe-kg", action="append", default=[],
                    help="KG TSVs for the probe (default: the .tsv --kg files)")
    ap.add_argument("--templates", help="probe templates TOML (default: the built-in Chinese ones)")
    ap.add_argument("--probe-triples", type=int, default=0, help="most triples probed (default: from the size)")
    args = ap.parse_args(argv)
    size = dict(SIZES["quick" if args.quick else args.size])
    steps = args.steps or size["steps"]
    probe_n = args.probe_triples or size["probe"]
    import torch

    torch.set_num_threads(args.threads)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    work = os.path.abspath(args.work)
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(name, t0):
        timings[name] = round(time.perf_counter() - t0, 1)

    # 1. the RE split, the company KG, the corpus
    t0 = time.perf_counter()
    na = na_relation(args.relations)
    split = split_re(args.re_data, args.test_share, os.path.join(work, "re"))
    company = os.path.join(work, "re", "company_kg.tsv")
    n_company = write_company_kg(split["train"], na, company)
    print(f"RE split: {len(split['train'])} train / {len(split['test'])} test records; company KG {n_company} triples")
    job = os.path.join(work, "job.toml")
    docs = os.path.join(work, "docs")
    with open(job, "w", encoding="utf-8") as fh:
        fh.write(corpus_job(args.corpus_job, docs, split["files"]["sentences"]))
    knowmix(["clean", "--config", job, "--output", docs])
    texts = docs_texts(docs)
    checked = check_no_leak(split["test"], texts)
    print(f"leak check: none of the {checked} test sentences occurs in the {len(texts)} pretraining docs")

    # 2. knowledge samples, tokenizer, token shards
    kgs = args.kg or [fixture("admin_triples_county_up.tsv"), fixture("world_triples.tsv")]
    knowmix(["kg-samples", *[x for k in kgs + [company] for x in ("--kg", k)], "--docs", docs,
             "--output", os.path.join(work, "knowledge"), "--seed", "0"])
    spm = os.path.join(work, "tok", "spm")
    knowmix(["spm-train", "--docs", docs, "--vocab-size", str(size["vocab"]), "--output", spm])
    for src, dst in (("docs", "pretrain"), ("knowledge", "ktok")):
        knowmix(["tokenize", "--input", os.path.join(work, src), "--tokenizer", f"spm:{spm}.model",
                 "--max-seq-len", str(size["seq"]), "--output", os.path.join(work, dst)])
    probe_kg = os.path.join(work, "probe_kg.tsv")
    templates = args.templates or os.path.join(work, "probe.toml")
    if not args.templates:
        with open(templates, "w", encoding="utf-8") as fh:
            fh.writelines(f"{rel} = {json.dumps(t, ensure_ascii=False)}\n" for rel, t in TEMPLATES.items())
    from knowmix.trainer.eval_tasks import read_templates

    probe_kgs = args.probe_kg or [k for k in kgs if k.endswith(".tsv")]
    probe_info = probe_triples(probe_kgs, list(read_templates(templates)), texts, probe_n, probe_kg)
    print(f"probe: {probe_info}")
    timed("data", t0)

    # 3. pretraining: three arms from the same initial weights
    init = write_init(work, os.path.join(work, "pretrain"), size)
    config = pretrain_config(work, init, size, steps, device)
    arms = {"a": ['data.knowledge=""'], "b": [], "c": TECHNIQUES}
    for arm, extra in arms.items():
        t0 = time.perf_counter()
        knowmix(["train", config, f"train.output_dir={os.path.join(work, 'run-' + arm)}", *extra])
        timed(f"pretrain {arm}", t0)

    # 4. eval: relation classification (seeds) and the probe
    results = {}
    for arm in arms:
        t0 = time.perf_counter()
        out = os.path.join(work, "eval-" + arm)
        knowmix(["eval", os.path.join(work, "run-" + arm), "--task", f"finre=re:{split['files']['train']},"
                 f"{split['files']['test']}", "--relations", args.relations, "--task", f"probe=probe:{probe_kg}",
                 "--templates", templates, "--seeds", str(args.seeds), "--epochs", str(size["epochs"]),
                 "--lr", str(size["ft_lr"]), "--batch-size", str(size["ft_batch"]), "--max-seq-len", str(size["seq"]),
                 "--device", device, "--output", out])
        with open(os.path.join(out, "results.json"), encoding="utf-8") as fh:
            results[arm] = json.load(fh)
        timed(f"eval {arm}", t0)

    total = time.perf_counter() - t_start
    summary = {"size": "quick" if args.quick else args.size, "steps": steps, "device": device, "seeds": args.seeds,
               "techniques": TECHNIQUES, "probe": probe_info, "timings_s": timings, "total_s": round(total, 1),
               "re": {"train": len(split["train"]), "test": len(split["test"]), "na": na},
               "pretrain_final": {arm: _final_metrics(os.path.join(work, "run-" + arm)) for arm in arms},
               "results": {arm: r["tasks"] for arm, r in results.items()}}
    with open(os.path.join(work, "ablation.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, ensure_ascii=False, indent=2)
    print("\n(a) general MLM only   (b) dual path   (c) dual path + techniques"
          f"   [{summary['size']}: {steps} steps, {args.seeds} fine-tuning seeds, {device}]")
    print(table(results))
    print(f"\nRE: {len(split['train'])} train / {len(split['test'])} test records ({na!r} = NA, left out of"
          f" micro-F1); probe: {probe_info['probed']} triples")
    print("pretraining, last logged window: " + "; ".join(
        f"({arm}) " + ", ".join(f"{k}={v:.3f}" for k, v in m.items()) for arm, m in summary["pretrain_final"].items()))
    print("timings (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()) + f"; total {total:.0f} s")
    print(f"details: {os.path.join(work, 'ablation.json')}")
    return 0


def _final_metrics(run_dir: str) -> dict:
    path = os.path.join(run_dir, "metrics.jsonl")
    last = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            last = json.loads(line)
    keys = ("loss/mlm", "acc/mlm", "loss/relation", "acc/relation", "loss/triple_mask")
    return {k: last[k] for k in keys if last.get(k) is not None}


if __name__ == "__main__":
    sys.exit(main())
