"""The pretraining model: the shared encoder plus its four heads.

- ``mlm`` / ``triple_mask``: ``cls.predictions`` (decoder tied to the word embeddings), logits only at the
  positions the batch lists in ``mlm_pos``.
- ``relation``: the ``[E1]`` and ``[E2]`` marker states concatenated -> relation ids (``NA`` = 0).
- ``substitution``: each mention's boundary states (first and last token) concatenated -> replaced/original.

Every head runs on every call: a head whose task has no item in the micro-batch gets a zero-weighted dummy
input, so every parameter receives a gradient on every rank on every backward (FSDP/DDP collectives stay in step).

The self-distillation terms (each off unless the model is built with it):

- R-Drop (``rdrop=True``): in training the micro-batch is concatenated with itself (one forward of 2B rows, so
  both copies see different dropout and every rank runs the same collectives); each task's loss is the mean of
  the two copies' losses, and the symmetric KL ``1/2 (KL(p1||p2) + KL(p2||p1))`` of the two copies' distributions
  (MLM at every predicted position, relation and substitution classifiers) is added with ``scales["rdrop"]``.
- Layer-wise self-distillation (``distill_layers``, 1-based block indices below the last): the shared MLM head on
  those blocks' outputs; ``sum_l w_l KL(stopgrad(P_last) || P_l)`` at every predicted position, ``w_l`` rising with
  depth (``l / sum of the chosen l``), added with ``scales["layer_distill"]``.
- Multi-round (autoregressive) MLM is prepared by the data path (rows repeated per round, see
  ``trainer/data.py``); the batch's ``mlm_round`` gives each general-path prediction its round, for the metrics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from knowmix.schemas import KNOWLEDGE_TASKS
from knowmix.trainer.model import BertEncoder, EncoderConfig, MLMHeadWrapper, init_weights

TASKS = ("mlm",) + KNOWLEDGE_TASKS
MAX_ROUNDS = 4
# extra metrics: R-Drop KL, layer-distillation KL, the multi-round MLM objective and its rounds
EXTRAS = ("rdrop", "layer_distill", "ar_mlm", *(f"ar_mlm_r{k + 1}" for k in range(MAX_ROUNDS)))
# layout of the stats vector a forward returns: per task/extra (loss sum, item count, correct count)
STAT_INDEX = {t: i * 3 for i, t in enumerate(TASKS + EXTRAS)}
N_STATS = len(STAT_INDEX) * 3


def symmetric_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row ``1/2 (KL(p||q) + KL(q||p))`` of the softmaxes of logits ``a`` and ``b`` (float32); exactly zero
    where the two rows are equal."""
    la, lb = F.log_softmax(a, -1), F.log_softmax(b, -1)
    return 0.5 * ((la.exp() - lb.exp()) * (la - lb)).sum(-1)


def depth_weights(layers: tuple[int, ...]) -> list[float]:
    """Layer-distillation weights rising with depth: ``w_l = l / sum(layers)``."""
    total = float(sum(layers))
    return [layer / total for layer in layers]


class PairClassifier(nn.Module):
    def __init__(self, hidden: int, n_out: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden, n_out)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.cat([a, b], dim=-1)))


class KnowmixForPretraining(nn.Module):
    def __init__(self, cfg: EncoderConfig, num_relations: int = 1, rdrop: bool = False,
                 distill_layers: tuple[int, ...] = ()):
        super().__init__()
        self.config = cfg
        self.num_relations = num_relations
        self.rdrop = bool(rdrop)
        self.distill_layers = tuple(int(x) for x in distill_layers)
        for layer in self.distill_layers:
            if not 1 <= layer < cfg.num_hidden_layers:
                raise ValueError(f"distill layer {layer} outside 1..{cfg.num_hidden_layers - 1}")
        self.distill_weights = depth_weights(self.distill_layers) if self.distill_layers else []
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

    def forward(self, batch: dict[str, torch.Tensor]):
        """Return ``(terms, stats)``: ``terms`` maps each loss term (a task, ``rdrop``, ``layer_distill``, or a
        ``keepalive/*`` zero-weight term) to its loss summed over the micro-batch's items, in a fixed order
        (``trainer/loss.py`` weights and normalises them); ``stats`` is a detached float32 vector of (loss sum,
        count, correct) per entry of :data:`STAT_INDEX`."""
        ids, types, mask = batch["input_ids"], batch.get("token_type_ids"), batch.get("attention_mask")
        copies = 2 if self.rdrop and self.training else 1
        if copies == 2:  # one concatenated forward: both copies in the same collectives, different dropout
            ids = torch.cat([ids, ids])
            types = torch.cat([types, types]) if types is not None else None
            mask = torch.cat([mask, mask]) if mask is not None else None
        out = self.bert(ids, types, mask, output_layers=self.distill_layers)
        hidden, inter = out if self.distill_layers else (out, [])
        s_len = hidden.shape[1]
        offset = batch["input_ids"].shape[0] * s_len  # flat index of the second copy's row 0
        h = hidden.reshape(-1, hidden.shape[-1])
        stats = torch.zeros(N_STATS, device=hidden.device, dtype=torch.float32)
        terms: dict[str, torch.Tensor] = {}
        dummy = h[:1]
        rdrop_kl = hidden.new_zeros((), dtype=torch.float32)
        rdrop_n = 0

        def both(flat: torch.Tensor) -> torch.Tensor:
            """Flat hidden indices of the items in every copy (copy 1 first)."""
            return flat if copies == 1 else torch.cat([flat, flat + offset])

        def per_copy(x: torch.Tensor) -> torch.Tensor:
            """(copies * N, ...) -> (copies, N, ...)."""
            return x.view(copies, -1, *x.shape[1:])

        def avg(x: torch.Tensor) -> torch.Tensor:
            """Per-item mean over the copies (the identity without R-Drop)."""
            return x if copies == 1 else per_copy(x).mean(0)

        def add(name: str, s: torch.Tensor, count, correct=None) -> None:
            i = STAT_INDEX[name]
            stats[i] += s.detach().float()
            stats[i + 1] += count
            if correct is not None:
                stats[i + 2] += correct

        # MLM head (general MLM and triple-mask share it)
        pos = batch.get("mlm_pos")
        if pos is not None and pos.numel():
            flat = both(pos)
            logits = self.mlm_logits(h[flat]).float()
            labels = batch["mlm_labels"]
            per = avg(F.cross_entropy(logits, labels.repeat(copies), reduction="none"))
            lg = per_copy(logits)
            correct = (lg[0].argmax(-1) == labels).float()
            which = batch["mlm_task"]  # 0 = mlm, 1 = triple_mask
            for task, code in (("mlm", 0), ("triple_mask", 1)):
                sel = (which == code).float()
                s = (per * sel).sum()
                terms[task] = s
                add(task, s, sel.sum(), (correct * sel).sum())
            rounds = batch.get("mlm_round")
            if rounds is not None:  # multi-round MLM: the objective and each round on its own
                sel = (which == 0).float()
                add("ar_mlm", (per * sel).sum(), sel.sum(), (correct * sel).sum())
                for k in range(MAX_ROUNDS):
                    rk = sel * (rounds == k).float()
                    add(f"ar_mlm_r{k + 1}", (per * rk).sum(), rk.sum(), (correct * rk).sum())
            if copies == 2:
                kl = symmetric_kl(lg[0], lg[1])
                rdrop_kl = rdrop_kl + kl.sum()
                rdrop_n += kl.numel()
            if self.distill_layers:
                teacher = F.log_softmax(logits.detach(), -1)
                p_t = teacher.exp()
                ld = logits.new_zeros(logits.shape[0])
                for w, hl in zip(self.distill_weights, inter):
                    student = F.log_softmax(self.mlm_logits(hl.reshape(-1, hl.shape[-1])[flat]).float(), -1)
                    ld = ld + w * (p_t * (teacher - student)).sum(-1)
                s = avg(ld).sum()
                terms["layer_distill"] = s
                add("layer_distill", s, pos.numel())
        else:
            terms["keepalive/mlm"] = self.mlm_logits(dummy).float().sum()

        # relation classification from the [E1]/[E2] marker states
        rows = batch.get("rel_row")
        if rows is not None and rows.numel():
            logits = self.relation(h[both(rows * s_len + batch["rel_e1"])], h[both(rows * s_len + batch["rel_e2"])]).float()
            target = batch["rel_target"]  # (R, num_relations) soft targets: uniform over the gold relations
            lg = per_copy(logits)
            per = avg(-(target.repeat(copies, 1) * F.log_softmax(logits, -1)).sum(-1))
            s = per.sum()
            terms["relation"] = s
            pred = lg[0].argmax(-1)
            add("relation", s, per.numel(), (target.gather(1, pred[:, None]).squeeze(1) > 0).float().sum())
            if copies == 2:
                kl = symmetric_kl(lg[0], lg[1])
                rdrop_kl = rdrop_kl + kl.sum()
                rdrop_n += kl.numel()
        else:
            terms["keepalive/relation"] = self.relation(dummy, dummy).float().sum()

        # substitution detection from mention boundary states
        rows = batch.get("sub_row")
        if rows is not None and rows.numel():
            logits = self.substitution(
                h[both(rows * s_len + batch["sub_start"])], h[both(rows * s_len + batch["sub_end"])]
            ).float()
            labels = batch["sub_label"]
            lg = per_copy(logits)
            per = avg(F.cross_entropy(logits, labels.repeat(copies), reduction="none"))
            s = per.sum()
            terms["substitution"] = s
            add("substitution", s, per.numel(), (lg[0].argmax(-1) == labels).float().sum())
            if copies == 2:
                kl = symmetric_kl(lg[0], lg[1])
                rdrop_kl = rdrop_kl + kl.sum()
                rdrop_n += kl.numel()
        else:
            terms["keepalive/substitution"] = self.substitution(dummy, dummy).float().sum()

        if copies == 2:
            terms["rdrop"] = rdrop_kl
            add("rdrop", rdrop_kl, rdrop_n)
        return terms, stats
