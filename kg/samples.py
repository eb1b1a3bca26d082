"""The three knowledge tasks as pure functions of a linked sentence (rows of ``knowmix.schemas.KNOWLEDGE_SCHEMA``).

Row ids are ``{sentence_id}:{task}:{k}`` with ``sentence_id = {doc_id}#{sentence index}``; every random choice
comes from a generator seeded by ``(seed, sentence_id)``, so output does not depend on order or runner.
Spans are half-open character offsets into ``text`` with ``text[start:end] == name``.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from typing import Callable, Iterable, Mapping, Sequence

from knowmix.kg.index import EntityIndex
from knowmix.schemas import KNOWLEDGE_TASKS
from knowmix.kg.link import Mention

NA = "NA"
TASKS = KNOWLEDGE_TASKS

RelationLookup = Callable[[str, str], Sequence[str]]


def sentence_id(doc_id: str, index: int) -> str:
    return f"{doc_id}#{index:05d}"


def rng_for(seed: int, key: str) -> random.Random:
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def na_score(seed: int, sample_id: str) -> int:
    """A deterministic pseudo-random 64-bit score; the NA samples with the lowest scores are kept."""
    return int.from_bytes(hashlib.blake2b(f"na\0{seed}\0{sample_id}".encode(), digest_size=8).digest(), "big")


def na_quota(n_positive: int, n_na: int, na_ratio: float) -> int:
    """The most NA samples that keep NA <= na_ratio of the task's output: K <= r (P + K)."""
    if na_ratio >= 1:
        return n_na
    if na_ratio <= 0:
        return 0
    k = int(n_positive * na_ratio / (1.0 - na_ratio))
    while k > 0 and k > na_ratio * (n_positive + k):  # float safety
        k -= 1
    return min(n_na, k)


def first_mentions(mentions: Iterable[Mention]) -> list[Mention]:
    """The first mention of each distinct entity, in order of appearance."""
    seen: dict[str, Mention] = {}
    for m in sorted(mentions, key=lambda m: (m.start, m.end)):
        seen.setdefault(m.entity_id, m)
    return list(seen.values())


def _span(m: Mention, index: EntityIndex) -> dict:
    e = index.get(m.entity_id)
    return {"name": m.surface, "entity_id": m.entity_id, "type": e.type, "start": m.start, "end": m.end,
            "type_source": e.type_source or None}


def _row(sid: str, task: str, k: int, doc_id: str, text: str, **cols) -> dict:
    row = {"id": f"{sid}:{task}:{k:03d}", "task": task, "doc_id": doc_id, "text": text,
           "head": None, "tail": None, "relations": None, "mentions": None, "triple": None}
    row.update(cols)
    return row


# ---------------------------------------------------------------------------------------------- relation


def relation_samples(
    doc_id: str, sid: str, text: str, mentions: Sequence[Mention], index: EntityIndex, relations: RelationLookup
) -> list[dict]:
    """One sample per ordered pair of distinct linked entities; ``relations`` = every KG relation h -> t, or NA.
    NA down-sampling is global (``select_na``), not done here."""
    ents = first_mentions(mentions)
    rows = []
    k = 0
    for h in ents:
        for t in ents:
            if h.entity_id == t.entity_id:
                continue
            rels = sorted(set(relations(h.entity_id, t.entity_id))) or [NA]
            rows.append(_row(sid, "relation", k, doc_id, text, head=_span(h, index), tail=_span(t, index), relations=rels))
            k += 1
    return rows


def is_na(row: Mapping) -> bool:
    return row["task"] == "relation" and row["relations"] == [NA]


def select_na(rows: Sequence[dict], na_ratio: float, seed: int) -> tuple[list[dict], list[dict]]:
    """In-memory NA down-sampling: (kept rows, dropped NA rows); the pipeline does the same at scale."""
    na = [r for r in rows if is_na(r)]
    positive = sum(1 for r in rows if r["task"] == "relation" and not is_na(r))
    quota = na_quota(positive, len(na), na_ratio)
    keep_ids = {r["id"] for r in sorted(na, key=lambda r: (na_score(seed, r["id"]), r["id"]))[:quota]}
    kept = [r for r in rows if not is_na(r) or r["id"] in keep_ids]
    dropped = [r for r in na if r["id"] not in keep_ids]
    return kept, dropped


# ---------------------------------------------------------------------------------------------- substitution


def substitution_pool(index: EntityIndex, entity_id: str) -> tuple[str, str] | None:
    """The pool an entity is replaced from: its type *and* the rule that gave it (a declared ``county`` and a
    ``county`` inferred by role majority are different pools; an inferred role signature is its own pool), so a
    replacement never comes from another domain than the original's."""
    e = index.get(entity_id)
    return None if e.type is None else (e.type, e.type_source)


class SubstitutionSampler:
    """Draws a replacement entity from the original's pool (``substitution_pool``: same type, same rule) with
    probability proportional to (frequency + smoothing).

    ``frequencies``: entity id -> how often it was linked in the corpus (missing = 0); with smoothing 1 every
    entity of the pool can be drawn, the frequent ones more often.
    """

    def __init__(self, index: EntityIndex, frequencies: Mapping[str, int] | None = None, smoothing: float = 1.0,
                 probability: float = 0.5, tries: int = 16):
        self.index = index
        self.probability = probability
        self.tries = tries
        frequencies = frequencies or {}
        by_type: dict[tuple[str, str], list[str]] = {}
        for eid in index.entities:
            pool = substitution_pool(index, eid)
            if pool is not None:
                by_type.setdefault(pool, []).append(eid)
        self._ids: dict[tuple[str, str], list[str]] = {}
        self._cum: dict[tuple[str, str], list[float]] = {}
        for typ, ids in by_type.items():
            ids.sort()
            total = 0.0
            cum = []
            for eid in ids:
                total += float(frequencies.get(eid, 0)) + smoothing
                cum.append(total)
            if total > 0:
                self._ids[typ] = ids
                self._cum[typ] = cum

    def draw(self, pool: tuple[str, str], rng: random.Random) -> str | None:
        cum = self._cum.get(pool)
        if not cum:
            return None
        i = bisect.bisect_right(cum, rng.random() * cum[-1])
        return self._ids[pool][min(i, len(cum) - 1)]

    def acceptable(self, candidate: str, original: str, others: Iterable[str]) -> bool:
        ix = self.index
        if candidate == original or ix.is_alias_of(candidate, original):
            return False
        return not any(candidate != o and ix.connected(candidate, o) for o in others)

    def sample(self, doc_id: str, sid: str, text: str, mentions: Sequence[Mention], seed: int) -> dict | None:
        if not mentions:
            return None
        rng = rng_for(seed, sid)
        ms = sorted(mentions, key=lambda m: (m.start, m.end))
        in_sentence = [m.entity_id for m in ms]
        chosen: list[str] = []
        pieces: list[str] = []
        out_mentions = []
        pos = 0
        new_len = 0
        decided: dict[str, str | None] = {}  # one decision per entity: all its mentions follow it
        for m in ms:
            original = self.index.get(m.entity_id)
            typ = original.type
            pool = substitution_pool(self.index, m.entity_id)
            if m.entity_id in decided:
                replacement = decided[m.entity_id]
            else:
                replacement = None
                if pool is not None and rng.random() < self.probability:
                    others = [e for e in in_sentence if e != m.entity_id] + chosen
                    for _ in range(self.tries):
                        cand = self.draw(pool, rng)
                        if cand is None:
                            break
                        if cand not in chosen and self.acceptable(cand, m.entity_id, others):
                            replacement = cand
                            break
                decided[m.entity_id] = replacement
            gap = text[pos : m.start]
            pieces.append(gap)
            new_len += len(gap)
            rep = None if replacement is None else self.index.get(replacement)
            if rep is None:
                word = m.surface
            else:
                word = rep.name
                if replacement not in chosen:
                    chosen.append(replacement)
            start = new_len
            pieces.append(word)
            new_len += len(word)
            out_mentions.append({"start": start, "end": new_len, "original": m.surface,
                                 "replacement": None if rep is None else word, "type": typ,
                                 "entity_id": m.entity_id, "type_source": original.type_source or None,
                                 "replacement_id": replacement, "replacement_type": None if rep is None else rep.type})
            pos = m.end
        pieces.append(text[pos:])
        return _row(sid, "substitution", 0, doc_id, "".join(pieces), mentions=out_mentions)


# ---------------------------------------------------------------------------------------------- triple mask


def triple_mask_samples(
    doc_id: str, sid: str, text: str, mentions: Sequence[Mention], index: EntityIndex, relations: RelationLookup
) -> list[dict]:
    """One sample per KG triple (h, r, t) whose head and tail are both linked in the sentence. ``triple`` holds
    the canonical names; ``head``/``tail`` the first mentions (their surface may be an alias)."""
    ents = first_mentions(mentions)
    rows = []
    k = 0
    for h in ents:
        for t in ents:
            if h.entity_id == t.entity_id:
                continue
            for r in sorted(set(relations(h.entity_id, t.entity_id))):
                triple = {"head": index.get(h.entity_id).name, "relation": r, "tail": index.get(t.entity_id).name}
                rows.append(_row(sid, "triple_mask", k, doc_id, text, head=_span(h, index), tail=_span(t, index), triple=triple))
                k += 1
    return rows


# ---------------------------------------------------------------------------------------------- one sentence


def sentence_samples(
    doc_id: str, sid: str, text: str, mentions: Sequence[Mention], index: EntityIndex, relations: RelationLookup,
    tasks: Sequence[str], sampler: SubstitutionSampler | None, seed: int,
) -> list[dict]:
    rows: list[dict] = []
    if "relation" in tasks:
        rows += relation_samples(doc_id, sid, text, mentions, index, relations)
    if "substitution" in tasks and sampler is not None:
        row = sampler.sample(doc_id, sid, text, mentions, seed)
        if row is not None:
            rows.append(row)
    if "triple_mask" in tasks:
        rows += triple_mask_samples(doc_id, sid, text, mentions, index, relations)
    return rows


# ---------------------------------------------------------------------------------------------- accounting

PENDING_NA = "pending_na"  # only NA relation samples: decided by the global NA selection


def _no_sample_reason(n_mentions: int, n_entities: int, ambiguous_dropped: int, task: str | None) -> str:
    if n_mentions == 0:
        return "ambiguous" if ambiguous_dropped else "no_entity"
    if n_entities < 2:
        return "one_entity"
    return "no_triple"  # >= 2 entities and still nothing: only triple_mask asked for, and no triple links them


def sentence_outcomes(mentions: Sequence[Mention], ambiguous_dropped: int, rows: Sequence[dict],
                      tasks: Sequence[str]) -> dict[str, str | None]:
    """The fate of one sentence, overall (key ``""``) and per task: None = output (at least one sample),
    ``PENDING_NA`` = only NA samples (output if the NA selection keeps one, else ``na_sampled_out``),
    else the drop reason."""
    n_ent = len({m.entity_id for m in mentions})
    out: dict[str, str | None] = {}
    for task in ("", *tasks):
        mine = [r for r in rows if not task or r["task"] == task]
        if any(not is_na(r) for r in mine):
            out[task] = None
        elif mine:
            out[task] = PENDING_NA
        else:
            out[task] = _no_sample_reason(len(mentions), n_ent, ambiguous_dropped, task or None)
    return out
