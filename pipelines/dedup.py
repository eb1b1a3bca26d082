"""Dedup decisions, pure and small: the fixed-width records each document contributes, and the rules that pick
who survives. numpy and hashing only: no Beam, no files (the Beam steps are ``pipelines.exact_dedup`` and
``pipelines.neardup``; blobs spilled to files are read back by ``pipelines.spill.resolve_blobs`` first).

Deduplication never moves texts through a shuffle. Each document contributes a few fixed-width records:

* ``exact``: the 128-bit digest of its normalised text and its *doc key* (``pipelines.doc_keys``);
* ``band``: one 64-bit hash per MinHash band (``bands`` of them), its doc key and (with exact dedup on) its
  text digest, so a bucket can count a group of exact duplicates once;
* ``meta``: its doc key, source-kind priority, length, 64 bits of its text digest, id and location (what
  the survivor rule needs).

A doc key names one record by where it came from (``doc_keys.record_key`` in the clean job), or, where ids
are known to be unique (a PCollection of docs), it is ``doc_keys.doc_key`` of the id.
:class:`DedupKeyBuffer` collects the records of many documents and packs them into a few byte blobs per
partition (``(partition, blob)`` pairs), so a shuffle moves a handful of large values instead of one element
per band per document: about 300 bytes per document in all, whatever its length.

The survivor rule (:func:`survivor_order`) is one total order for exact and near duplicates: source-kind
priority, (near only) the longer text, the smaller id, the text (as its digest), the location, the doc key,
so equal records read from two files give the same survivor on every run and runner. Exact dedup, near dedup
(on :class:`Member` records) and the tests (on document dicts, :func:`survivor_key`) all rank by it.
"""

from __future__ import annotations

import hashlib
import pickle
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from knowmix.pipelines.doc_keys import doc_key, partitions_of_keys

SOURCE_PRIORITY = {"encyclopedia": 0, "news": 1, "qa": 2, "web": 3}

EXACT_DTYPE = np.dtype([("h1", "<u8"), ("h2", "<u8"), ("doc", "<i8")])
# d1, d2: the text digest when exact dedup is on (zeros otherwise), so a bucket can fold exact duplicates
BAND_DTYPE = np.dtype([("h", "<u8"), ("doc", "<i8"), ("d1", "<u8"), ("d2", "<u8")])
# digest: the first 64 bits of the text digest (orders equally long near duplicates by content, not by file)
META_DTYPE = np.dtype([("doc", "<i8"), ("priority", "u1"), ("n_chars", "<i8"), ("digest", "<u8")])


def kind_priority(source_kind: str) -> int:
    """encyclopedia 0 < news 1 < qa 2 < web 3 < any other kind: the smaller wins."""
    return SOURCE_PRIORITY.get(source_kind, len(SOURCE_PRIORITY))


def text_digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def digest64(text: str) -> int:
    """The first 64 bits of ``text_digest`` (as the meta records hold it)."""
    return int.from_bytes(text_digest(text)[:8], "little")


# ---------------------------------------------------------------------------------------------- the survivor rule


def survivor_order(
    priority: int, n_chars: int, doc_id: str, digest: int, location: str, doc: int = 0, prefer_longer: bool = False
) -> tuple:
    """THE sort key of the survivor rule: the smallest survives. Source-kind priority (:func:`kind_priority`),
    then (near dedup only, ``prefer_longer``) the longer text, then the smaller id, then the text (as
    ``digest64``), then the location, then the doc key: a total order on everything a row shows."""
    return (priority, -n_chars if prefer_longer else 0, doc_id, digest, location, doc)


def survivor_key(doc: dict, prefer_longer: bool = False) -> tuple:
    """:func:`survivor_order` of a document dict (``source_kind``, ``text``, ``id``, optional ``location``)."""
    return survivor_order(
        kind_priority(doc["source_kind"]), len(doc["text"]), doc["id"], digest64(doc["text"]),
        doc.get("location") or "", prefer_longer=prefer_longer,
    )


class Member(NamedTuple):
    """A member of a group of duplicates, with what the survivor rule needs (from its meta record)."""

    priority: int
    n_chars: int
    id: str
    digest: int
    location: str
    doc: int
    exact_loser: bool

    def order(self, prefer_longer: bool) -> tuple:
        return survivor_order(self.priority, self.n_chars, self.id, self.digest, self.location, self.doc, prefer_longer)


def ranked(members: Iterable[Member], prefer_longer: bool) -> list[Member]:
    """The distinct members, survivor first (exact dedup: ``prefer_longer`` False; near dedup: True)."""
    return sorted(set(members), key=lambda m: m.order(prefer_longer))


def survivor_of_losers(members: list[Member], losers: set[int]) -> list[tuple[int, str]]:
    """(loser doc key, survivor id) for every loser, when exactly one member (not an exact loser) is left."""
    remaining = {m.doc: m.id for m in members if m.doc not in losers and not m.exact_loser}
    if losers and len(remaining) == 1:
        survivor = next(iter(remaining.values()))
        return [(doc, survivor) for doc in sorted(losers)]
    return []


# ---------------------------------------------------------------------------------------------- blobs


def pack_meta(records: np.ndarray, ids: list[str], locations: list[str]) -> bytes:
    return pickle.dumps((records.tobytes(), ids, locations), protocol=pickle.HIGHEST_PROTOCOL)


def unpack_meta(blobs: Iterable[bytes]) -> tuple[np.ndarray, list[str], list[str]]:
    """Meta blobs -> (records sorted by doc key, ids and locations in the same order)."""
    arrays, ids, locations = [], [], []
    for blob in blobs:
        raw, part_ids, part_locations = pickle.loads(blob)
        arrays.append(np.frombuffer(raw, dtype=META_DTYPE))
        ids.extend(part_ids)
        locations.extend(part_locations)
    if not arrays:
        return np.empty(0, dtype=META_DTYPE), [], []
    records = np.concatenate(arrays)
    order = np.argsort(records["doc"], kind="stable")
    return records[order], [ids[i] for i in order], [locations[i] for i in order]


def unpack(blobs: Iterable[bytes], dtype: np.dtype) -> np.ndarray:
    arrays = [np.frombuffer(b, dtype=dtype) for b in blobs]
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


# ---------------------------------------------------------------------------------------------- groups


def exact_groups(records: np.ndarray) -> Iterator[tuple[int, int]]:
    """Exact records -> (doc key, group key) for each member of a group of >= 2 identical texts; the group
    key is the group's smallest doc key."""
    records = np.sort(records, order=["h1", "h2", "doc"])
    for s, e in runs(records["h1"], records["h2"]):
        docs = np.unique(records["doc"][s:e])
        if len(docs) >= 2:
            group = int(docs[0])
            for d in docs.tolist():
                yield d, group


def bucket_docs(records: np.ndarray, fold_exact: bool = False) -> Iterator[np.ndarray]:
    """Band records -> the distinct doc keys of each bucket (band hash) with >= 2 of them.

    With ``fold_exact``, the documents of a bucket that share a text digest count once, as their smallest doc
    key: exact duplicates share every band, so that key is the same in every bucket, and it is the group key
    :func:`exact_groups` gives them (near dedup puts the group back after its components).
    Exact duplicates then cost the component search nothing, however many there are.
    """
    records = np.sort(records, order=["h", "doc"])
    for s, e in runs(records["h"]):
        run = records[s:e]
        if fold_exact:
            _, first = np.unique(run[["d1", "d2"]], return_index=True)  # sorted by doc: first = smallest
            run = run[first]
        docs = np.unique(run["doc"])
        if len(docs) >= 2:
            yield docs


def members_with_meta(
    meta: tuple[np.ndarray, list[str], list[str]], memberships: Iterable[tuple[int, int]], losers: set[int]
) -> Iterator[tuple[int, Member]]:
    """``unpack_meta``'s (records, ids, locations) of a partition and (doc key, group) memberships of its
    documents -> (group, :class:`Member`); ``losers``: the doc keys exact dedup dropped."""
    records, ids, locations = meta
    docs = records["doc"]
    for doc, group in memberships:
        i = int(np.searchsorted(docs, doc))
        if i >= len(docs) or int(docs[i]) != doc:
            raise RuntimeError(f"dedup: no metadata for doc key {doc} (a dedup record without its meta record)")
        r = records[i]
        yield group, Member(
            int(r["priority"]), int(r["n_chars"]), ids[i], int(r["digest"]), locations[i], doc, doc in losers
        )


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
            from knowmix.pipelines.minhash import MinHasher

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
            from knowmix.pipelines.minhash import band_hashes, is_empty_signature

            sig = self.hasher.signature(text)
            if not is_empty_signature(sig):  # no shingles: never a near duplicate
                bands = band_hashes(sig, self.bands, self.rows)
        self.meta_rows.append((key, kind_priority(source_kind), len(text), h1))
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
        part = partitions_of_keys(meta["doc"], n)
        for p in np.unique(part).tolist():
            rows = np.flatnonzero(part == p)
            rows = rows.tolist()
            out.append(("meta", (p, pack_meta(meta[rows], [self.ids[i] for i in rows], [self.locations[i] for i in rows]))))
        if self.exact_rows:
            exact = np.array(self.exact_rows, dtype=EXACT_DTYPE)
            part = partitions_of_keys(exact["h1"], n)
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
                part = partitions_of_keys(records["h"], n)
                for p in np.unique(part).tolist():
                    out.append(("band", ((b, p), records[part == p].tobytes())))
        self._clear()
        return out
