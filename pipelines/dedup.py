"""Dedup keys: what exact and near dedup need to know about a document, packed small.

(A blob travels in-line as bytes, or, in the clean job, as the location ``(path, offset, length)`` of the
bytes in a spill file, so that the runner's shuffles hold a few locations instead of the keys: see
:func:`resolve`.)

Deduplication never moves texts through a shuffle. Each document contributes a few fixed-width records:

* ``exact``: the 128-bit digest of its normalised text and its *doc key*;
* ``band``: one 64-bit hash per MinHash band (``bands`` of them), its doc key and (with exact dedup on) its
  text digest, so a bucket can count a group of exact duplicates once;
* ``meta``: its doc key, source-kind priority, length and id (what the survivor rule needs).

A *doc key* is the signed 64-bit view of ``blake2b(id, 8)``, the same digest that picks the document's
shard (``beamio.shard_of``), so a decision about a doc key finds its shard without the id.
:class:`DedupKeyBuffer` collects the records of many documents and packs them into a few byte blobs per
partition (``(partition, blob)`` pairs), so a shuffle moves a handful of large values instead of one element
per band per document: about 300 bytes per document in all, whatever its length.

The survivor rule (:func:`survivor_key`) is the same for exact and near duplicates.
"""

from __future__ import annotations

import hashlib
import pickle
from typing import Iterator

import numpy as np

SOURCE_PRIORITY = {"encyclopedia": 0, "news": 1, "qa": 2, "web": 3}
_U64 = (1 << 64) - 1

EXACT_DTYPE = np.dtype([("h1", "<u8"), ("h2", "<u8"), ("doc", "<i8")])
# d1, d2: the text digest when exact dedup is on (zeros otherwise), so a bucket can fold exact duplicates
BAND_DTYPE = np.dtype([("h", "<u8"), ("doc", "<i8"), ("d1", "<u8"), ("d2", "<u8")])
META_DTYPE = np.dtype([("doc", "<i8"), ("priority", "u1"), ("n_chars", "<i8")])


def survivor_key(doc: dict, prefer_longer: bool = False) -> tuple:
    """Sort key: the smallest key survives. Source-kind priority encyclopedia > news > qa > web,
    then (near dedup only) the longer text, then the smaller id."""
    priority = SOURCE_PRIORITY.get(doc["source_kind"], len(SOURCE_PRIORITY))
    length = -len(doc["text"]) if prefer_longer else 0
    return (priority, length, doc["id"])


def text_digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def doc_key(doc_id: str) -> int:
    """Signed 64-bit key of a document id (fits Beam's varint coder); ``shard_of_key`` gives its shard."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


def shard_of_key(key: int, num_shards: int) -> int:
    """Equal to ``beamio.shard_of(id, num_shards)`` for ``key = doc_key(id)``."""
    return (key & _U64) % num_shards


# ---------------------------------------------------------------------------------------------- blobs


def resolve(blobs) -> list[bytes]:
    """Blobs as given in-line (bytes) or by their spill location ``(path, offset, length)`` -> bytes."""
    blobs = list(blobs)
    located = [b for b in blobs if not isinstance(b, (bytes, bytearray))]
    if not located:
        return blobs
    from pipelines.spill import read_blobs

    loaded = iter(read_blobs(located))
    return [b if isinstance(b, (bytes, bytearray)) else next(loaded) for b in blobs]


def pack_meta(records: np.ndarray, ids: list[str]) -> bytes:
    return pickle.dumps((records.tobytes(), ids), protocol=pickle.HIGHEST_PROTOCOL)


def unpack_meta(blobs) -> tuple[np.ndarray, list[str]]:
    """Meta blobs -> (records sorted by doc key, ids in the same order)."""
    arrays, ids = [], []
    for blob in resolve(blobs):
        raw, part_ids = pickle.loads(blob)
        arrays.append(np.frombuffer(raw, dtype=META_DTYPE))
        ids.extend(part_ids)
    if not arrays:
        return np.empty(0, dtype=META_DTYPE), []
    records = np.concatenate(arrays)
    order = np.argsort(records["doc"], kind="stable")
    return records[order], [ids[i] for i in order]


def unpack(blobs, dtype: np.dtype) -> np.ndarray:
    arrays = [np.frombuffer(b, dtype=dtype) for b in resolve(blobs)]
    return np.concatenate(arrays) if arrays else np.empty(0, dtype=dtype)


def runs(*columns: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of >= 2 equal rows in sorted, equally long ``columns``."""
    n = len(columns[0])
    if n < 2:
        return
    differs = np.zeros(n - 1, dtype=bool)
    for c in columns:
        differs |= c[1:] != c[:-1]
    boundaries = np.flatnonzero(differs) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [n]))
    long = ends - starts >= 2
    yield from zip(starts[long].tolist(), ends[long].tolist())


# ---------------------------------------------------------------------------------------------- the buffer


class DedupKeyBuffer:
    """Dedup records of many documents -> ``(tag, (partition key, blob))`` with tag ``exact``, ``band`` or ``meta``.

    ``near`` is a ``NearDedupConfig`` (or None: no band records). Partition keys: ``h1 % num_parts`` (exact),
    ``(band, h % num_parts)`` (band), ``doc key % num_parts`` (meta), all non-negative ints.
    """

    def __init__(self, exact: bool, near, num_parts: int):
        self.exact = exact
        self.near = near if near is not None and near.near else None
        self.num_parts = max(1, int(num_parts))
        if self.near is not None:
            from pipelines.minhash import MinHasher

            c = self.near
            self.hasher = MinHasher(c.num_perm, c.ngram, c.tokenizer, c.seed)
            self.bands, self.rows = c.bands_rows
        self._clear()

    def _clear(self):
        self.exact_rows: list[tuple[int, int, int]] = []
        self.band_rows: list[np.ndarray] = []  # per document: (bands,) uint64 band hashes
        self.band_docs: list[int] = []
        self.band_digests: list[tuple[int, int]] = []
        self.meta_rows: list[tuple[int, int, int]] = []
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def enabled(self) -> bool:
        return self.exact or self.near is not None

    def add(self, doc_id: str, source_kind: str, text: str, key: int | None = None) -> None:
        """``key``: the document's ``doc_key(doc_id)`` where the caller has it already."""
        if not self.enabled:
            return
        key = doc_key(doc_id) if key is None else key
        self.meta_rows.append((key, SOURCE_PRIORITY.get(source_kind, len(SOURCE_PRIORITY)), len(text)))
        self.ids.append(doc_id)
        digest = (0, 0)
        if self.exact:
            d = text_digest(text)
            digest = (int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little"))
            self.exact_rows.append((*digest, key))
        if self.near is not None:
            from pipelines.minhash import band_hashes, is_empty_signature

            sig = self.hasher.signature(text)
            if not is_empty_signature(sig):  # no shingles: never a near duplicate
                self.band_rows.append(band_hashes(sig, self.bands, self.rows))
                self.band_docs.append(key)
                self.band_digests.append(digest)

    def flush(self) -> list[tuple[str, tuple]]:
        if not self.ids:
            return []
        n = self.num_parts
        out: list[tuple[str, tuple]] = []
        meta = np.array(self.meta_rows, dtype=META_DTYPE)
        part = (meta["doc"].view("<u8") % n).astype(np.int64)
        for p in np.unique(part).tolist():
            rows = np.flatnonzero(part == p)
            out.append(("meta", (p, pack_meta(meta[rows], [self.ids[i] for i in rows.tolist()]))))
        if self.exact_rows:
            exact = np.array(self.exact_rows, dtype=EXACT_DTYPE)
            part = (exact["h1"] % n).astype(np.int64)
            for p in np.unique(part).tolist():
                out.append(("exact", (p, exact[part == p].tobytes())))
        if self.band_rows:
            hashes = np.stack(self.band_rows)  # (docs, bands)
            docs = np.array(self.band_docs, dtype=np.int64)
            digests = np.array(self.band_digests, dtype=np.uint64).reshape(-1, 2)
            for b in range(hashes.shape[1]):
                records = np.empty(len(docs), dtype=BAND_DTYPE)
                records["h"], records["doc"] = hashes[:, b], docs
                records["d1"], records["d2"] = digests[:, 0], digests[:, 1]
                part = (records["h"] % n).astype(np.int64)
                for p in np.unique(part).tolist():
                    out.append(("band", ((b, p), records[part == p].tobytes())))
        self._clear()
        return out
