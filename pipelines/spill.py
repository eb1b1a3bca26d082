"""Spilled documents: written once where they are cleaned, read once where their shard is written.

Runners that keep shuffled data in memory (Beam's local FnApiRunner keeps every stage's output and every
GroupByKey's values in the driver) would otherwise hold the whole corpus several times over. So the clean job
never shuffles a document: the step that cleans a file writes its documents to one spill file (Arrow IPC,
one record batch per shard per flush) and emits only *locations* ``(shard, (path, batch index))`` and the
documents' dedup keys. The shard writer then reads its shard's batches, drops what dedup decided, makes the
ids unique (:func:`resolve_id_collisions`), sorts by id and writes the shard. Memory is bounded by one
shard, not by the corpus.

A spilled row carries its doc key (``KEY_COLUMN``, see ``pipelines.doc_keys``): dedup decides on doc keys,
which name a record by where it came from, so two records that share an id are never mistaken for one.

Spill files live under ``OUT/_spill/`` (any Beam filesystem: local, gs://, s3://) and are removed when the
job ends. A retried bundle writes a new spill file under a new name; only the locations of the attempt
that succeeded reach the writer, so the orphan is never read.

Everything spilled is read back here: documents by ``(path, batch index)`` (:func:`read_spilled`), packed
dedup keys by ``(path, offset, length)`` (:func:`read_blobs`, :func:`resolve_blobs`).
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from typing import Iterable

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from knowmix.pipelines import beamio
from knowmix.pipelines.dedup import kind_priority
from knowmix.pipelines.doc_keys import doc_key, id_base, shard_of_key

SPILL_DIR = "_spill"
KEY_COLUMN = "_key"
#: a shard writer reports at most this many renamed ids for the manifest's ``id_collisions`` list
COLLISION_EXAMPLES = 100


def spill_schema(schema: pa.Schema) -> pa.Schema:
    """The schema of spilled rows: ``schema`` and the rows' doc keys."""
    return schema.append(pa.field(KEY_COLUMN, pa.int64()))


class SpillWriter:
    """Rows -> one spill file, a record batch per shard each time ``flush_rows`` rows are buffered.

    ``close()`` returns the locations ``(shard, (path, batch index))`` of every batch written.
    """

    def __init__(self, spill_dir: str, schema: pa.Schema, num_shards: int, flush_rows: int = 4096):
        self.spill_dir, self.schema, self.num_shards, self.flush_rows = spill_dir, schema, num_shards, flush_rows
        self.buffers: dict[int, list[dict]] = defaultdict(list)
        self.buffered = 0
        self.path: str | None = None
        self.handle = self.writer = None
        self.batches = 0
        self.locations: list[tuple[int, tuple[str, int]]] = []

    def add(self, row: dict, key: int | None = None) -> None:
        """``key``: the row's doc key (default ``doc_key(row["id"])``); it picks the row's shard, and is stored
        in ``KEY_COLUMN`` where the schema has one."""
        key = doc_key(row["id"]) if key is None else key
        if KEY_COLUMN in self.schema.names:
            row = {**row, KEY_COLUMN: key}
        self.buffers[shard_of_key(key, self.num_shards)].append(row)
        self.buffered += 1
        if self.buffered >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self.buffered:
            return
        if self.writer is None:
            self.path = beamio.join(self.spill_dir, f"{uuid.uuid4().hex}.arrow")
            self.handle = FileSystems.create(self.path, compression_type=CompressionTypes.UNCOMPRESSED)
            self.writer = pa.ipc.new_file(self.handle, self.schema, options=pa.ipc.IpcWriteOptions(compression="lz4"))
        for shard in sorted(self.buffers):
            self.writer.write_batch(pa.RecordBatch.from_pylist(self.buffers[shard], schema=self.schema))
            self.locations.append((shard, (self.path, self.batches)))
            self.batches += 1
        self.buffers.clear()
        self.buffered = 0

    def close(self) -> list[tuple[int, tuple[str, int]]]:
        self.flush()
        if self.writer is not None:
            self.writer.close()
            self.handle.close()
        return self.locations


class BlobSpill:
    """Byte blobs (packed dedup keys) -> one spill file; ``put`` returns the blob's location
    ``(path, offset, length)``, valid once ``close()`` has returned."""

    def __init__(self, spill_dir: str):
        self.spill_dir = spill_dir
        self.path: str | None = None
        self.handle = None
        self.offset = 0

    def put(self, blob: bytes) -> tuple[str, int, int]:
        if self.handle is None:
            self.path = beamio.join(self.spill_dir, f"keys-{uuid.uuid4().hex}.bin")
            self.handle = FileSystems.create(self.path, compression_type=CompressionTypes.UNCOMPRESSED)
        self.handle.write(blob)
        location = (self.path, self.offset, len(blob))
        self.offset += len(blob)
        return location

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def read_blobs(locations: Iterable[tuple[str, int, int]]) -> list[bytes]:
    """The blobs at ``locations`` (in the order given); each file is opened once."""
    locations = list(locations)
    by_path: dict[str, list[int]] = defaultdict(list)
    for i, (path, _, _) in enumerate(locations):
        by_path[path].append(i)
    out: list[bytes] = [b""] * len(locations)
    for path, indices in by_path.items():
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            for i in sorted(indices, key=lambda i: locations[i][1]):
                _, offset, length = locations[i]
                fh.seek(offset)
                out[i] = fh.read(length)
                if len(out[i]) != length:
                    raise RuntimeError(f"spill file {path} is truncated: wanted {length} bytes at {offset}")
    return out


def resolve_blobs(blobs) -> list[bytes]:
    """Blobs as given in-line (bytes) or by their spill location ``(path, offset, length)`` -> bytes, in order.

    The dedup steps take either: the clean job spills its packed keys (``BlobSpill``) so that its shuffles
    move locations, a PCollection of documents passes them in-line."""
    blobs = list(blobs)
    located = [b for b in blobs if not isinstance(b, (bytes, bytearray))]
    if not located:
        return blobs
    loaded = iter(read_blobs(located))
    return [b if isinstance(b, (bytes, bytearray)) else next(loaded) for b in blobs]


def read_spilled(locations: Iterable[tuple[str, int]], schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """The batches at ``locations`` as one table, in (path, batch) order; each file is opened once."""
    by_path: dict[str, list[int]] = defaultdict(list)
    for path, batch in locations:
        by_path[path].append(batch)
    batches = []
    for path in sorted(by_path):
        with _open_for_arrow(path) as fh:
            reader = pa.ipc.open_file(fh)
            for i in sorted(set(by_path[path])):
                batch = reader.get_batch(i)
                batches.append(batch.select(columns) if columns else batch)
    target = pa.schema([schema.field(c) for c in columns]) if columns else schema
    # one contiguous table: a take or filter on many small chunks would concatenate them again each time
    return pa.Table.from_batches(batches, schema=target).combine_chunks()


def _open_for_arrow(path: str):
    """A local file through Arrow's own reader (its buffers come from Arrow's pool, returned after each
    shard); any other Beam filesystem (gs://, s3://) through a Python file object."""
    if "://" not in path:
        return pa.OSFile(path, "rb")
    return pa.PythonFile(FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED), mode="r")


def delete_spill(out_dir: str) -> None:
    """Remove the spill files (and, on a local disk, the emptied directory)."""
    import os

    spill_dir = beamio.join(out_dir, SPILL_DIR)
    matches = [m.path for r in FileSystems.match([beamio.join(spill_dir, "*")]) for m in r.metadata_list]
    if matches:
        FileSystems.delete(matches)
    if "://" not in spill_dir and os.path.isdir(spill_dir) and not os.listdir(spill_dir):
        os.rmdir(spill_dir)


# ---------------------------------------------------------------------------------------------- shard writer


def resolve_id_collisions(table: pa.Table) -> tuple[pa.Table, list[dict], list[tuple[str, str]]]:
    """Make a shard's ids unique; returns (table, renamed, dropped).

    Rows that share an id are ordered by (source-kind priority, text, location, doc key): a content order,
    so renaming or reordering input files does not change which text keeps the id. A row whose text equals
    an earlier one's is dropped (``dropped``: (source kind, "exact_duplicate"); only possible with exact
    dedup off); every other later row gets ``BASE~K`` (BASE: ``id_base(id)``, K >= 2 the smallest number not
    taken in the shard; ``renamed``: ``{"id", "original_id", "location", "source_kind"}``). Every id with the
    same base lives in this shard (``doc_keys.shard_of``), so no other shard can hold the new id.
    """
    ids = table.column("id").to_pylist()
    shared = {i for i, n in Counter(ids).items() if n > 1}
    if not shared:
        return table, [], []
    kinds = table.column("source_kind").to_pylist()
    texts = table.column("text").to_pylist()
    locations = table.column("location").to_pylist()
    keys = table.column(KEY_COLUMN).to_pylist() if KEY_COLUMN in table.column_names else [0] * len(ids)
    groups: dict[str, list[int]] = defaultdict(list)
    for row, i in enumerate(ids):
        if i in shared:
            groups[i].append(row)
    taken = set(ids)
    new_ids = list(ids)
    keep = np.ones(len(ids), dtype=bool)
    renamed: list[dict] = []
    dropped: list[tuple[str, str]] = []
    for doc_id in sorted(groups):
        rows = sorted(
            groups[doc_id],
            key=lambda r: (kind_priority(kinds[r]), texts[r], locations[r], keys[r]),
        )
        kept_texts = {texts[rows[0]]}
        base, k = id_base(doc_id), 2
        for r in rows[1:]:
            if texts[r] in kept_texts:
                keep[r] = False
                dropped.append((kinds[r], "exact_duplicate"))
                continue
            kept_texts.add(texts[r])
            while f"{base}~{k}" in taken:
                k += 1
            new_ids[r] = f"{base}~{k}"
            taken.add(new_ids[r])
            renamed.append({"id": new_ids[r], "original_id": doc_id, "location": locations[r], "source_kind": kinds[r]})
    table = table.set_column(table.column_names.index("id"), "id", pa.array(new_ids, pa.string()))
    return table.filter(pa.array(keep)), renamed, dropped


class _WriteShardFromSpillFn(beam.DoFn):
    """(shard, {"spill": locations, "drops": (doc key, reason)}) -> ("entry", manifest entry),
    ("event", ((metric, reason, source kind), n)) accounting counts for the rows written and dropped and the
    ids renamed (metric ``id_collisions``), and ("collision", renamed id) for the first few renamed ids."""

    def __init__(self, out_dir: str, schema: pa.Schema, num_shards: int, batch_rows: int):
        self.out_dir, self.schema, self.num_shards, self.batch_rows = out_dir, schema, num_shards, batch_rows

    def process(self, kv):
        shard, groups = kv
        locations = list(groups["spill"])
        if not locations:
            return
        drops = dict(groups["drops"])
        table = read_spilled(locations, spill_schema(self.schema))
        dropped: dict[tuple, int] = defaultdict(int)
        if drops:
            reasons = [drops.get(k) for k in table.column(KEY_COLUMN).to_pylist()]
            for reason, kind in zip(reasons, table.column("source_kind").to_pylist()):
                if reason is not None:
                    dropped[("dropped", reason, kind)] += 1
            table = table.filter(pa.array(np.array([r is None for r in reasons], dtype=bool)))
        table, renamed, same_id_copies = resolve_id_collisions(table)
        for kind, reason in same_id_copies:
            dropped[("dropped", reason, kind)] += 1
        counted: dict[tuple, int] = defaultdict(int, dropped)
        for kind in table.column("source_kind").to_pylist():
            counted[("output", None, kind)] += 1
        for r in renamed:
            counted[("id_collisions", None, r["source_kind"])] += 1
        for event, n in sorted(counted.items(), key=str):
            yield "event", (event, n)
        for r in sorted(renamed, key=lambda r: r["id"])[:COLLISION_EXAMPLES]:
            yield "collision", r
        if table.num_rows == 0:
            return
        table = table.drop_columns([KEY_COLUMN])
        order = pc.sort_indices(table, sort_keys=[("id", "ascending")])
        batches = (  # gathered a batch at a time: the shard is held once, not twice
            table.take(order[start : start + self.batch_rows]).combine_chunks().to_batches()[0]
            for start in range(0, table.num_rows, self.batch_rows)
        )
        yield "entry", beamio.write_shard(self.out_dir, shard, self.num_shards, self.schema, batches)
        del table, order, batches
        pa.default_memory_pool().release_unused()  # hand the shard's memory back before the next one


class WriteShardsFromSpill(beam.PTransform):
    """{"spill": (shard, location), "drops": (doc key, reason)} -> {"entries": manifest entries,
    "counts": ((metric, reason, source kind), n), "collisions": renamed ids (a few per shard)}: every
    spilled row is written or counted as dropped. ``schema``: the output schema (without ``KEY_COLUMN``)."""

    def __init__(self, out_dir: str, schema: pa.Schema, num_shards: int, batch_rows: int = 2048):
        super().__init__()
        self.out_dir, self.schema, self.num_shards, self.batch_rows = out_dir, schema, num_shards, batch_rows

    def expand(self, inputs):
        n = self.num_shards
        drops = inputs["drops"] | "DropsByShard" >> beam.Map(lambda d: (shard_of_key(d[0], n), d))
        written = (
            {"spill": inputs["spill"], "drops": drops}
            | "JoinDrops" >> beam.CoGroupByKey()
            | "WriteShard" >> beam.ParDo(_WriteShardFromSpillFn(self.out_dir, self.schema, n, self.batch_rows))
        )
        split = beamio.split_by_tag(written, ("entry", "event", "collision"), "Written")
        return {"entries": split["entry"], "counts": split["event"], "collisions": split["collision"]}


class SpilledTexts(beam.PTransform):
    """doc keys (with repeats) -> (doc key, text), read from the spilled shards they belong to.
    ``schema``: the output schema (the spill files add ``KEY_COLUMN``)."""

    def __init__(self, spill_locations, schema: pa.Schema, num_shards: int):
        super().__init__()
        self.spill_locations, self.schema, self.num_shards = spill_locations, schema, num_shards

    def expand(self, keys):
        n, schema = self.num_shards, self.schema

        def texts(kv):
            _, groups = kv
            wanted = set(groups["want"])
            if not wanted:
                return
            table = read_spilled(groups["spill"], spill_schema(schema), columns=[KEY_COLUMN, "text"])
            for key, text in zip(table.column(KEY_COLUMN).to_pylist(), table.column("text").to_pylist()):
                if key in wanted:
                    wanted.discard(key)
                    yield key, text

        return (
            {"want": keys | "WantByShard" >> beam.Map(lambda k: (shard_of_key(k, n), k)), "spill": self.spill_locations}
            | "JoinSpill" >> beam.CoGroupByKey()
            | "ReadTexts" >> beam.FlatMap(texts)
        )
