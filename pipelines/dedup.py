"""Exact deduplication across all sources, with one deterministic survivor per group.

Near-duplicate removal (MinHash-LSH) is step 5 of the clean job and lives in ``pipelines/neardup.py``;
both use :func:`survivor_key` so the survivor rule is the same everywhere.
"""

from __future__ import annotations

import hashlib

import apache_beam as beam

from pipelines.beamio import split_by_tag

SOURCE_PRIORITY = {"encyclopedia": 0, "news": 1, "qa": 2, "web": 3}


def survivor_key(doc: dict, prefer_longer: bool = False) -> tuple:
    """Sort key: the smallest key survives. Source-kind priority encyclopedia > news > qa > web,
    then (near dedup only) the longer text, then the smaller id."""
    priority = SOURCE_PRIORITY.get(doc["source_kind"], len(SOURCE_PRIORITY))
    length = -len(doc["text"]) if prefer_longer else 0
    return (priority, length, doc["id"])


def text_digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class ExactDedup(beam.PTransform):
    """docs -> {"kept": docs, "dropped": docs} on identical normalised text (``exact_duplicate`` for the losers)."""

    def expand(self, docs):
        def pick(kv):
            _, group = kv
            ordered = sorted(group, key=survivor_key)
            yield "kept", ordered[0]
            for loser in ordered[1:]:
                yield "dropped", loser

        picked = (
            docs
            | "KeyByText" >> beam.Map(lambda d: (text_digest(d["text"]), d))
            | "GroupByText" >> beam.GroupByKey()
            | "PickSurvivor" >> beam.FlatMap(pick)
        )
        return split_by_tag(picked, ("kept", "dropped"), "Split")
