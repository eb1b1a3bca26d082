"""The pretraining loss, in one place: the weight table, the per-step normalisers and the weighted sum.

The model (``trainer/heads.py``) returns each loss term *summed* over the items of its micro-batch (masked tokens
for mlm/triple_mask, entity pairs for relation, mentions for substitution, every predicted item for R-Drop's KL,
every predicted token for layer-wise distillation). The step's loss is

    loss = sum_term weight_term * (sum of the term over the step's items on all ranks) / (global item count)

so each term is a mean over the items it predicts in the whole step, whatever ``grad_accum`` and the world size
split the step into: :func:`loss_scales` turns the global counts into one multiplier per term,
``weight * world / count`` (FSDP/DDP average gradients over ranks, hence ``* world``), and :func:`weighted_sum`
applies them to one micro-batch's terms. :func:`logged_loss` is the same formula on the logged per-term means.
"""

from __future__ import annotations

import torch

from knowmix.trainer.data import batch_counts
from knowmix.trainer.distributed import DistInfo, all_reduce_
from knowmix.trainer.heads import TASKS

DISTILL_TERMS = ("rdrop", "layer_distill")


def task_weights(cfg) -> dict[str, float]:
    """The weight of every loss term, from the config (built once per run): mlm 1, the knowledge tasks by
    ``[tasks]``, R-Drop by ``distill.rdrop_alpha``, layer-wise distillation by ``distill.layer_beta``."""
    return {"mlm": 1.0, "relation": cfg.tasks.relation, "substitution": cfg.tasks.substitution,
            "triple_mask": cfg.tasks.triple_mask, "rdrop": cfg.distill.rdrop_alpha,
            "layer_distill": cfg.distill.layer_beta}


def step_item_counts(batches: list[dict[str, torch.Tensor]], info: DistInfo) -> torch.Tensor:
    """Per task (in :data:`TASKS` order), the number of items the step's micro-batches predict on all ranks
    (float64; with several processes one small all-reduce, and the sums stay on the device: the host does not
    wait for them)."""
    counts = torch.zeros(len(TASKS), dtype=torch.float64)
    for b in batches:
        c = batch_counts(b)
        counts += torch.tensor([c[t] for t in TASKS], dtype=torch.float64)
    if info.distributed:
        dev_counts = counts.to(info.device)
        all_reduce_(dev_counts, info)
        counts = dev_counts
    return counts


def loss_scales(counts: torch.Tensor, weights: dict[str, float], world: int) -> dict[str, torch.Tensor]:
    """The multiplier of every term's summed loss for this step: ``weight * world / global item count``, computed
    in float64 where ``counts`` lives (no host read) and rounded once to float32, the dtype of the terms."""

    def scale(weight: float, count: torch.Tensor) -> torch.Tensor:
        return (weight * world / count.clamp(min=1.0)).float()

    scales = {t: scale(weights.get(t, 0.0), counts[i]) for i, t in enumerate(TASKS)}
    tokens = counts[TASKS.index("mlm")] + counts[TASKS.index("triple_mask")]
    scales["rdrop"] = scale(weights.get("rdrop", 0.0), counts.sum())
    scales["layer_distill"] = scale(weights.get("layer_distill", 0.0), tokens)
    return scales


def weighted_sum(terms: dict[str, torch.Tensor], scales: dict[str, float | torch.Tensor]) -> torch.Tensor:
    """One micro-batch's loss: ``sum_term scales[term] * terms[term]`` (float32, in the order the model produced
    the terms). A term without a scale counts 0: so do the heads' ``keepalive/*`` terms, which only keep every
    head in the graph on every rank (see ``trainer/heads.py``)."""
    loss = next(iter(terms.values())).new_zeros((), dtype=torch.float32)
    for name, s in terms.items():
        loss = loss + scales.get(name, 0.0) * s
    return loss


def logged_loss(means: dict[str, float | None], weights: dict[str, float]) -> float:
    """The step loss on the logging window's per-term means (``None``: no item in the window, or the term off)."""
    total = sum(weights[t] * means[t] for t in TASKS if means[t] is not None)
    for name in DISTILL_TERMS:
        if means.get(name) is not None:
            total += weights[name] * means[name]
    return total
