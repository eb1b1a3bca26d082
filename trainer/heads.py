"""The pretraining model: the shared encoder plus its four heads.

- ``mlm`` / ``triple_mask``: ``cls.predictions`` (decoder tied to the word embeddings), logits only at the
  positions the batch lists in ``mlm_pos``.
- ``relation``: the ``[E1]`` and ``[E2]`` marker states concatenated -> relation ids (``NA`` = 0).
- ``substitution``: each mention's boundary states (first and last token) concatenated -> replaced/original.

Every head runs on every call: a head whose task has no item in the micro-batch gets a zero-weighted dummy
input, so every parameter receives a gradient on every rank on every backward (FSDP/DDP collectives stay in step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.model import BertEncoder, EncoderConfig, MLMHeadWrapper, init_weights

TASKS = ("mlm", "relation", "substitution", "triple_mask")
# layout of the stats vector a forward returns: per task (loss sum, item count, correct count)
STAT_INDEX = {t: i * 3 for i, t in enumerate(TASKS)}


class PairClassifier(nn.Module):
    def __init__(self, hidden: int, n_out: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden, n_out)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.cat([a, b], dim=-1)))


class KnowmixForPretraining(nn.Module):
    def __init__(self, cfg: EncoderConfig, num_relations: int = 1):
        super().__init__()
        self.config = cfg
        self.num_relations = num_relations
        self.bert = BertEncoder(cfg)
        self.cls = MLMHeadWrapper(cfg)
        self.relation = PairClassifier(cfg.hidden_size, num_relations, cfg.hidden_dropout_prob)
        self.substitution = PairClassifier(cfg.hidden_size, 2, cfg.hidden_dropout_prob)
        init_weights(self, cfg.initializer_range)

    @property
    def layers(self) -> nn.ModuleList:
        return self.bert.encoder.layer

    def mlm_logits(self, hidden_flat: torch.Tensor) -> torch.Tensor:
        return self.cls.predictions(hidden_flat, self.bert.embeddings.word_embeddings.weight)

    def forward(self, batch: dict[str, torch.Tensor], scales: dict[str, float] | None = None):
        """Return ``(loss, stats)``: ``loss = sum_task scales[task] * (summed loss of task)``; ``stats`` is a
        detached float32 vector of (loss sum, count, correct) per task in :data:`TASKS` order."""
        scales = scales or {t: 1.0 for t in TASKS}
        hidden = self.bert(batch["input_ids"], batch.get("token_type_ids"), batch.get("attention_mask"))
        h = hidden.reshape(-1, hidden.shape[-1])
        stats = torch.zeros(len(TASKS) * 3, device=hidden.device, dtype=torch.float32)
        loss = hidden.new_zeros((), dtype=torch.float32)
        dummy = h[:1]

        # MLM head (general MLM and triple-mask share it)
        pos = batch.get("mlm_pos")
        if pos is not None and pos.numel():
            logits = self.mlm_logits(h[pos]).float()
            labels = batch["mlm_labels"]
            per = F.cross_entropy(logits, labels, reduction="none")
            correct = (logits.argmax(-1) == labels).float()
            which = batch["mlm_task"]  # 0 = mlm, 1 = triple_mask
            for task, code in (("mlm", 0), ("triple_mask", 1)):
                sel = (which == code).float()
                s = (per * sel).sum()
                loss = loss + scales.get(task, 0.0) * s
                i = STAT_INDEX[task]
                stats[i] += s.detach()
                stats[i + 1] += sel.sum()
                stats[i + 2] += (correct * sel).sum()
        else:
            loss = loss + 0.0 * self.mlm_logits(dummy).float().sum()

        # relation classification from the [E1]/[E2] marker states
        rows = batch.get("rel_row")
        if rows is not None and rows.numel():
            s_len = hidden.shape[1]
            logits = self.relation(h[rows * s_len + batch["rel_e1"]], h[rows * s_len + batch["rel_e2"]]).float()
            target = batch["rel_target"]  # (R, num_relations) soft targets: uniform over the gold relations
            per = -(target * F.log_softmax(logits, -1)).sum(-1)
            s = per.sum()
            loss = loss + scales.get("relation", 0.0) * s
            i = STAT_INDEX["relation"]
            stats[i] += s.detach()
            stats[i + 1] += per.numel()
            pred = logits.argmax(-1)
            stats[i + 2] += (target.gather(1, pred[:, None]).squeeze(1) > 0).float().sum()
        else:
            loss = loss + 0.0 * self.relation(dummy, dummy).float().sum()

        # substitution detection from mention boundary states
        rows = batch.get("sub_row")
        if rows is not None and rows.numel():
            s_len = hidden.shape[1]
            logits = self.substitution(
                h[rows * s_len + batch["sub_start"]], h[rows * s_len + batch["sub_end"]]
            ).float()
            labels = batch["sub_label"]
            per = F.cross_entropy(logits, labels, reduction="none")
            s = per.sum()
            loss = loss + scales.get("substitution", 0.0) * s
            i = STAT_INDEX["substitution"]
            stats[i] += s.detach()
            stats[i + 1] += per.numel()
            stats[i + 2] += (logits.argmax(-1) == labels).float().sum()
        else:
            loss = loss + 0.0 * self.substitution(dummy, dummy).float().sum()
        return loss, stats
