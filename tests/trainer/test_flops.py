"""MFU inputs: the FLOPs a step does (against torch's FlopCounterMode on the real models) and device peaks
matched by exact device name."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from knowmix.trainer.flops import batch_flops, device_peak_tflops, mlm_head_flops
from knowmix.trainer.heads import KnowmixForPretraining
from knowmix.trainer.loss import weighted_sum
from knowmix.trainer.model import EncoderConfig


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.5), ("NVIDIA H200", 989.4),
    ("NVIDIA L40S", 362.05), ("NVIDIA L40", 181.05), ("NVIDIA L4", 121.0),
    ("NVIDIA A10", 125.0), ("NVIDIA A10G", 0.0),  # A10G: no published sheet, and never the A10's peak
    ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100 80GB PCIe", 312.0),
    ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", 0.0),  # a MIG slice is not the whole card
    ("  nvidia  h100 pcie ", 756.5), ("H100", 0.0), ("", 0.0),
])
def test_device_peaks_by_exact_name(name, peak):
    """Substring matching gave an H100 PCIe the SXM peak, an L4 the L40S's (or the reverse) and an A10G the A10's."""
    assert device_peak_tflops(name) == peak


def counted(step) -> int:
    with FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops()


@pytest.mark.parametrize("h, layers, heads, inter, vocab, seq, rows", [(64, 2, 2, 256, 500, 128, 4),
                                                                      (128, 2, 4, 512, 1000, 64, 3)])
def test_knowmix_batch_flops_match_flop_counter(h, layers, heads, inter, vocab, seq, rows):
    """knowmix scores the MLM head only at the masked positions; the explicit attention path makes the attention
    products matmuls FlopCounterMode sees (SDPA on CPU is not counted). The two heads' one-row dummies (a few
    thousand FLOPs) are the only difference."""
    enc = EncoderConfig(vocab_size=vocab, hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=inter, max_position_embeddings=seq, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = KnowmixForPretraining(enc)
    for layer in model.layers:
        layer.attention.self.explicit = True
    ids = torch.randint(9, vocab, (rows, seq))
    pos = torch.arange(0, rows * seq, 7)
    b = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "mlm_pos": pos, "mlm_labels": ids.view(-1)[pos],
         "mlm_task": torch.zeros_like(pos)}

    def step():
        terms, _ = model(b)
        loss = weighted_sum(terms, {"mlm": 1.0})
        loss.backward()

    assert batch_flops(b, enc) == pytest.approx(counted(step), rel=1e-4)


def test_dense_mlm_flops_match_hf_bert():
    """Hugging Face's BertForMaskedLM scores every position: encoder + head at rows * seq positions."""
    transformers = pytest.importorskip("transformers")
    h, layers, heads, inter, vocab, seq, rows = 64, 2, 2, 256, 500, 64, 3
    cfg = transformers.BertConfig(vocab_size=vocab, hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads,
                                  intermediate_size=inter, max_position_embeddings=seq, attn_implementation="eager")
    model = transformers.BertForMaskedLM(cfg)
    ids = torch.randint(9, vocab, (rows, seq))

    def step():
        model(input_ids=ids, labels=ids).loss.backward()

    enc = EncoderConfig(vocab_size=vocab, hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=inter, max_position_embeddings=seq)
    tokens = rows * seq
    expected = tokens * enc.flops_per_token(seq) + mlm_head_flops(h, vocab, tokens)
    assert expected == pytest.approx(counted(step), rel=1e-3)
