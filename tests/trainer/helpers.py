"""Small shard directories of the documented schemas (`pretrain`, `knowledge_tokens`) and a tiny wordpiece vocab,
written through knowmix.manifest, for the trainer tests."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pyarrow as pa

from knowmix.manifest import write_shard_dir
from knowmix.schemas import KNOWLEDGE_TOKENS_SCHEMA, PRETRAIN_SCHEMA

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[E1]", "[/E1]", "[E2]", "[/E2]"]
CHARS = list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你")
VOCAB = SPECIALS + CHARS
SPECIAL_IDS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4, "e1": 5, "e1_end": 6, "e2": 7, "e2_end": 8}
CLS, SEP, E1, E1E, E2, E2E = 2, 3, 5, 6, 7, 8
RELATIONS = ["NA", "出生于", "位于", "作者"]

KTOK_SCHEMA = KNOWLEDGE_TOKENS_SCHEMA


def write_vocab(path: str) -> dict:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(VOCAB) + "\n")
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return {"kind": "wordpiece", "file": "vocab.txt", "sha256": sha, "vocab_size": len(VOCAB),
            "special_ids": dict(SPECIAL_IDS), "lowercase": False}


def _words(rng, n_words, lexicon):
    ids, starts = [], []
    for _ in range(n_words):
        w = lexicon[rng.integers(len(lexicon))]
        ids += w
        starts += [True] + [False] * (len(w) - 1)
    return ids, starts


def make_lexicon(seed=0, size=12):
    rng = np.random.default_rng(seed)
    base = len(SPECIALS)
    return [list(base + rng.integers(0, len(CHARS), size=rng.integers(1, 4))) for _ in range(size)]


def pretrain_table(n_rows: int, seq_len: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    lex = make_lexicon()
    rows = {"id": [], "input_ids": [], "word_start": [], "source_kinds": []}
    for r in range(n_rows):
        ids, ws = [CLS], [True]
        while len(ids) < seq_len - 1:
            w, s = _words(rng, 1, lex)
            ids += w
            ws += s
        ids, ws = ids[: seq_len - 1] + [SEP], ws[: seq_len - 1] + [True]
        if rng.random() < 0.3:  # some shorter rows (padding in a batch)
            cut = int(rng.integers(seq_len // 2, seq_len))
            ids, ws = ids[: cut - 1] + [SEP], ws[: cut - 1] + [True]
        rows["id"].append(f"doc{r:05d}:0")
        rows["input_ids"].append(ids)
        rows["word_start"].append(ws)
        rows["source_kinds"].append(["web"])
    return pa.table(rows, schema=PRETRAIN_SCHEMA)


def knowledge_table(n_rows: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    lex = make_lexicon()
    out = {f.name: [] for f in KTOK_SCHEMA}
    for i in range(n_rows):
        task = ("relation", "substitution", "triple_mask")[i % 3]
        row = {f.name: None for f in KTOK_SCHEMA}
        row["id"], row["task"] = f"k{i}", task
        head, _ = _words(rng, 1, lex)
        tail, _ = _words(rng, 1, lex)
        mid, _ = _words(rng, 2, lex)
        rel = int(rng.integers(0, len(RELATIONS)))
        if task == "relation":
            ids = [CLS, E1] + head + [E1E] + mid + [E2] + tail + [E2E, SEP]
            e1, e2 = 1, 2 + len(head) + 1 + len(mid)
            row.update(e1_pos=e1, e2_pos=e2, head_span={"start": 2, "end": 2 + len(head)},
                       tail_span={"start": e2 + 1, "end": e2 + 1 + len(tail)}, relations=[rel])
            tt = [0] * len(ids)
        elif task == "substitution":
            ids = [CLS] + head + mid + tail + [SEP]
            row.update(mention_spans=[{"start": 1, "end": 1 + len(head)},
                                      {"start": 1 + len(head) + len(mid), "end": 1 + len(head) + len(mid) + len(tail)}],
                       mention_labels=[int(rng.integers(0, 2)), int(rng.integers(0, 2))])
            tt = [0] * len(ids)
        else:
            rel_tok = [len(SPECIALS) + rel]
            a = [CLS] + head + [SEP] + rel_tok + [SEP] + tail + [SEP]
            b = head + mid + tail + [SEP]
            ids = a + b
            tt = [0] * len(a) + [1] * len(b)
            h0 = len(a)
            row.update(triple_head_span={"start": 1, "end": 1 + len(head)},
                       triple_relation_span={"start": 2 + len(head), "end": 3 + len(head)},
                       triple_tail_span={"start": 4 + len(head), "end": 4 + len(head) + len(tail)},
                       head_span={"start": h0, "end": h0 + len(head)},
                       tail_span={"start": h0 + len(head) + len(mid), "end": h0 + len(head) + len(mid) + len(tail)})
        row["input_ids"], row["token_type_ids"], row["word_start"] = ids, tt, [True] * len(ids)
        for k, v in row.items():
            out[k].append(v)
    return pa.table(out, schema=KTOK_SCHEMA)


def make_shards(root: str, n_pretrain: int = 64, n_knowledge: int = 48, seq_len: int = 32, n_shards: int = 2,
                knowledge: bool = True) -> tuple[str, str]:
    """Write ``root/pretrain`` and ``root/ktok`` (with vocab.txt beside each manifest); return their paths."""
    pre, ktok = os.path.join(root, "pretrain"), os.path.join(root, "ktok")
    tok = write_vocab(os.path.join(pre, "vocab.txt"))
    table = pretrain_table(n_pretrain, seq_len)
    parts = [table.slice(i * len(table) // n_shards, len(table) // n_shards) for i in range(n_shards)]
    write_shard_dir(pre, "pretrain", parts, extra={"tokenizer": tok})
    if knowledge:
        write_vocab(os.path.join(ktok, "vocab.txt"))
        kt = knowledge_table(n_knowledge)
        kparts = [kt.slice(i * len(kt) // n_shards, len(kt) // n_shards) for i in range(n_shards)]
        write_shard_dir(ktok, "knowledge_tokens", kparts, extra={"tokenizer": tok})
        with open(os.path.join(ktok, "relations.json"), "w", encoding="utf-8") as fh:
            json.dump(RELATIONS, fh, ensure_ascii=False)
    return pre, ktok


def tiny_overrides(pre: str, ktok: str, out: str, **extra) -> list[str]:
    """Config overrides for a tiny CPU run."""
    base = {
        "model.size": '"custom"', "model.hidden_size": 32, "model.layers": 2, "model.heads": 2,
        "model.intermediate_size": 64, "model.max_position_embeddings": 64,
        "data.pretrain": f'"{pre}"', "data.knowledge": f'"{ktok}"', "data.seq_len": 32,
        "train.output_dir": f'"{out}"', "train.max_steps": 4, "train.micro_batch_size": 4, "train.precision": '"fp32"',
        "train.zero": 0, "train.log_every": 1, "train.device": '"cpu"', "train.tensorboard": "false",
        "train.progress": "false", "optim.lr": 1e-3, "optim.warmup_steps": 1, "checkpoint.interval": 0,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def inf_gradient_at(*steps: int):
    """An ``after_backward`` callback for ``trainer.loop.train``: at the given step indexes (0-based) it puts an
    inf into the first gradient (this rank's shard of it), as an fp16 overflow would."""
    import torch

    def hook(step: int, params) -> None:
        if step in steps:
            with torch.no_grad():
                g = next(p.grad for p in params if p.grad is not None)
                local = g.to_local() if hasattr(g, "to_local") else g
                if local.numel():
                    local.view(-1)[0] = float("inf")

    return hook


def train_tiny(overrides: list[str], **kwargs) -> dict:
    """Run the trainer in this process on ``overrides`` (e.g. :func:`tiny_overrides`), quietly; ``kwargs`` go to
    ``trainer.loop.train`` (``after_backward=inf_gradient_at(...)``)."""
    from knowmix.trainer.config import load_config
    from knowmix.trainer.loop import train

    return train(load_config(None, overrides), log=lambda *a: None, **kwargs)
