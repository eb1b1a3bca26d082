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
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import pyarrow as pa

from knowmix import fileio
from knowmix.errors import ContractError  # defined beside UserError: errors.py needs no import of this module
from knowmix.schemas import KIND_SCHEMAS

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SHARDS_DIR = "shards"
DEAD_LETTER_DIR = "dead_letter"
KINDS = ("docs", "pretrain", "knowledge", "knowledge_tokens")


# ---------------------------------------------------------------------------------------------- counts


def check_counts(counts: Mapping[str, Any]) -> None:
    """Raise ContractError unless input == output + dead_letter + sum(dropped) (each a count: an int >= 0)."""
    if not isinstance(counts, Mapping):
        raise ContractError(f"counts must be an object, got {type(counts).__name__}")
    for key in ("input", "output", "dead_letter"):
        if key not in counts:
            raise ContractError(f"counts lacks {key!r}")
        _check_count(counts[key], f"counts.{key}")
    dropped_map = counts.get("dropped", {})
    if not isinstance(dropped_map, Mapping):
        raise ContractError(f"counts.dropped must be an object, got {type(dropped_map).__name__}")
    for reason, n in dropped_map.items():
        _check_count(n, f"counts.dropped.{reason}")
    dropped = sum(int(v) for v in counts.get("dropped", {}).values())
    total = int(counts["output"]) + int(counts["dead_letter"]) + dropped
    if int(counts["input"]) != total:
        raise ContractError(
            f"counts do not add up: input {counts['input']} != output {counts['output']}"
            f" + dead_letter {counts['dead_letter']} + dropped {dropped}"
        )


def _check_count(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ContractError(f"{what} must be a count (an integer >= 0), got {value!r}")


def expected_shard_rows(manifest: Mapping[str, Any]) -> tuple[str, int]:
    """The count the shards' rows must add up to, and its name.

    ``docs``: one row per output document (``counts.output``). ``pretrain`` and ``knowledge_tokens`` pack or
    split input rows, so their rows are ``counts.sequences``; ``knowledge`` rows are samples
    (``counts.samples.total``). A manifest without those keys (small tools, tests) falls back to ``output``.
    """
    counts = manifest["counts"]
    kind = manifest["kind"]
    if kind in ("pretrain", "knowledge_tokens") and "sequences" in counts:
        return "counts.sequences", counts["sequences"]
    if kind == "knowledge" and isinstance(counts.get("samples"), Mapping) and "total" in counts["samples"]:
        return "counts.samples.total", counts["samples"]["total"]
    return "counts.output", counts["output"]


# ---------------------------------------------------------------------------------------------- schema


def schema_to_json(schema: pa.Schema) -> list[dict]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def schema_mismatch(kind: str, columns: list[dict]) -> str | None:
    """Why ``columns`` (``schema_to_json`` form) are not a ``kind`` shard's, or None.

    Every column of the kind's schema must be there with its type; other columns are allowed (a newer
    writer may add some), so a consumer reads only what it knows. Likewise inside a struct column (also in a
    list of structs): a field the consumer does not know is allowed (kg-samples' spans carry ``type_source``).
    """
    expected = KIND_SCHEMAS.get(kind)
    if expected is None:
        return None
    have = {c["name"]: c["type"] for c in columns}
    for field in expected:
        if field.name not in have:
            return f"lacks the {kind} column {field.name!r}"
        if not type_covers(have[field.name], str(field.type)):
            return f"column {field.name!r} is {have[field.name]}, a {kind} shard's is {field.type}"
    return None


def type_covers(have: str, want: str) -> bool:
    """Whether Arrow type ``have`` (its string form) holds ``want``: equal, or structs (also as list items)
    with every field of ``want`` in ``have``, of a type that covers it."""
    if have == want:
        return True
    for kind in ("list<", "large_list<"):
        if have.startswith(kind) and want.startswith(kind):
            return type_covers(_fields(have[len(kind):-1]).get("item", ""), _fields(want[len(kind):-1]).get("item", "?"))
    if have.startswith("struct<") and want.startswith("struct<"):
        got = _fields(have[len("struct<"):-1])
        return all(name in got and type_covers(got[name], t) for name, t in _fields(want[len("struct<"):-1]).items())
    return False


def _fields(body: str) -> dict[str, str]:
    """``name: type, name: type`` (types may nest ``<...>``) -> {name: type}."""
    fields, depth, start = {}, 0, 0
    for i, ch in enumerate(body + ","):
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "," and depth == 0:
            name, _, typ = body[start:i].strip().partition(": ")
            fields[name] = typ
            start = i + 1
    return fields


# ---------------------------------------------------------------------------------------------- files


#: callers not yet switched to ``knowmix.fileio.write_text`` (the one atomic write is ``fileio.atomic_write``)


def write_table(path: str, table: pa.Table, max_batch_rows: int = 4096) -> dict:
    """Write ``table`` as an Arrow IPC file (zstd), atomically; return its shard entry (relative path unset)."""
    options = pa.ipc.IpcWriteOptions(compression="zstd")

    def write(sink) -> None:
        with pa.ipc.new_file(sink, table.schema, options=options) as writer:
            for batch in table.to_batches(max_chunksize=max_batch_rows):
                writer.write_batch(batch)

    fileio.atomic_write(path, write, opener=lambda tmp: pa.OSFile(tmp, "wb"))
    return {"rows": table.num_rows, "bytes": os.path.getsize(path), "sha256": fileio.sha256_of(path)}


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
    fileio.write_text(path, json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=False) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class ShardDir:
    """A verified view of a stage's output directory.

    ``deferred``: the shards' checksums, rows and schemas are checked as each shard is opened (``open_shard``,
    ``shard_refs``), not up front: so for a remote directory (gs://, s3://) the launcher reads only the
    manifest, and the workers that read the shards check them.
    """

    root: str
    manifest: dict
    deferred: bool = False

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def shard_paths(self) -> list[str]:
        """The shards' paths, each confined to ``root`` (a manifest path that leaves it is a ContractError)."""
        return [confined_path(self.root, s["path"], "shard path") for s in self.manifest["shards"]]

    def open_shard(self, index: int) -> pa.Table:
        """Memory-map one shard (zero-copy for uncompressed columns; zstd batches decode on access); a remote
        shard is read whole, and checked against its entry when verification was deferred."""
        return self._ref(index).open()

    def shard_refs(self) -> list["ShardRef"]:
        """One picklable ``ShardRef`` per shard: what a Beam worker opens (and checks, when ``deferred``)."""
        return [self._ref(i) for i in range(len(self.manifest["shards"]))]

    def _ref(self, index: int) -> "ShardRef":
        entry = self.manifest["shards"][index]
        path = confined_path(self.root, entry["path"], "shard path")
        if not self.deferred:
            return ShardRef(path)
        return ShardRef(path, dict(entry), self.kind, self.manifest.get("schema"))

    def iter_tables(self):
        for i in range(len(self.manifest["shards"])):
            yield self.open_shard(i)

    def read_all(self) -> pa.Table:
        tables = list(self.iter_tables())
        if not tables:
            return pa.schema([]).empty_table()
        return pa.concat_tables(tables)


@dataclass(frozen=True)
class ShardRef:
    """A shard to open, with its manifest entry when it is still to be checked (``entry`` None: it was)."""

    path: str
    entry: dict | None = None
    kind: str | None = None
    schema: list | None = None

    def open(self) -> pa.Table:
        if self.entry is None:
            return read_shard(self.path)
        return read_verified_shard(self.path, self.entry, self.kind, self.schema)


def read_arrow(path: str) -> pa.Table:
    if fileio.is_remote(path):
        return pa.ipc.open_file(pa.BufferReader(fileio.read_bytes(path))).read_all()
    with pa.memory_map(path, "r") as source:
        return pa.ipc.open_file(source).read_all()


def read_shard(path: str) -> pa.Table:
    """``read_arrow`` for a consumer: an unreadable or damaged shard is a one-line ContractError naming it."""
    try:
        return read_arrow(path)
    except IsADirectoryError:
        raise ContractError(f"{path}: listed as a shard but is a directory") from None
    except FileNotFoundError:
        raise ContractError(f"{path}: listed in the manifest but missing") from None
    except OSError as exc:
        raise ContractError(f"{path}: cannot read the shard ({_one_line(exc)})") from None
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise ContractError(f"{path}: not a readable Arrow IPC file ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return text.splitlines()[0][:300]


def check_relative_path(rel: Any, what: str) -> str:
    """A path inside a manifest: relative, no ``..``, no drive or backslash tricks; returns it normalised."""
    if not isinstance(rel, str) or not rel:
        raise ContractError(f"{what} must be a non-empty string, got {rel!r}")
    if "\\" in rel or "\0" in rel or os.path.isabs(rel) or rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
        raise ContractError(f"{what} {rel!r} is not a relative path inside the directory")
    parts = rel.split("/")
    if ".." in parts:
        raise ContractError(f"{what} {rel!r} leaves the directory ('..')")
    norm = "/".join(p for p in parts if p not in ("", "."))
    if not norm:
        raise ContractError(f"{what} {rel!r} names the directory itself, not a file in it")
    return norm


def confined_path(root: str, rel: Any, what: str = "path") -> str:
    """``root/rel`` for a path read from a manifest, refusing one that leaves ``root`` (also through symlinks)."""
    norm = check_relative_path(rel, what)
    if fileio.is_remote(root):  # an object store: no links, and the checked relative path cannot leave root
        return fileio.join(root, norm)
    path = os.path.join(root, *norm.split("/"))
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise ContractError(f"{path}: {what} leaves {root} (a link to {real})")
    return path


def _check_shard_list(entries: Any, what: str) -> None:
    if not isinstance(entries, list):
        raise ContractError(f"{what} must be a list, got {type(entries).__name__}")
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{what}[{i}]"
        if not isinstance(entry, Mapping):
            raise ContractError(f"{where} must be an object, got {type(entry).__name__}")
        for key in ("path", "rows", "bytes", "sha256"):
            if key not in entry:
                raise ContractError(f"{where} lacks {key!r}")
        norm = check_relative_path(entry["path"], f"{where}.path")
        if norm in seen:
            raise ContractError(f"{what} lists {norm} twice")
        seen.add(norm)
        _check_count(entry["rows"], f"{where}.rows ({norm})")
        _check_count(entry["bytes"], f"{where}.bytes ({norm})")
        sha = entry["sha256"]
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ContractError(f"{where}.sha256 ({norm}) must be 64 lower-case hex digits, got {sha!r}")


def check_manifest(manifest: Any, check_rows: bool = True) -> None:
    """The manifest's own consistency (no shard file is opened): types, keys, paths, counts, rows, schema.

    Raises ContractError with a one-line message (the caller prefixes the manifest's path). ``check_rows``:
    the shards' rows must add up to the kind's count (``check_shard_rows``).
    """
    if not isinstance(manifest, dict):
        raise ContractError(f"not a manifest (a JSON {type(manifest).__name__}, expected an object)")
    for key in ("schema_version", "kind", "shards", "counts"):
        if key not in manifest:
            raise ContractError(f"missing key {key!r}")
    version = manifest["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ContractError(f"schema_version must be an integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ContractError(f"schema_version {version} is newer than this knowmix")
    if manifest["kind"] not in KINDS:
        raise ContractError(f"kind {manifest['kind']!r} is not one of {', '.join(KINDS)}")
    _check_shard_list(manifest["shards"], "shards")
    check_counts(manifest["counts"])
    what, expected = expected_shard_rows(manifest)
    _check_count(expected, what)
    if check_rows:
        check_shard_rows(manifest)
    schema = manifest.get("schema")
    if schema is not None:
        if not isinstance(schema, list) or not all(
            isinstance(c, Mapping) and isinstance(c.get("name"), str) and isinstance(c.get("type"), str) for c in schema
        ):
            raise ContractError("schema must be a list of {name, type, nullable} objects")
        if manifest["shards"]:
            why = schema_mismatch(manifest["kind"], schema)
            if why:
                raise ContractError(f"the schema {why}")
    if "cluster_table" in manifest:
        _check_shard_list(manifest["cluster_table"], "cluster_table")


def check_shard_rows(manifest: Mapping[str, Any], out_dir: str | None = None) -> None:
    """The shards' rows must add up to the kind's count: a manifest that leaves a shard out, or lists one too
    many, is refused. With ``out_dir``, the message names a shard file that is there but not listed."""
    what, expected = expected_shard_rows(manifest)
    rows = sum(s["rows"] for s in manifest["shards"])
    if rows == expected:
        return
    hint = "a shard left out of the list, or one too many"
    if out_dir is not None:
        listed = {check_relative_path(s["path"], "path") for s in manifest["shards"]}
        folders = sorted({p.rsplit("/", 1)[0] for p in listed if "/" in p} or {SHARDS_DIR})
        unlisted = sorted(
            f"{folder}/{name}"
            for folder in folders
            for name in fileio.list_names(fileio.join(out_dir, folder))
            if name.endswith(".arrow") and f"{folder}/{name}" not in listed
        )
        if unlisted:
            hint = f"{fileio.join(out_dir, unlisted[0])} is in the directory but not in the manifest"
    raise ContractError(f"the shards hold {rows} rows but {what} is {expected} ({hint})")


def read_manifest(out_dir: str, check_rows: bool = True) -> dict:
    """Read ``OUT/manifest.json`` and check its own consistency (``check_manifest``); one-line ContractErrors."""
    path = fileio.join(out_dir, MANIFEST_NAME)
    remote = fileio.is_remote(out_dir)
    if not remote and not os.path.isdir(out_dir):
        raise ContractError(f"{out_dir}: no such directory")
    if not fileio.exists(path):
        raise ContractError(f"{path}: missing (is {out_dir} the output of a knowmix stage?)")
    try:
        manifest = json.loads(fileio.read_text(path))
    except (OSError, ValueError) as exc:
        raise ContractError(f"{path}: not a readable JSON manifest ({_one_line(exc)})") from None
    try:
        check_manifest(manifest, check_rows=False)
        if check_rows:
            check_shard_rows(manifest, out_dir)
    except ContractError as exc:
        raise ContractError(f"{path}: {exc}") from None
    return manifest


def open_shard_dir(out_dir: str, kind: str | tuple[str, ...] | None = None, verify: bool = True) -> ShardDir:
    """Read and check a manifest; with ``verify``, refuse any shard whose sha256, row count or schema disagrees.

    Without ``verify`` the manifest's own consistency (types, paths inside the directory, no shard twice,
    rows adding up to the counts) is still checked: it costs no shard read. A remote directory (gs://, s3://)
    is verified shard by shard as the shards are opened (``ShardDir.deferred``), never downloaded up front.
    """
    # with verify, each shard is checked against its entry before the entries' sum is: a shard's edited row
    # count is then reported with the shard's name
    deferred = verify and fileio.is_remote(out_dir)
    manifest = read_manifest(out_dir, check_rows=not verify or deferred)
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds and manifest["kind"] not in kinds:
        raise ContractError(
            f"{fileio.join(out_dir, MANIFEST_NAME)}: kind is {manifest['kind']!r}, expected {' or '.join(kinds)}"
        )
    shard_dir = ShardDir(out_dir, manifest, deferred=deferred)
    paths = shard_dir.shard_paths  # confines every path to out_dir
    cluster_entries = manifest.get("cluster_table") or []
    cluster_paths = [confined_path(out_dir, e["path"], "cluster_table path") for e in cluster_entries]
    if verify and not deferred:
        recorded = manifest.get("schema")
        for entry, path in zip(manifest["shards"], paths):
            verify_shard(path, entry, kind=manifest["kind"], schema=recorded)
        for entry, path in zip(cluster_entries, cluster_paths):
            verify_shard(path, entry)
        try:
            check_shard_rows(manifest, out_dir)
        except ContractError as exc:
            raise ContractError(f"{os.path.join(out_dir, MANIFEST_NAME)}: {exc}") from None
    return shard_dir


def verify_shard(
    path: str, entry: Mapping[str, Any], kind: str | None = None, schema: list[dict] | None = None
) -> None:
    """Refuse a shard whose bytes, rows or schema disagree with its manifest entry (one line naming it).

    ``kind``: also refuse a schema that is not the kind's; ``schema``: the manifest's recorded schema, which
    the shard's must equal.
    """
    if fileio.is_remote(path):
        read_verified_shard(path, entry, kind, schema)
        return
    if os.path.isdir(path):
        raise ContractError(f"{path}: listed as a shard but is a directory")
    if not os.path.exists(path):
        raise ContractError(f"{path}: listed in the manifest but missing")
    try:
        digest = fileio.sha256_of(path)
    except OSError as exc:
        raise ContractError(f"{path}: cannot read the shard ({_one_line(exc)})") from None
    if digest != entry["sha256"]:
        raise ContractError(f"{path}: sha256 {digest[:12]}… differs from the manifest's {str(entry['sha256'])[:12]}…")
    try:
        with pa.memory_map(path, "r") as source:
            reader = pa.ipc.open_file(source)
            shard_schema = reader.schema
            rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except (pa.ArrowException, OSError) as exc:
        raise ContractError(f"{path}: not an Arrow IPC file ({_one_line(exc)})") from None
    _check_rows_and_schema(path, rows, shard_schema, entry, kind, schema)


def read_verified_shard(
    path: str, entry: Mapping[str, Any], kind: str | None = None, schema: list[dict] | None = None
) -> pa.Table:
    """Read one shard's bytes once, refuse them unless sha256, rows and schema agree with ``entry``
    (``verify_shard``'s checks), and return the table: how a worker opens a shard of a remote input."""
    try:
        data = fileio.read_bytes(path)
    except FileNotFoundError:
        raise ContractError(f"{path}: listed in the manifest but missing") from None
    except OSError as exc:
        raise ContractError(f"{path}: cannot read the shard ({_one_line(exc)})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise ContractError(f"{path}: sha256 {digest[:12]}… differs from the manifest's {str(entry['sha256'])[:12]}…")
    try:
        table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
    except (pa.ArrowException, OSError) as exc:
        raise ContractError(f"{path}: not an Arrow IPC file ({_one_line(exc)})") from None
    _check_rows_and_schema(path, table.num_rows, table.schema, entry, kind, schema)
    return table


def _check_rows_and_schema(path: str, rows: int, shard_schema: pa.Schema, entry: Mapping[str, Any],
                           kind: str | None, schema: list[dict] | None) -> None:
    if rows != entry["rows"]:
        raise ContractError(f"{path}: {rows} rows, the manifest says {entry['rows']}")
    columns = schema_to_json(shard_schema)
    if schema is not None and [(c["name"], c["type"]) for c in columns] != [(c["name"], c["type"]) for c in schema]:
        raise ContractError(f"{path}: its Arrow schema differs from the manifest's")
    if kind is not None:
        why = schema_mismatch(kind, columns)
        if why:
            raise ContractError(f"{path}: not a {kind} shard: its schema {why}")


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
