"""One knowledge row (``knowledge`` shards, from ``kg-samples``) -> one ``knowledge_tokens`` row, per task:

- ``relation``: ``[CLS] … [E1] head [/E1] … [E2] tail [/E2] … [SEP]``, the marker positions and the spans;
- ``substitution``: ``[CLS] text [SEP]`` with each mention's token span and label (replaced or not);
- ``triple_mask``: ``[CLS] head [SEP] relation [SEP] tail [SEP]`` (segment 0) then ``text [SEP]`` (segment 1).

A text longer than ``max_seq_len`` is cut to a window around its spans, at word starts where it can be. A
malformed row raises :class:`BadRow` (a dead letter), one that cannot become a sequence :class:`Dropped`.
"""

from __future__ import annotations

import numpy as np

from knowmix.kg.segmenter import Segmenter
from knowmix.schemas import KNOWLEDGE_TASKS  # the one definition
from knowmix.pipelines.subword import BaseTokenizer
from knowmix.pipelines.word_boundaries import encode_with_words, token_span


class Dropped(Exception):
    """A well-formed knowledge row that cannot be turned into a sequence; ``reason`` goes to counts.dropped."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class BadRow(Exception):
    """A malformed knowledge row (e.g. a span that does not match its name): a dead letter."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


_NULL_COLUMNS = (
    "e1_pos", "e2_pos", "head_span", "tail_span", "relations", "mention_spans", "mention_labels",
    "triple_head_span", "triple_relation_span", "triple_tail_span",
)


def _entity_span(text: str, ent: dict | None, what: str) -> tuple[int, int]:
    if not ent:
        raise BadRow(f"missing_{what}")
    try:
        a, b = int(ent["start"]), int(ent["end"])
    except (KeyError, TypeError, ValueError):
        raise BadRow(f"bad_{what}_span") from None
    if not (0 <= a < b <= len(text)) or text[a:b] != ent.get("name"):
        raise BadRow(f"bad_{what}_span")
    return a, b


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _window(n: int, lo: int, hi: int, budget: int, ws: np.ndarray) -> tuple[int, int]:
    """A token window ``[start, end)`` of at most ``budget`` tokens containing ``[lo, hi)``, centred on it,
    with its edges moved inwards to word starts where that keeps ``[lo, hi)`` inside."""
    if n <= budget:
        return 0, n
    if hi - lo > budget:
        raise Dropped("too_long")
    start = max(0, min(lo - (budget - (hi - lo)) // 2, n - budget))
    end = start + budget
    while start < lo and not ws[start]:
        start += 1
    while end > hi and end < n and not ws[end]:
        end -= 1
    return start, end


def _span(a: int, b: int) -> dict:
    return {"start": int(a), "end": int(b)}


def _nonempty(span: tuple[int, int]) -> tuple[int, int]:
    if span[1] <= span[0]:
        raise Dropped("empty_span")  # the mention is only characters the tokenizer drops
    return span


def tokenize_knowledge(row: dict, tok: BaseTokenizer, seg: Segmenter | None, max_seq_len: int) -> dict:
    """One knowledge row -> one ``knowledge_tokens`` row (``relations`` still as names; see the job).

    Raises BadRow (dead letter) or Dropped (counted under its reason).
    """
    task, text = row.get("task"), row.get("text")
    if task not in KNOWLEDGE_TASKS:
        raise BadRow("unknown_task")
    if not isinstance(text, str) or not text:
        raise BadRow("missing_text")
    sp = tok.special_ids
    out = {"id": row["id"], "task": task, **{c: None for c in _NULL_COLUMNS}}

    if task == "relation":
        h = _entity_span(text, row.get("head"), "head")
        t = _entity_span(text, row.get("tail"), "tail")
        if _overlap(h, t):
            raise Dropped("overlapping_spans")
        w = encode_with_words(tok, seg, text, [h, t])
        hs, ts = _nonempty(token_span(w.enc, *h)), _nonempty(token_span(w.enc, *t))
        n = len(w.enc)
        a, b = _window(n, min(hs[0], ts[0]), max(hs[1], ts[1]), max_seq_len - 6, w.word_start)
        inserts = sorted([(hs[0], 1, sp["e1"]), (hs[1], 0, sp["e1_end"]), (ts[0], 1, sp["e2"]), (ts[1], 0, sp["e2_end"])])
        ids: list[int] = [sp["cls"]]
        wss: list[bool] = [True]
        pos_of: dict[int, int] = {}
        cur = a
        for p, _, marker in inserts:
            ids.extend(w.enc.ids[cur:p].tolist())
            wss.extend(w.word_start[cur:p].tolist())
            pos_of[marker] = len(ids)
            ids.append(marker)
            wss.append(True)
            cur = p
        ids.extend(w.enc.ids[cur:b].tolist())
        wss.extend(w.word_start[cur:b].tolist())
        ids.append(sp["sep"])
        wss.append(True)
        rels = row.get("relations") or ["NA"]
        out.update(
            e1_pos=pos_of[sp["e1"]], e2_pos=pos_of[sp["e2"]],
            head_span=_span(pos_of[sp["e1"]] + 1, pos_of[sp["e1_end"]]),
            tail_span=_span(pos_of[sp["e2"]] + 1, pos_of[sp["e2_end"]]),
            relations=[str(r) for r in rels],
        )
        types = [0] * len(ids)

    elif task == "substitution":
        mentions = row.get("mentions") or []
        if not mentions:
            raise BadRow("missing_mentions")
        spans = []
        for m in mentions:
            try:
                ma, mb = int(m["start"]), int(m["end"])
            except (KeyError, TypeError, ValueError):
                raise BadRow("bad_mention_span") from None
            if not (0 <= ma < mb <= len(text)) or text[ma:mb] not in (m.get("replacement"), m.get("original")):
                raise BadRow("bad_mention_span")
            spans.append((ma, mb))
        order = sorted(range(len(spans)), key=lambda i: spans[i])
        for i, j in zip(order, order[1:]):
            if _overlap(spans[i], spans[j]):
                raise Dropped("overlapping_spans")
        w = encode_with_words(tok, seg, text, spans)
        tspans = [_nonempty(token_span(w.enc, *s)) for s in spans]
        a, b = _window(len(w.enc), min(s[0] for s in tspans), max(s[1] for s in tspans), max_seq_len - 2, w.word_start)
        ids = [sp["cls"], *w.enc.ids[a:b].tolist(), sp["sep"]]
        wss = [True, *w.word_start[a:b].tolist(), True]
        out.update(
            mention_spans=[_span(s[0] - a + 1, s[1] - a + 1) for s in tspans],
            mention_labels=[1 if m.get("replacement") is not None else 0 for m in mentions],
        )
        types = [0] * len(ids)

    else:  # triple_mask
        triple = row.get("triple") or {}
        parts = [triple.get("head"), triple.get("relation"), triple.get("tail")]
        if not all(isinstance(x, str) and x for x in parts):
            raise BadRow("missing_triple")
        h = _entity_span(text, row.get("head"), "head")
        t = _entity_span(text, row.get("tail"), "tail")
        if _overlap(h, t):
            raise Dropped("overlapping_spans")
        ids, wss, seg_spans = [sp["cls"]], [True], []
        for k, part in enumerate(parts):
            pw = encode_with_words(tok, seg, part, [(0, len(part))] if k != 1 else ())
            if len(pw.enc) == 0:
                raise Dropped("empty_span")
            seg_spans.append(_span(len(ids), len(ids) + len(pw.enc)))
            ids.extend(pw.enc.ids.tolist())
            wss.extend(pw.word_start.tolist())
            ids.append(sp["sep"])
            wss.append(True)
        len_a = len(ids)
        w = encode_with_words(tok, seg, text, [h, t])
        hs, ts = _nonempty(token_span(w.enc, *h)), _nonempty(token_span(w.enc, *t))
        budget = max_seq_len - len_a - 1
        if budget <= 0:
            raise Dropped("too_long")
        a, b = _window(len(w.enc), min(hs[0], ts[0]), max(hs[1], ts[1]), budget, w.word_start)
        ids.extend(w.enc.ids[a:b].tolist())
        wss.extend(w.word_start[a:b].tolist())
        ids.append(sp["sep"])
        wss.append(True)
        off = len_a - a
        out.update(
            triple_head_span=seg_spans[0], triple_relation_span=seg_spans[1], triple_tail_span=seg_spans[2],
            head_span=_span(hs[0] + off, hs[1] + off), tail_span=_span(ts[0] + off, ts[1] + off),
        )
        types = [0] * len_a + [1] * (len(ids) - len_a)

    out.update(input_ids=[int(i) for i in ids], token_type_ids=types, word_start=[bool(x) for x in wss])
    return out
