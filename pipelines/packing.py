"""Packing tokenised documents into ``pretrain`` rows ``[CLS] doc [SEP] doc [SEP] …``, cutting at word starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from knowmix.errors import UserError


@dataclass
class DocTokens:
    doc_id: str
    source_kind: str
    ids: np.ndarray  # int32
    word_start: np.ndarray  # bool


def _cut_point(ws: np.ndarray, pos: int, room: int) -> int | None:
    """The last word start in ``(pos, pos + room]`` (a cut there splits no word), or None."""
    window = ws[pos + 1 : pos + room + 1]
    hits = np.flatnonzero(window)
    return None if len(hits) == 0 else pos + 1 + int(hits[-1])


def pack_documents(docs: Iterable[DocTokens], max_seq_len: int, cls_id: int, sep_id: int) -> list[dict]:
    """Pack documents (in the given order) into rows ``[CLS] doc [SEP] doc [SEP] …`` of at most ``max_seq_len``.

    A document that does not fit the room left is cut at the last word start that fits; if the row already
    holds other documents and no word start fits, the row is closed and the document starts a fresh row
    (a word is split only when one word is longer than a whole row). Row id: ``<doc_id>:<chunk>`` of the
    first piece in the row, where chunk counts the pieces a document was cut into.
    """
    if max_seq_len < 3:
        raise UserError(f"--max-seq-len {max_seq_len}: must be at least 3")
    rows: list[dict] = []
    ids_parts: list[np.ndarray] = []
    ws_parts: list[np.ndarray] = []
    kinds: list[str] = []
    state = {"len": 1, "id": None}
    cls = np.asarray([cls_id], dtype=np.int32)
    sep = np.asarray([sep_id], dtype=np.int32)
    true1 = np.ones(1, dtype=bool)

    def flush():
        if state["id"] is not None:
            rows.append({
                "id": state["id"],
                "input_ids": np.concatenate([cls, *ids_parts]).tolist(),
                "word_start": np.concatenate([true1, *ws_parts]).tolist(),
                "source_kinds": list(kinds),
            })
        ids_parts.clear()
        ws_parts.clear()
        kinds.clear()
        state["len"], state["id"] = 1, None

    for doc in docs:
        ids, ws = doc.ids, doc.word_start
        n, pos, chunk = len(ids), 0, 0
        while pos < n:
            room = max_seq_len - state["len"] - 1  # keep one place for the [SEP]
            if room <= 0:
                flush()
                continue
            take = n - pos
            if take > room:
                cut = _cut_point(ws, pos, room)
                if cut is None:
                    if state["id"] is not None:
                        flush()  # start the document in a fresh row rather than split a word
                        continue
                    cut = pos + room  # one word longer than a whole row
                take = cut - pos
            if state["id"] is None:
                state["id"] = f"{doc.doc_id}:{chunk}"
            ids_parts.extend((ids[pos : pos + take], sep))
            ws_parts.extend((ws[pos : pos + take], true1))
            kinds.append(doc.source_kind)  # one entry per document piece in the row
            state["len"] += take + 1
            pos += take
            chunk += 1
            if pos < n:
                flush()
    flush()
    return rows
