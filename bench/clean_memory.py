"""Benchmark: peak resident memory of ``knowmix clean`` on the local runner as the corpus grows.

    python bench/clean_memory.py [--docs 100000 1000000] [--baseline-docs 20000] [--keep DIR]

Generates JSONL corpora of the given document counts (bench/clean.py's generator: fixture sentences
reshuffled into new documents, with planted exact duplicates and junk), runs the whole clean job on each
(exact + near dedup on, default config, in-process FnApiRunner) and samples the job's resident set size
(the process and any children) every 50 ms. Prints peak RSS, docs/s and the ratio of each run's peak to
the baseline run's (the smallest corpus, same run): bounded memory means the ratio stays near 1 while the
corpus grows tenfold. Goal: 1M documents under 2 GB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

import _repo_path  # noqa: E402,F401  (first: the repository root on sys.path, bench/ off it)


def _bench_clean():
    """bench/clean.py, loaded by path (bench/ is off sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_clean", os.path.join(_repo_path.HERE, "clean.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peak_rss_of(cmd: list[str]) -> tuple[float, int]:
    """Run ``cmd``; return (seconds, peak RSS in bytes of the process tree, sampled every 50 ms)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, err = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode:
        sys.exit(f"knowmix clean failed:\n{err.decode('utf-8', 'replace')[-3000:]}")
    return time.perf_counter() - t0, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--baseline-docs", type=int, default=20_000)
    parser.add_argument("--keep", help="keep corpora and outputs under this directory")
    args = parser.parse_args()

    work = args.keep or tempfile.mkdtemp(prefix="knowmix-bench-mem-")
    os.makedirs(work, exist_ok=True)
    rows = []
    for n in [args.baseline_docs, *args.docs]:
        corpus = os.path.join(work, f"corpus-{n}.jsonl")
        if not os.path.exists(corpus):
            _bench_clean().generate_corpus(corpus, megabytes=1e9, seed=n, max_docs=n)
        size = os.path.getsize(corpus)
        out = os.path.join(work, f"out-{n}")
        cmd = [sys.executable, "-m", "knowmix.cli", "clean", "--source", f"web:jsonl={corpus}", "--output", out]
        seconds, peak = peak_rss_of(cmd)
        rows.append((n, size, seconds, peak))
        print(f"  {n:>9,} docs  {size / 1e6:8.0f} MB  {seconds:7.0f} s  peak RSS {peak / 2**30:5.2f} GiB", flush=True)

    base_peak = rows[0][3]
    print(f"\nknowmix clean, in-process FnApiRunner, exact + near dedup; baseline = the {rows[0][0]:,}-doc run\n")
    print("| docs | input MB | s | docs/s | peak RSS GiB | vs baseline | under 2 GB |")
    print("|---|---|---|---|---|---|---|")
    for n, size, seconds, peak in rows:
        print(f"| {n:,} | {size / 1e6:.0f} | {seconds:.0f} | {n / seconds:,.0f} | {peak / 2**30:.2f} | "
              f"{peak / base_peak:.2f}x | {'yes' if peak < 2e9 else 'NO'} |")


if __name__ == "__main__":
    main()
