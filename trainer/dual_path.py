"""Dual-path steps: every optimizer step takes, per accumulation micro-step, one general-MLM micro-batch and
one knowledge micro-batch (the three tasks mixed by ``[tasks]``) through the one encoder.

The loss of such a step (each task a mean over the items it predicts in the whole step on all ranks, whatever
``grad_accum`` and the world size split it into) is computed in ``trainer/loss.py``. With ``data.knowledge``
empty the trainer runs single-path (general MLM only).
"""

from __future__ import annotations

import copy
import queue
import threading

import torch

from knowmix.trainer.data import GeneralPath, KnowledgePath


class DualPathData:
    def __init__(self, general: GeneralPath, knowledge: KnowledgePath | None, micro_batch: int,
                 knowledge_micro_batch: int, grad_accum: int):
        self.general, self.knowledge = general, knowledge
        self.micro_batch, self.knowledge_micro_batch, self.grad_accum = micro_batch, knowledge_micro_batch, grad_accum

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
