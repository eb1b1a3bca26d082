"""Shard datasets for the two paths, read through the shard contract (``knowmix.manifest``) only.

- Shards are memory-mapped Arrow IPC files; their paths are confined to the manifest's directory and their
  checksums verified at start (``trainer/integrity.py``; ``--no-verify`` compares sizes only).
- Each rank reads its own shards (``shards[rank::world]``); with fewer shards than ranks, the rows are split
  instead (``row % world == rank``), so no row is read by two ranks.
- A :class:`Stream` walks its rows epoch by epoch (shard order shuffled, rows shuffled inside a shard, so only a
  few shards are decoded at once); its position (epoch, cursor) is part of the checkpoint.
- Masking happens here, at load time, deterministic from (seed, step, rank, path, micro-batch).
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import pyarrow as pa
import torch

from knowmix.errors import UserError
from knowmix.manifest import ContractError, ShardDir, open_shard_dir
from knowmix.relations import read_relations_json
from knowmix.schemas import KNOWLEDGE_TASKS
from knowmix.tokenizer_entry import TokenizerInfo
from knowmix.trainer.integrity import check_shard_dir
from knowmix.trainer.masking import PATH_GENERAL, PATH_KNOWLEDGE, PATH_ROUNDS, assign_rounds, rng_for, triple_mask, whole_word_mask


# ---------------------------------------------------------------------------------------------- opening


def open_dir(path: str, kind: str, key: str, verify: bool = True) -> ShardDir:
    """Open a shard directory through the shard contract: manifest read, every shard path confined to the
    directory, then (``verify``) each shard's sha256 and row count checked; without it, sizes only."""
    if not path or not os.path.isdir(path):
        raise UserError(f"{key} = {path!r}: no such shard directory (run `knowmix tokenize` first, or fix {key})")
    try:
        shard_dir = open_shard_dir(path, kind=kind, verify=False)  # the manifest only: paths are checked first
    except ContractError as exc:
        raise UserError(f"{key}: {exc}") from None
    check_shard_dir(shard_dir, key, verify)
    return shard_dir


# ---------------------------------------------------------------------------------------------- rows


class ShardSet:
    """This rank's rows of a shard directory; tables are memory-mapped lazily, a few kept open (LRU)."""

    def __init__(self, shard_dir: ShardDir, rank: int, world: int, cache: int = 4):
        self.shard_dir = shard_dir
        n = len(shard_dir.manifest["shards"])
        rows = [int(s["rows"]) for s in shard_dir.manifest["shards"]]
        self.local: dict[int, np.ndarray] = {}
        if n >= world:
            for i in range(rank, n, world):
                self.local[i] = np.arange(rows[i], dtype=np.int64)
        else:  # fewer shards than ranks: split rows by global index
            offset = 0
            for i in range(n):
                g = np.arange(offset, offset + rows[i], dtype=np.int64)
                self.local[i] = (g[g % world == rank] - offset)
                offset += rows[i]
        self._cache: OrderedDict[int, pa.Table] = OrderedDict()
        self._cache_size = cache

    @property
    def num_rows(self) -> int:
        return int(sum(len(v) for v in self.local.values()))

    def table(self, shard: int) -> pa.Table:
        t = self._cache.get(shard)
        if t is None:
            t = self.shard_dir.open_shard(shard)
            self._cache[shard] = t
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(shard)
        return t

    def list_columns(self, refs: list[tuple[int, int]], columns: list[str]) -> dict[str, list[np.ndarray]]:
        """Fetch list columns of rows ``[(shard, row), ...]`` as numpy arrays, in order (no Python lists)."""
        out: dict[str, list] = {c: [None] * len(refs) for c in columns}
        by_shard: dict[int, list[int]] = {}
        for k, (s, _) in enumerate(refs):
            by_shard.setdefault(s, []).append(k)
        for s, ks in by_shard.items():
            t = self.table(s)
            idx = pa.array([refs[k][1] for k in ks], pa.int64())
            for c in columns:
                arr = t.column(c).take(idx).combine_chunks()
                offs = arr.offsets.to_numpy()
                vals = arr.values.to_numpy(zero_copy_only=False)
                for j, k in enumerate(ks):
                    out[c][k] = vals[offs[j] : offs[j + 1]]
        return out

    def rows(self, refs: list[tuple[int, int]], columns: list[str]) -> list[dict]:
        """Fetch rows ``[(shard, row), ...]`` as dicts of Python values, in order."""
        out: list[dict | None] = [None] * len(refs)
        by_shard: dict[int, list[int]] = {}
        for k, (s, _) in enumerate(refs):
            by_shard.setdefault(s, []).append(k)
        for s, ks in by_shard.items():
            t = self.table(s)
            cols = [c for c in columns if c in t.column_names]
            sub = t.select(cols).take(pa.array([refs[k][1] for k in ks], pa.int64())).to_pylist()
            for k, row in zip(ks, sub):
                out[k] = row
        return out  # type: ignore[return-value]


class Stream:
    """An endless walk over a subset of a ShardSet's rows, epoch by epoch; ``state`` = (epoch, cursor)."""

    def __init__(self, shards: ShardSet, rows_by_shard: dict[int, np.ndarray], seed: int, stream_id: int, rank: int):
        self.shards = shards
        self.rows_by_shard = {s: r for s, r in rows_by_shard.items() if len(r)}
        self.seed, self.stream_id, self.rank = seed, stream_id, rank
        self.epoch, self.cursor = 0, 0
        self._order: np.ndarray | None = None
        self._order_epoch = -1

    def __len__(self) -> int:
        return int(sum(len(r) for r in self.rows_by_shard.values()))

    def _epoch_order(self) -> np.ndarray:
        if self._order_epoch != self.epoch:
            rng = np.random.default_rng([self.seed, self.stream_id, self.rank, self.epoch])
            shard_ids = sorted(self.rows_by_shard)
            parts = []
            for s in rng.permutation(len(shard_ids)):
                sid = shard_ids[s]
                rows = self.rows_by_shard[sid]
                parts.append(np.stack([np.full(len(rows), sid, np.int64), rng.permutation(rows)], 1))
            self._order = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
            self._order_epoch = self.epoch
        return self._order  # type: ignore[return-value]

    def take(self, n: int) -> list[tuple[int, int]]:
        if len(self) == 0:
            raise RuntimeError("empty stream")
        refs = []
        while len(refs) < n:
            order = self._epoch_order()
            step = min(n - len(refs), len(order) - self.cursor)
            refs += [(int(a), int(b)) for a, b in order[self.cursor : self.cursor + step]]
            self.cursor += step
            if self.cursor >= len(order):
                self.epoch, self.cursor = self.epoch + 1, 0
        return refs

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])


# ---------------------------------------------------------------------------------------------- batches


def _pad(rows, pad: int, dtype=torch.long) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return torch.from_numpy(out).to(dtype)


def _finish(ids: list[np.ndarray], types: list[list[int]] | None, pad: int) -> dict[str, torch.Tensor]:
    input_ids = _pad(ids, pad)
    lengths = torch.tensor([len(x) for x in ids])
    batch = {"input_ids": input_ids}
    if int(lengths.min()) < input_ids.shape[1]:  # only padded batches carry a mask (none: flash attention)
        batch["attention_mask"] = torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]
    batch["token_type_ids"] = _pad(types, 0) if types is not None else torch.zeros_like(input_ids)
    batch["n_tokens"] = torch.tensor(int(lengths.sum()))
    return batch


class Vocab:
    def __init__(self, tok: TokenizerInfo):
        self.special = tok.special_ids
        self.pad = tok.special_ids["pad"]
        self.mask = tok.special_ids["mask"]
        self.special_arr = np.array(sorted(set(tok.special_ids.values())), dtype=np.int64)
        self.random_ids = np.setdiff1d(np.arange(tok.vocab_size, dtype=np.int64), self.special_arr)


class GeneralPath:
    """Pretrain shards -> whole-word-masked MLM micro-batches.

    ``rounds`` > 1 (``[mlm] mode = "multiround"``): the masked words of each row are split into ``rounds`` groups
    in a random order; the micro-batch holds every row once per round (round-major: rows ``k*n .. k*n+n-1`` are
    round k), round k's copy has the groups before k restored to their true tokens (the rest stays masked) and
    predicts group k. Every masked token is predicted exactly once, so the counts (and the loss normaliser) are
    those of standard MLM; round 0's rows are the standard masked rows. ``mlm_round`` gives each prediction's
    round; ``n_tokens`` counts each data row once."""

    COLUMNS = ["input_ids", "word_start"]

    def __init__(self, shard_dir: ShardDir, vocab: Vocab, seq_len: int, prob: float, seed: int, rank: int, world: int,
                 rounds: int = 1):
        self.shards = ShardSet(shard_dir, rank, world)
        self.stream = Stream(self.shards, self.shards.local, seed, stream_id=0, rank=rank)
        self.vocab, self.seq_len, self.prob, self.seed, self.rank = vocab, seq_len, prob, seed, rank
        self.rounds = max(1, int(rounds))
        if len(self.stream) == 0:
            raise UserError(f"{shard_dir.root}: no pretrain rows for rank {rank} of {world}")

    def batch(self, n: int, step: int, micro: int) -> dict[str, torch.Tensor]:
        cols = self.shards.list_columns(self.stream.take(n), self.COLUMNS)
        rng = rng_for(self.seed, step, self.rank, PATH_GENERAL, micro)
        ids_out, pos, labels, groups = [], [], [], []
        rrng = rng_for(self.seed, step, self.rank, PATH_ROUNDS, micro) if self.rounds > 1 else None
        for ids, ws in zip(cols["input_ids"], cols["word_start"]):
            ids = ids[: self.seq_len].astype(np.int64)
            ws = ws[: self.seq_len].astype(bool)
            m, p, lab = whole_word_mask(ids, ws, rng, self.prob, self.vocab.mask, self.vocab.special_arr, self.vocab.random_ids)
            ids_out.append(m)
            pos.append(p)
            labels.append(lab)
            if rrng is not None:
                groups.append(assign_rounds(p, ws, self.rounds, rrng))
        if rrng is None:
            batch = _finish(ids_out, None, self.vocab.pad)
            width = batch["input_ids"].shape[1]
            batch["mlm_pos"] = torch.from_numpy(np.concatenate([p + i * width for i, p in enumerate(pos)]))
            batch["mlm_labels"] = torch.from_numpy(np.concatenate(labels))
            batch["mlm_task"] = torch.zeros(len(batch["mlm_pos"]), dtype=torch.long)
            return batch
        rows, r_pos, r_lab, r_round = [], [], [], []
        for k in range(self.rounds):
            for i, (m, p, lab, g) in enumerate(zip(ids_out, pos, labels, groups)):
                row = m.copy()
                seen = g < k
                row[p[seen]] = lab[seen]  # earlier rounds' tokens are revealed (teacher forcing)
                rows.append(row)
                now = g == k
                r_pos.append((k * n + i, p[now]))
                r_lab.append(lab[now])
                r_round.append(np.full(int(now.sum()), k, np.int64))
        batch = _finish(rows, None, self.vocab.pad)
        batch["n_tokens"] = torch.tensor(int(sum(len(x) for x in ids_out)))  # data tokens, each row once
        width = batch["input_ids"].shape[1]
        batch["mlm_pos"] = torch.from_numpy(np.concatenate([p + r * width for r, p in r_pos]))
        batch["mlm_labels"] = torch.from_numpy(np.concatenate(r_lab))
        batch["mlm_task"] = torch.zeros(len(batch["mlm_pos"]), dtype=torch.long)
        batch["mlm_round"] = torch.from_numpy(np.concatenate(r_round))
        return batch


class KnowledgePath:
    """knowledge_tokens shards -> micro-batches mixing the three tasks by the ``[tasks]`` weights."""

    COLUMNS = [
        "task", "input_ids", "token_type_ids", "e1_pos", "e2_pos", "relations", "mention_spans", "mention_labels",
        "triple_relation_span", "head_span", "tail_span",
    ]

    def __init__(self, shard_dir: ShardDir, vocab: Vocab, num_relations: int, weights: dict[str, float],
                 seq_len: int, seed: int, rank: int, world: int):
        self.shards = ShardSet(shard_dir, rank, world)
        self.vocab, self.num_relations, self.seq_len, self.seed, self.rank = vocab, num_relations, seq_len, seed, rank
        by_task: dict[str, dict[int, np.ndarray]] = {t: {} for t in KNOWLEDGE_TASKS}
        for shard, local in self.shards.local.items():
            tasks = np.asarray(self.shards.table(shard).column("task").to_pylist(), dtype=object)[local]
            for t in KNOWLEDGE_TASKS:
                by_task[t][shard] = local[tasks == t]
        self.streams = {t: Stream(self.shards, by_task[t], seed, stream_id=1 + i, rank=rank) for i, t in enumerate(KNOWLEDGE_TASKS)}
        self.tasks = [t for t in KNOWLEDGE_TASKS if weights.get(t, 0) > 0 and len(self.streams[t])]
        if not self.tasks:
            raise UserError(f"{shard_dir.root}: no knowledge rows of a task with weight > 0 for rank {rank} of {world}")
        w = np.array([weights[t] for t in self.tasks], dtype=np.float64)
        self.probs = w / w.sum()

    def batch(self, n: int, step: int, micro: int) -> dict[str, torch.Tensor]:
        rng = rng_for(self.seed, step, self.rank, PATH_KNOWLEDGE, micro)
        picks = rng.choice(len(self.tasks), size=n, p=self.probs)
        refs = []
        for k in range(len(self.tasks)):
            count = int((picks == k).sum())
            if count:
                refs += self.streams[self.tasks[k]].take(count)
        rows = self.shards.rows(refs, self.COLUMNS)
        L = self.seq_len
        ids_out, types = [], []
        mlm_pos, mlm_labels = [], []
        rel_row, rel_e1, rel_e2, rel_target = [], [], [], []
        sub_row, sub_start, sub_end, sub_label = [], [], [], []
        for i, r in enumerate(rows):
            ids = np.asarray(r["input_ids"][:L], np.int64)
            n_tok = len(ids)
            tt = list(r.get("token_type_ids") or [0] * n_tok)[:L]
            task = r["task"]
            if task == "relation":
                e1, e2 = r.get("e1_pos"), r.get("e2_pos")
                if e1 is not None and e2 is not None and e1 < n_tok and e2 < n_tok:
                    target = np.zeros(self.num_relations, np.float32)
                    gold = [g for g in (r.get("relations") or [0]) if 0 <= g < self.num_relations] or [0]
                    target[gold] = 1.0 / len(gold)
                    rel_row.append(i); rel_e1.append(e1); rel_e2.append(e2); rel_target.append(target)
            elif task == "substitution":
                for span, lab in zip(r.get("mention_spans") or [], r.get("mention_labels") or []):
                    if span and 0 <= span["start"] < span["end"] <= n_tok:
                        sub_row.append(i); sub_start.append(span["start"]); sub_end.append(span["end"] - 1)
                        sub_label.append(int(lab))
            elif task == "triple_mask":
                rs = r.get("triple_relation_span")
                rel_span = (rs["start"], rs["end"]) if rs else None
                ents = [(s["start"], s["end"]) for s in (r.get("head_span"), r.get("tail_span")) if s]
                ids, p, lab = triple_mask(ids, rel_span, ents, rng, self.vocab.mask)
                mlm_pos.append((i, p)); mlm_labels.append(lab)
            ids_out.append(ids)
            types.append(tt)
        batch = _finish(ids_out, types, self.vocab.pad)
        width = batch["input_ids"].shape[1]
        pos = [p + i * width for i, p in mlm_pos]
        batch["mlm_pos"] = torch.from_numpy(np.concatenate(pos)) if pos else torch.zeros(0, dtype=torch.long)
        batch["mlm_labels"] = torch.from_numpy(np.concatenate(mlm_labels)) if pos else torch.zeros(0, dtype=torch.long)
        batch["mlm_task"] = torch.ones(len(batch["mlm_pos"]), dtype=torch.long)
        batch["rel_row"] = torch.tensor(rel_row, dtype=torch.long)
        batch["rel_e1"] = torch.tensor(rel_e1, dtype=torch.long)
        batch["rel_e2"] = torch.tensor(rel_e2, dtype=torch.long)
        batch["rel_target"] = torch.from_numpy(np.stack(rel_target)) if rel_target else torch.zeros(0, self.num_relations)
        batch["sub_row"] = torch.tensor(sub_row, dtype=torch.long)
        batch["sub_start"] = torch.tensor(sub_start, dtype=torch.long)
        batch["sub_end"] = torch.tensor(sub_end, dtype=torch.long)
        batch["sub_label"] = torch.tensor(sub_label, dtype=torch.long)
        return batch

    def state_dict(self) -> dict:
        return {t: s.state_dict() for t, s in self.streams.items()}

    def load_state_dict(self, state: dict) -> None:
        for t, s in self.streams.items():
            if t in state:
                s.load_state_dict(state[t])


def batch_counts(batch: dict[str, torch.Tensor]) -> dict[str, int]:
    """Predicted items per task in a micro-batch (the loss normalisers)."""
    task = batch.get("mlm_task", torch.zeros(0))
    return {
        "mlm": int((task == 0).sum()),
        "triple_mask": int((task == 1).sum()),
        "relation": int(len(batch.get("rel_row", ()))),
        "substitution": int(len(batch.get("sub_row", ()))),
    }


def load_relations(shard_dir: ShardDir) -> list[str]:
    """The relation names of a knowledge_tokens directory (its relations.json; index = id, NA = 0)."""
    return read_relations_json(shard_dir.root)
