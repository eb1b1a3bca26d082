"""Document keys and shard hashing: what a document is called and which shard (or partition) it lives in.

Every step that places a document asks here, and nowhere else:

* :func:`shard_of` ``(id, num_shards)``: the shard of an id in every output (docs, clusters, knowledge
  samples, tokens): the 64-bit :func:`shard_key` of the id's base (:func:`id_base`, the id without a
  collision suffix ``~N``) modulo ``num_shards``, so ``1`` and ``1~2`` share a shard;
* :func:`doc_key` ``(string)``: a signed 64-bit key (fits Beam's varint coder);
* :func:`record_key`: the *doc key* of one input record in the clean job. It names the record by where it came
  from (source, normalised location, position in its file), never by its id alone (two files may use the
  same id for different documents), with its low part set so that ``shard_of_key(record key, num_shards)``
  is the shard of the record's id: a decision about a doc key finds its shard without the id;
* :func:`shard_of_key` / :func:`partitions_of_keys`: a key (or an array of 64-bit keys or hashes) modulo a
  number of shards or dedup partitions, the key read as unsigned.

A leaf module: it imports nothing of knowmix, so the Beam plumbing (``pipelines.beamio``), the spill
(``pipelines.spill``) and the dedup decisions (``pipelines.dedup``) all build on it without importing each
other.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

_U64 = (1 << 64) - 1
_COLLISION_SUFFIX = re.compile(r"~[0-9]+\Z")


def doc_key(doc_id: str) -> int:
    """Signed 64-bit key of a string (fits Beam's varint coder); ``shard_of_key`` gives its shard."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


def shard_of_key(key: int, num_shards: int) -> int:
    """Equal to ``shard_of(id, num_shards)`` for ``key = shard_key(id)`` or a ``record_key`` of it."""
    return (key & _U64) % num_shards


def partitions_of_keys(keys: np.ndarray, num_parts: int) -> np.ndarray:
    """``shard_of_key`` of every key of an int64 or uint64 array, as int64 (the dedup keys' partitions)."""
    unsigned = keys.view("<u8") if keys.dtype.kind == "i" else keys
    return (unsigned % num_parts).astype(np.int64)


def id_base(doc_id: str) -> str:
    """An id without one trailing collision suffix ``~N``: ``1~2`` -> ``1``.

    Ids are sharded by their base, so a renamed id (``1~2``) and any id a user gave that looks like one live
    in one shard, where the shard writer sees them all and keeps the output ids unique.
    """
    return _COLLISION_SUFFIX.sub("", doc_id)


def shard_key(doc_id: str) -> int:
    """The 64-bit key that places an id in its shard (``shard_of_key``): ``doc_key`` of its ``id_base``."""
    return doc_key(id_base(doc_id))


def shard_of(doc_id: str, num_shards: int) -> int:
    """The shard of an id: ``shard_key(id) % num_shards``, so ``1`` and ``1~2`` share a shard."""
    return shard_of_key(shard_key(doc_id), num_shards)


def record_key(source_index: int, location: str, ordinal: int, doc_id: str, num_shards: int) -> int:
    """The doc key of one input record: a hash of where it came from (its source, normalised location and
    position among the file's records), moved within its block of ``num_shards`` values so that
    ``shard_of_key(key, num_shards) == shard_of(doc_id, num_shards)``."""
    n = max(1, int(num_shards))
    u = doc_key(f"{source_index}\x1f{location}\x1f{ordinal}") & _U64
    target = shard_of_key(shard_key(doc_id), n)
    u = u - u % n + target
    if u > _U64:
        u -= n
    return u - (1 << 64) if u >= 1 << 63 else u
