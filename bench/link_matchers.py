"""Candidates for the linker's shareable matching structure: every occurrence of every name in a sentence.

    .venv/bin/python bench/link_matchers.py [--names 1000000] [--repeat 3]

Same dictionary and sentences as bench/link.py. For each candidate: build time, bytes per name, sentences/s on
one core (CPU time, best of ``--repeat`` passes) of finding every occurrence (what the Linker then filters by
word boundaries and longest match), and the number of occurrences found (must agree).

pyahocorasick   the Linker's in-memory automaton (UTF-16 as Latin-1), per process: not shareable
cyac            a double-array Aho-Corasick automaton written into a buffer and used in place from a memory map
                (what the index file carries: kg/mmap_match.py)
marisa-trie     a saved trie used from a memory map, ``prefixes()`` at each start position (only if installed:
                ``pip install marisa-trie``)
"""

from __future__ import annotations

import os
import sys

import _repo_path  # noqa: E402,F401  (first: the repository root on sys.path, bench/ off it)

import argparse
import mmap
import tempfile
import time


def _bench_link():
    """bench/link.py (its dictionary and sentences), loaded by path: bench/ is off sys.path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_link", os.path.join(os.path.dirname(__file__), "link.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rate(fn, sents, repeat) -> tuple[float, int]:
    best, found = 0.0, 0
    for _ in range(repeat):
        found = 0
        t0 = time.process_time()
        for s in sents:
            found += len(fn(s))
        best = max(best, len(sents) / (time.process_time() - t0))
    return best, found


def pyahocorasick_matcher(names):
    import ahocorasick

    auto = ahocorasick.Automaton(ahocorasick.STORE_INTS)
    for i, s in enumerate(names):
        auto.add_word(s.encode("utf-16-le").decode("latin-1"), i)
    auto.make_automaton()
    lens = [len(s) for s in names]

    def match(s):
        raw = s.encode("utf-16-le").decode("latin-1")
        return [((e + 1) // 2 - lens[i], (e + 1) // 2) for e, i in auto.iter(raw) if e & 1]

    return match, None  # size: not serialised


def cyac_matcher(names, d):
    from cyac import AC

    from knowmix.kg.mmap_match import automaton_bytes

    path = os.path.join(d, "names.cyac")
    automaton_bytes(names).tofile(path)
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    ac = AC.from_buff(mm, copy=False)
    return (lambda s: [(b, e) for _, b, e in ac.match(s)]), os.path.getsize(path)


def marisa_matcher(names, d):
    import marisa_trie

    path = os.path.join(d, "names.marisa")
    marisa_trie.Trie(names).save(path)
    trie = marisa_trie.Trie()
    trie.mmap(path)
    longest = max(map(len, names))
    prefixes = trie.prefixes
    return (lambda s: [(i, i + len(p)) for i in range(len(s) - 1) for p in prefixes(s[i:i + longest])]), \
        os.path.getsize(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--names", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    bench = _bench_link()
    sents = bench.sentences()
    names = sorted(s for s in bench.dictionary(args.names) if len(s) >= 2)
    print(f"{len(sents)} sentences, {len(names)} names of 2+ characters")
    print(f"{'matcher':16} {'build s':>8} {'bytes/name':>11} {'sent/s/core':>12} {'occurrences':>12}")
    with tempfile.TemporaryDirectory() as d:
        for label, make in (("pyahocorasick", lambda: pyahocorasick_matcher(names)),
                            ("cyac (mapped)", lambda: cyac_matcher(names, d)),
                            ("marisa (mapped)", lambda: marisa_matcher(names, d))):
            t = time.perf_counter()
            try:
                match, size = make()
            except ImportError as e:
                print(f"{label:16} skipped ({e})")
                continue
            build = time.perf_counter() - t
            best, found = rate(match, sents, args.repeat)
            per_name = "-" if size is None else f"{size / len(names):.1f}"
            print(f"{label:16} {build:8.1f} {per_name:>11} {best:12.0f} {found:12d}")
            del match
    return 0


if __name__ == "__main__":
    sys.exit(main())
