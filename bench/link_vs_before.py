"""Linking throughput now vs before a given commit, measured in the same run: ``bench/link.py`` on both trees.

    python bench/link_vs_before.py [--base eced84b] [--names 200000] [--repeat 3] [--rounds 2] [--segmenters rjieba,jieba]

The base commit's tree is unpacked (``git archive``) into a temporary folder; each round runs ``bench/link.py``
there and in this working tree, one after the other (a shared machine drifts: alternating rounds and taking the
best keeps both sides under the same conditions). Prints sentences per CPU-second for "ours" per segmenter and the
ratio now / before.
"""

from __future__ import annotations

import _repo_path  # noqa: F401  (first: the repository root on sys.path)

import argparse
import os
import re
import subprocess
import sys
import tempfile

LINE = re.compile(r"^ours \((\w+)\)\s+[\d.]+\s+(\d+)\s+(\d+)\s+(\d+)")


def run_tree(root: str, args) -> dict[str, tuple[int, int]]:
    cmd = [sys.executable, os.path.join(root, "bench", "link.py"), "--names", str(args.names), "--repeat",
           str(args.repeat), "--segmenters", args.segmenters]
    env = dict(os.environ, PYTHONPATH=root)
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=True).stdout
    rates = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            rates[m.group(1)] = (int(m.group(2)), int(m.group(4)))  # best sent/s, mentions
    return rates


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="eced84b")
    ap.add_argument("--names", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--segmenters", default="rjieba,jieba")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="knowmix-link-base-")
    archive = subprocess.run(["git", "-C", _repo_path.ROOT, "archive", args.base], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    best: dict[tuple[str, str], int] = {}
    mentions: dict[tuple[str, str], int] = {}
    for r in range(args.rounds):
        for name, root in (("before", tmp), ("now", _repo_path.ROOT)):
            for seg, (rate, found) in run_tree(root, args).items():
                best[(name, seg)] = max(best.get((name, seg), 0), rate)
                mentions[(name, seg)] = found
                print(f"round {r + 1} {name:6} {seg:7} {rate:8d} sent/s/core  {found} mentions", flush=True)
    print(f"\nbest of {args.rounds} rounds x {args.repeat} passes, {args.names} names (base {args.base}):")
    for seg in args.segmenters.split(","):
        b, n = best[("before", seg)], best[("now", seg)]
        print(f"{seg:7} before {b:8d}  now {n:8d}  now/before {n / b:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
