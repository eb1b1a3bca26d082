"""Two gloo processes under torchrun (one launch, see dist_check.py): ZeRO-3, its resume, ZeRO-2 (bf16,
activation checkpointing, grad accumulation), ZeRO-3 fp16, DDP; the training techniques under ZeRO-3 (each alone,
all together, their resume) and all together under ZeRO-2 bf16 and ZeRO-3 fp16."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADS = ("loss/mlm", "loss/relation", "loss/substitution", "loss/triple_mask")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         os.path.join(ROOT, "tests", "trainer", "dist_check.py"), str(root)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    with open(root / "result.json") as fh:
        out = json.load(fh)
    out["root"] = str(root)
    return out


@pytest.mark.parametrize("name", ["zero3", "zero2", "zero3_fp16", "zero0", "zero2_fp32"])
def test_runs_and_ranks_agree(result, name):
    r = result[name]
    assert r["digests"][0] == r["digests"][1]  # full parameters gathered on each rank are identical
    assert r["n_tensors"] > 0
    for m in r["metrics"]:
        assert math.isfinite(m["loss"])
        for key in HEADS:  # every head's loss present every logged step
            assert m[key] is not None and math.isfinite(m[key]), (name, key, m)


@pytest.mark.parametrize("name", ["zero0", "zero2_fp32"])
def test_ddp_and_zero2_match_zero3(result, name):
    """Gradient reduction once per step (DDP no_sync / FSDP2 set_requires_gradient_sync) vs every backward."""
    ref = {m["step"]: m for m in result["zero3"]["metrics"]}
    for m in result[name]["metrics"]:
        for key in ("loss", *HEADS, "grad_norm"):
            assert m[key] == pytest.approx(ref[m["step"]][key], rel=1e-5), (name, m["step"], key)


def test_zero3_resume_matches(result):
    full = {m["step"]: m for m in result["zero3"]["metrics"]}
    resumed = {m["step"]: m for m in result["zero3_resumed"]["metrics"]}
    assert sorted(resumed) == [3, 4]
    for step in (3, 4):
        for key in ("loss", *HEADS, "grad_norm"):
            assert resumed[step][key] == pytest.approx(full[step][key], rel=1e-6, abs=1e-7)
    assert result["zero3_resumed"]["digests"][0] == result["zero3"]["digests"][0]  # same final weights


def test_fp16_scaler_on_fsdp(result):
    ms = result["zero3_fp16"]["metrics"]
    assert all(m["loss_scale"] is not None for m in ms)
    # step index 2 had an inf injected into one rank's gradient shard: that step is skipped (scale halves)
    assert ms[2]["skipped_steps"] == ms[1]["skipped_steps"] + 1
    assert ms[2]["loss_scale"] == ms[1]["loss_scale"] / 2


def test_zero2_bf16_and_ddp_logged(result):
    assert len(result["zero2"]["metrics"]) == 4 and len(result["zero0"]["metrics"]) == 2


def test_export_from_fsdp_checkpoint(result, tmp_path):
    transformers = pytest.importorskip("transformers")
    from knowmix.trainer.hf import export_run

    path, written = export_run(os.path.join(result["root"], "zero3"), str(tmp_path / "hf"))
    assert path.endswith("step-0000004") and "model.safetensors" in written
    model, info = transformers.BertForMaskedLM.from_pretrained(str(tmp_path / "hf"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


TECHNIQUE_RUNS = {  # run -> the technique metrics it must log (finite)
    "zero3_rdrop": ("loss/rdrop",),
    "zero3_layer_distill": ("loss/layer_distill",),
    "zero3_attn_residual": (),
    "zero3_multiround": ("loss/ar_mlm", "loss/ar_mlm_r1", "loss/ar_mlm_r2"),
    "zero3_all": ("loss/rdrop", "loss/layer_distill", "loss/ar_mlm"),
    "zero2_all_bf16": ("loss/rdrop", "loss/layer_distill", "loss/ar_mlm"),
    "zero3_all_fp16": ("loss/rdrop", "loss/layer_distill", "loss/ar_mlm"),
}


@pytest.mark.parametrize("name", sorted(TECHNIQUE_RUNS))
def test_techniques_train_on_zero(result, name):
    r = result[name]
    assert r["digests"][0] == r["digests"][1]
    assert r["metrics"]
    for m in r["metrics"]:
        assert math.isfinite(m["loss"])
        for key in HEADS + TECHNIQUE_RUNS[name]:
            assert m[key] is not None and math.isfinite(m[key]), (name, key, m)
        for key in ("loss/rdrop", "loss/layer_distill"):
            if key not in TECHNIQUE_RUNS[name]:
                assert m[key] is None, (name, key)
        if "loss/rdrop" in TECHNIQUE_RUNS[name] and m["loss_scale"] is None:
            assert m["loss/rdrop"] > 0  # dropout 0.1: the two passes differ


def test_techniques_all_on_resume_matches(result):
    full = {m["step"]: m for m in result["zero3_all"]["metrics"]}
    resumed = {m["step"]: m for m in result["zero3_all_resumed"]["metrics"]}
    assert sorted(resumed) == [3, 4]
    for step in (3, 4):
        for key in ("loss", *HEADS, "loss/rdrop", "loss/layer_distill", "loss/ar_mlm", "grad_norm"):
            assert resumed[step][key] == pytest.approx(full[step][key], rel=1e-6, abs=1e-9), (step, key)
    assert result["zero3_all_resumed"]["digests"][0] == result["zero3_all"]["digests"][0]
