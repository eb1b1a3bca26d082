"""Exact-duplicate removal (step 4 of the clean job), in Beam, on packed dedup keys (``pipelines.dedup``),
never on documents.

1. ``GroupDigests``: the exact records (128-bit text digest, doc key) of one digest partition are grouped;
   each run of equal digests with >= 2 doc keys is a group, named by its smallest doc key
   (``dedup.exact_groups``).
2. ``WithMeta``: each member is joined, by doc-key partition, to its meta record (source-kind priority,
   length, id, location: ``dedup.Member``) and the members of a group are gathered.
3. Decisions: the survivor is the first by ``dedup.survivor_order`` (kind priority, id, text, location, doc
   key); every other member becomes ``(doc key, "exact_duplicate")``.

The group memberships are an output too: near dedup (``pipelines.neardup``) runs a group of exact duplicates
through its buckets and components as one node. :class:`WithMeta` and :func:`survivor_ids` are shared with
near dedup's decisions.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

from knowmix.pipelines.dedup import (
    EXACT_DTYPE, exact_groups, members_with_meta, ranked, survivor_of_losers, unpack, unpack_meta,
)
from knowmix.pipelines.doc_keys import shard_of_key
from knowmix.pipelines.spill import resolve_blobs


def _exact_groups(kv):
    """(partition, exact blobs) -> (doc key, group key) for each member of a group of >= 2 identical texts."""
    _, blobs = kv
    yield from exact_groups(unpack(resolve_blobs(blobs), EXACT_DTYPE))


def _attach_meta(kv):
    """(partition, {"meta": blobs, "members": (doc key, group), "losers": doc keys}) -> (group, Member)."""
    _, groups = kv
    members = list(groups["members"])
    if not members:
        return
    losers = set(groups["losers"]) if "losers" in groups else set()
    yield from members_with_meta(unpack_meta(resolve_blobs(groups["meta"])), members, losers)


def exact_losers(kv):
    """(group, members) -> (doc key, "exact_duplicate") for all but the survivor (kind priority, id, text,
    location)."""
    _, members = kv
    for m in ranked(members, prefer_longer=False)[1:]:
        yield m.doc, "exact_duplicate"


def survivor_ids(kv, decide):
    """(group, members) -> (doc key, survivor id) for each loser ``decide`` (``exact_losers`` or the near
    drops) picks: the survivor is the one member it left (kept documents' ids, for ``keep_dropped``)."""
    group, members = kv
    members = list(members)
    losers = {doc for doc, _ in decide((group, members))}
    yield from survivor_of_losers(members, losers)


class WithMeta(beam.PTransform):
    """(doc key, group) memberships [+ exact losers] -> (group, [Member]) grouped, joined to the meta records
    by partition (``doc key % num_parts``, as :class:`pipelines.dedup.DedupKeyBuffer` partitions them)."""

    def __init__(self, meta, num_parts: int, losers=None):
        super().__init__()
        self.meta, self.num_parts, self.losers = meta, num_parts, losers

    def expand(self, members):
        n = self.num_parts
        inputs = {"meta": self.meta, "members": members | "ByPartition" >> beam.Map(lambda m: (shard_of_key(m[0], n), m))}
        if self.losers is not None:
            inputs["losers"] = self.losers | "LosersByPartition" >> beam.Map(lambda d: (shard_of_key(d[0], n), d[0]))
        return (
            inputs
            | "JoinMeta" >> beam.CoGroupByKey()
            | "AttachMeta" >> beam.FlatMap(_attach_meta)
            | "GroupMembers" >> beam.GroupByKey()
        )


class ExactDecisions(NamedTuple):
    drops: beam.PCollection  # (doc key, "exact_duplicate")
    groups: beam.PCollection  # (doc key, group key) for every member of a group of >= 2
    survivors: beam.PCollection | None = None  # (doc key, survivor id) for every loser


class ExactDedupKeys(beam.PTransform):
    """{"exact": exact blobs, "meta": meta blobs} -> :class:`ExactDecisions`."""

    def __init__(self, num_parts: int):
        super().__init__()
        self.num_parts = num_parts

    def expand(self, inputs):
        groups = inputs["exact"] | "GroupDigests" >> beam.GroupByKey() | "Groups" >> beam.FlatMap(_exact_groups)
        grouped = groups | "WithMeta" >> WithMeta(inputs["meta"], self.num_parts)
        drops = grouped | "Losers" >> beam.FlatMap(exact_losers)
        return ExactDecisions(drops, groups, grouped | "Survivors" >> beam.FlatMap(survivor_ids, decide=exact_losers))
