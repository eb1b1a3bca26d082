"""Near dedup on a PCollection of documents: a reference wrapper around the clean job's near dedup, for the
tests and ``bench/neardup.py`` only.

The clean job never shuffles documents: it spills them (``pipelines.spill``) and runs
``pipelines.neardup.NearDedupKeys`` on their packed keys. :class:`NearDedup` makes those keys from a
PCollection of documents itself (``pipelines.dedup.DedupKeyBuffer``, doc key = ``doc_keys.doc_key(id)``: ids
must be unique), runs the same ``NearDedupKeys`` and joins the decisions back to the documents, so a test can
plant near duplicates in a handful of dicts and read which ones were kept.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

from knowmix.pipelines.beamio import split_by_tag
from knowmix.pipelines.dedup import DedupKeyBuffer
from knowmix.pipelines.doc_keys import doc_key
from knowmix.pipelines.neardup import NearDedupConfig, NearDedupKeys


class _DocKeysFn(beam.DoFn):
    def __init__(self, config: NearDedupConfig, num_parts: int):
        self.config, self.num_parts = config, num_parts

    def setup(self):
        self.buffer = DedupKeyBuffer(False, self.config, self.num_parts)

    def process(self, doc):
        self.buffer.add(doc["id"], doc["source_kind"], doc["text"], location=doc.get("location") or "")
        yield from self.buffer.flush()


class TextsOfDocs(beam.PTransform):
    """doc keys -> (doc key, text), joined to a PCollection of (doc key, doc)."""

    def __init__(self, docs_by_key):
        super().__init__()
        self.docs_by_key = docs_by_key

    def expand(self, keys):
        def texts(kv):
            key, groups = kv
            if list(groups["want"]):
                for d in list(groups["doc"])[:1]:
                    yield key, d["text"]

        return (
            {"want": keys | "Want" >> beam.Map(lambda k: (k, None)), "doc": self.docs_by_key}
            | "JoinDocs" >> beam.CoGroupByKey()
            | "PickTexts" >> beam.FlatMap(texts)
        )


def _route(kv, output: str):
    """(doc key, {doc, drop}) -> the docs if ``output`` is "kept" and there is no drop, if "dropped" and there is."""
    _, groups = kv
    dropped = bool(list(groups["drop"]))
    if dropped == (output == "dropped"):
        yield from groups["doc"]


class NearDedupOutputs(NamedTuple):
    """What :class:`NearDedup` returns: ``.kept``, ``.dropped``, ``.clusters`` (also ``outputs["kept"]``)."""

    kept: beam.PCollection
    dropped: beam.PCollection
    clusters: beam.PCollection

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)


class NearDedup(beam.PTransform):
    """docs -> outputs ``.kept``, ``.dropped`` (reason ``near_duplicate``) and ``.clusters``
    (``{"doc_id", "cluster_id", "cluster_size"}`` for every doc in a cluster of size >= 2).

    The same decisions as the clean job's step 5, on a PCollection of docs (``id`` unique, ``source_kind``,
    ``text``; other columns pass through). The clean job itself never shuffles documents: it spills them and
    runs :class:`pipelines.neardup.NearDedupKeys` on their keys.
    """

    def __init__(self, config: NearDedupConfig | None = None, num_parts: int = 4):
        super().__init__()
        self.config = config or NearDedupConfig()
        self.num_parts = num_parts

    def expand(self, docs):
        c = self.config
        if not c.near:
            p = docs.pipeline
            return NearDedupOutputs(
                docs | "NearDedupOff" >> beam.Map(lambda d: d),
                p | "NoDropped" >> beam.Create([]),
                p | "NoClusters" >> beam.Create([]),
            )
        keys = split_by_tag(docs | "Keys" >> beam.ParDo(_DocKeysFn(c, self.num_parts)), ("band", "meta"), "Keys")
        by_key = docs | "DocByKey" >> beam.Map(lambda d: (doc_key(d["id"]), d))
        near = keys | "Decide" >> NearDedupKeys(c, self.num_parts, TextsOfDocs(by_key) if c.verify else None)
        joined = {"doc": by_key, "drop": near.drops} | "JoinDrops" >> beam.CoGroupByKey()
        return NearDedupOutputs(
            joined | "RouteKept" >> beam.FlatMap(_route, output="kept"),
            joined | "RouteDropped" >> beam.FlatMap(_route, output="dropped"),
            near.clusters,
        )
