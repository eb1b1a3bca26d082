"""Dropped documents you can read: ``[output] keep_dropped = true`` (or ``--keep-dropped``) writes every document
the clean job removed -- by a rule, by the quality model, or by dedup -- to ``OUT/dropped/`` Arrow shards, with
its ``reason`` and, for a duplicate, the id of the document that survived in its place.

The shards are listed in the manifest as ``dropped_shards`` (path, rows, bytes, sha256, like ``shards``), and
the accounting then holds row for row: the dropped shards' rows add up to ``sum(counts.dropped)``, and per
reason to each count (checked when the manifest is written).

No document goes through a shuffle for this either: a rule-dropped document is spilled where it is dropped
(a second ``pipelines.spill.SpillWriter``), and a dedup loser is read back from the kept documents' spill,
the same batches its shard's writer reads and leaves it out of. Each dropped shard joins, by shard, the
locations of both and the (doc key, reason) decisions.
"""

from __future__ import annotations

from collections import Counter

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from knowmix.schemas import DROPPED_COLUMNS
from knowmix.pipelines import beamio
from knowmix.pipelines.doc_keys import shard_key, shard_of_key
from knowmix.pipelines.spill import KEY_COLUMN, read_spilled, spill_schema

DROPPED_DIR = "dropped"
MANIFEST_KEY = "dropped_shards"


def dropped_schema(docs_schema: pa.Schema) -> pa.Schema:
    """The docs schema plus ``knowmix.schemas.DROPPED_COLUMNS`` (``DROPPED_SCHEMA`` for clean's docs schema)."""
    return pa.schema([*docs_schema, *DROPPED_COLUMNS])


def dropped_row(reason: str, row: dict) -> dict:
    return {**row, "reason": reason, "survivor_id": None}


def _same_id_copies(rest: pa.Table) -> pa.Table | None:
    """The rows the shard writer drops as copies of an earlier row with the same id and text (possible only with
    exact dedup off: ``pipelines.spill.resolve_id_collisions``, the same function), as dropped rows whose
    survivor is the row that kept the id."""
    from knowmix.pipelines.spill import resolve_id_collisions

    kept, _, copies = resolve_id_collisions(rest)
    if not copies:
        return None
    kept_keys = set(kept.column(KEY_COLUMN).to_pylist())
    gone = rest.filter(pa.array([k not in kept_keys for k in rest.column(KEY_COLUMN).to_pylist()]))
    gone = gone.drop_columns([KEY_COLUMN])
    gone = gone.append_column("reason", pa.array(["exact_duplicate"] * gone.num_rows, pa.string()))
    return gone.append_column("survivor_id", gone.column("id"))


class _WriteDroppedShardFn(beam.DoFn):
    """(shard, {"rules": rule-dropped spill locations, "kept": kept spill locations, "drops": (doc key, reason),
    "survivors": (doc key, survivor id)}) -> a manifest entry for OUT/dropped/part-SHARD."""

    def __init__(self, out_dir: str, docs_schema: pa.Schema, num_shards: int, batch_rows: int = 2048):
        self.out_dir, self.docs_schema, self.num_shards, self.batch_rows = out_dir, docs_schema, num_shards, batch_rows

    def process(self, kv):
        shard, groups = kv
        schema = dropped_schema(self.docs_schema)
        tables = []
        rules = list(groups["rules"])
        if rules:
            tables.append(read_spilled(rules, schema))
        drops = dict(groups["drops"])
        kept = list(groups["kept"])
        if kept:
            survivors = dict(groups["survivors"])
            table = read_spilled(kept, spill_schema(self.docs_schema))  # the kept rows and their record keys
            keys = table.column(KEY_COLUMN).to_pylist()
            mask = np.array([k in drops for k in keys], dtype=bool)
            if mask.any():
                losers = table.filter(pa.array(mask)).drop_columns([KEY_COLUMN])
                loser_keys = [k for k, m in zip(keys, mask) if m]
                losers = losers.append_column(schema.field("reason"), pa.array([drops[k] for k in loser_keys], pa.string()))
                losers = losers.append_column(
                    schema.field("survivor_id"), pa.array([survivors.get(k) for k in loser_keys], pa.string())
                )
                tables.append(losers)
            copies = _same_id_copies(table.filter(pa.array(~mask)))
            if copies is not None:
                tables.append(copies.cast(schema))
        if not tables:
            return
        table = pa.concat_tables(tables).combine_chunks()
        if table.num_rows == 0:
            return
        reasons = dict(sorted(Counter(table.column("reason").to_pylist()).items()))
        for reason, n in reasons.items():
            beam.metrics.Metrics.counter("knowmix.clean", f"kept_dropped_{reason}").inc(n)
        order = pc.sort_indices(table, sort_keys=[("id", "ascending")])
        batches = (
            table.take(order[start : start + self.batch_rows]).combine_chunks().to_batches()[0]
            for start in range(0, table.num_rows, self.batch_rows)
        )
        entry = beamio.write_shard(self.out_dir, shard, self.num_shards, schema, batches, subdir=DROPPED_DIR)
        yield {**entry, "reasons": reasons}


class WriteDroppedShards(beam.PTransform):
    """{"rules": (shard, location), "kept": (shard, location), "drops": (doc key, reason),
    "survivors": (doc key, survivor id)} -> manifest entries of OUT/dropped/ shards."""

    def __init__(self, out_dir: str, docs_schema: pa.Schema, num_shards: int):
        super().__init__()
        self.out_dir, self.docs_schema, self.num_shards = out_dir, docs_schema, num_shards

    def expand(self, inputs):
        n = self.num_shards
        by_shard = {
            "rules": inputs["rules"],
            "kept": inputs["kept"],
            "drops": inputs["drops"] | "DropsByShard" >> beam.Map(lambda d: (shard_of_key(d[0], n), d)),
            "survivors": inputs["survivors"] | "SurvivorsByShard" >> beam.Map(lambda d: (shard_of_key(d[0], n), d)),
        }
        return (
            by_shard
            | "JoinByShard" >> beam.CoGroupByKey()
            | "WriteDroppedShard" >> beam.ParDo(_WriteDroppedShardFn(self.out_dir, self.docs_schema, n))
        )


def with_dropped_shards(entries) -> dict:
    """The manifest's extra key for the dropped shards' entries (sorted by path)."""
    return {MANIFEST_KEY: sorted(entries, key=lambda e: e["path"])}


def check_dropped_rows(manifest: dict) -> dict:
    """Raise ValueError unless the dropped shards' rows add up to ``sum(counts.dropped)``, and per reason (each
    entry's ``reasons``) to each count. Returns the manifest (a ``WriteManifest`` finalizer)."""
    if MANIFEST_KEY not in manifest:
        return manifest
    entries = manifest[MANIFEST_KEY]
    rows = sum(int(e["rows"]) for e in entries)
    dropped = {k: v for k, v in manifest["counts"]["dropped"].items() if v}
    if rows != sum(dropped.values()):
        raise ValueError(f"dropped shards hold {rows} rows, counts.dropped adds up to {sum(dropped.values())}")
    per_reason: Counter = Counter()
    for e in entries:
        per_reason.update(e.get("reasons", {}))
    if dict(per_reason) != dropped:
        raise ValueError(f"dropped rows per reason {dict(sorted(per_reason.items()))} differ from counts.dropped {dropped}")
    return manifest


class DroppedSpill:
    """Rule-dropped documents -> a spill file (``pipelines.spill.SpillWriter``, the dropped schema), read back
    by their shard's dropped writer; ``close()`` returns the batches' locations ``(shard, (path, batch))``."""

    def __init__(self, spill_dir: str, docs_schema: pa.Schema, num_shards: int):
        from knowmix.pipelines.spill import SpillWriter

        self.writer = SpillWriter(spill_dir, dropped_schema(docs_schema), num_shards)

    def add(self, reason: str, row: dict) -> None:
        self.writer.add(dropped_row(reason, row), key=shard_key(row["id"]))  # the shard its id is written to

    def close(self):
        return self.writer.close()


def quality_step(config):
    """The clean job's ``QualityScorer`` for ``config.quality`` (None without a [quality] table)."""
    if config.quality is None:
        return None
    from knowmix.pipelines.quality_model import QualityScorer

    return QualityScorer(config.quality, config.quality.load())


def models_entry(config) -> dict:
    """The manifest's ``models`` key: each model file the job used, with its sha256."""
    if config.quality is None:
        return {}
    return {"models": [{"role": "quality", "path": config.quality.model, "sha256": config.quality.sha256}]}
