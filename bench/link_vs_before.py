"""Linking throughput now vs at a base commit, in one process: ``bench/link.py``'s dictionary and sentences, the
base commit's linker and this tree's linker, passes interleaved.

    python bench/link_vs_before.py [--base eced84b] [--names 200000] [--repeat 5] [--segmenters rjieba,jieba]

The base commit's ``kg/`` package is unpacked (``git archive``) into a temporary folder as ``kg_before`` (its
imports rewritten), so both linkers run in the same process on the same index and sentences; the passes alternate
(before, now, before, now, ...) so a shared machine's drift hits both alike. "now" is the linker as the job runs
it: the common-word rule on (jieba's dictionary), plus ``link_document`` over each sentence (a one-sentence
document). Prints sentences per CPU-second (best and median of the passes) and the ratio now / before.
"""

from __future__ import annotations

import _repo_path  # noqa: F401  (first: the repository root on sys.path)

import argparse
import importlib
import importlib.util
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time


def load_before(base: str):
    """The base commit's kg package as ``kg_before``."""
    tmp = tempfile.mkdtemp(prefix="knowmix-link-before-")
    archive = subprocess.run(["git", "-C", _repo_path.ROOT, "archive", base, "kg"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".py"):
                src = tar.extractfile(member).read().decode("utf-8")
                src = re.sub(r"\b(from|import) kg\.", r"\1 kg_before.", src)
                path = os.path.join(tmp, member.name.replace("kg/", "kg_before/", 1))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(src)
    sys.path.insert(0, tmp)
    return importlib.import_module("kg_before.link"), importlib.import_module("kg_before.index")


def load_link_bench():
    spec = importlib.util.spec_from_file_location("link_bench", os.path.join(_repo_path.HERE, "link.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="eced84b")
    ap.add_argument("--names", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5, help="passes per linker (interleaved)")
    ap.add_argument("--segmenters", default="rjieba,jieba")
    args = ap.parse_args(argv)
    link_before, index_before = load_before(args.base)
    bench = load_link_bench()
    from knowmix.kg.index import Entity, EntityIndex
    from knowmix.kg.link import Linker

    sents = bench.sentences()
    names = bench.dictionary(args.names)
    print(f"{len(sents)} sentences, {len(names)} names, base {args.base}")
    old_index = index_before.EntityIndex({s: index_before.Entity(s, s, (), "T", ("T",), False) for s in names},
                                         {s: (s,) for s in names}, set(), {})
    new_index = EntityIndex({s: Entity(s, s, (), "T", ("T",), False) for s in names}, {s: (s,) for s in names}, set(), {})
    for seg in args.segmenters.split(","):
        old = link_before.Linker(old_index, segmenter=seg)
        new = Linker(new_index, segmenter=seg)
        runs = {"before": (lambda s, L=old: L.link(s).mentions),
                "now": (lambda s, L=new: L.link_document([s])[0].mentions)}
        rates: dict[str, list[float]] = {k: [] for k in runs}
        found = {}
        for _ in range(args.repeat):
            for name, fn in runs.items():
                n = 0
                t0 = time.process_time()
                for s in sents:
                    n += len(fn(s))
                rates[name].append(len(sents) / (time.process_time() - t0))
                found[name] = n
        for name in runs:
            r = sorted(rates[name])
            print(f"{seg:7} {name:6} best {r[-1]:8.0f}  median {r[len(r) // 2]:8.0f} sent/s/core  {found[name]} mentions")
        b, n = sorted(rates["before"]), sorted(rates["now"])
        print(f"{seg:7} now/before: best {n[-1] / b[-1]:.3f}, median {n[len(n) // 2] / b[len(b) // 2]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
