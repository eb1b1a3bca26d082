"""Beam plumbing shared by every knowmix job: runner options, the Arrow shard sink, dead letters, accounting,
and the manifest step.

Determinism: a row's shard is ``hash(id) % num_shards`` (``pipelines.doc_keys.shard_of``) and rows inside a
shard are sorted by id, so any runner (in-process, multi-processing, Dask, Dataflow) writes byte-identical
shards for the same input.
Atomicity: each shard is written under a temporary name through a ``FileBasedSink`` subclass and renamed
when complete; a retried bundle rewrites the same name with the same bytes, never duplicating rows.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from typing import Any, Callable, Iterable, Mapping

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filebasedsink import FileBasedSink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from knowmix import fileio
from knowmix.errors import UserError
from knowmix.fileio import sha256_of
from knowmix.manifest import DEAD_LETTER_DIR, MANIFEST_NAME, SHARDS_DIR, build_manifest
from knowmix.pipelines.doc_keys import shard_of

FNAPI_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"
LOCAL_RUNNER_NAMES = {None, "", "DirectRunner", "direct", "FnApiRunner"}


# ---------------------------------------------------------------------------------------------- options


def pipeline_options(beam_args: Iterable[str]) -> PipelineOptions:
    """Beam flags pass through unchanged; the local default is Beam's direct runner *engine* (FnApiRunner).

    Beam's ``DirectRunner`` first tries Prism, which downloads a binary (and fails offline); the FnApiRunner
    is what it falls back to, and it honours ``--direct_running_mode`` and ``--direct_num_workers``.
    """
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    check_runner(standard.runner)
    if standard.runner in LOCAL_RUNNER_NAMES:
        standard.runner = FNAPI_RUNNER
        direct = options.view_as(DirectOptions)
        if direct.direct_running_mode == "multi_processing" and not direct.direct_num_workers:
            direct.direct_num_workers = 2
    return options


def unknown_beam_flags(beam_args: Iterable[str]) -> list[str]:
    """Flags that neither Beam nor a runner we know defines: a typo of one of our own flags, most likely.

    Beam itself only logs "Discarding unparseable args" for these, which users miss.
    """
    import argparse

    for module in ("apache_beam.runners.dask.dask_runner", "apache_beam.options.pipeline_options"):
        try:
            __import__(module)
        except Exception:  # an optional runner that is not installed
            pass
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    seen: set[type] = set()
    stack = list(PipelineOptions.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:
            pass  # the same flag declared by two option classes
    _, unknown = parser.parse_known_args(list(beam_args))
    return [a.split("=")[0] if a.startswith("-") else a for a in unknown]


def check_runner(runner: str | None) -> None:
    """A ``--runner`` Beam cannot create is a one-line UserError (Beam raises a ValueError with a traceback)."""
    if runner in LOCAL_RUNNER_NAMES:
        return
    from apache_beam.runners.runner import create_runner

    try:
        create_runner(runner)
    except ValueError:
        raise UserError(
            f"--runner {runner}: not a Beam runner (e.g. DirectRunner, DataflowRunner, FlinkRunner, SparkRunner,"
            " or a full class path such as apache_beam.runners.dask.dask_runner.DaskRunner)"
        ) from None
    except (ImportError, AttributeError) as exc:
        raise UserError(f"--runner {runner}: cannot load it ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def check_beam_args(beam_args: Iterable[str], command: str) -> None:
    """The arguments a job did not parse itself must all be Beam pipeline options (and name a runner Beam has):
    anything else is a one-line UserError, raised before the job touches its output."""
    beam_args = list(beam_args)
    unknown = unknown_beam_flags(beam_args)
    if unknown:
        what = "option" if unknown[0].startswith("-") else "argument"
        raise UserError(f"unknown {what} {unknown[0]} (neither a knowmix {command} option nor a Beam pipeline option)")
    check_runner(PipelineOptions(beam_args).view_as(StandardOptions).runner)


# ---------------------------------------------------------------------------------------------- outputs


def split_by_tag(pcoll: beam.PCollection, tags: Iterable[str], label: str) -> dict[str, beam.PCollection]:
    """Runner-portable multiple outputs: ``pcoll`` holds ``(tag, value)`` pairs; one branch per tag.

    knowmix's DoFns never use ``with_outputs``/``TaggedOutput``: Beam's Dask runner (2.77) unwraps tagged
    outputs into the main output, mixing the streams. On fusing runners these branches cost one cheap
    filter each.
    """
    return {
        tag: pcoll | f"{label}.{tag}" >> beam.FlatMap(lambda kv, t=tag: (kv[1],) if kv[0] == t else ())
        for tag in tags
    }


# ---------------------------------------------------------------------------------------------- file helpers


def join(*parts: str) -> str:
    """Join paths for local directories and for gs:// / s3:// URLs alike."""
    head = parts[0]
    if "://" in head:
        return posixpath.join(*parts)
    return FileSystems.join(*parts)


def write_text_atomically(path: str, text: str) -> None:
    """``knowmix.fileio.atomic_write`` through Beam's filesystems, as ``text/plain`` (so GCS serves it as text)."""
    fileio.atomic_write(
        path, lambda fh: fh.write(text.encode("utf-8")),
        opener=lambda tmp: FileSystems.create(tmp, mime_type="text/plain", compression_type=CompressionTypes.UNCOMPRESSED),
    )


def digest_of(path: str) -> tuple[int, str]:
    """(size in bytes, sha256) of a file on any Beam filesystem: the size as the filesystem reports it, the
    digest from ``knowmix.fileio.sha256_of`` (the one sha256 helper)."""
    return FileSystems.get_filesystem(path).size(path), sha256_of(path)


def shard_name(index: int, num_shards: int, subdir: str = SHARDS_DIR) -> str:
    return f"{subdir}/part-{index:05d}-of-{num_shards:05d}.arrow"


# ---------------------------------------------------------------------------------------------- the sink


class ArrowShardSink(FileBasedSink):
    """A FileBasedSink writing Arrow IPC *file* format with zstd-compressed record batches.

    ``open``/``write_record``/``close`` wrap ``pyarrow.ipc.new_file`` around the filesystem handle, so it
    writes to local disk, GCS or S3 alike. Records are ``pyarrow.RecordBatch`` objects.
    """

    def __init__(self, file_path_prefix: str, schema: pa.Schema):
        super().__init__(
            file_path_prefix,
            coder=None,
            file_name_suffix=".arrow",
            mime_type="application/vnd.apache.arrow.file",
            compression_type=CompressionTypes.UNCOMPRESSED,
        )
        self.schema = schema

    def open(self, temp_path):
        handle = super().open(temp_path)
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        return handle, pa.ipc.new_file(handle, self.schema, options=options)

    def write_record(self, file_handle, value: pa.RecordBatch):
        file_handle[1].write_batch(value)

    def close(self, file_handle):
        handle, writer = file_handle
        writer.close()
        super().close(handle)


def write_shard(
    out_dir: str, index: int, num_shards: int, schema: pa.Schema, batches: Iterable[pa.RecordBatch],
    subdir: str = SHARDS_DIR,
) -> dict:
    """Write one shard under a temporary name, rename it, and return its manifest entry."""
    name = shard_name(index, num_shards, subdir)
    final = join(out_dir, name)
    temp = f"{final}.tmp-{uuid.uuid4().hex[:12]}"
    sink = ArrowShardSink(final, schema)
    handle = sink.open(temp)
    rows = 0
    for batch in batches:
        sink.write_record(handle, batch)
        rows += batch.num_rows
    sink.close(handle)
    if FileSystems.exists(final):  # a retried bundle: same id set, same bytes
        FileSystems.delete([final])
    FileSystems.rename([temp], [final])
    size, sha = digest_of(final)
    beam.metrics.Metrics.counter("knowmix", "shard_rows").inc(rows)
    return {"path": name, "rows": rows, "bytes": size, "sha256": sha}


class _WriteShardFn(beam.DoFn):
    def __init__(self, out_dir: str, schema: pa.Schema, num_shards: int, sort_key: str, batch_rows: int, subdir: str):
        self.out_dir = out_dir
        self.subdir = subdir
        self.schema = schema
        self.num_shards = num_shards
        self.sort_key = sort_key
        self.batch_rows = batch_rows

    def process(self, element):
        index, rows = element
        rows = sorted(rows, key=lambda r: r[self.sort_key])
        batches = (
            pa.RecordBatch.from_pylist(rows[start : start + self.batch_rows], schema=self.schema)
            for start in range(0, len(rows), self.batch_rows)
        )
        yield write_shard(self.out_dir, index, self.num_shards, self.schema, batches, self.subdir)


class WriteShards(beam.PTransform):
    """PCollection of row dicts -> Arrow shards under OUT/shards/; outputs one entry per shard for the manifest.

    The rows go through a GroupByKey and a shard is sorted in memory: for small tables (cluster rows,
    knowledge samples). The clean job writes its documents from spill files instead (``pipelines.spill``).
    """

    def __init__(
        self,
        out_dir: str,
        schema: pa.Schema,
        num_shards: int,
        sort_key: str = "id",
        batch_rows: int = 2048,
        subdir: str = SHARDS_DIR,
    ):
        super().__init__()
        self.subdir = subdir
        self.out_dir = out_dir
        self.schema = schema
        self.num_shards = max(1, int(num_shards))
        self.sort_key = sort_key
        self.batch_rows = batch_rows

    def expand(self, rows):
        n, key = self.num_shards, self.sort_key
        return (
            rows
            | "KeyByShard" >> beam.Map(lambda r: (shard_of(r[key], n), r))
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(
                _WriteShardFn(self.out_dir, self.schema, n, key, self.batch_rows, self.subdir)
            )
        )


class WriteDeadLetters(beam.PTransform):
    """Dead-letter rows ``{source, location, reason, raw}`` -> OUT/dead_letter/part-00000.jsonl, sorted.

    Outputs the number of rows written (feed it to WriteManifest's ``after`` so runners that only execute
    what the last step depends on, like Beam's Dask runner, still write the file).
    """

    def __init__(self, out_dir: str):
        super().__init__()
        self.out_dir = out_dir

    def expand(self, rows):
        out_dir = self.out_dir

        def write(rows_iter):
            rows_sorted = sorted(rows_iter, key=lambda r: (r["source"], r["location"], r["reason"]))
            if not rows_sorted:
                return 0
            text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows_sorted)
            write_text_atomically(join(out_dir, DEAD_LETTER_DIR, "part-00000.jsonl"), text)
            return len(rows_sorted)

        return (
            rows
            | "Single" >> beam.Map(lambda r: (0, r))
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.Map(lambda kv: write(kv[1]))
        )


# ---------------------------------------------------------------------------------------------- accounting


def tally(events: beam.PCollection, counted: Iterable[beam.PCollection] = ()) -> beam.PCollection:
    """Count accounting events ``(metric, reason, group)`` -> ``((metric, reason, group), n)``.

    metric is ``input``, ``output``, ``dead_letter`` or ``dropped`` (reason set only for ``dropped``);
    group is the source kind (docs) or task (knowledge) the event belongs to. ``counted`` are PCollections
    of already counted ``(event, n)`` pairs (e.g. from a step that writes a whole shard at once).
    """
    from knowmix.pipelines import progress

    # the live progress line (local runner) sees every event on its way; outputs are unchanged
    events = events | "Progress" >> beam.Map(progress.observe)
    counted = [c | f"ProgressCounted{i}" >> beam.Map(progress.observe_counted) for i, c in enumerate(counted)]
    if not counted:
        return events | "CountEvents" >> beam.combiners.Count.PerElement()
    ones = events | "One" >> beam.Map(lambda e: (e, 1))
    return (ones, *counted) | "AllCounts" >> beam.Flatten() | "SumCounts" >> beam.CombinePerKey(sum)


def counts_from_tallies(tallies: Iterable[tuple[tuple[str, str | None, str | None], int]], group_name: str) -> dict:
    counts: dict[str, Any] = {"input": 0, "output": 0, "dead_letter": 0, "dropped": {}}
    groups: dict[str, dict] = {}
    for (metric, reason, group), n in tallies:
        g = groups.setdefault(group or "", {"input": 0, "output": 0, "dead_letter": 0, "dropped": {}})
        if metric == "dropped":
            counts["dropped"][reason] = counts["dropped"].get(reason, 0) + n
            g["dropped"][reason] = g["dropped"].get(reason, 0) + n
        else:  # input, output, dead_letter, and extra counts such as id_collisions
            counts[metric] = counts.get(metric, 0) + n
            g[metric] = g.get(metric, 0) + n
    counts["dropped"] = dict(sorted(counts["dropped"].items()))
    for g in groups.values():
        g["dropped"] = dict(sorted(g["dropped"].items()))
    counts[group_name] = dict(sorted(groups.items()))
    return counts


class WriteManifest(beam.PTransform):
    """The last step: the manifest, written once all shards are complete (it waits on their entries).

    ``extra`` is a PCollection holding zero or more dicts merged into the manifest (e.g. per-task stats),
    or None. ``after`` are PCollections (e.g. WriteDeadLetters' output) that must be complete first: Beam's
    Dask runner only computes what the pipeline's last step depends on.
    """

    def __init__(
        self,
        out_dir: str,
        kind: str,
        schema: pa.Schema,
        shard_entries: beam.PCollection,
        tallies: beam.PCollection,
        options: Mapping[str, Any],
        group_name: str,
        extra: beam.PCollection | None = None,
        finalize: Callable[[dict], dict] | None = None,
        after: Iterable[beam.PCollection] = (),
    ):
        super().__init__()
        self.after = list(after)
        self.out_dir = out_dir
        self.kind = kind
        self.schema = schema
        self.shard_entries = shard_entries
        self.tallies = tallies
        self.options = dict(options)
        self.group_name = group_name
        self.extra = extra
        self.finalize = finalize

    def expand(self, pbegin):
        out_dir, kind, schema, options, group_name, finalize = (
            self.out_dir, self.kind, self.schema, self.options, self.group_name, self.finalize
        )

        def write(_, entries, tallies, extras, after):
            counts = counts_from_tallies(tallies, group_name)
            extra: dict = {}
            for e in extras:
                extra.update(e)
            manifest = build_manifest(kind, entries, schema, counts, options, extra)
            if finalize is not None:
                manifest = finalize(manifest)
            write_text_atomically(join(out_dir, MANIFEST_NAME), json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
            return manifest

        extra = self.extra if self.extra is not None else (pbegin | "NoExtra" >> beam.Create([]))
        after = [a | f"After{i}" >> beam.Map(lambda _: None) for i, a in enumerate(self.after)]
        after = tuple(after) | "AfterAll" >> beam.Flatten() if after else (pbegin | "NoAfter" >> beam.Create([]))
        return (
            pbegin
            | "Once" >> beam.Create([None])
            | "Write" >> beam.Map(
                write,
                entries=beam.pvalue.AsList(self.shard_entries),
                tallies=beam.pvalue.AsList(self.tallies),
                extras=beam.pvalue.AsList(extra),
                after=beam.pvalue.AsList(after),
            )
        )


class ReadShardRows(beam.PTransform):
    """Rows of every shard of a shard directory (see knowmix.manifest.open_shard_dir), batch by batch.

    ``shards``: paths, or ``knowmix.manifest.ShardRef``s (``ShardDir.shard_refs()``): a ref whose
    verification was deferred (a remote input) is checked, sha256, rows and schema, by the worker that reads it.
    """

    def __init__(self, shards: list):
        super().__init__()
        self.shards = list(shards)

    def expand(self, pbegin):
        from knowmix.pipelines import progress

        def rows_of(shard):
            if isinstance(shard, str):
                with FileSystems.open(shard, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
                    reader = pa.ipc.open_file(pa.BufferReader(fh.read()))
                    batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
                    yield from _rows_of_batches(batches, progress)
            else:
                yield from _rows_of_batches(shard.open().to_batches(), progress)

        return (
            pbegin
            | "ShardPaths" >> beam.Create(self.shards)
            | "Spread" >> beam.Reshuffle()
            | "Rows" >> beam.FlatMap(rows_of)
        )


def _rows_of_batches(batches, progress):
    for batch in batches:
        progress.note("read", batch.num_rows)
        yield from batch.to_pylist()


def output_run(out_dir: str, inputs: Iterable[tuple[str, str]] = (), command: str = "", extra_subdirs: Iterable[str] = ()):
    """The context a job writes its output in: ``with output_run(out, inputs) as run:`` write under
    ``run.staging``, then ``run.commit()`` once the manifest is written (see ``knowmix.outdir.OutputRun``:
    a lock, inputs inside the output refused, the previous output kept until the swap; a remote output is
    cleared and written in place: ``knowmix.outdir.RemoteOutputRun``)."""
    from knowmix.outdir import open_output

    return open_output(out_dir, inputs, command, extra_subdirs)
