"""Benchmark: ``knowmix clean`` end to end vs datatrove's equivalent filters, on the same generated corpus.

    python bench/clean.py [--mb 50] [--workers 2] [--datatrove-python /tmp/dtvenv/bin/python] [--datatrove-mb 2]
                          [--no-quality] [--no-multiprocessing]

The corpus is JSONL generated from the bundled fixture texts (sentences reshuffled into new documents,
so exact dedup does not remove them, plus a share of planted duplicates and junk lines). knowmix runs
in-process and multi-processing; datatrove (installed in its own virtualenv, since its pins differ) runs
its Gopher quality + Gopher repetition + C4 filters with a jieba word tokenizer over a prefix of the same
file. Prints docs/s and MB/s per core of each and the ratio against datatrove. Unless ``--no-quality``, the
in-process run is repeated with a ``[quality]`` fastText model (trained here on the fixture texts vs generated
junk, like ``make demo``) scoring every document: the model's cost, beside the same run without it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import _repo_path  # noqa: E402,F401  (first: the repository root on sys.path, bench/ off it)

from knowmix.demo import fixture  # noqa: E402


def fixture_sentences() -> list[str]:
    import re

    texts = [c["context_text"] for c in json.load(open(fixture("encyclopedia_cmrc2018_trial.json"), encoding="utf-8"))]
    texts += open(fixture("news_peoples_daily_199801_first400.txt"), encoding="utf-8").read().splitlines()
    sentences = [s for t in texts for s in re.split(r"(?<=[。！？])", t) if len(s) >= 8]
    return sentences


def generate_corpus(path: str, megabytes: float, seed: int = 0, max_docs: int | None = None) -> tuple[int, int]:
    rng = random.Random(seed)
    sentences = fixture_sentences()
    target = int(megabytes * 1e6)
    written = docs = 0
    recent: list[str] = []
    with open(path, "w", encoding="utf-8") as fh:
        while written < target and (max_docs is None or docs < max_docs):
            r = rng.random()
            if r < 0.05 and recent:
                text = rng.choice(recent)  # an exact duplicate
            elif r < 0.08:
                text = "首页 | 新闻 | 体育 | 娱乐 | 财经 | 登录 | 注册\n" * rng.randint(3, 20)  # navigation junk
            else:
                paragraphs = []
                for _ in range(rng.randint(1, 6)):
                    paragraphs.append("".join(rng.choice(sentences) for _ in range(rng.randint(2, 8))))
                text = "\n".join(paragraphs)
            recent = (recent + [text])[-100:]
            line = json.dumps({"id": f"d{docs:09d}", "text": text}, ensure_ascii=False) + "\n"
            fh.write(line)
            written += len(line.encode("utf-8"))
            docs += 1
    return docs, written


def train_quality_model(work: str) -> str:
    """A quality model like the demo's: fixture sentences (positive) vs generated junk (negative)."""
    from knowmix.demo import junk_texts

    good = os.path.join(work, "good.txt")
    bad = os.path.join(work, "bad.txt")
    with open(good, "w", encoding="utf-8") as fh:
        fh.writelines(s.replace("\n", " ") + "\n" for s in fixture_sentences())
    with open(bad, "w", encoding="utf-8") as fh:
        fh.writelines(t + "\n" for t in junk_texts(2000))
    model = os.path.join(work, "quality.bin")
    subprocess.run(
        [sys.executable, "-m", "knowmix.cli", "quality-train", "--positive-file", good, "--negative-file", bad,
         "--dim", "64", "--bucket", "50000", "--output", model],
        check=True, stdout=subprocess.DEVNULL,
    )
    job = os.path.join(work, "quality.toml")
    with open(job, "w", encoding="utf-8") as fh:
        fh.write(f'[quality]\nmodel = {json.dumps(model)}\nthreshold = 0.5\nkinds = ["web"]\n')
    return job


def time_scoring_alone(corpus: str, job: str, chunk: int = 256) -> float:
    """CPU seconds of the quality step alone (segmentation + one predict call per chunk) over the corpus."""
    import tomllib

    from knowmix.pipelines.quality_model import QualityModel

    with open(job, "rb") as fh:
        model = QualityModel(tomllib.load(fh)["quality"]["model"]).check()
    texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")]
    t0 = time.process_time()
    for start in range(0, len(texts), chunk):
        model.score_many(texts[start : start + chunk])
    return time.process_time() - t0


def run_knowmix(corpus: str, out: str, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "knowmix.cli", "clean", "--source", f"web:jsonl={corpus}", "--output", out,
           "--num-shards", "8", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


DATATROVE_SCRIPT = r"""
import sys, time, json
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter, LanguageFilter
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.typeshelper import Languages
src, out = sys.argv[1], sys.argv[2]
lang = getattr(Languages, "mandarin_chinese__hani", "cmn_Hani")  # spaCy "zh" with jieba words
steps = [
    JsonlReader(src, glob_pattern="*.jsonl"),
    GopherRepetitionFilter(language=lang),
    GopherQualityFilter(language=lang),
    C4QualityFilter(filter_no_terminal_punct=False, language=lang),
    JsonlWriter(out),
]
t0 = time.perf_counter()
LocalPipelineExecutor(pipeline=steps, tasks=1, workers=1, logging_dir=out + "/logs").run()
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def run_datatrove(python: str, corpus: str, megabytes: float, work: str) -> tuple[float, int, int] | None:
    src_dir = os.path.join(work, "dt_src")
    os.makedirs(src_dir, exist_ok=True)
    prefix = os.path.join(src_dir, "prefix.jsonl")
    limit, size, docs = int(megabytes * 1e6), 0, 0
    with open(corpus, encoding="utf-8") as fin, open(prefix, "w", encoding="utf-8") as fout:
        for line in fin:
            if size >= limit:
                break
            fout.write(line)
            size += len(line.encode("utf-8"))
            docs += 1
    script = os.path.join(work, "dt.py")
    with open(script, "w") as fh:
        fh.write(DATATROVE_SCRIPT)
    proc = subprocess.run([python, script, src_dir, os.path.join(work, "dt_out")], capture_output=True, text=True)
    if proc.returncode != 0:
        print("datatrove failed:", proc.stderr[-2000:], file=sys.stderr)
        return None
    seconds = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
    return seconds, docs, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--datatrove-python", default="/tmp/dtvenv/bin/python")
    parser.add_argument("--datatrove-mb", type=float, default=2.0)
    parser.add_argument("--no-near-dedup", action="store_true")
    parser.add_argument("--no-quality", action="store_true", help="skip the run with the quality model on")
    parser.add_argument("--no-multiprocessing", action="store_true", help="skip the multi-processing run")
    parser.add_argument("--repeat", type=int, default=1, help="in-process runs without/with the model, taking turns; best of")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="knowmix-bench-")
    corpus = os.path.join(work, "corpus.jsonl")
    docs, size = generate_corpus(corpus, args.mb)
    mb = size / 1e6
    print(f"corpus: {docs:,} docs, {mb:.1f} MB ({corpus}); machine: {os.cpu_count()} cores")
    near = ["--no-near-dedup"] if args.no_near_dedup else []
    rows = []
    job = None if args.no_quality else train_quality_model(work)
    off, on = [], []
    for _ in range(max(1, args.repeat)):  # taking turns: the machine's load drifts between runs
        off.append(run_knowmix(corpus, os.path.join(work, "out1"), near))
        if job:
            on.append(run_knowmix(corpus, os.path.join(work, "out_q"), [*near, "--config", job]))
    rows.append(("knowmix clean, in-process", 1, min(off), docs, mb))
    if job:
        rows.append(("knowmix clean, in-process, quality model on", 1, min(on), docs, mb))
        rows.append(("  the quality step alone (CPU time)", 1, time_scoring_alone(corpus, job), docs, mb))
    if not args.no_multiprocessing:
        t = run_knowmix(
            corpus, os.path.join(work, "out2"),
            [*near, "--direct_running_mode", "multi_processing", "--direct_num_workers", str(args.workers)],
        )
        rows.append((f"knowmix clean, multi_processing x{args.workers}", args.workers, t, docs, mb))
    baseline = None
    if os.path.exists(args.datatrove_python):
        result = run_datatrove(args.datatrove_python, corpus, args.datatrove_mb, work)
        if result:
            seconds, dt_docs, dt_size = result
            rows.append(("datatrove Gopher+C4 filters (jieba words)", 1, seconds, dt_docs, dt_size / 1e6))
            baseline = dt_size / 1e6 / seconds
    else:
        print(f"(datatrove not found at {args.datatrove_python}: python -m venv /tmp/dtvenv && "
              "/tmp/dtvenv/bin/pip install 'datatrove[processing]' jieba spacy orjson)")
    print(f"\n{'pipeline':<46} {'cores':>5} {'seconds':>8} {'docs/s':>9} {'MB/s/core':>10} {'vs datatrove':>13}")
    for name, cores, seconds, n, m in rows:
        per_core = m / seconds / cores
        ratio = f"{per_core / baseline:.1f}x" if baseline else "n/a"
        print(f"{name:<46} {cores:>5} {seconds:>8.1f} {n / seconds:>9.0f} {per_core:>10.2f} {ratio:>13}")


if __name__ == "__main__":
    main()
