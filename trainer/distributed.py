"""Process group, device and sharding.

- :func:`init` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); without it the trainer is
  one process (CPU or one GPU) without a process group. NCCL on GPUs, gloo on CPU.
- :func:`wrap`: ``zero = 3`` / ``2`` -> FSDP2 ``fully_shard`` on every encoder block and on the root,
  ``reshard_after_forward`` True (ZeRO-3) or False (ZeRO-2); ``zero = 0`` -> DDP when several processes, the bare
  module otherwise. bf16/fp16 use a ``MixedPrecisionPolicy`` (params cast for compute, gradients reduced in fp32)
  under FSDP, autocast otherwise.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from knowmix.errors import UserError

try:  # torch >= 2.6
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
except ImportError:  # pragma: no cover - older torch
    from torch.distributed._composable.fsdp import MixedPrecisionPolicy, fully_shard

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    owns_group: bool = False  # this module opened the process group (and closes it at the end)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init(device: str = "auto") -> DistInfo:
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(f'train.device = "cuda" but torch {torch.__version__} sees no CUDA device;'
                        ' use train.device = "auto" or "cpu"')
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and local_rank >= torch.cuda.device_count():
        raise UserError(f"LOCAL_RANK {local_rank}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
        owns = True
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank, world, local_rank, dev, owns)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_(t: torch.Tensor, info: DistInfo, op=dist.ReduceOp.SUM) -> torch.Tensor:
    if info.distributed:
        dist.all_reduce(t, op=op)
    return t


def wrap(model: nn.Module, zero: int, precision: str, activation_checkpointing: bool, info: DistInfo,
         compile: bool = False) -> nn.Module:
    """Shard or replicate ``model`` (a KnowmixForPretraining already on ``info.device``)."""
    model.bert.encoder.activation_checkpointing = activation_checkpointing
    if compile:
        for block in model.bert.encoder.layer:
            block.compile()
    if zero in (2, 3) and dist.is_available() and dist.is_initialized():
        mp = MixedPrecisionPolicy(
            param_dtype=DTYPES[precision] if precision != "fp32" else None,
            reduce_dtype=torch.float32,
        )
        reshard = zero == 3
        for block in model.bert.encoder.layer:
            fully_shard(block, mp_policy=mp, reshard_after_forward=reshard)
        fully_shard(model, mp_policy=mp, reshard_after_forward=reshard)
        model._knowmix_fsdp = True  # type: ignore[attr-defined]
        return model
    # one process without a process group: nothing to shard, the bare module runs (bench/train.py opens a
    # one-rank group to measure FSDP's own cost on one GPU)
    if info.distributed:
        ids = [info.device.index] if info.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model


def grad_sync(model: nn.Module, zero: int, last: bool):
    """Context for one backward of a step: gradients are reduced on every backward under ZeRO-3 (sharded
    gradients keep memory low), only on the step's last backward under ZeRO-2 and DDP (fewer collectives)."""
    if last or zero == 3:
        if is_fsdp(model):
            model.set_requires_gradient_sync(True)
        return contextlib.nullcontext()
    if is_fsdp(model):
        model.set_requires_gradient_sync(False)
        return contextlib.nullcontext()
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def is_fsdp(model: nn.Module) -> bool:
    return bool(getattr(model, "_knowmix_fsdp", False))


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def autocast(model: nn.Module, precision: str, device: torch.device):
    """Autocast for the non-FSDP paths (FSDP's MixedPrecisionPolicy casts the parameters itself)."""
    if precision == "fp32" or is_fsdp(model):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def shutdown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()
