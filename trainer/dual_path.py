"""Dual-path steps: every optimizer step takes, per accumulation micro-step, one general-MLM micro-batch and
one knowledge micro-batch (the three tasks mixed by ``[tasks]``) through the one encoder.

``loss = mlm + sum_task weight_task * loss_task``, where each task's loss is the mean over the items it predicts
in the whole step on all ranks (masked tokens for mlm/triple_mask, entity pairs for relation, mentions for
substitution): the per-task item counts of the step are summed over ranks first, and every micro-batch's
summed loss is scaled by ``weight * world / count`` (FSDP/DDP average gradients over ranks). The result is the
same whatever ``grad_accum`` and the world size split the step into. With ``data.knowledge`` empty the trainer
runs single-path (general MLM only).

The self-distillation terms are means over the step's items too: R-Drop's KL over every predicted item
(masked tokens, entity pairs, mentions), layer-wise distillation's KL over every predicted token; their
multipliers are ``alpha * world / items`` and ``beta * world / tokens``.
"""

from __future__ import annotations

import copy
import queue
import threading

import torch

from trainer.data import GeneralPath, KnowledgePath, batch_counts
from trainer.distributed import DistInfo, all_reduce_
from trainer.heads import TASKS


class DualPathData:
    def __init__(self, general: GeneralPath, knowledge: KnowledgePath | None, micro_batch: int,
                 knowledge_micro_batch: int, grad_accum: int, weights: dict[str, float],
                 distill: dict[str, float] | None = None):
        self.general, self.knowledge = general, knowledge
        self.micro_batch, self.knowledge_micro_batch, self.grad_accum = micro_batch, knowledge_micro_batch, grad_accum
        self.weights = {"mlm": 1.0, **weights}
        self.distill = {"rdrop": 0.0, "layer_distill": 0.0, **(distill or {})}

    @property
    def dual(self) -> bool:
        return self.knowledge is not None

    def step_batches(self, step: int) -> list[dict[str, torch.Tensor]]:
        """The micro-batches of one optimizer step, general and knowledge alternating."""
        out = []
        for micro in range(self.grad_accum):
            out.append(self.general.batch(self.micro_batch, step, micro))
            if self.knowledge is not None:
                out.append(self.knowledge.batch(self.knowledge_micro_batch, step, micro))
        return out

    def scales(self, batches: list[dict[str, torch.Tensor]], info: DistInfo) -> tuple[dict[str, float], torch.Tensor]:
        """Per-task loss multipliers for this step, from the global item counts (one small all-reduce)."""
        counts = torch.zeros(len(TASKS), dtype=torch.float64)
        for b in batches:
            c = batch_counts(b)
            counts += torch.tensor([c[t] for t in TASKS], dtype=torch.float64)
        if info.distributed:
            dev_counts = counts.to(info.device)
            all_reduce_(dev_counts, info)
            counts = dev_counts.cpu()
        scales = {t: self.weights.get(t, 0.0) * info.world / max(float(counts[i]), 1.0) for i, t in enumerate(TASKS)}
        items = float(counts.sum())
        tokens = float(counts[TASKS.index("mlm")] + counts[TASKS.index("triple_mask")])
        scales["rdrop"] = self.distill["rdrop"] * info.world / max(items, 1.0)
        scales["layer_distill"] = self.distill["layer_distill"] * info.world / max(tokens, 1.0)
        return scales, counts

    def state_dict(self) -> dict:
        state = {"general": self.general.stream.state_dict()}
        if self.knowledge is not None:
            state["knowledge"] = self.knowledge.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.general.stream.load_state_dict(state["general"])
        if self.knowledge is not None and "knowledge" in state:
            self.knowledge.load_state_dict(state["knowledge"])


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "n_tokens"}


class Prefetcher:
    """Prepares the micro-batches of the coming steps on a background thread (reading, decoding, masking and
    pinning), each with the sampler position *after* it, so a checkpoint records exactly what was consumed.
    The batches are the same as without it: they depend only on (seed, step, rank) and the sampler position."""

    def __init__(self, data: DualPathData, start_step: int, max_steps: int, depth: int, pin: bool):
        self.data, self.pin = data, pin
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, args=(start_step, max_steps), daemon=True,
                                       name="knowmix-prefetch")
        self.thread.start()

    def _work(self, start: int, end: int) -> None:
        try:
            for step in range(start, end):
                batches = self.data.step_batches(step)
                if self.pin:
                    batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
                item = (step, batches, copy.deepcopy(self.data.state_dict()))
                while not self.stop.is_set():
                    try:
                        self.queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self.stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread
            self.queue.put((None, exc, None))

    def get(self, step: int):
        got, batches, state = self.queue.get()
        if got is None:
            raise batches
        assert got == step, (got, step)
        return batches, state

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class Inline:
    """The same interface as :class:`Prefetcher`, preparing each step on the training thread."""

    def __init__(self, data: DualPathData):
        self.data = data

    def get(self, step: int):
        return self.data.step_batches(step), self.data.state_dict()

    def close(self) -> None:
        pass
