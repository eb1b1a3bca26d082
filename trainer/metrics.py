"""The logging window: running sums on the device, read by the host once per ``log_every`` steps.

:class:`MetricsWindow` owns everything the loop logs: the per-task (loss sum, count, correct) sums of the
window's micro-batches, the sum of its finite gradient norms, the skipped-step counters, the tokens and FLOPs
done, and where the records go (``metrics.jsonl``, TensorBoard, the tqdm bar on rank 0). The sums stay on the
device between logging steps, so a step does not wait for the host; a logging step all-reduces them, writes one
record and starts a new window.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch

from knowmix.trainer import distributed as D
from knowmix.trainer.heads import MAX_ROUNDS, N_STATS, STAT_INDEX, TASKS
from knowmix.trainer.loss import DISTILL_TERMS, logged_loss


class MetricsWindow:
    def __init__(self, cfg, info: D.DistInfo, weights: dict[str, float], peak: float, start_step: int, log=print):
        t = cfg.train
        self.cfg, self.info, self.weights, self.peak = cfg, info, weights, peak
        self.log_every, self.max_steps = t.log_every, t.max_steps
        self.path = os.path.join(t.output_dir, "metrics.jsonl")
        self.writer = self.bar = None
        if info.is_main:
            trim_metrics(self.path, start_step)
            if t.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.writer = SummaryWriter(os.path.join(t.output_dir, "tensorboard"))
                except Exception as exc:  # noqa: BLE001 - TensorBoard is optional
                    log(f"tensorboard disabled ({type(exc).__name__}: {exc})")
            if t.progress:
                from tqdm import tqdm

                self.bar = tqdm(total=t.max_steps, initial=start_step, desc="train", dynamic_ncols=True,
                                file=sys.stderr, mininterval=1.0)
        dev = info.device
        self.stats = torch.zeros(N_STATS, dtype=torch.float64, device=dev)
        self.norm_sum = torch.zeros((), dtype=torch.float64, device=dev)  # the window's finite grad norms
        self.skipped_total_t = torch.zeros((), dtype=torch.float64, device=dev)
        self.skipped_row_t = torch.zeros((), dtype=torch.float64, device=dev)  # skipped steps in a row, up to now
        self.skipped_row = 0  # as read on the last logging step
        self.history: list[dict] = []
        self._new_window()

    def _new_window(self) -> None:
        self.stats.zero_()
        self.norm_sum.zero_()
        self.tokens, self.flops, self.steps, self.start = 0, 0.0, 0, time.perf_counter()

    def add_micro_batch(self, stats: torch.Tensor, tokens: int, flops: float) -> None:
        self.stats += stats.double()
        self.tokens += tokens
        self.flops += flops

    def add_step(self, norm: torch.Tensor, skipped: torch.Tensor) -> None:
        """Count one optimizer step (``skipped``: 1.0 or 0.0 on the device); a skipped step's norm is left out."""
        self.skipped_total_t += skipped
        self.skipped_row_t.add_(1).mul_(skipped)  # back to 0 on a step that was taken
        self.norm_sum += torch.where(skipped > 0, torch.zeros_like(self.norm_sum), norm.detach().double())
        self.steps += 1

    def due(self, step: int) -> bool:
        return step % self.log_every == 0 or step == self.max_steps

    def log(self, step: int, lr: float, scaler) -> dict:
        """Read the window (the host waits for the device here), write one record, start a new window."""
        info, dev = self.info, self.info.device
        D.all_reduce_(self.stats, info)
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        totals = torch.tensor([float(self.tokens), self.flops], dtype=torch.float64, device=dev)
        D.all_reduce_(totals, info)
        self.skipped_row = int(self.skipped_row_t)
        rec = metrics_record(self.stats, step, self.cfg, self.weights, lr, float(self.norm_sum) / max(self.steps, 1),
                             scaler, float(totals[0]) / elapsed, float(totals[1]) / elapsed, self.peak)
        rec["skipped_steps"] = int(self.skipped_total_t)
        self.history.append(rec)
        if info.is_main:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
            if self.writer is not None:
                for k, v in rec.items():
                    if k != "step" and v is not None:
                        self.writer.add_scalar(k, v, step)
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}")
        self._new_window()
        return rec

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    @property
    def skipped_total(self) -> int:
        return int(self.skipped_total_t)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def trim_metrics(path: str, start_step: int) -> None:
    """Keep only the lines of steps <= start_step (a fresh run starts an empty file; a resumed run drops the
    lines logged after its checkpoint, which it is about to log again)."""
    if not os.path.exists(path):
        return
    keep = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                if json.loads(line)["step"] <= start_step:
                    keep.append(line)
            except (ValueError, KeyError):
                continue
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(keep)


def metrics_record(window, step, cfg, weights, lr, grad_norm, scaler, tokens_per_s, flops_per_s, peak) -> dict:
    """One metrics.jsonl line. ``mfu`` = the FLOPs the steps actually did (trainer/flops.py) / the devices' peak."""
    w = window.tolist()

    def mean(task, k=0):
        i = STAT_INDEX[task]
        return w[i + k] / w[i + 1] if w[i + 1] > 0 else None

    means = {t: mean(t) for t in TASKS}
    # each self-distillation term on its own (None when off), and in the total with its weight
    means.update({name: mean(name) if weights[name] > 0 else None for name in DISTILL_TERMS})
    rec = {"step": step, "loss": logged_loss(means, weights)}
    for t in TASKS:
        rec[f"loss/{t}"] = means[t]
    for name in DISTILL_TERMS:
        rec[f"loss/{name}"] = means[name]
    if cfg.mlm.mode == "multiround":
        rec["loss/ar_mlm"] = mean("ar_mlm")
        rec["acc/ar_mlm"] = mean("ar_mlm", 2)
        for k in range(min(cfg.mlm.rounds, MAX_ROUNDS)):
            rec[f"loss/ar_mlm_r{k + 1}"] = mean(f"ar_mlm_r{k + 1}")
    rec["acc/mlm"] = mean("mlm", 2)
    rec["acc/relation"] = mean("relation", 2)
    rec["acc/substitution"] = mean("substitution", 2)
    rec["acc/triple_mask"] = mean("triple_mask", 2)
    rec["lr"] = lr
    rec["grad_norm"] = grad_norm
    rec["loss_scale"] = scaler.get_scale() if scaler.is_enabled() else None
    rec["tokens_per_s"] = tokens_per_s
    rec["mfu"] = flops_per_s / peak if peak else 0.0
    return rec
