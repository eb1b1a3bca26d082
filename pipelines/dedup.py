"""Dedup keys: what exact and near dedup need to know about a document, packed small.

(A blob travels in-line as bytes, or, in the clean job, as the location ``(path, offset, length)`` of the
bytes in a spill file, so that the runner's shuffles hold a few locations instead of the keys: see
:func:`resolve`.)

Deduplication never moves texts through a shuffle. Each document contributes a few fixed-width records:

* ``exact``: the 128-bit digest of its normalised text and its *doc key*;
* ``band``: one 64-bit hash per MinHash band (``bands`` of them), its doc key and (with exact dedup on) its
  text digest, so a bucket can count a group of exact duplicates once;
* ``meta``: its doc key, source-kind priority, length, 64 bits of its text digest, id and location (what
  the survivor rule needs).

A *doc key* names one record by where it came from, never by its id alone (two files may use the same id
for different documents): in the clean job it is :func:`record_key` of the record's source, normalised
location and position in its file, with its low part set so that ``doc key % num_shards`` is the shard of
the record's id (``beamio.shard_of``): a decision about a doc key finds its shard without the id. Where ids
are known to be unique (``NearDedup`` on a PCollection of docs) it is :func:`doc_key` of the id.
:class:`DedupKeyBuffer` collects the records of many documents and packs them into a few byte blobs per
partition (``(partition, blob)`` pairs), so a shuffle moves a handful of large values instead of one element
per band per document: about 300 bytes per document in all, whatever its length.

The survivor rule (:func:`survivor_key`) is one total order for exact and near duplicates: source-kind
priority, (near only) the longer text, the smaller id, the text, the location, the doc key, so equal
records read from two files give the same survivor on every run and runner.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from typing import Iterator

import numpy as np

SOURCE_PRIORITY = {"encyclopedia": 0, "news": 1, "qa": 2, "web": 3}
_U64 = (1 << 64) - 1

EXACT_DTYPE = np.dtype([("h1", "<u8"), ("h2", "<u8"), ("doc", "<i8")])
# d1, d2: the text digest when exact dedup is on (zeros otherwise), so a bucket can fold exact duplicates
BAND_DTYPE = np.dtype([("h", "<u8"), ("doc", "<i8"), ("d1", "<u8"), ("d2", "<u8")])
# digest: the first 64 bits of the text digest (orders equally long near duplicates by content, not by file)
META_DTYPE = np.dtype([("doc", "<i8"), ("priority", "u1"), ("n_chars", "<i8"), ("digest", "<u8")])
_COLLISION_SUFFIX = re.compile(r"~[0-9]+\Z")


def survivor_key(doc: dict, prefer_longer: bool = False) -> tuple:
    """Sort key: the smallest key survives. Source-kind priority encyclopedia > news > qa > web,
    then (near dedup only) the longer text, then the smaller id, then the text (as its digest), then the
    location: a total order on everything a row shows."""
    priority = SOURCE_PRIORITY.get(doc["source_kind"], len(SOURCE_PRIORITY))
    length = -len(doc["text"]) if prefer_longer else 0
    return (priority, length, doc["id"], digest64(doc["text"]), doc.get("location") or "")


def text_digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def digest64(text: str) -> int:
    """The first 64 bits of ``text_digest`` (as the meta records hold it)."""
    return int.from_bytes(text_digest(text)[:8], "little")


def doc_key(doc_id: str) -> int:
    """Signed 64-bit key of a string (fits Beam's varint coder); ``shard_of_key`` gives its shard."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


def shard_of_key(key: int, num_shards: int) -> int:
    """Equal to ``beamio.shard_of(id, num_shards)`` for ``key = shard_key(id)`` or a ``record_key`` of it."""
    return (key & _U64) % num_shards


def id_base(doc_id: str) -> str:
    """An id without one trailing collision suffix ``~N``: ``1~2`` -> ``1``.

    Ids are sharded by their base, so a renamed id (``1~2``) and any id a user gave that looks like one live
    in one shard, where the shard writer sees them all and keeps the output ids unique.
    """
    return _COLLISION_SUFFIX.sub("", doc_id)


def shard_key(doc_id: str) -> int:
    """The 64-bit key that places an id in its shard (``shard_of_key``): ``doc_key`` of its ``id_base``."""
    return doc_key(id_base(doc_id))


def record_key(source_index: int, location: str, ordinal: int, doc_id: str, num_shards: int) -> int:
    """The doc key of one input record: a hash of where it came from (its source, normalised location and
    position among the file's records), moved within its block of ``num_shards`` values so that
    ``shard_of_key(key, num_shards) == shard_of_key(shard_key(doc_id), num_shards)``."""
    n = max(1, int(num_shards))
    u = doc_key(f"{source_index}\x1f{location}\x1f{ordinal}") & _U64
    target = shard_of_key(shard_key(doc_id), n)
    u = u - u % n + target
    if u > _U64:
        u -= n
    return u - (1 << 64) if u >= 1 << 63 else u


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


def pack_meta(records: np.ndarray, ids: list[str], locations: list[str]) -> bytes:
    return pickle.dumps((records.tobytes(), ids, locations), protocol=pickle.HIGHEST_PROTOCOL)


def unpack_meta(blobs) -> tuple[np.ndarray, list[str], list[str]]:
    """Meta blobs -> (records sorted by doc key, ids and locations in the same order)."""
    arrays, ids, locations = [], [], []
    for blob in resolve(blobs):
        raw, part_ids, part_locations = pickle.loads(blob)
        arrays.append(np.frombuffer(raw, dtype=META_DTYPE))
        ids.extend(part_ids)
        locations.extend(part_locations)
    if not arrays:
        return np.empty(0, dtype=META_DTYPE), [], []
    records = np.concatenate(arrays)
    order = np.argsort(records["doc"], kind="stable")
    return records[order], [ids[i] for i in order], [locations[i] for i in order]


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
        self.meta_rows: list[tuple[int, int, int, int]] = []
        self.ids: list[str] = []
        self.locations: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def enabled(self) -> bool:
        return self.exact or self.near is not None

    def add(self, doc_id: str, source_kind: str, text: str, key: int | None = None, location: str = "") -> None:
        """``key``: the document's doc key (default ``doc_key(doc_id)``, for ids known to be unique).

        Everything that can fail is computed before anything is buffered: a document whose keys cannot be
        made leaves no partial record (an exact record without its meta record would break dedup)."""
        if not self.enabled:
            return
        key = doc_key(doc_id) if key is None else key
        d = text_digest(text)
        h1 = int.from_bytes(d[:8], "little")
        digest = (h1, int.from_bytes(d[8:], "little")) if self.exact else (0, 0)
        bands = None
        if self.near is not None:
            from pipelines.minhash import band_hashes, is_empty_signature

            sig = self.hasher.signature(text)
            if not is_empty_signature(sig):  # no shingles: never a near duplicate
                bands = band_hashes(sig, self.bands, self.rows)
        self.meta_rows.append((key, SOURCE_PRIORITY.get(source_kind, len(SOURCE_PRIORITY)), len(text), h1))
        self.ids.append(doc_id)
        self.locations.append(location)
        if self.exact:
            self.exact_rows.append((*digest, key))
        if bands is not None:
            self.band_rows.append(bands)
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
            rows = rows.tolist()
            out.append(("meta", (p, pack_meta(meta[rows], [self.ids[i] for i in rows], [self.locations[i] for i in rows]))))
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
