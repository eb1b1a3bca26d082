"""Benchmark: how ``knowmix clean`` scales with local worker processes, on one large file and on 8 files.

    python bench/scale.py                          # 50 MB, as one file and as 8 files, 1 and 2 workers
    python bench/scale.py --mb 10 --workers 1,2    # a quick check
    python bench/scale.py --workers 1,2,4,8,16 --modes multi   # a many-core machine, unattended
    python bench/scale.py --modes multi,dask       # also Beam's Dask runner on a local cluster

The corpus is bench/clean.py's generated JSONL (fixture sentences reshuffled into documents, a share of
planted duplicates and junk). Each run is ``knowmix clean`` in a subprocess with ``--workers N`` (the
FnApiRunner's multi-processing mode; 1: in-process) or, for ``dask``, Beam's Dask runner on an N-worker
``distributed.LocalCluster`` (1 thread each). Large files are split into ranges (``--split-bytes``, default
the job's 64 MiB, so a 50 MB file is split only with a smaller value: the default here is the file size
over 4 x the largest worker count). Prints wall time, MB/s, speedup over 1 worker of the same mode and
input, efficiency (speedup / workers), and peak RSS: the largest worker process and the driver, sampled
every 0.2 s. Every run's shards are checked to be the same as the first run's (the job's contract).
If apache-beam is missing (a fresh machine), the project is installed first (``pip install -e .``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

try:
    import _repo_path  # noqa: E402,F401  (first: the repository root on sys.path, bench/ off it)
except ModuleNotFoundError:  # a Dask worker process started by spawn re-imports this script without bench/
    pass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def ensure_installed() -> None:
    try:
        import apache_beam  # noqa: F401
        import psutil  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", ROOT, "psutil"], check=True)


def generate(path: str, mb: float) -> None:
    spec = importlib.util.spec_from_file_location("bench_clean", os.path.join(HERE, "clean.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate_corpus(path, mb)


def split_file(path: str, parts: int, out_dir: str) -> None:
    """The file's lines dealt into ``parts`` files of about equal size (the same text as many files)."""
    os.makedirs(out_dir, exist_ok=True)
    lines = open(path, encoding="utf-8").read().splitlines(True)
    per = -(-len(lines) // parts)
    for i in range(parts):
        with open(os.path.join(out_dir, f"part{i}.jsonl"), "w", encoding="utf-8") as fh:
            fh.writelines(lines[i * per : (i + 1) * per])


class PeakRss:
    """Samples the RSS of this process's descendants: the peak of the largest worker and of the driver."""

    def __init__(self, driver_pid_box: list):
        import psutil

        self.psutil, self.box = psutil, driver_pid_box
        self.worker = self.driver = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        me = self.psutil.Process()
        while not self.stop.wait(0.2):
            try:
                for proc in me.children(recursive=True):
                    try:
                        rss = proc.memory_info().rss
                    except self.psutil.Error:
                        continue
                    if self.box and proc.pid == self.box[0]:
                        self.driver = max(self.driver, rss)
                    else:
                        self.worker = max(self.worker, rss)
            except self.psutil.Error:
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def run_clean(source: str, out: str, mode: str, workers: int, split_bytes: int, dask_address: str | None) -> tuple[float, int, int]:
    cmd = [sys.executable, "-m", "knowmix.cli", "clean", "--quiet", "--source", f"web:jsonl={source}", "--output", out,
           "--num-shards", "8", "--split-bytes", str(split_bytes)]
    if mode == "dask":
        cmd += ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner", f"--dask_client_address={dask_address}",
                f"--dask_npartitions={max(4, 2 * workers)}"]
    else:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    box: list[int] = []
    with PeakRss(box) as rss:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        box.append(proc.pid)
        _, err = proc.communicate()
        wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"knowmix clean failed ({' '.join(cmd)}):\n{err.decode()[-3000:]}")
    return wall, rss.worker, rss.driver


def dask_cluster(workers: int):
    import dask
    import distributed

    dask.config.config.pop("scheduler", None)
    return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=50.0, help="corpus size (default 50)")
    ap.add_argument("--workers", default="1,2", help="worker counts, comma separated (default 1,2)")
    ap.add_argument("--modes", default="multi", help="multi (FnApiRunner multi-processing), dask; comma separated")
    ap.add_argument("--inputs", default="one,eight", help="one (one file), eight (8 files); comma separated")
    ap.add_argument("--split-bytes", type=int, help="range size (default: file size / (4 x max workers))")
    ap.add_argument("--dir", help="work directory (default: a temporary one)")
    args = ap.parse_args()
    ensure_installed()
    counts = [int(w) for w in args.workers.split(",")]
    work = args.dir or tempfile.mkdtemp(prefix="knowmix-scale-")
    corpus = os.path.join(work, "one", "corpus.jsonl")
    os.makedirs(os.path.dirname(corpus), exist_ok=True)
    if not os.path.exists(corpus) or abs(os.path.getsize(corpus) - args.mb * 1e6) > 1e6:
        generate(corpus, args.mb)
    split_file(corpus, 8, os.path.join(work, "eight"))
    size = os.path.getsize(corpus)
    split_bytes = args.split_bytes or max(1 << 20, -(-size // (4 * max(counts))))  # ceil: 4 ranges per worker, no tail
    sources = {"one": corpus, "eight": os.path.join(work, "eight", "*.jsonl")}
    print(f"# {size / 1e6:.1f} MB, split_bytes {split_bytes}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    print(f"{'input':6} {'mode':6} {'workers':>7} {'wall s':>8} {'MB/s':>7} {'speedup':>8} {'effic.':>7} {'worker RSS MB':>14} {'driver RSS MB':>14}")
    reference = None
    for mode in args.modes.split(","):
        for inp in args.inputs.split(","):
            base = None
            for n in counts:
                out = os.path.join(work, f"out-{inp}-{mode}-{n}")
                subprocess.run(["rm", "-rf", out], check=True)
                if mode == "dask":
                    with dask_cluster(n) as cluster:
                        wall, worker_rss, driver_rss = run_clean(sources[inp], out, mode, n, split_bytes, cluster.scheduler_address)
                else:
                    wall, worker_rss, driver_rss = run_clean(sources[inp], out, mode, n, split_bytes, None)
                if n == 1:
                    base = wall
                speedup = (base / wall) if base else float("nan")  # nan: no 1-worker run to compare with
                shards = json.load(open(os.path.join(out, "manifest.json"), encoding="utf-8"))["shards"]
                if inp == "one":
                    reference = reference or shards
                    same = "same shards" if shards == reference else "SHARDS DIFFER"
                else:
                    same = ""
                worker_mb = f"{worker_rss / 2**20:14.0f}" if worker_rss else f"{'(in-process)':>14}"
                print(f"{inp:6} {mode:6} {n:7d} {wall:8.1f} {size / 1e6 / wall:7.2f} {speedup:8.2f} {speedup / n:7.2f}"
                      f" {worker_mb} {driver_rss / 2**20:14.0f}  {same}", flush=True)
                subprocess.run(["rm", "-rf", out], check=True)


if __name__ == "__main__":
    main()
