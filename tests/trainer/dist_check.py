"""Run under ``torchrun --nproc_per_node 2`` (gloo, CPU) by test_distributed.py; writes ROOT/result.json on rank 0.

One launch checks, to pay process start-up once:
1. ZeRO-3 (FSDP2, reshard after forward), fp32, 4 steps with a checkpoint at step 2;
2. resume of that run from its step-2 checkpoint (sharded DCP load on 2 ranks) -> same losses for steps 3-4;
3. ZeRO-2 (FSDP2, no reshard), bf16 MixedPrecisionPolicy, activation checkpointing, grad_accum 2;
4. ZeRO-3 fp16 with an inf injected into one rank's gradient shard: both ranks skip the same step;
5. ZeRO-0 (DDP) and 6. ZeRO-2 fp32, whose losses must match ZeRO-3's (same data, same math);
7. the training techniques under ZeRO-3: each switch alone for 2 steps (R-Drop, layer-wise distillation, attention
   residual, multi-round MLM), all together for 4 steps with a checkpoint at step 2 and its resume, all together
   under ZeRO-2 bf16 (activation checkpointing, grad_accum 2) and under ZeRO-3 fp16;
each: finite losses, every head's loss present, parameters all-gathered on both ranks identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys

import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from tests.trainer.helpers import inf_gradient_at, make_shards, tiny_overrides
from knowmix.trainer.config import load_config
from knowmix.trainer.loop import train


SWITCHES = {  # the training techniques: one config switch each
    "rdrop": {"distill.rdrop_alpha": 1.0},
    "layer_distill": {"distill.layer_beta": 0.5},
    "attn_residual": {"model.attn_residual_decay": 0.5},
    "multiround": {"mlm.mode": '"multiround"'},
}


def params_digest(model, info, out: dict):
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    h = hashlib.sha256()
    for k in sorted(full):
        t = full[k]
        t = t.full_tensor() if hasattr(t, "full_tensor") else t
        h.update(k.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    digests = [None] * info.world
    dist.all_gather_object(digests, h.hexdigest())
    out["digests"] = digests
    out["n_tensors"] = len(full)


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def run(name, root, pre, ktok, result, resume=False, after_backward=None, **extra):
    out = os.path.join(root, name)
    seen: dict = {}
    cfg = load_config(None, tiny_overrides(pre, ktok, out, **extra))
    summary = train(cfg, resume=resume, log=lambda *a: None, on_end=lambda m, i: params_digest(m, i, seen),
                    after_backward=after_backward)
    result[name] = {"digests": seen["digests"], "n_tensors": seen["n_tensors"], "summary_steps": summary["steps"],
                    "metrics": metrics(out) if dist.get_rank() == 0 else None}
    dist.barrier()


def main():
    root = sys.argv[1]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    if rank == 0:
        make_shards(os.path.join(root, "data"), n_pretrain=64, n_knowledge=48, n_shards=4)
    dist.barrier()
    pre, ktok = os.path.join(root, "data", "pretrain"), os.path.join(root, "data", "ktok")
    result: dict = {}
    common = {"train.max_steps": 4, "checkpoint.interval": 2, "checkpoint.keep": 3}
    run("zero3", root, pre, ktok, result, **common, **{"train.zero": 3})
    if rank == 0:
        os.makedirs(os.path.join(root, "zero3_resumed", "checkpoints"))
        shutil.copytree(os.path.join(root, "zero3", "checkpoints", "step-0000002"),
                        os.path.join(root, "zero3_resumed", "checkpoints", "step-0000002"))
    dist.barrier()
    run("zero3_resumed", root, pre, ktok, result, resume=True, **common, **{"train.zero": 3})
    run("zero2", root, pre, ktok, result, **common, **{"train.zero": 2, "train.precision": '"bf16"',
                                                      "train.activation_checkpointing": "true", "train.grad_accum": 2})
    run("zero3_fp16", root, pre, ktok, result, after_backward=inf_gradient_at(2), **{**common, "train.max_steps": 3},
        **{"train.zero": 3, "train.precision": '"fp16"'})
    run("zero0", root, pre, ktok, result, **{**common, "train.max_steps": 2}, **{"train.zero": 0})
    run("zero2_fp32", root, pre, ktok, result, **{**common, "train.max_steps": 2}, **{"train.zero": 2})

    # each training technique alone, then all together (resume, ZeRO-2 bf16, ZeRO-3 fp16); 3 layers for distillation
    short = {**common, "train.max_steps": 2, "checkpoint.interval": 0, "train.zero": 3, "model.layers": 3}
    for name, switch in SWITCHES.items():
        run(f"zero3_{name}", root, pre, ktok, result, **short, **switch)
    all_on = {k: v for sw in SWITCHES.values() for k, v in sw.items()}
    run("zero3_all", root, pre, ktok, result, **common, **all_on, **{"train.zero": 3, "model.layers": 3})
    if rank == 0:
        os.makedirs(os.path.join(root, "zero3_all_resumed", "checkpoints"))
        shutil.copytree(os.path.join(root, "zero3_all", "checkpoints", "step-0000002"),
                        os.path.join(root, "zero3_all_resumed", "checkpoints", "step-0000002"))
    dist.barrier()
    run("zero3_all_resumed", root, pre, ktok, result, resume=True, **common, **all_on,
        **{"train.zero": 3, "model.layers": 3})
    run("zero2_all_bf16", root, pre, ktok, result, **{**short, "train.zero": 2}, **all_on,
        **{"train.precision": '"bf16"', "train.activation_checkpointing": "true", "train.grad_accum": 2})
    run("zero3_all_fp16", root, pre, ktok, result, **short, **all_on, **{"train.precision": '"fp16"'})
    if rank == 0:
        with open(os.path.join(root, "result.json"), "w") as fh:
            json.dump(result, fh)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
