"""Fine-tuning and probing: examples -> token ids, the fine-tuning loop, the probe, and the metrics.

Inputs, as the knowledge path builds them: ``[CLS] sentence [SEP]``; pairs ``[CLS] a [SEP] b [SEP]`` with token
types 0/1 (the longer side truncated first); relations ``[CLS] … [E1] head [/E1] … [E2] tail [/E2] … [SEP]``
(markers where the entities are, so the tail's pair comes first when it comes first in the text; a long
sentence is cut to a window around both entities, as ``knowmix tokenize`` does).

Fine-tuning: AdamW (no weight decay on biases and LayerNorm), linear warm-up over the first 10% of the steps
then linear decay to 0, gradient clipping at 1.0, cross-entropy; bf16 autocast on a GPU that has it, fp32
otherwise. Everything random (the head's initial weights, dropout, the batch order) follows from the seed.

Probe (LAMA-style, no fine-tuning): the template with ``{head}`` filled in and ``{tail}`` replaced by as many
``[MASK]`` as the tail has tokens. precision@1: every masked position's top token (over the whole vocabulary)
is the tail's token there. MRR: candidates are the distinct tails of the same type (``tail_type``, or the
relation's tail role in an untyped KG) minus the other true tails of the same head and relation (filtered, as
LAMA does); each candidate is scored by the mean log-probability of its tokens in a ``[MASK]`` run of its own
length; the gold tail's rank is 1 + the number of candidates scoring strictly higher.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from knowmix.trainer.eval_model import FineTuneModel, Pretrained, mlm_model
from knowmix.trainer.eval_tasks import Example, Split, Triple, template_parts
from knowmix.trainer.eval_text import EvalTokenizer


@dataclass
class Features:
    ids: list[list[int]] = field(default_factory=list)
    types: list[list[int]] = field(default_factory=list)
    e1: list[int] = field(default_factory=list)
    e2: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class FineTuneOptions:
    epochs: int = 3
    lr: float = 3e-5
    batch_size: int = 32
    max_seq_len: int = 128
    weight_decay: float = 0.01
    warmup: float = 0.1
    progress: bool = True


def _window(n: int, lo: int, hi: int, budget: int) -> int:
    """Start of a ``budget``-token window of ``n`` tokens that holds ``[lo, hi)``, centred on it."""
    if n <= budget:
        return 0
    return max(0, min(lo - (budget - (hi - lo)) // 2, n - budget))


def encode_relation(tok: EvalTokenizer, ex: Example, max_len: int) -> tuple[list[int], int, int] | None:
    """``(ids, e1, e2)`` with the entity markers in place, or None when the entities do not fit ``max_len``."""
    sp = tok.special_ids
    spans = sorted([(ex.head[0], ex.head[1], "e1", "e1_end"), (ex.tail[0], ex.tail[1], "e2", "e2_end")])
    ids: list[int] = []
    pos: dict[str, int] = {}
    cur = 0
    for a, b, open_, close in spans:
        ids += tok.encode(ex.text[cur:a], first=cur == 0)
        pos[open_] = len(ids)
        ids.append(sp[open_])
        ids += tok.encode(ex.text[a:b], first=a == 0)
        pos[close] = len(ids)
        ids.append(sp[close])
        cur = b
    ids += tok.encode(ex.text[cur:], first=False)
    budget = max_len - 2
    lo, hi = min(pos["e1"], pos["e2"]), max(pos["e1_end"], pos["e2_end"]) + 1
    if hi - lo > budget:
        return None
    start = _window(len(ids), lo, hi, budget)
    ids = [sp["cls"], *ids[start : start + budget], sp["sep"]]
    return ids, pos["e1"] - start + 1, pos["e2"] - start + 1


def encode_split(split: Split, kind: str, tok: EvalTokenizer, max_len: int, label_index: dict[str, int]) -> Features:
    """Token ids of a split's examples; an example that cannot be encoded is added to ``split.problems``."""
    sp = tok.special_ids
    out = Features()
    kept = []
    for ex in split.examples:
        e1 = e2 = 0
        if kind == "re":
            got = encode_relation(tok, ex, max_len)
            if got is None:
                split.problems.append(f"{split.path}:{ex.line}: head and tail farther apart than"
                                      f" --max-seq-len {max_len}")
                continue
            ids, e1, e2 = got
            types = [0] * len(ids)
        elif kind == "pair":
            a, b = tok.encode(ex.text), tok.encode(ex.text_b)
            while len(a) + len(b) > max_len - 3:
                if len(a) >= len(b):
                    a.pop()
                else:
                    b.pop()
            ids = [sp["cls"], *a, sp["sep"], *b, sp["sep"]]
            types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        else:
            ids = [sp["cls"], *tok.encode(ex.text)[: max_len - 2], sp["sep"]]
            types = [0] * len(ids)
        out.ids.append(ids)
        out.types.append(types)
        out.e1.append(e1)
        out.e2.append(e2)
        out.labels.append(label_index[ex.label])
        kept.append(ex)
    split.examples = kept
    return out


def collate(feats: Features, idx, pad: int, device: torch.device) -> dict[str, torch.Tensor]:
    rows = [feats.ids[i] for i in idx]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows])
    for j, i in enumerate(idx):
        ids[j, : len(rows[j])] = torch.tensor(rows[j])
        types[j, : len(rows[j])] = torch.tensor(feats.types[i])
    batch = {"input_ids": ids, "token_type_ids": types,
             "e1": torch.tensor([feats.e1[i] for i in idx]), "e2": torch.tensor([feats.e2[i] for i in idx]),
             "labels": torch.tensor([feats.labels[i] for i in idx])}
    if int(lengths.min()) < width:
        batch["attention_mask"] = torch.arange(width)[None, :] < lengths[:, None]
    return {k: v.to(device) for k, v in batch.items()}


def autocast(device: torch.device):
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True, mininterval=1.0,
                leave=False)


def finetune(pre: Pretrained, kind: str, n_labels: int, train: Features, dev: Features, seed: int,
             opts: FineTuneOptions, device: torch.device, desc: str = "") -> list[int]:
    """Fine-tune a fresh copy of the pretrained encoder on ``train``; return its predictions on ``dev``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = FineTuneModel(pre.config, kind, n_labels)
    model.load_encoder(pre.state)
    model.to(device)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": opts.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=opts.lr)
    per_epoch = math.ceil(len(train) / opts.batch_size)
    total = max(1, per_epoch * opts.epochs)
    warm = int(total * opts.warmup)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    pad = pre.tokenizer.special_ids["pad"]
    bar = _bar(total, desc or f"{kind} seed {seed}", opts.progress)
    model.train()
    for _ in range(opts.epochs):
        order = rng.permutation(len(train))
        for k in range(0, len(order), opts.batch_size):
            batch = collate(train, order[k : k + opts.batch_size], pad, device)
            with autocast(device):
                logits = model(batch)
            loss = F.cross_entropy(logits.float(), batch["labels"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    bar.close()
    return predict(model, dev, pad, opts.batch_size, device)


@torch.no_grad()
def predict(model: FineTuneModel, feats: Features, pad: int, batch_size: int, device: torch.device) -> list[int]:
    model.eval()
    preds: list[int] = []
    for k in range(0, len(feats), batch_size):
        batch = collate(feats, range(k, min(k + batch_size, len(feats))), pad, device)
        with autocast(device):
            preds += model(batch).float().argmax(-1).tolist()
    return preds


# ---------------------------------------------------------------------------------------------- metrics


def accuracy(pred: list[int], gold: list[int]) -> float:
    return sum(p == g for p, g in zip(pred, gold)) / len(gold) if gold else 0.0


def micro_f1(pred: list[int], gold: list[int], na: int | None) -> dict[str, float]:
    """Micro precision/recall/F1 over the labels other than ``na`` (OpenNRE's and sklearn's
    ``f1_score(average="micro", labels=[every label but NA])``)."""
    pos_pred = sum(p != na for p in pred)
    pos_gold = sum(g != na for g in gold)
    hit = sum(p == g and g != na for p, g in zip(pred, gold))
    p = hit / pos_pred if pos_pred else 0.0
    r = hit / pos_gold if pos_gold else 0.0
    return {"precision": p, "recall": r, "micro_f1": 2 * p * r / (p + r) if p + r else 0.0}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


# ---------------------------------------------------------------------------------------------- probe


def probe_input(tok: EvalTokenizer, parts: list[tuple[str, str]], head: str,
                n_mask: int) -> tuple[list[int], list[int]]:
    """``[CLS] template(head, [MASK] * n_mask) [SEP]`` and the mask positions."""
    sp = tok.special_ids
    ids, masks = [sp["cls"]], []
    for i, (what, text) in enumerate(parts):
        if what == "tail":
            masks = list(range(len(ids), len(ids) + n_mask))
            ids += [sp["mask"]] * n_mask
        else:
            ids += tok.encode(head if what == "head" else text, first=i == 0)
    ids.append(sp["sep"])
    return ids, masks


@torch.no_grad()
def probe(pre: Pretrained, split: Split, templates: dict[str, str], max_len: int, batch_size: int,
          device: torch.device, progress: bool = True) -> dict:
    """precision@1 and MRR of the pretrained MLM over the triples of ``split`` that have a template."""
    tok = pre.tokenizer
    triples: list[Triple] = []
    for t in split.examples:
        if t.relation not in templates:
            split.problems.append(f"{split.path}:{t.line}: no template for relation {t.relation!r}")
        else:
            triples.append(t)
    tail_ids: dict[str, tuple[int, ...]] = {}
    for t in triples:
        if t.tail not in tail_ids:
            tail_ids[t.tail] = tuple(tok.encode(t.tail, first=False))
    by_type: dict[str, set[str]] = defaultdict(set)
    true_tails: dict[tuple[str, str], set[str]] = defaultdict(set)
    for t in triples:
        by_type[t.tail_type].add(t.tail)
        true_tails[(t.head, t.relation)].add(t.tail)
    parts = {r: template_parts(tpl) for r, tpl in templates.items()}

    # one job per (triple, candidate length): an input with that many masks scores every candidate of that length
    jobs: list[tuple[int, list[int], list[int], list[str]]] = []
    kept: list[Triple] = []
    for t in triples:
        if not tail_ids[t.tail]:
            split.problems.append(f"{split.path}:{t.line}: the tail {t.tail!r} has no tokens")
            continue
        cands = [t.tail] + sorted(c for c in by_type[t.tail_type] - true_tails[(t.head, t.relation)] if tail_ids.get(c))
        by_len: dict[int, list[str]] = defaultdict(list)
        for c in cands:
            by_len[len(tail_ids[c])].append(c)
        inputs = {n: probe_input(tok, parts[t.relation], t.head, n) for n in by_len}
        if len(inputs[len(tail_ids[t.tail])][0]) > max_len:
            split.problems.append(f"{split.path}:{t.line}: the filled template is longer than --max-seq-len {max_len}")
            continue
        idx = len(kept)
        kept.append(t)
        for n, cs in by_len.items():
            ids, masks = inputs[n]
            if len(ids) <= max_len:
                jobs.append((idx, ids, masks, cs))

    model = mlm_model(pre).to(device).eval()
    pad = tok.special_ids["pad"]
    scores: list[dict[str, float]] = [{} for _ in kept]
    hit1 = [False] * len(kept)
    bar = _bar(len(jobs), "probe", progress)
    for k in range(0, len(jobs), batch_size):
        chunk = jobs[k : k + batch_size]
        width = max(len(j[1]) for j in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.bool)
        for r, (_, row, _, _) in enumerate(chunk):
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = True
        ids, mask = ids.to(device), mask.to(device)
        with autocast(device):
            h = model.bert(ids, torch.zeros_like(ids), mask if not bool(mask.all()) else None)
        for r, (idx, _, masks, cs) in enumerate(chunk):
            logp = F.log_softmax(model.mlm_logits(h[r, masks].float()).float(), -1)  # (n, vocab)
            cand = torch.tensor([tail_ids[c] for c in cs], device=device)  # (C, n)
            s = logp.gather(1, cand.T).mean(0)  # (C,) mean log-probability of each candidate's tokens
            for c, v in zip(cs, s.tolist()):
                scores[idx][c] = v
            gold = kept[idx].tail
            if len(tail_ids[gold]) == len(masks):
                hit1[idx] = bool((logp.argmax(-1) == torch.tensor(tail_ids[gold], device=device)).all())
        bar.update(len(chunk))
    bar.close()
    rr = []
    for idx, t in enumerate(kept):
        gold = scores[idx][t.tail]
        rr.append(1.0 / (1 + sum(v > gold for c, v in scores[idx].items() if c != t.tail)))
    n = len(kept)
    return {"p_at_1": sum(hit1) / n if n else 0.0, "mrr": sum(rr) / n if n else 0.0, "triples": n,
            "candidates_mean": (sum(len(s) for s in scores) / n) if n else 0.0}
