"""Linking precision / recall / F1 on the hand-checked gold file, new linker and previous behaviour side by side.

    python bench/link_quality.py [--gold corpora/fixtures/linking_gold.jsonl] [--segmenter rjieba] [--json]

The KG: the fixture admin divisions (typed, with short aliases such as 广东 for 广东省), the world places (untyped)
and an untyped company KG from FinRE's labelled head/tail names (``tests/kg/helpers.write_finre_kg``), merged.
The gold file (how it was made: ``corpora/fixtures/linking_gold.md``) holds, per sentence, its document's sentences
and the gold mentions (span + entity id). A predicted mention counts as correct only with the exact span and entity.

new        kg.link.Linker with the common-word rule (CommonWords defaults) and the precision rules of
           kg.link_filters (LinkFilters defaults), the document as context (Linker.link_document), junk names left
           out of the KG.
no_filters the same without kg.link_filters (filters=None): the linker before those rules.
previous   the behaviour before the precision rules: every name and alias linked (common_words=None, filters=None), junk names
           (``<N>``) in the KG, one sentence at a time.

Subsets: all, the two halves ``tuning`` / ``held_out`` (split_of: the first byte of the sentence's sha256, even or
odd; fixed before the rules of kg.link_filters were designed, on the tuning half only), and each source.
"""

from __future__ import annotations

import _repo_path  # noqa: F401  (first: the repository root on sys.path)

import argparse
import hashlib
import json
import os
import sys
import tempfile
from functools import lru_cache

from knowmix.kg.index import load_kg
from knowmix.kg.link import Linker

GOLD = os.path.join(_repo_path.ROOT, "corpora", "fixtures", "linking_gold.jsonl")
FIX = os.path.join(_repo_path.ROOT, "corpora", "fixtures")


@lru_cache(maxsize=2)
def benchmark_kg(keep_junk: bool = False):
    """admin + world + FinRE companies; ``keep_junk``: the previous loader (no junk-name check)."""
    from tests.kg.helpers import write_finre_kg

    tmp = tempfile.mkdtemp(prefix="knowmix-link-quality-")
    finre = write_finre_kg(os.path.join(tmp, "finre_companies.tsv"))
    paths = [os.path.join(FIX, "admin_triples_county_up.tsv"), os.path.join(FIX, "world_triples.tsv"), finre]
    return load_kg(paths, min_name_chars=None if keep_junk else 2)


def read_gold(path: str = GOLD) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def split_of(record: dict) -> str:
    """``tuning`` or ``held_out``, by the sentence's sha256 (deterministic, independent of the labels)."""
    return "tuning" if hashlib.sha256(record["text"].encode("utf-8")).digest()[0] % 2 == 0 else "held_out"


def predict(linker: Linker, record: dict, use_document: bool) -> set[tuple[int, int, str]]:
    sents = record.get("context") or [record["text"]]
    k = record["sentence_index"] if record.get("context") else 0
    assert sents[k] == record["text"], record["id"]
    res = linker.link_document(sents)[k] if use_document else linker.link(record["text"])
    return {(m.start, m.end, m.entity_id) for m in res.mentions}


def matched(pred: set, gold: dict) -> set:
    """The predictions that are gold: exact span, and an entity the gold mention accepts (a place both KGs hold,
    深圳 / 深圳市, may be linked to either)."""
    return {p for p in pred if p[2] in gold.get(p[:2], ())}


def score(pred: list[set], gold: list[dict]) -> dict:
    tp = sum(len(matched(p, g)) for p, g in zip(pred, gold))
    npred, ngold = sum(map(len, pred)), sum(map(len, gold))
    precision = tp / npred if npred else 1.0
    recall = tp / ngold if ngold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "tp": tp, "predicted": npred, "gold": ngold}


def evaluate(records: list[dict], segmenter: str = "rjieba") -> dict:
    gold = [{(m["start"], m["end"]): tuple(m["entity_ids"]) for m in r["mentions"]} for r in records]
    new = Linker(benchmark_kg().index, segmenter=segmenter)
    no_filters = Linker(benchmark_kg().index, segmenter=segmenter, filters=None)
    previous = Linker(benchmark_kg(keep_junk=True).index, segmenter=segmenter, common_words=None, filters=None)
    out = {}
    subsets = [("tuning", lambda r: split_of(r) == "tuning"), ("held_out", lambda r: split_of(r) == "held_out")]
    subsets += [(src, lambda r, src=src: r["source"] == src) for src in sorted({r["source"] for r in records})]
    for name, linker, use_doc in (("new", new, True), ("no_filters", no_filters, True), ("previous", previous, False)):
        pred = [predict(linker, r, use_doc) for r in records]
        out[name] = {"all": score(pred, gold)}
        for subset, member in subsets:
            sel = [i for i, r in enumerate(records) if member(r)]
            out[name][subset] = score([pred[i] for i in sel], [gold[i] for i in sel])
        out[name]["errors"] = [
            {"id": r["id"], "half": split_of(r), "text": r["text"], "false": sorted(p - matched(p, g)),
             "missed": sorted(span for span in g if not any(q[:2] == span for q in matched(p, g)))}
            for r, p, g in zip(records, pred, gold) if len(matched(p, g)) != len(p) or len(p) != len(g)
        ]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gold", default=GOLD)
    ap.add_argument("--segmenter", default="rjieba")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--errors", action="store_true", help="list the new linker's false and missed mentions")
    ap.add_argument("--half", choices=("tuning", "held_out"), default=None,
                    help="with --errors: only the sentences of this half")
    args = ap.parse_args(argv)
    records = read_gold(args.gold)
    result = evaluate(records, args.segmenter)
    if args.json:
        print(json.dumps({k: {s: v for s, v in d.items() if s != "errors"} for k, d in result.items()},
                         ensure_ascii=False, indent=1))
        return 0
    print(f"{len(records)} sentences, {sum(len(r['mentions']) for r in records)} gold mentions ({args.gold})")
    print(f"{'subset':16} {'linker':10} {'precision':>9} {'recall':>7} {'F1':>6} {'tp':>5} {'pred':>5} {'gold':>5}")
    for subset in result["new"]:
        if subset == "errors":
            continue
        for name in ("new", "no_filters", "previous"):
            s = result[name][subset]
            print(f"{subset:16} {name:10} {s['precision']:9.3f} {s['recall']:7.3f} {s['f1']:6.3f} {s['tp']:5d} "
                  f"{s['predicted']:5d} {s['gold']:5d}")
    if args.errors:
        for e in result["new"]["errors"]:
            if args.half and e["half"] != args.half:
                continue
            print(json.dumps(e, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
