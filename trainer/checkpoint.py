"""Sharded, resumable checkpoints with ``torch.distributed.checkpoint`` (DCP).

``output_dir/checkpoints/step-NNNNNNN/`` holds:

- the DCP files of one :class:`TrainerState` (model and optimizer through ``get_state_dict``/``set_state_dict``,
  so FSDP2's sharded parameters are saved shard by shard; scheduler, grad scaler and the step);
- ``rank-RRRRR.pt`` per rank: that rank's sampler position and RNG states (tensors and ints only, read back
  with ``weights_only=True``);
- ``COMPLETE`` (JSON: step, world size), written once every rank has finished;
- ``manifest.json``, written last: every other file's size and sha256 (``trainer/integrity.py``). :func:`load` and
  :func:`load_model_only` check it before torch reads anything (DCP's ``.metadata`` is a pickle).

A checkpoint is written under ``.tmp-step-NNNNNNN`` and renamed once every rank has finished, so a directory
named ``step-*`` with ``COMPLETE`` is always whole; only the newest ``keep`` are kept. :class:`CheckpointPolicy`
decides when the training loop saves (interval, SIGTERM, end).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import warnings

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.checkpoint.stateful import Stateful

from knowmix.errors import UserError
from knowmix.trainer.distributed import DistInfo, all_reduce_, barrier
from knowmix.trainer.integrity import verify_checkpoint, write_checkpoint_manifest

STEP_RE = re.compile(r"^step-(\d{7,})$")


class TrainerState(Stateful):
    """Everything shared by the ranks that a resume needs, as one DCP ``Stateful``."""

    def __init__(self, model, optimizer, scheduler, scaler, step: int = 0):
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.step = step

    def state_dict(self):
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        return {
            "model": model_sd,
            "optim": optim_sd,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None and self.scaler.is_enabled() else {},
            "step": self.step,
        }

    def load_state_dict(self, state):
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def step_dir(root: str, step: int) -> str:
    return os.path.join(root, f"step-{step:07d}")


def complete_checkpoints(root: str) -> list[tuple[int, str]]:
    """(step, path) of every complete checkpoint under ``root``, oldest first."""
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = STEP_RE.match(name)
        path = os.path.join(root, name)
        if m and os.path.isfile(os.path.join(path, "COMPLETE")):
            found.append((int(m.group(1)), path))
    return sorted(found)


def latest(root: str) -> str | None:
    found = complete_checkpoints(root)
    return found[-1][1] if found else None


def save(root: str, state: TrainerState, rank_state: dict, info: DistInfo, keep: int) -> str:
    final = step_dir(root, state.step)
    tmp = os.path.join(root, f".tmp-step-{state.step:07d}")
    if info.is_main:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
    barrier(info)
    with warnings.catch_warnings():  # one process without a group: DCP warns that it saves single-process
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        dcp.save({"trainer": state}, checkpoint_id=tmp)
    torch.save(rank_state, os.path.join(tmp, f"rank-{info.rank:05d}.pt"))
    barrier(info)
    if info.is_main:
        with open(os.path.join(tmp, "COMPLETE"), "w") as fh:
            json.dump({"step": state.step, "world": info.world}, fh)
        write_checkpoint_manifest(tmp, state.step, info.world)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(info)
    return final


def load(path: str, state: TrainerState, info: DistInfo) -> dict:
    """Restore ``state`` from ``path``; return this rank's own part (sampler position, RNG states).

    Every rank checks the whole directory against its manifest first (same files, same verdict on every rank)."""
    verify_checkpoint(path)
    with open(os.path.join(path, "COMPLETE")) as fh:
        meta = json.load(fh)
    if int(meta.get("world", 1)) != info.world:
        raise UserError(
            f"{path}: written by {meta.get('world')} processes, resumed with {info.world};"
            " resume with the same number (the data position is per rank)"
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        dcp.load({"trainer": state}, checkpoint_id=path)
    return torch.load(os.path.join(path, f"rank-{info.rank:05d}.pt"), weights_only=True)


def load_model_only(path: str, model: torch.nn.Module) -> None:
    """Load the model weights of a checkpoint into a plain (unsharded) module, in one process."""
    verify_checkpoint(path)
    sd = {"trainer": {"model": model.state_dict()}}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        dcp.load(sd, checkpoint_id=path)
    model.load_state_dict(sd["trainer"]["model"])


def resolve(run_dir: str, which: str | None) -> str:
    """The checkpoint ``which`` names: a folder, a step number or a ``step-NNNNNNN`` name under the run's
    ``checkpoints/``; the newest complete one when None. A UserError lists the steps there are otherwise."""
    root = os.path.join(run_dir, "checkpoints")
    if which is None:
        path = latest(root)
        if not path:
            raise UserError(f"{root}: no complete checkpoint")
        return path
    if os.path.isdir(which):
        return which
    if which.isdigit():
        cand = step_dir(root, int(which))
    else:
        cand = os.path.join(root, os.path.basename(which.rstrip("/")))
    if os.path.isdir(cand):
        return cand
    steps = ", ".join(str(s) for s, _ in complete_checkpoints(root)) or "none"
    raise UserError(f"--checkpoint {which}: no such checkpoint (complete steps in {root}: {steps})")


class CheckpointPolicy:
    """When the loop saves, and whether it stops for a SIGTERM: every ``interval`` steps (0: never), on SIGTERM,
    and at the end (unless that step was just saved); the newest ``keep`` are kept.

    One process sees its own SIGTERM flag on every step (a host flag, no device sync). Several processes must
    stop on the same step, so they agree on the flag with an all-reduce, which is a host sync: only on logging
    and checkpoint steps (``log_every``, ``interval``), so a SIGTERM is honoured within ``log_every`` steps
    (give the scheduler's grace period that much time). ``host_sync_every_step`` agrees on every step."""

    def __init__(self, root: str, interval: int, keep: int, info: DistInfo, agree_every_step: bool = False):
        self.root, self.interval, self.keep, self.info = root, interval, keep, info
        self.agree_every_step = agree_every_step
        self.last_saved = -1
        self._sigterm = False
        self._previous = None

    def install_sigterm(self) -> None:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            pass

    def _handle(self, signum, frame):
        self._sigterm = True

    def restore_sigterm(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def interval_due(self, step: int) -> bool:
        return bool(self.interval and step % self.interval == 0)

    def sigterm_agreed(self, step: int, log_now: bool) -> bool:
        """Whether every process has to stop now (see the class docstring for when processes agree)."""
        info = self.info
        if not info.distributed:
            if self.agree_every_step:  # the per-step host read this switch restores (bench/train.py)
                return torch.tensor([1.0 if self._sigterm else 0.0], device=info.device).item() > 0
            return self._sigterm
        if log_now or self.interval_due(step) or self.agree_every_step:
            flag = torch.tensor([1.0 if self._sigterm else 0.0], device=info.device)
            all_reduce_(flag, info, op=torch.distributed.ReduceOp.MAX)
            return flag.item() > 0
        return False  # acted on at the next agreement step, by every rank together

    def after_step(self, step: int, state: TrainerState, rank_state, log_now: bool) -> bool:
        """Save if the interval or a SIGTERM asks for it (``rank_state()`` gives this rank's part); return True
        when the run must stop for a SIGTERM."""
        term = self.sigterm_agreed(step, log_now)
        if self.interval_due(step) or term:
            self.save(state, rank_state())
        return term

    def at_end(self, step: int, state: TrainerState, rank_state) -> None:
        if self.last_saved != step:
            self.save(state, rank_state())

    def save(self, state: TrainerState, rank_state: dict) -> str:
        path = save(self.root, state, rank_state, self.info, self.keep)
        self.last_saved = state.step
        return path
