"""Model FLOPs utilisation: the FLOPs a step actually does, and the device's peak.

FLOPs are training FLOPs (forward + backward = 3x forward; a multiply-add is 2) of the matrix products, the
usual MFU convention (embeddings, softmax, LayerNorm and elementwise work are not counted):

- the encoder: :meth:`trainer.model.EncoderConfig.flops_per_token` per non-padding token of every row the model
  runs (multi-round MLM runs each row once per round; R-Drop runs the micro-batch twice), attention over the
  row's padded width (SDPA computes it);
- the MLM head (transform ``h x h`` + tied decoder ``h x vocab``) at the positions it scores. knowmix scores only
  the masked positions (``mlm_pos``); Hugging Face's ``BertForMaskedLM`` scores every position. Layer-wise
  distillation runs the head once more per distilled block at the same positions.

Device peaks are dense (no sparsity) bf16/fp16 tensor-core TFLOP/s from the vendors' data sheets, keyed by the
exact name ``torch.cuda.get_device_name`` reports, so PCIe and SXM parts (and ``L4``/``L40``/``L40S``,
``A10``/``A10G``) each get their own; a name not listed (a MIG slice, a new card) has no peak: set
``train.peak_tflops`` (or ``bench/train.py --peak-tflops``).
"""

from __future__ import annotations

from typing import Mapping

import torch

# exact device name -> dense bf16 (fp16 for V100) tensor-core peak, TFLOP/s
PEAK_TFLOPS = {
    "NVIDIA B200": 2250.0,
    "NVIDIA H200": 989.4,  # SXM
    "NVIDIA H200 NVL": 835.5,
    "NVIDIA H100 80GB HBM3": 989.4,  # SXM5
    "NVIDIA H100 PCIe": 756.5,
    "NVIDIA H100 NVL": 835.5,
    "NVIDIA H800": 989.4,  # SXM
    "NVIDIA H800 PCIe": 756.5,
    "NVIDIA H20": 148.0,
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
    "NVIDIA A100 80GB PCIe": 312.0,
    "NVIDIA A100-PCIE-40GB": 312.0,
    "NVIDIA A800-SXM4-80GB": 312.0,
    "NVIDIA A800 80GB PCIe": 312.0,
    "NVIDIA L40S": 362.05,
    "NVIDIA L40": 181.05,
    "NVIDIA L4": 121.0,
    "NVIDIA A10": 125.0,  # (the A10G, an AWS variant with its own clocks, has no published sheet: not listed)
    "NVIDIA GeForce RTX 4090": 165.2,
    "Tesla V100-SXM2-16GB": 125.0,
    "Tesla V100-SXM2-32GB": 125.0,
    "Tesla V100-PCIE-16GB": 112.0,
    "Tesla V100-PCIE-32GB": 112.0,
}
_BY_KEY = {" ".join(k.split()).lower(): v for k, v in PEAK_TFLOPS.items()}


def device_peak_tflops(name: str) -> float:
    """The listed peak of the device called exactly ``name`` (case and spacing aside), or 0.0 if not listed."""
    return _BY_KEY.get(" ".join(str(name).split()).lower(), 0.0)


def peak_flops(device: torch.device, override_tflops: float = 0.0) -> float:
    """FLOP/s of one ``device``: ``override_tflops`` if set, else the listed peak (0.0 when unknown or CPU)."""
    if override_tflops > 0:
        return override_tflops * 1e12
    if device.type == "cuda":
        return device_peak_tflops(torch.cuda.get_device_name(device)) * 1e12
    return 0.0


def mlm_head_flops(hidden: int, vocab: int, positions: int) -> float:
    """Training FLOPs of the MLM head (transform + decoder) at ``positions`` scored positions."""
    return 3.0 * positions * 2 * (hidden * hidden + hidden * vocab)


def batch_flops(batch: Mapping[str, torch.Tensor], enc, copies: int = 1, extra_head_passes: int = 0) -> float:
    """Training FLOPs of one micro-batch as the model runs it (``batch`` on the host, before it goes to the
    device, so counting costs no device sync). ``copies`` = 2 under R-Drop; ``extra_head_passes`` = the number
    of blocks layer-wise distillation scores."""
    ids = batch["input_ids"]
    rows, width = ids.shape
    mask = batch.get("attention_mask")
    tokens = int(mask.sum()) if mask is not None else rows * width
    predicted = int(batch["mlm_pos"].numel()) if "mlm_pos" in batch else 0
    head = mlm_head_flops(enc.hidden_size, enc.vocab_size, predicted) * (1 + extra_head_passes)
    return copies * (tokens * enc.flops_per_token(width) + head)
