"""Profile one training step of the real trainer, unattended: ``torch.profiler`` over one
step after a warm-up, the top kernels by device time written to a file.

The trainer (``trainer.loop.train``) runs on synthetic shards (those of ``bench/train.py``) for ``--wait`` steps
unrecorded (allocator, cuDNN/cuBLAS heuristics, ``torch.compile``), one profiler warm-up step, then one recorded
step; logging happens only after it, so the recorded step has no logging work. Written to ``--out``:

- ``top_kernels.txt``: the device kernels of the step by self time (GPU; on CPU the ops by self CPU time), with
  calls and share of the step;
- ``ops.txt``: torch's operator table (``key_averages``) sorted the same way;
- ``trace.json``: the Chrome/Perfetto trace of the step;
- ``summary.json``: device, torch, the configuration, and the top kernels as rows.

    python bench/profile_step.py --out prof-base                  # GPU: BERT-base, bf16, dual-path, batch 32
    python bench/profile_step.py --size large --batch 16 --compile --out prof-large-compile
    python bench/profile_step.py --set distill.rdrop_alpha=1.0 --out prof-rdrop   # any config key
    python bench/profile_step.py --smoke --out /tmp/prof          # CPU, tiny: checks the script end to end
"""

from __future__ import annotations

import os
import sys

import _repo_path  # noqa: F401  (first: the repository root on sys.path, bench/ off it)

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile, schedule  # noqa: E402

from bench.train import VOCAB, bench_shards, trainer_overrides  # noqa: E402
from knowmix.trainer.config import load_config  # noqa: E402


def kernel_rows(prof, on_gpu: bool, top: int) -> tuple[list[dict], float]:
    """(the top ``top`` kernels, or CPU ops, by self time in us; the step's total of that time in us)."""
    events = [e for e in prof.key_averages() if not e.key.startswith("ProfilerStep")]  # the step's own span
    if on_gpu:
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        time_of = (lambda e: e.self_device_time_total)  # noqa: E731
    else:
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU]
        time_of = (lambda e: e.self_cpu_time_total)  # noqa: E731
    total = float(sum(time_of(e) for e in kernels)) or 1.0
    kernels.sort(key=time_of, reverse=True)
    rows = [{"name": e.key, "calls": int(e.count), "self_us": round(float(time_of(e)), 1),
             "share": round(float(time_of(e)) / total, 4)} for e in kernels[:top]]
    return rows, total


def write_reports(prof, out: str, on_gpu: bool, top: int, meta: dict) -> list[dict]:
    rows, total = kernel_rows(prof, on_gpu, top)
    what = "device kernels" if on_gpu else "CPU ops (no GPU)"
    lines = [f"top {len(rows)} {what} of one training step by self time; step total {total / 1e3:.2f} ms",
             f"{meta['device']}; torch {meta['torch']}; {meta['config']}", "",
             f"{'share':>7} {'self ms':>10} {'calls':>6}  name"]
    for r in rows:
        lines.append(f"{r['share']:7.1%} {r['self_us'] / 1e3:10.3f} {r['calls']:6d}  {r['name'][:160]}")
    with open(os.path.join(out, "top_kernels.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    table = prof.key_averages().table(sort_by="self_device_time_total" if on_gpu else "self_cpu_time_total",
                                      row_limit=top * 2)
    with open(os.path.join(out, "ops.txt"), "w") as fh:
        fh.write(table + "\n")
    prof.export_chrome_trace(os.path.join(out, "trace.json"))
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump({**meta, "step_total_us": round(total, 1), "top": rows}, fh, indent=2)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="profile-step", help="folder for the reports (created)")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model: check the script end to end")
    p.add_argument("--size", default="base", help="model.size: tiny, mini, base, large")
    p.add_argument("--batch", type=int, default=32, help="micro-batch per path")
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--kseq", type=int, default=128, help="knowledge rows: kseq/2 .. kseq-1 tokens (mixed)")
    p.add_argument("--knowledge", choices=("mixed", "equal", "none"), default="mixed",
                   help="knowledge path: mixed lengths, rows as long as --seq, or single-path")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "fp32"))
    p.add_argument("--zero", type=int, default=0, choices=(0, 2, 3), help="train.zero (2/3 need a process group)")
    p.add_argument("--compile", action="store_true", help="train.compile: torch.compile each encoder block")
    p.add_argument("--wait", type=int, default=8, help="unrecorded steps before the profiler's warm-up step")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--set", action="append", default=[], metavar="section.key=value", help="any config override")
    args = p.parse_args(argv)

    on_gpu = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda" if on_gpu else "cpu")
    bench_args = argparse.Namespace(
        smoke=args.smoke, seq=64 if args.smoke else args.seq, kseq=32 if args.smoke else args.kseq,
        vocab=512 if args.smoke else VOCAB, trainer_size=args.size, trainer_batch=4 if args.smoke else args.batch,
        trainer_steps=args.wait + 2, technique_steps=0, trainer_log=args.wait + 2, peak_tflops=0.0)
    if args.zero:
        import torch.distributed as dist

        from bench.train import free_port

        os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0",
                           "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
        dist.init_process_group("nccl" if on_gpu else "gloo", rank=0, world_size=1)
    os.makedirs(args.out, exist_ok=True)
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    from knowmix.trainer.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        d = bench_shards(bench_args, tmp)
        ktok = {"mixed": d["ktok_mixed"], "equal": d["ktok_equal"], "none": ""}[args.knowledge]
        over = {"train.precision": f'"{"fp32" if args.smoke else args.precision}"', "train.zero": args.zero,
                "train.compile": "true" if args.compile else "false", "train.prefetch": 2}
        if args.knowledge == "equal":
            over["data.knowledge_seq_len"] = bench_args.seq
        overrides = trainer_overrides(bench_args, d["pretrain"], ktok, os.path.join(tmp, "run"), device.type, **over)
        cfg = load_config(None, overrides + list(args.set))
        config = (f"model.size {'custom tiny' if args.smoke else args.size}, micro-batch {bench_args.trainer_batch},"
                  f" seq {bench_args.seq}, knowledge {args.knowledge}, {cfg.train.precision}, zero {args.zero},"
                  f" compile {args.compile}" + (f", {' '.join(args.set)}" if args.set else ""))
        meta = {"device": torch.cuda.get_device_name(device) if on_gpu else "CPU", "torch": torch.__version__,
                "config": config, "overrides": overrides + list(args.set)}
        done = {}

        def ready(prof):
            done["rows"] = write_reports(prof, args.out, on_gpu, args.top, meta)

        t0 = time.perf_counter()
        with profile(activities=activities, schedule=schedule(wait=args.wait, warmup=1, active=1, repeat=1),
                     on_trace_ready=ready, record_shapes=True) as prof:
            train(cfg, log=lambda *a: None, verify=False, on_step=lambda step: prof.step())
    if args.zero:
        import torch.distributed as dist

        dist.destroy_process_group()
    if "rows" not in done:
        print("profile_step: no step was recorded (fewer steps than --wait + 2?)", file=sys.stderr)
        return 1
    print(f"{meta['device']}; torch {meta['torch']}; {config}; {time.perf_counter() - t0:.0f}s")
    for r in done["rows"][:15]:
        print(f"  {r['share']:6.1%} {r['self_us'] / 1e3:9.3f} ms {r['calls']:5d}x  {r['name'][:110]}")
    print(f"reports in {args.out}/: top_kernels.txt ops.txt trace.json summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
