"""trainer/loss.py against hand-computed numbers: the per-step multipliers, the weighted sum, the logged total."""

import pytest
import torch

from knowmix.trainer.heads import TASKS
from knowmix.trainer.loss import logged_loss, loss_scales, weighted_sum

WEIGHTS = {"mlm": 1.0, "relation": 0.5, "substitution": 2.0, "triple_mask": 0.0, "rdrop": 1.5, "layer_distill": 0.25}


def test_scales_are_weight_times_world_over_global_count():
    counts = torch.tensor([8.0, 4.0, 0.0, 2.0], dtype=torch.float64)  # mlm, relation, substitution, triple_mask
    assert TASKS == ("mlm", "relation", "substitution", "triple_mask")
    s = {k: float(v) for k, v in loss_scales(counts, WEIGHTS, world=2).items()}

    def f32(x: float) -> float:  # the multipliers are float32, the dtype of the loss terms
        return torch.tensor(x, dtype=torch.float32).item()

    assert s["mlm"] == f32(1.0 * 2 / 8)
    assert s["relation"] == f32(0.5 * 2 / 4)
    assert s["substitution"] == f32(2.0 * 2 / 1)  # no item: the count is taken as 1 (the term is 0 anyway)
    assert s["triple_mask"] == f32(0.0)
    assert s["rdrop"] == f32(1.5 * 2 / 14)  # every predicted item
    assert s["layer_distill"] == f32(0.25 * 2 / 10)  # every predicted token (mlm + triple_mask)


def test_weighted_sum_leaves_keepalive_terms_out():
    terms = {"mlm": torch.tensor(6.0), "keepalive/relation": torch.tensor(100.0), "relation": torch.tensor(3.0)}
    assert weighted_sum(terms, {"mlm": 0.5, "relation": torch.tensor(2.0)}).item() == 0.5 * 6 + 2 * 3


def test_logged_loss_weights_each_mean():
    means = {"mlm": 2.0, "relation": 1.0, "substitution": None, "triple_mask": 4.0, "rdrop": 0.1,
             "layer_distill": None}
    assert logged_loss(means, WEIGHTS) == pytest.approx(2.0 + 0.5 * 1.0 + 0.0 * 4.0 + 1.5 * 0.1)
