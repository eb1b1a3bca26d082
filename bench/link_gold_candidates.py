"""Candidates for the linking benchmark's gold file (``corpora/fixtures/linking_gold.jsonl``), for a person to judge.

    python bench/link_gold_candidates.py --out /tmp/candidates.jsonl [--per-source 110,100,100] [--seed 13]

Draws sentences (seeded) from the fixture corpora (FinRE financial news, People's Daily, the encyclopedia files)
that contain at least one KG surface form of the benchmark KG (``bench/link_quality.py``: admin divisions + world
places + an untyped company KG from FinRE's head/tail names), and lists *every* occurrence of a surface form in each
(no word-boundary check, no overlap resolution, no common-word rule): a superset of what any linker can return.
Each candidate lists all the entities its surface names. Gold decisions are made by reading the sentences; this
script decides nothing. The candidates keep the document the sentence came from (``context``), because the linker
may use other sentences of the document.
"""

from __future__ import annotations

import _repo_path  # noqa: F401  (first: the repository root on sys.path)

import argparse
import json
import os
import random
import sys

import ahocorasick

from knowmix.kg.link import split_sentences

FIX = os.path.join(_repo_path.ROOT, "corpora", "fixtures")


def documents() -> list[dict]:
    """{"source", "doc", "text"} for every document of the fixture corpora (one FinRE sentence or People's Daily
    line is one document; an encyclopedia article or CMRC context is one)."""
    import opencc

    docs = []
    seen = set()
    for i, line in enumerate(open(os.path.join(FIX, "finre_valid.txt"), encoding="utf-8")):
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 4 and parts[3] not in seen:
            seen.add(parts[3])
            docs.append({"source": "finre", "doc": f"finre_valid.txt:{i + 1}", "text": parts[3]})
    for i, line in enumerate(open(os.path.join(FIX, "news_peoples_daily_199801_first400.txt"), encoding="utf-8")):
        if line.strip():
            docs.append({"source": "peoples_daily", "doc": f"news_peoples_daily_199801_first400.txt:{i + 1}",
                         "text": line.strip()})
    for i, d in enumerate(json.load(open(os.path.join(FIX, "encyclopedia_cmrc2018_trial.json"), encoding="utf-8"))):
        docs.append({"source": "encyclopedia", "doc": f"encyclopedia_cmrc2018_trial.json#{i}", "text": d["context_text"]})
    cc = opencc.OpenCC("t2s")
    data = json.load(open(os.path.join(FIX, "encyclopedia_drcd_dev_first40articles.json"), encoding="utf-8"))["data"]
    for i, a in enumerate(data):
        text = "\n".join(cc.convert(p["context"]) for p in a["paragraphs"])
        docs.append({"source": "encyclopedia", "doc": f"encyclopedia_drcd_dev_first40articles.json#{i}", "text": text})
    return docs


def candidates(auto, index, sentence: str) -> list[dict]:
    out = []
    for end, surface in auto.iter(sentence):
        start = end + 1 - len(surface)
        ids = list(index.candidates(surface))
        out.append({"start": start, "end": end + 1, "surface": surface,
                    "entities": [{"id": e, "type": index.get(e).type, "name": index.get(e).name} for e in ids]})
    out.sort(key=lambda c: (c["start"], -c["end"]))
    return out


def main(argv=None) -> int:
    import importlib.util

    spec = importlib.util.spec_from_file_location("link_quality", os.path.join(_repo_path.HERE, "link_quality.py"))
    link_quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(link_quality)
    benchmark_kg = link_quality.benchmark_kg
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-source", default="110,100,100", help="sentences from finre, peoples_daily, encyclopedia")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--max-chars", type=int, default=160, help="longer sentences are not drawn (easier to read)")
    args = ap.parse_args(argv)
    kg = benchmark_kg()
    index = kg.index
    auto = ahocorasick.Automaton()
    for s in index.surface_to_ids:
        if len(s) >= 2:
            auto.add_word(s, s)
    auto.make_automaton()
    by_source: dict[str, list] = {}
    for d in documents():
        sents = [d["text"][s:e] for s, e in split_sentences(d["text"])]
        for k, sent in enumerate(sents):
            if len(sent) <= args.max_chars and any(True for _ in auto.iter(sent)):
                by_source.setdefault(d["source"], []).append((d, sents, k))
    rng = random.Random(args.seed)
    n = 0
    with open(args.out, "w", encoding="utf-8") as fh:
        for source, want in zip(("finre", "peoples_daily", "encyclopedia"), map(int, args.per_source.split(","))):
            pool = by_source[source]
            for d, sents, k in sorted(rng.sample(pool, min(want, len(pool))), key=lambda x: (x[0]["doc"], x[2])):
                rec = {"id": f"{d['doc']}@{k}", "source": source, "doc": d["doc"], "sentence_index": k,
                       "text": sents[k], "context": sents if len(sents) > 1 else None,
                       "candidates": candidates(auto, index, sents[k])}
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
    print(f"{n} sentences -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
