"""Masking at load time, deterministic from (seed, step, rank, path, micro-batch).

- :func:`whole_word_mask`: BERT whole-word masking on the shards' ``word_start`` flags: about ``prob`` of the
  non-special tokens are chosen a whole word at a time; each chosen word becomes ``[MASK]`` (80%), random tokens
  (10%) or stays as it is (10%).
- :func:`assign_rounds`: multi-round MLM: each masked word gets a round 0..K-1 in a random order.
- :func:`triple_mask`: the knowledge triple-mask task: either the relation span of segment A or the entity words
  (head and tail mentions) of the sentence in segment B, 50/50, all replaced by ``[MASK]``.
"""

from __future__ import annotations

import numpy as np

PATH_GENERAL = 0
PATH_KNOWLEDGE = 1
PATH_ROUNDS = 2  # the multi-round MLM's round assignment (its own stream: standard masking is unchanged)


def rng_for(seed: int, step: int, rank: int, path: int, micro: int) -> np.random.Generator:
    """The generator for one micro-batch: a pure function of its coordinates (resume reproduces it exactly)."""
    return np.random.default_rng([int(seed), int(step), int(rank), int(path), int(micro)])


def whole_word_mask(
    ids: np.ndarray,
    word_start: np.ndarray,
    rng: np.random.Generator,
    prob: float,
    mask_id: int,
    special_ids: np.ndarray,
    random_ids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(masked_ids, positions, labels)`` for one row; ``positions`` are the predicted token indices."""
    ids = np.asarray(ids, dtype=np.int64)
    word_start = np.asarray(word_start, dtype=bool)
    special = np.isin(ids, special_ids)
    cand = ~special
    n_cand = int(cand.sum())
    if n_cand == 0:
        return ids.copy(), np.zeros(0, np.int64), np.zeros(0, np.int64)
    prev_special = np.concatenate([[True], special[:-1]])
    is_start = cand & (word_start | prev_special)
    word_id = np.cumsum(is_start) - 1
    n_words = int(is_start.sum())
    word_len = np.bincount(word_id[cand], minlength=n_words)
    target = max(1, int(round(n_cand * prob)))
    order = rng.permutation(n_words)
    cum = np.cumsum(word_len[order])
    k = max(1, int(np.searchsorted(cum, target, side="right")))
    chosen = np.zeros(n_words, dtype=bool)
    chosen[order[:k]] = True
    action = rng.random(n_words)  # per word: < .8 mask, < .9 random, else keep
    selected = cand & chosen[np.where(cand, word_id, 0)]
    positions = np.nonzero(selected)[0]
    labels = ids[positions].copy()
    out = ids.copy()
    act = action[word_id[positions]]
    to_mask = positions[act < 0.8]
    to_rand = positions[(act >= 0.8) & (act < 0.9)]
    out[to_mask] = mask_id
    if len(to_rand):
        out[to_rand] = random_ids[rng.integers(0, len(random_ids), size=len(to_rand))]
    return out, positions.astype(np.int64), labels


def triple_mask(
    ids: np.ndarray,
    relation_span: tuple[int, int] | None,
    entity_spans: list[tuple[int, int]],
    rng: np.random.Generator,
    mask_id: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask the relation span or the sentence's entity spans (50/50); spans are half-open token offsets."""
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    use_relation = rng.random() < 0.5
    spans = [relation_span] if use_relation and relation_span else [s for s in entity_spans if s]
    if not spans and relation_span:
        spans = [relation_span]
    pos = sorted({i for s, e in spans for i in range(max(0, s), min(e, n))})
    positions = np.asarray(pos, dtype=np.int64)
    labels = ids[positions].copy()
    out = ids.copy()
    out[positions] = mask_id
    return out, positions, labels


def assign_rounds(positions: np.ndarray, word_start: np.ndarray, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """The round (0..rounds-1) of each masked position: the masked words, in a random order, cut into ``rounds``
    near-equal groups; all tokens of a word share its round (a word is never half revealed)."""
    positions = np.asarray(positions, dtype=np.int64)
    if not len(positions):
        return np.zeros(0, np.int64)
    word = np.cumsum(np.asarray(word_start, dtype=bool))[positions]
    # a masked run starting without a word_start flag (e.g. after a special token) still forms its own word
    new = np.ones(len(positions), dtype=bool)
    new[1:] = (word[1:] != word[:-1]) | (positions[1:] != positions[:-1] + 1)
    word_id = np.cumsum(new) - 1
    n_words = int(word_id[-1]) + 1
    order = rng.permutation(n_words)  # order[j] = the rank of word j in the prediction order
    return (order * rounds // n_words)[word_id].astype(np.int64)
