"""``knowmix eval``: fine-tune and probe a checkpoint; ``eval/results.json`` and a printed table.

    knowmix eval RUN_OR_HF_DIR --task cls:train.json,dev.json [--task pair:train.json,dev.json] \\
        [--task re:train.txt,test.txt --relations relation2id.txt] [--task probe:kg.tsv --templates probe.toml] \\
        [--seeds 3] [--epochs 3] [--lr 3e-5] [--batch-size 32] [--max-seq-len 128] --output eval/

A task may be named (``--task tnews=cls:train.json,dev.json``); by default it is named after its kind and its
first file's folder. Every task's files are read and checked before any fine-tuning starts. Each fine-tuning
task runs once per seed (``--seed``, ``--seed + 1``, …) from the same pretrained weights; the probe needs no
fine-tuning and runs once. ``results.json``: per task its files, example and skipped-line counts, labels, and
per metric the values per seed, their mean and sample standard deviation. Metrics: ``accuracy`` (cls, pair,
re), ``micro_f1`` (re, over every relation but ``--na-label``), ``p_at_1`` and ``mrr`` (probe).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field

import torch

from knowmix.errors import UserError
from knowmix.fileio import write_text
from knowmix.relations import read_relation_file
from knowmix.trainer.eval_finetune import (FineTuneOptions, accuracy, encode_split, finetune, mean_std, micro_f1, probe)
from knowmix.trainer.eval_model import Pretrained, check_vocab, load_pretrained
from knowmix.trainer.eval_tasks import KINDS, Split, read_clue, read_kg, read_re, read_templates

SHOWN_PROBLEMS = 20  # per file; the rest are counted


@dataclass
class TaskSpec:
    name: str
    kind: str
    paths: list[str]


@dataclass
class Prepared:
    spec: TaskSpec
    splits: list[Split]
    labels: list[str] = field(default_factory=list)
    na: int | None = None
    features: list = field(default_factory=list)


def parse_task(text: str) -> TaskSpec:
    name = ""
    head, sep, rest = text.partition(":")
    if not sep:
        raise UserError(f"--task {text!r}: expected KIND:FILES, e.g. cls:train.json,dev.json")
    if "=" in head:
        name, head = head.split("=", 1)
    kind = head.strip()
    if kind not in KINDS:
        raise UserError(f"--task {text!r}: unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    paths = [p.strip() for p in rest.split(",") if p.strip()]
    want = 1 if kind == "probe" else 2
    if len(paths) != want:
        raise UserError(f"--task {text!r}: {kind} takes {'one KG file' if want == 1 else 'two files (train, dev)'},"
                        f" got {len(paths)}")
    if not name:
        folder = os.path.basename(os.path.dirname(os.path.abspath(paths[0])))
        name = f"{kind}/{folder}" if folder else kind
    return TaskSpec(name.strip(), kind, paths)


def _sorted_labels(labels) -> list[str]:
    labels = set(labels)
    if all(x.lstrip("-").isdigit() for x in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def prepare(spec: TaskSpec, pre: Pretrained, args) -> Prepared:
    """Read and check one task's files (labels, empty splits) and turn its examples into token ids."""
    tok = pre.tokenizer
    if spec.kind == "probe":
        split = read_kg(spec.paths[0])
        report_problems([split])
        if not split.examples:
            raise UserError(f"{spec.paths[0]}: no triples ({split.skipped} lines skipped)")
        return Prepared(spec, [split])
    if spec.kind == "re" and not tok.has_markers:
        raise UserError(f"{tok.path}: the tokenizer has no entity marker tokens ([E1] [/E1] [E2] [/E2] or [unused*])")
    reader = read_re if spec.kind == "re" else (lambda p: read_clue(p, pair=spec.kind == "pair"))
    train, dev = (reader(p) for p in spec.paths)
    relations = read_relation_file(args.relations) if spec.kind == "re" and args.relations else None
    if relations is not None:
        known = set(relations)
        for split in (train, dev):
            keep = []
            for ex in split.examples:
                if ex.label in known:
                    keep.append(ex)
                else:
                    split.problems.append(f"{split.path}:{ex.line}: relation {ex.label!r} not in {args.relations}")
            split.examples = keep
        labels = relations
    else:
        labels = _sorted_labels(ex.label for ex in train.examples)
        known = set(labels)
        report_problems([train, dev])
        for ex in dev.examples:
            if ex.label not in known:
                raise UserError(f"{dev.path}:{ex.line}: label {ex.label!r} does not occur in {train.path}")
    index = {name: i for i, name in enumerate(labels)}
    feats = [encode_split(s, spec.kind, tok, args.max_seq_len, index) for s in (train, dev)]
    report_problems([train, dev])
    for split, f in zip((train, dev), feats):
        if len(f) == 0:
            raise UserError(f"{split.path}: no usable examples ({split.skipped} lines skipped)")
    na = None
    if spec.kind == "re":
        if args.na_label is not None:
            if args.na_label not in index:
                raise UserError(f"--na-label {args.na_label!r}: not a relation of {args.relations or train.path}")
            na = index[args.na_label]
        elif relations is not None:
            na = 0  # relation2id.txt / rel2id.json: NA is id 0 by convention (FinRE's `unknown`, OpenNRE's `NA`)
        elif "NA" in index:
            na = index["NA"]
    return Prepared(spec, [train, dev], labels, na, feats)


def report_problems(splits: list[Split]) -> None:
    """Show the problems not shown yet (the first SHOWN_PROBLEMS per file; then how many more)."""
    for split in splits:
        for line in split.problems[split.reported:SHOWN_PROBLEMS]:
            print(line, file=sys.stderr)
        more = split.skipped - max(split.reported, SHOWN_PROBLEMS)
        if more > 0:
            print(f"{split.path}: {more} more lines skipped", file=sys.stderr)
        split.reported = split.skipped


def summarise(per_seed: dict[str, list[float]]) -> dict:
    out = {}
    for metric, values in per_seed.items():
        mean, std = mean_std(values)
        out[metric] = {"per_seed": values, "mean": mean, "std": std}
    return out


def run_task(p: Prepared, pre: Pretrained, args, device: torch.device, seeds: list[int]) -> dict:
    spec = p.spec
    files = dict(zip(("kg",) if spec.kind == "probe" else ("train", "dev"), map(os.path.abspath, spec.paths)))
    t0 = time.perf_counter()
    if spec.kind == "probe":
        templates = read_templates(args.templates)
        got = probe(pre, p.splits[0], templates, args.max_seq_len, args.batch_size, device, not args.no_progress)
        report_problems(p.splits)
        if got["triples"] == 0:
            raise UserError(f"{spec.paths[0]}: no triple could be probed ({p.splits[0].skipped} skipped)")
        return {"kind": "probe", "files": files, "templates": os.path.abspath(args.templates),
                "examples": {"kg": got["triples"]}, "skipped": {"kg": p.splits[0].skipped},
                "candidates_mean": got["candidates_mean"], "seeds": [], "seconds": round(time.perf_counter() - t0, 1),
                "metrics": summarise({"p_at_1": [got["p_at_1"]], "mrr": [got["mrr"]]})}
    train, dev = p.features
    opts = FineTuneOptions(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_seq_len=args.max_seq_len,
                           progress=not args.no_progress)
    per_seed: dict[str, list[float]] = {"accuracy": []}
    if spec.kind == "re":
        per_seed["micro_f1"] = []
    for seed in seeds:
        pred = finetune(pre, spec.kind, len(p.labels), train, dev, seed, opts, device, desc=f"{spec.name} seed {seed}")
        per_seed["accuracy"].append(accuracy(pred, dev.labels))
        if spec.kind == "re":
            per_seed["micro_f1"].append(micro_f1(pred, dev.labels, p.na)["micro_f1"])
    out = {"kind": spec.kind, "files": files, "examples": {"train": len(train), "dev": len(dev)},
           "skipped": {"train": p.splits[0].skipped, "dev": p.splits[1].skipped}, "labels": p.labels,
           "seeds": seeds, "seconds": round(time.perf_counter() - t0, 1), "metrics": summarise(per_seed)}
    if spec.kind == "re":
        out["na_label"] = p.labels[p.na] if p.na is not None else None
    return out


def format_table(results: dict) -> str:
    """One line per (task, metric): examples evaluated, per-seed values and mean ± std, in percent."""
    rows = [("task", "metric", "n", "per seed", "mean ± std")]
    for name, task in results["tasks"].items():
        n = task["examples"].get("dev", task["examples"].get("kg"))
        for metric, m in task["metrics"].items():
            seeds = " ".join(f"{100 * v:.2f}" for v in m["per_seed"])
            rows.append((name, metric, str(n), seeds, f"{100 * m['mean']:.2f} ± {100 * m['std']:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def evaluate(args) -> dict:
    specs = [parse_task(t) for t in args.task]
    names = [s.name for s in specs]
    for i, s in enumerate(specs):  # two tasks from the same folder: number them
        if names.count(s.name) > 1:
            s.name = f"{s.name}#{names[: i + 1].count(s.name)}"
    if any(s.kind == "probe" for s in specs) and not args.templates:
        raise UserError("--task probe:… needs --templates probe.toml")
    if args.relations and not any(s.kind == "re" for s in specs):
        raise UserError("--relations is for re tasks; no --task re:… given")
    for key in ("seeds", "epochs", "batch_size"):
        if getattr(args, key) < 1:
            raise UserError(f"--{key.replace('_', '-')} must be >= 1")
    pre = load_pretrained(args.model)
    check_vocab(pre)
    if args.max_seq_len is None:  # 128, or less for a model with fewer positions
        args.max_seq_len = min(128, pre.config.max_position_embeddings)
    if args.max_seq_len < 8:
        raise UserError("--max-seq-len must be >= 8")
    if args.max_seq_len > pre.config.max_position_embeddings:
        raise UserError(f"--max-seq-len {args.max_seq_len} exceeds the model's max_position_embeddings"
                        f" {pre.config.max_position_embeddings}")
    if any(s.kind == "probe" for s in specs):
        if not pre.has_mlm_head:
            raise UserError(f"{pre.weights}: no MLM head (cls.predictions.*); the probe needs a BertForMaskedLM")
        read_templates(args.templates)  # a bad template file fails before any fine-tuning
    device = pick_device(args.device)
    prepared = [prepare(s, pre, args) for s in specs]
    seeds = list(range(args.seed, args.seed + args.seeds))
    results = {
        "model": {"path": os.path.abspath(args.model), "source": pre.source, "weights": pre.weights,
                  "tokenizer": pre.tokenizer.path, "config": pre.config.__dict__},
        "settings": {"seeds": seeds, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                     "max_seq_len": args.max_seq_len, "device": str(device),
                     "precision": "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"},
        "tasks": {},
    }
    for p in prepared:
        results["tasks"][p.spec.name] = run_task(p, pre, args, device, seeds)
    return results


def build_parser() -> argparse.ArgumentParser:
    from knowmix.args import Parser

    ap = Parser("knowmix eval", __doc__.splitlines()[0])
    ap.add_argument("model", help="a `knowmix train` output dir or a Hugging Face BERT folder")
    ap.add_argument("--task", action="append", required=True, metavar="[NAME=]KIND:FILES",
                    help="cls:train.json,dev.json | pair:train.json,dev.json | re:train.txt,test.txt | probe:kg.tsv")
    ap.add_argument("--relations", help="re: relation2id.txt (`name id` lines) or rel2id.json")
    ap.add_argument("--na-label", default=None,
                    help="re: the relation left out of micro-F1 (default: id 0 of --relations, else NA if present)")
    ap.add_argument("--templates", help="probe: TOML of `relation = \"{head}…{tail}…\"` templates")
    ap.add_argument("--seeds", type=int, default=3, help="fine-tuning runs per task (seeds --seed, --seed+1, …)")
    ap.add_argument("--seed", type=int, default=0, help="the first seed")
    ap.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs per run")
    ap.add_argument("--lr", type=float, default=3e-5, help="fine-tuning learning rate (AdamW, linear decay)")
    ap.add_argument("--batch-size", type=int, default=32, help="examples per fine-tuning step")
    ap.add_argument("--max-seq-len", type=int, default=None,
                    help="tokens per input (default 128, or the model's max_position_embeddings if fewer)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: one GPU when available (bf16 where supported), else the CPU")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--output", required=True, help="folder for results.json")
    return ap


def eval_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    results = evaluate(args)
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "results.json")
    write_text(path, json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    print(format_table(results))
    print(f"results: {path}")
    return 0
