"""The shard contract every stage shares: ``OUT/manifest.json`` + ``OUT/shards/*.arrow`` + ``OUT/dead_letter/``.

Writers (the Beam jobs) and readers (``knowmix stats``, the tokenizer, the trainer) both go through this
module, so the trainer never needs to import ``pipelines`` (or Beam) to read a shard directory.

Shards are Arrow IPC *file* format with zstd-compressed record batches; the manifest lists each shard's
path (relative to OUT), rows, bytes and sha256, and ``counts`` with
``input == output + dead_letter + sum(dropped.values())``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import pyarrow as pa

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SHARDS_DIR = "shards"
DEAD_LETTER_DIR = "dead_letter"
KINDS = ("docs", "pretrain", "knowledge", "knowledge_tokens")


class ContractError(Exception):
    """A shard directory that breaks the contract; the message is one line naming the file."""


# ---------------------------------------------------------------------------------------------- counts


def check_counts(counts: Mapping[str, Any]) -> None:
    """Raise ContractError unless input == output + dead_letter + sum(dropped)."""
    dropped = sum(int(v) for v in counts.get("dropped", {}).values())
    total = int(counts["output"]) + int(counts["dead_letter"]) + dropped
    if int(counts["input"]) != total:
        raise ContractError(
            f"counts do not add up: input {counts['input']} != output {counts['output']}"
            f" + dead_letter {counts['dead_letter']} + dropped {dropped}"
        )


# ---------------------------------------------------------------------------------------------- schema


def schema_to_json(schema: pa.Schema) -> list[dict]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


# ---------------------------------------------------------------------------------------------- files


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: str, text: str) -> None:
    """Write to a temporary name in the same directory, then rename: readers never see half a file."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_table(path: str, table: pa.Table, max_batch_rows: int = 4096) -> dict:
    """Write ``table`` as an Arrow IPC file (zstd), atomically; return its shard entry (relative path unset)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".arrow", dir=directory)
    os.close(fd)
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema, options=options) as writer:
        for batch in table.to_batches(max_chunksize=max_batch_rows):
            writer.write_batch(batch)
    os.replace(tmp, path)
    return {"rows": table.num_rows, "bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def build_manifest(
    kind: str,
    shards: Iterable[Mapping[str, Any]],
    schema: pa.Schema,
    counts: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    from knowmix import __version__

    if kind not in KINDS:
        raise ValueError(f"unknown manifest kind {kind!r}; expected one of {KINDS}")
    counts = {
        "input": int(counts["input"]),
        "output": int(counts["output"]),
        "dead_letter": int(counts["dead_letter"]),
        "dropped": {k: int(v) for k, v in sorted(counts.get("dropped", {}).items())},
        **{k: v for k, v in counts.items() if k not in ("input", "output", "dead_letter", "dropped")},
    }
    check_counts(counts)
    shard_list = sorted((dict(s) for s in shards), key=lambda s: s["path"])
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "tool": {"name": "knowmix", "version": __version__},
        "command": list(options.get("argv", sys.argv)) if options else list(sys.argv),
        "options": dict(options or {}),
        "schema": schema_to_json(schema),
        "shards": shard_list,
        "counts": counts,
    }
    if extra:
        manifest.update(extra)
    return manifest


def write_manifest(out_dir: str, manifest: Mapping[str, Any]) -> str:
    path = os.path.join(out_dir, MANIFEST_NAME)
    atomic_write_text(path, json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=False) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class ShardDir:
    """A verified view of a stage's output directory."""

    root: str
    manifest: dict

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def shard_paths(self) -> list[str]:
        return [os.path.join(self.root, s["path"]) for s in self.manifest["shards"]]

    def open_shard(self, index: int) -> pa.Table:
        """Memory-map one shard (zero-copy for uncompressed columns; zstd batches decode on access)."""
        return read_arrow(self.shard_paths[index])

    def iter_tables(self):
        for i in range(len(self.manifest["shards"])):
            yield self.open_shard(i)

    def read_all(self) -> pa.Table:
        tables = list(self.iter_tables())
        if not tables:
            return pa.schema([]).empty_table()
        return pa.concat_tables(tables)


def read_arrow(path: str) -> pa.Table:
    with pa.memory_map(path, "r") as source:
        return pa.ipc.open_file(source).read_all()


def read_manifest(out_dir: str) -> dict:
    path = os.path.join(out_dir, MANIFEST_NAME)
    if not os.path.isdir(out_dir):
        raise ContractError(f"{out_dir}: no such directory")
    if not os.path.exists(path):
        raise ContractError(f"{path}: missing (is {out_dir} the output of a knowmix stage?)")
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ContractError(f"{path}: not a readable JSON manifest ({exc})") from None
    for key in ("schema_version", "kind", "shards", "counts"):
        if key not in manifest:
            raise ContractError(f"{path}: missing key {key!r}")
    if manifest["schema_version"] > SCHEMA_VERSION:
        raise ContractError(f"{path}: schema_version {manifest['schema_version']} is newer than this knowmix")
    try:
        check_counts(manifest["counts"])
    except ContractError as exc:
        raise ContractError(f"{path}: {exc}") from None
    return manifest


def open_shard_dir(out_dir: str, kind: str | tuple[str, ...] | None = None, verify: bool = True) -> ShardDir:
    """Read and check a manifest; with ``verify``, refuse any shard whose sha256 or row count disagrees."""
    manifest = read_manifest(out_dir)
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds and manifest["kind"] not in kinds:
        raise ContractError(
            f"{os.path.join(out_dir, MANIFEST_NAME)}: kind is {manifest['kind']!r}, expected {' or '.join(kinds)}"
        )
    shard_dir = ShardDir(out_dir, manifest)
    if verify:
        for entry, path in zip(manifest["shards"], shard_dir.shard_paths):
            verify_shard(path, entry)
    return shard_dir


def verify_shard(path: str, entry: Mapping[str, Any]) -> None:
    if not os.path.exists(path):
        raise ContractError(f"{path}: listed in the manifest but missing")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ContractError(f"{path}: sha256 {digest[:12]}… differs from the manifest's {entry['sha256'][:12]}…")
    try:
        with pa.memory_map(path, "r") as source:
            rows = pa.ipc.open_file(source).read_all().num_rows
    except pa.ArrowInvalid as exc:
        raise ContractError(f"{path}: not an Arrow IPC file ({exc})") from None
    if rows != entry["rows"]:
        raise ContractError(f"{path}: {rows} rows, the manifest says {entry['rows']}")


def write_shard_dir(
    out_dir: str,
    kind: str,
    tables: list[pa.Table],
    counts: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """Write a whole shard directory from in-memory tables (used by small tools and by tests)."""
    shards = []
    for i, table in enumerate(tables):
        rel = f"{SHARDS_DIR}/part-{i:05d}-of-{len(tables):05d}.arrow"
        entry = write_table(os.path.join(out_dir, rel), table)
        shards.append({"path": rel, **entry})
    rows = sum(t.num_rows for t in tables)
    counts = counts or {"input": rows, "output": rows, "dead_letter": 0, "dropped": {}}
    schema = tables[0].schema if tables else pa.schema([])
    manifest = build_manifest(kind, shards, schema, counts, options, extra)
    write_manifest(out_dir, manifest)
    return manifest
