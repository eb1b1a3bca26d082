"""Entity-linking throughput, sentences/s on one core: knowmix's linker vs a straightforward jieba-then-lookup linker.

    .venv/bin/python bench/link.py [--names 1000000] [--repeat 1] [--segmenters jieba,rjieba,none]

The dictionary: every name and alias of the fixture KGs (admin divisions, world places, FinRE companies), the
jieba dictionary's multi-character words, and synthetic composites (word + 市/县/公司/集团/大学/…) up to
``--names`` surface forms. The sentences: the fixture corpora (CMRC 2018, DRCD converted to simplified, FinRE,
People's Daily), split with kg.link.split_sentences. Both linkers have every name in jieba's user dictionary.

ours       Aho-Corasick over all names, then (only for sentences with a match) the segmenter's word boundaries,
           longest non-overlapping, ambiguity rule.
baseline   jieba.cut(sentence, HMM=False), then each word looked up in a dict of names.
Prints a table and the ratio ours/baseline. Single process, so sentences/s is per core.
"""

from __future__ import annotations

import os
import sys

import _repo_path  # noqa: E402,F401  (first: the repository root on sys.path, bench/ off it)

import argparse
import json
import random
import time

from kg.index import Entity, EntityIndex, load_kg  # noqa: E402
from kg.link import Linker, _base_jieba, split_sentences  # noqa: E402

FIX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "corpora", "fixtures")
SUFFIXES = ["市", "县", "区", "镇", "村", "公司", "集团", "大学", "医院", "银行", "中学", "研究所", "股份", "科技", "控股", "基金会"]


def sentences() -> list[str]:
    import opencc

    texts = [d["context_text"] for d in json.load(open(os.path.join(FIX, "encyclopedia_cmrc2018_trial.json"), encoding="utf-8"))]
    cc = opencc.OpenCC("t2s")
    for a in json.load(open(os.path.join(FIX, "encyclopedia_drcd_dev_first40articles.json"), encoding="utf-8"))["data"]:
        texts += [cc.convert(p["context"]) for p in a["paragraphs"]]
    for line in open(os.path.join(FIX, "finre_valid.txt"), encoding="utf-8"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 4:
            texts.append(parts[3])
    texts += [line.strip() for line in open(os.path.join(FIX, "news_peoples_daily_199801_first400.txt"), encoding="utf-8")]
    out = []
    for t in texts:
        out += [t[s:e] for s, e in split_sentences(t)]
    return out


def dictionary(n: int, seed: int = 0) -> list[str]:
    kg = load_kg([os.path.join(FIX, "admin_triples_county_up.tsv"), os.path.join(FIX, "world_triples.tsv")])
    names = set(kg.index.surface_to_ids)
    for line in open(os.path.join(FIX, "finre_valid.txt"), encoding="utf-8"):
        parts = line.split("\t")
        if len(parts) == 4:
            names.update(p for p in parts[:2] if len(p) >= 2)
    words = sorted(w for w, f in _base_jieba().FREQ.items() if f > 0 and len(w) >= 2)
    rng = random.Random(seed)
    rng.shuffle(words)
    names.update(words[: max(0, n // 4)])
    names = sorted(names)[:n]
    seen = set(names)
    while len(names) < n:
        cand = rng.choice(words) + rng.choice(SUFFIXES)
        if cand not in seen:
            seen.add(cand)
            names.append(cand)
    return names


def make_index(names: list[str]) -> EntityIndex:
    entities = {s: Entity(s, s, (), "T", ("T",), False) for s in names}
    return EntityIndex(entities, {s: (s,) for s in names}, set(), {})


def baseline_linker(names: list[str]):
    import jieba

    tk = jieba.Tokenizer()
    base = _base_jieba()
    tk.FREQ, tk.total, tk.initialized = dict(base.FREQ), base.total, True
    for s in names:
        tk.add_word(s)
    table = set(names)

    def link(sentence):
        out, pos = [], 0
        for w in tk.cut(sentence, HMM=False):
            if w in table:
                out.append((pos, pos + len(w), w))
            pos += len(w)
        return out

    return link


def measure(fn, sents, repeat) -> tuple[float, float, int]:
    """Sentences per CPU-second of this process (= per core), best and median of ``repeat`` passes (the machine
    may be shared: CPU time, and the best pass, are the least disturbed figures), and mentions found."""
    rates = []
    found = 0
    for _ in range(repeat):
        found = 0
        t0 = time.process_time()
        for s in sents:
            found += len(fn(s))
        rates.append(len(sents) / (time.process_time() - t0))
    rates.sort()
    return rates[-1], rates[len(rates) // 2], found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--names", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5, help="passes over the sentences; best and median reported")
    ap.add_argument("--segmenters", default="jieba,rjieba,none")
    args = ap.parse_args(argv)
    sents = sentences()
    t = time.perf_counter()
    names = dictionary(args.names)
    print(f"{len(sents)} sentences ({sum(map(len, sents)) / len(sents):.1f} chars avg), {len(names)} names "
          f"(built in {time.perf_counter() - t:.1f}s)")
    index = make_index(names)
    rows = []
    for seg in args.segmenters.split(","):
        t = time.process_time()
        linker = Linker(index, segmenter=seg)
        setup = time.process_time() - t
        best, median, found = measure(lambda s: linker.link(s).mentions, sents, args.repeat)
        rows.append((f"ours ({seg})", setup, best, median, found))
    t = time.process_time()
    base = baseline_linker(names)
    setup = time.process_time() - t
    best, median, found = measure(base, sents, args.repeat)
    rows.append(("baseline jieba.cut + lookup", setup, best, median, found))
    print(f"{'linker':30} {'setup s':>8} {'sent/s/core best':>17} {'median':>8} {'mentions':>9} {'vs baseline':>12}")
    for name, setup, best, median, found in rows:
        print(f"{name:30} {setup:8.1f} {best:17.0f} {median:8.0f} {found:9d} {best / rows[-1][2]:11.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
