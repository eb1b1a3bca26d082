"""Where the time of one ``knowmix clean`` run goes, phase by phase, at 1 and N local workers; and the bound that
the serial part puts on the speed-up (Amdahl).

    python bench/scale_phases.py --mb 50              # 1 and 2 workers on bench/clean.py's generated corpus
    python bench/scale_phases.py --input big.jsonl --workers 1,4

Each run is a fresh process (``python bench/scale_phases.py --child ...``) that times: importing the job
(apache_beam included), building the pipeline, the runner's translation and fusion before the first bundle,
the first bundle (with N workers: starting the SDK worker processes), the read-normalise-langid-rules-spill
stage (the stage holding ``ReadAndClean``: every input byte goes through it), the other stages (line counting,
the dedup shuffles, shard writing: summed bundle times), and the end (manifest read back, output swapped in).
Bundle times come from wrapping the FnApiRunner's ``_execute_bundle`` (a Beam internal, read-only timing; this
is a benchmark, not part of the job).

The bound: with ``serial`` = everything but the read stage in the 1-worker run, N workers can at best take
``serial + read / N``; the ratio of the 1-worker total to that is the most any scheme that parallelises only the
read stage can give. The baseline is the same command at ``--workers 1`` (in-process), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

try:
    import _repo_path  # noqa: E402,F401  (the repository root on sys.path, bench/ off it)
except ModuleNotFoundError:
    pass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
READ_STAGE = "ReadAndClean"


def child(argv: list[str]) -> None:
    """One timed run; prints one JSON line of phase times."""
    t0 = time.perf_counter()
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    import knowmix.pipelines.clean as clean

    marks = {"imported": time.perf_counter()}
    bundles: list[tuple[str, float, float]] = []
    execute = fn_runner.FnApiRunner._execute_bundle

    def timed_bundle(self, ctx, manager, data):
        start = time.perf_counter()
        try:
            return execute(self, ctx, manager, data)
        finally:
            bundles.append((manager.stage.name, start, time.perf_counter()))

    fn_runner.FnApiRunner._execute_bundle = timed_bundle
    build = clean.build

    def timed_build(*args, **kwargs):
        try:
            return build(*args, **kwargs)
        finally:
            marks["built"] = time.perf_counter()

    clean.build = timed_build
    clean.clean_main(argv)
    end = time.perf_counter()
    read = [b for b in bundles if READ_STAGE in b[0]]
    other = [b for b in bundles[1:] if READ_STAGE not in b[0]]
    print(json.dumps({
        "total": end - t0,
        "import": marks["imported"] - t0,
        "build": marks["built"] - marks["imported"],
        "translate": min(b[1] for b in bundles) - marks["built"],
        "first_bundle": bundles[0][2] - bundles[0][1],  # with N workers: starting them
        "read_stage": sum(b[2] - b[1] for b in read),
        "other_stages": sum(b[2] - b[1] for b in other),
        "end": end - max(b[2] for b in bundles),
        "stages": len(bundles),
    }))


def run(source: str, workers: int, split_bytes: int, work: str) -> dict:
    out = os.path.join(work, f"out-{workers}")
    subprocess.run(["rm", "-rf", out], check=True)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--quiet", "--source", f"web:jsonl={source}",
           "--output", out, "--num-shards", "8", "--split-bytes", str(split_bytes), "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"run failed:\n{done.stderr[-3000:]}")
    phases = json.loads(done.stdout.strip().splitlines()[-1])
    phases["shards"] = json.load(open(os.path.join(out, "manifest.json"), encoding="utf-8"))["shards"]
    subprocess.run(["rm", "-rf", out], check=True)
    return phases


def main() -> None:
    if "--child" in sys.argv:
        return child([a for a in sys.argv[1:] if a != "--child"])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=50.0, help="generated corpus size (default 50)")
    ap.add_argument("--input", help="a JSONL file (or a glob of them) instead of the generated corpus")
    ap.add_argument("--workers", default="1,2", help="worker counts, the first the baseline (default 1,2)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per worker count; the fastest is shown")
    ap.add_argument("--dir", help="work directory (default: a temporary one)")
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    work = args.dir or tempfile.mkdtemp(prefix="knowmix-phases-")
    source = args.input
    if source is None:
        import importlib.util

        source = os.path.join(work, "corpus.jsonl")
        if not os.path.exists(source):
            spec = importlib.util.spec_from_file_location("bench_clean", os.path.join(HERE, "clean.py"))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.generate_corpus(source, args.mb)
    import glob

    size = sum(os.path.getsize(f) for f in glob.glob(source))
    split_bytes = max(1 << 20, -(-size // (4 * max(counts))))  # ceil, as the job: 4 ranges per worker, no tail
    print(f"# {size / 1e6:.1f} MB, split_bytes {split_bytes}, {os.cpu_count()} cores; best of {args.repeat} per row")
    cols = ("total", "import", "build", "translate", "first_bundle", "read_stage", "other_stages", "end")
    print(f"{'workers':>7} " + " ".join(f"{c:>12}" for c in cols) + f" {'stages':>6} {'speedup':>8} {'bound':>6}")
    base = None
    reference = None
    for n in counts:
        best = min((run(source, n, split_bytes, work) for _ in range(args.repeat)), key=lambda r: r["total"])
        reference = reference or best["shards"]
        assert best["shards"] == reference, "shards differ between worker counts"
        if base is None:
            base = best
        serial = base["total"] - base["read_stage"]
        bound = base["total"] / (serial + base["read_stage"] / n)
        print(f"{n:7d} " + " ".join(f"{best[c]:12.2f}" for c in cols)
              + f" {best['stages']:6d} {base['total'] / best['total']:8.2f} {bound:6.2f}", flush=True)


if __name__ == "__main__":
    main()
