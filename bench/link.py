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

The index file (kg.index_file, what kg-samples' workers map): ``--index-file`` (on by default) writes the
dictionary's index file and reports its build time, size and bytes per name; links the sentences with the
linker built on the *mapped* index (matching with the file's own automaton, kg/mmap_match.py) and on the
in-memory one (pyahocorasick) in the same run (same mentions required, speed ratio); and starts two processes that map the same file at once and reports each one's resident memory (RSS)
and proportional share (PSS: shared pages count half in each), for the mapped index alone and with the
linker built on it (``--memory-linker``), next to one process holding the in-memory index and linker.
"""

from __future__ import annotations

import os
import sys

import _repo_path  # noqa: E402,F401  (first: the repository root on sys.path, bench/ off it)

import argparse
import bisect
import json
import random
import time

from knowmix.kg.index import Entity, EntityIndex, load_kg  # noqa: E402
from knowmix.kg.link import Linker, split_sentences  # noqa: E402
from knowmix.kg.segmenter import base_jieba  # noqa: E402

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
    words = sorted(w for w, f in base_jieba().FREQ.items() if f > 0 and len(w) >= 2)
    rng = random.Random(seed)
    rng.shuffle(words)
    names.update(words[: max(0, n // 4)])
    names = sorted(names)[:n]
    seen = set(names)
    while len(names) < n:
        # word + suffix gives ~5.6M names; past 4M, word + word + suffix (the dictionary up to 4M is unchanged)
        cand = rng.choice(words) + rng.choice(SUFFIXES)
        if len(names) >= 4_000_000:
            cand = rng.choice(words) + cand
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
    base = base_jieba()
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


def memory_mb() -> dict:
    """This process's resident memory (RSS), proportional share (PSS) and shared pages, MB (Linux)."""
    out = {}
    with open("/proc/self/smaps_rollup") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Shared_Clean", "Private_Clean", "Private_Dirty", "Anonymous"):
                out[key] = int(rest.split()[0]) / 1024
    return out


CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from knowmix.kg.index_file import MappedIndex
ix = MappedIndex(sys.argv[2])
sum(int(a.sum()) for a in ix._a.values())  # touch every page of the file
if sys.argv[3] == "linker":
    from knowmix.kg.link import Linker
    Linker(ix, sys.argv[4])
print("ready", flush=True)
sys.stdin.readline()  # both processes have mapped the file: measure
out = {}
for line in open("/proc/self/smaps_rollup"):
    key, _, rest = line.partition(":")
    out[key] = int(rest.split()[0]) / 1024 if rest.strip().endswith("kB") else rest
print(json.dumps(out), flush=True)
sys.stdin.readline()
"""


def shared_memory(path: str, what: str, segmenter: str = "rjieba") -> list[dict]:
    """Two processes mapping ``path`` at once (``what``: "index" or "linker"); each one's memory figures, taken
    while both hold the file."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, root, path, what, segmenter], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    figures = []
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
        figures.append(json.loads(p.stdout.readline()))
    for p in procs:
        p.stdin.close()
        p.wait()
    return figures


def index_file_section(names: list[str], index: EntityIndex, sents: list[str], repeat: int, memory_linker: bool):
    import tempfile

    from knowmix.kg.index_file import MappedIndex, write_index_file

    d = tempfile.mkdtemp(prefix="bench-kgindex-")
    t = time.perf_counter()
    path = write_index_file(index, {"bench": len(names)}, d)
    build = time.perf_counter() - t
    size = os.path.getsize(path)
    print(f"\nindex file: {len(names)} names, built in {build:.1f}s, {size / 1e6:.1f} MB, "
          f"{size / len(names):.0f} bytes per name ({path})")
    mapped = MappedIndex(path)
    linkers, setups = [], []
    for ix in (index, mapped):
        t = time.process_time()
        linkers.append(Linker(ix, segmenter="rjieba"))
        setups.append(time.process_time() - t)
    passes: list[list] = [[], []]
    for _ in range(repeat):  # interleaved passes: a shared machine's load hits both alike
        for i, linker in enumerate(linkers):
            passes[i].append(measure(lambda s: linker.link(s).mentions, sents, 1))
    rows = []
    for label, setup, ps in zip(("in-memory index", "mapped index file"), setups, passes):
        rates = sorted(p[0] for p in ps)
        rows.append((label, setup, rates[-1], rates[len(rates) // 2], ps[0][2]))
    del linkers
    print(f"{'linker (rjieba) on':30} {'setup s':>8} {'sent/s/core best':>17} {'median':>8} {'mentions':>9} {'ratio':>7}")
    for label, setup, best, median, found in rows:
        print(f"{label:30} {setup:8.1f} {best:17.0f} {median:8.0f} {found:9d} {best / rows[0][2]:6.2f}x")
    assert rows[0][4] == rows[1][4], "the mapped index must link the same mentions"
    whats = ["index", "linker"] if memory_linker else ["index"]
    print(f"{'two processes mapping the file':34} {'RSS MB':>8} {'PSS MB':>8} {'shared MB':>10} {'private MB':>11}")
    for what in whats:
        for i, m in enumerate(shared_memory(path, what)):
            private = m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)
            print(f"{what + ' #' + str(i + 1):34} {m['Rss']:8.0f} {m['Pss']:8.0f} {m.get('Shared_Clean', 0) + m.get('Shared_Dirty', 0):10.0f} "
                  f"{private:11.0f}")
    os.unlink(path)
    os.rmdir(d)


def direct_arrays(names: list[str]) -> dict:
    """The index file's arrays for the synthetic dictionary (each name one entity of type T, no aliases, no
    pairs; the automaton of the names) made with numpy, without the in-memory EntityIndex (which does not fit this machine at 10M names);
    the same file as ``write_index_file(make_index(names), ...)``."""
    import numpy as np

    from knowmix.kg.mmap_match import automaton_parts

    names = sorted(names)
    sf_ac, sf_ac_parts = automaton_parts(names)
    n = len(names)
    t_at = bisect.bisect_left(names, "T")
    has_t = t_at < n and names[t_at] == "T"
    pool = names if has_t else names[:t_at] + ["T"] + names[t_at:]
    lens = np.fromiter((len(s.encode("utf-8")) for s in pool), dtype="<u8", count=len(pool))
    s_off = np.zeros(len(pool) + 1, dtype="<u8")
    np.cumsum(lens, out=s_off[1:])
    s_blob = np.frombuffer("".join(pool).encode("utf-8"), dtype="u1")
    e_id = np.arange(n, dtype="<u4")
    if not has_t:
        e_id[t_at:] += 1
    return {
        "s_off": s_off, "s_blob": s_blob, "e_id": e_id, "e_name": e_id,
        "e_type": np.full(n, t_at, dtype="<i4"), "e_src": np.zeros(n, dtype="u1"), "e_inf": np.zeros(n, dtype="u1"),
        "e_types_off": np.arange(n + 1, dtype="<u8"), "e_types": np.full(n, t_at, dtype="<u4"),
        "e_alias_off": np.zeros(n + 1, dtype="<u8"), "e_alias": np.zeros(0, dtype="<u4"),
        "sf_str": e_id, "sf_off": np.arange(n + 1, dtype="<u8"), "sf_ids": np.arange(n, dtype="<u4"),
        "pairs": np.zeros(0, dtype="<u8"), "sf_ac": sf_ac,
        **({"sf_ac_parts": sf_ac_parts.reshape(-1)} if len(sf_ac_parts) > 1 else {}),
    }


def direct_section(names: list[str], memory_linker: bool, sents: list[str], repeat: int,
                   segmenter: str = "rjieba") -> None:
    """The file built from the names, then (``repeat`` > 0) linking on the mapped file with ``segmenter``."""
    import gc
    import tempfile

    from knowmix.kg.index_file import MappedIndex, write_arrays

    d = tempfile.mkdtemp(prefix="bench-kgindex-")
    t = time.perf_counter()
    path = write_arrays(direct_arrays(names), {"bench": len(names)}, d)
    build = time.perf_counter() - t
    size = os.path.getsize(path)
    n = len(names)
    del names[:]
    gc.collect()
    print(f"\nindex file (built directly from the names): {n} names, built in {build:.1f}s, "
          f"{size / 1e6:.1f} MB, {size / n:.0f} bytes per name", flush=True)
    if repeat:
        t = time.process_time()
        linker = Linker(MappedIndex(path), segmenter=segmenter)
        setup = time.process_time() - t
        best, median, found = measure(lambda s: linker.link(s).mentions, sents, repeat)
        print(f"linker ({segmenter}) on the mapped file: setup {setup:.1f}s, {best:.0f} sent/s/core best, {median:.0f} "
              f"median, {found} mentions; this process RSS {memory_mb()['Rss']:.0f} MB", flush=True)
        del linker
        gc.collect()
    print(f"{'two processes mapping the file':34} {'RSS MB':>8} {'PSS MB':>8} {'shared MB':>10} {'private MB':>11}")
    for what in ["index", "linker"] if memory_linker else ["index"]:
        for i, m in enumerate(shared_memory(path, what, segmenter)):
            private = m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)
            print(f"{what + ' #' + str(i + 1):34} {m['Rss']:8.0f} {m['Pss']:8.0f} {m.get('Shared_Clean', 0) + m.get('Shared_Dirty', 0):10.0f} "
                  f"{private:11.0f}")
    os.unlink(path)
    os.rmdir(d)


def filters_section(index: EntityIndex, sents: list[str], segmenters: list[str], repeat: int) -> None:
    """Throughput with and without kg.link_filters, one pass of each in turn, the order reversed every round (a
    shared machine disturbs both alike; the pass right after the other linker's runs on colder caches), best and
    median of ``repeat``."""
    print(f"{'linker':36} {'sent/s/core best':>17} {'median':>8} {'mentions':>9}")
    for seg in segmenters:
        linkers = {"with kg.link_filters": Linker(index, segmenter=seg),
                   "without (filters=None)": Linker(index, segmenter=seg, filters=None)}
        rates: dict = {k: [] for k in linkers}
        found = {}
        for i in range(repeat):
            for name, linker in (list(linkers.items()) if i % 2 == 0 else list(linkers.items())[::-1]):
                best, _, found[name] = measure(lambda s: linker.link(s).mentions, sents, 1)
                rates[name].append(best)
        for name, r in rates.items():
            r.sort()
            print(f"{f'ours ({seg}) {name}':36} {r[-1]:17.0f} {r[len(r) // 2]:8.0f} {found[name]:9d}")
        w, wo = (sorted(r) for r in rates.values())
        print(f"  with / without: best {w[-1] / wo[-1]:.3f}, median {w[len(w) // 2] / wo[len(wo) // 2]:.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--names", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5, help="passes over the sentences; best and median reported")
    ap.add_argument("--segmenters", default="jieba,rjieba,none", help="'' : skip the in-memory linker table")
    ap.add_argument("--no-index-file", dest="index_file", action="store_false",
                    help="skip the index file section (build time, size, mapped linking, shared memory)")
    ap.add_argument("--memory-linker", action="store_true",
                    help="also measure two processes that each build the linker on the mapped file")
    ap.add_argument("--link-filters", action="store_true",
                    help="also the linker without kg.link_filters (filters=None), passes interleaved with the "
                         "default one: the rules' cost on throughput, in the same run")
    ap.add_argument("--direct-index", action="store_true",
                    help="only the index file, built straight from the names (no in-memory index), and linking "
                         "on the mapped file (--repeat 0: none): for dictionaries whose in-memory index does not "
                         "fit the machine")
    ap.add_argument("--direct-segmenter", default="rjieba", choices=["rjieba", "jieba", "none"],
                    help="the linker's segmenter in the --direct-index section (rjieba's dictionary does not take "
                         "10M names: jieba-rs panics, 'too many distinct prefixes')")
    args = ap.parse_args(argv)
    if args.direct_index:
        t = time.perf_counter()
        names = dictionary(args.names)
        print(f"{len(names)} names (built in {time.perf_counter() - t:.1f}s)")
        direct_section(names, args.memory_linker, sentences(), args.repeat, args.direct_segmenter)
        return 0
    sents = sentences()
    t = time.perf_counter()
    names = dictionary(args.names)
    print(f"{len(sents)} sentences ({sum(map(len, sents)) / len(sents):.1f} chars avg), {len(names)} names "
          f"(built in {time.perf_counter() - t:.1f}s)")
    index = make_index(names)
    m0 = memory_mb()
    print(f"this process, names + in-memory index: RSS {m0['Rss']:.0f} MB")
    if args.index_file:
        index_file_section(names, index, sents, args.repeat, args.memory_linker)
    if not args.segmenters:
        return 0
    if args.link_filters:
        filters_section(index, sents, args.segmenters.split(","), args.repeat)
        return 0
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
