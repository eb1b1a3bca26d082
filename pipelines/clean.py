"""``knowmix clean``: raw sources -> cleaned, deduplicated docs shards.

The recipe, top to bottom:
  read (corpora readers; unreadable input -> dead letters)
  -> 1. normalise -> 2. language id -> 3. quality rules     (pure functions, one DoFn with the reader)
     [-> 3b. the [quality] model's score, a chunk per call: pipelines.quality_model]
  -> 4. exact dedup -> 5. near dedup (MinHash-LSH)
  -> write docs shards + dead letters + manifest   [+ with keep_dropped, the dropped documents: pipelines.dropped]
Every record is an accounting event, so ``input == output + dead_letter + sum(dropped)`` holds exactly.

The file's shape (every Beam job's): ``parse_args`` -> ``resolve`` (the ``CleanJob``: config, input files and
sizes, shard count, Beam flags, resolved once) -> ``build(pipeline, job)``, the recipe above as named
transforms -> ``run(job)`` (returns the manifest read back) -> ``clean_main``.

Identity: a record is keyed internally by where it came from (source, file name relative to the source's glob
root, record position: ``pipelines.doc_keys.record_key``), never by its id alone, so two files that use one id
for different documents lose neither; the shard writer then makes output ids unique (same id and text: one
survives, ``exact_duplicate``; same id, other text: ``ID~2``, counted as ``id_collisions``). A record that
makes any step fail (a lone surrogate, a bug) becomes a dead letter with the error's one-line message.

Memory: no document goes through a shuffle. The step that cleans a file spills its documents
(``pipelines.spill``) and passes on only their dedup keys (``pipelines.dedup``, ~300 bytes a document);
dedup decides on keys; each shard writer reads its shard's spilled batches and leaves out the losers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from knowmix.corpora.document import RAW_LIMIT, Document
from knowmix.corpora.readers import ByteRange, ReadStats, count_line_starts, plan_ranges, read_path, read_range, splittable_format
from knowmix.corpora.sources import DEFAULT_SPLIT_BYTES, check_split_bytes, expand_paths, relative_name
from knowmix.errors import UserError
from knowmix.schemas import CLUSTER_SCHEMA, DEAD_LETTER_FIELDS, DOCS_SCHEMA
from knowmix.sharding import auto_num_shards, text_bytes
from knowmix.pipelines import beamio, progress
from knowmix.pipelines.clean_config import CleanConfig, load_config
from knowmix.pipelines.dedup import DedupKeyBuffer
from knowmix.pipelines.doc_keys import record_key
from knowmix.pipelines.dropped import (
    DROPPED_DIR, DroppedSpill, WriteDroppedShards, check_dropped_rows, models_entry, quality_step, with_dropped_shards,
)
from knowmix.pipelines.spill import (
    COLLISION_EXAMPLES, SPILL_DIR, BlobSpill, SpilledTexts, SpillWriter, WriteShardsFromSpill, delete_spill,
    spill_schema,
)
from knowmix.pipelines.worker_process import freeze_startup_heap

CLUSTERS_DIR = "clusters"


# ---------------------------------------------------------------------------------------------- steps


def one_line(exc: BaseException) -> str:
    """An exception as one line: ``TypeName: first line of its message`` (safe to encode)."""
    message = str(exc).strip().splitlines()
    return printable(f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__)[:500]


def printable(text: str) -> str:
    """``text`` with lone surrogates (which no UTF-8 writer accepts) shown as ``\\udXXX``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def invalid_unicode_field(row: dict) -> str | None:
    """The first string field of ``row`` that is not valid Unicode (a lone surrogate, e.g. from a JSON
    ``"\\ud800"`` escape), else None."""
    for key, value in row.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return key
    return None


class ReadAndClean(beam.DoFn):
    """(source index, path) -> the file's records through steps 1-3: normalise, language id, quality rules.

    Emits ``("kept", row)`` with ``lang``, ``lang_score``, ``n_chars``, ``script`` set (and ``_ordinal``, the record's
    position among the file's documents; for jsonl and txt-line files its line number, which is the same
    however the file was split into byte ranges), ``("dropped", (reason, kind))`` or ``("dead_letter", row)``.
    An element ``(index, path, (start, end, first line, report_empty))`` reads one byte range of a large
    line file (``corpora.readers.read_range``; see ``plan_reads``). Locations name the file relative to its
    source's glob root (``corpora.sources.relative_name``), however its path was spelled. Documents go through the steps a chunk at a time, stage by stage: run
    document by document, fastText and the numpy n-gram statistics evict each other from the CPU caches
    (measured: steps 1-3 about 30% slower). A chunk that fails is retried record by record, so an exception
    costs the one record that raised it (a dead letter naming the error). Chunks are formed inside
    ``process`` (not in ``finish_bundle``, whose output Beam's Dask runner drops).
    """

    CHUNK = 256
    quality = None  # a pipelines.quality_model.QualityScorer: scores a chunk's kept rows in one call
    keep_dropped = False  # also emit ("dropped_doc", (reason, row)) for every dropped document

    def __init__(self, sources, steps_by_kind: dict[str, dict[str, bool]], rules_by_kind: dict[str, dict[str, Any]]):
        self.sources = sources
        self.steps_by_kind = steps_by_kind
        self.rules_by_kind = rules_by_kind

    def setup(self):
        from knowmix.pipelines.langid import LanguageIdentifier
        from knowmix.pipelines.normalize import Normalizer

        self.normalizers = {kind: Normalizer(steps) for kind, steps in self.steps_by_kind.items()}
        self.lid = LanguageIdentifier()
        freeze_startup_heap()  # a worker process's exit: 0.5 s less (pipelines.worker_process)

    def process(self, element):
        index, path = element[:2]
        path = os.fsdecode(path)  # the file name travels as bytes: it need not be UTF-8
        spec = self.sources[index]
        name = relative_name(spec, path)
        byte_range = ByteRange(*element[2]) if len(element) > 2 else None  # a piece of a large file (plan_reads)
        # a line-format record's ordinal is its line number, which no split of the file changes
        line_ordinals = splittable_format(spec, path)

        def located(location: str) -> str:
            return name + location[len(path) :] if location.startswith(path) else location

        chunk: list[dict] = []
        stats = ReadStats()
        ordinal = 0
        records = iter(read_range(spec, path, byte_range, stats) if byte_range else read_path(spec, path, stats))
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except Exception as e:  # noqa: BLE001 - never a crash: the rest of the file is one dead letter
                yield "dead_letter", self.dead_row(spec.kind, name, f"unreadable file: {one_line(e)}", "")
                break
            row = record.to_row()
            row["location"] = located(row["location"])
            if not isinstance(record, Document):
                row["source_kind"] = spec.kind
                yield "dead_letter", {k: printable(v) if isinstance(v, str) else v for k, v in row.items()}
                continue
            bad = invalid_unicode_field(row)
            if bad is not None:
                reason = f"invalid Unicode in {bad} (a lone surrogate)"
                yield "dead_letter", self.dead_row(spec.kind, row["location"], reason, row["text"])
                continue
            row["_ordinal"] = int(record.location.rsplit(":", 1)[1]) if line_ordinals else ordinal
            ordinal += 1
            chunk.append(row)
            if len(chunk) >= self.CHUNK:
                yield from self.clean(chunk)
                chunk = []
        count_read(stats)
        if chunk:
            yield from self.clean(chunk)

    @staticmethod
    def dead_row(kind: str, location: str, reason: str, raw: Any) -> dict:
        raw = printable(raw if isinstance(raw, str) else str(raw or ""))[:RAW_LIMIT]
        return {**dict(zip(DEAD_LETTER_FIELDS, (kind, printable(location), reason, raw))), "source_kind": kind}

    def clean(self, rows: list[dict]):
        """Steps 1-3 on a chunk (then, with ``[quality]``, the kept rows' quality scores in one model call); if
        anything raises, record by record: a record that raises is a dead letter."""
        try:
            results = list(self.clean_chunk(rows))
        except Exception:  # noqa: BLE001 - find the record (or records) that raised
            results = []
            for row in rows:
                try:
                    results.extend(self.clean_chunk([row]))
                except Exception as e:  # noqa: BLE001
                    reason = f"cleaning failed: {one_line(e)}"
                    results.append(("dead_letter", self.dead_row(row["source_kind"], row["location"], reason, row["text"])))
        if self.quality is not None:
            results = self.quality.apply(results, with_rows=self.keep_dropped)
        yield from results

    def clean_chunk(self, rows: list[dict]):
        """Steps 1-3: normalise, language id, quality rules (``dropped_doc`` rows too with ``keep_dropped``)."""
        from knowmix.pipelines.normalize import normalize_rows
        from knowmix.pipelines.quality import check_language, check_quality

        normalized = normalize_rows(self.normalizers, rows)
        texts = [n.text for n in normalized]
        langs = [self.lid.predict(t) if t.strip() else (None, 0.0) for t in texts]
        for row, (text, script, converted), (lang, score) in zip(rows, normalized, langs):
            kind = row["source_kind"]
            if lang is None:
                yield "dropped", ("empty", kind)
                if self.keep_dropped:
                    yield "dropped_doc", ("empty", row)
                continue
            rules = self.rules_by_kind[kind]
            reason = check_language(lang, score, rules) or check_quality(text, rules)
            if reason:
                beam.metrics.Metrics.counter("knowmix.clean", f"dropped_{reason}").inc()
                yield "dropped", (reason, kind)
                if self.keep_dropped:
                    yield "dropped_doc", (reason, {**row, "text": text, "lang": lang, "lang_score": float(score),
                                                   "n_chars": len(text), "script": script})
                continue
            title = self.normalizers[kind](row["title"], t2s=converted) if row.get("title") else row.get("title")
            yield "kept", {**row, "title": title, "text": text, "lang": lang, "lang_score": float(score), "n_chars": len(text),
                           "script": script}


class ReadCleanAndSpill(ReadAndClean):
    """ReadAndClean whose kept documents go to a spill file (``pipelines.spill``) instead of downstream.

    The kept documents' dedup keys are packed per partition (``pipelines.dedup``) and spilled too. Once the
    file is done, emits the keys' locations ``("exact" | "band" | "meta", (partition, (path, offset,
    length)))``, the documents' locations ``("spill", (shard, (path, batch)))`` and the file's accounting
    counts ``("counts", ((metric, reason, source kind), n))`` for kept and rule-dropped documents; and
    ReadAndClean's ``dead_letter`` rows. Nothing per document leaves the step: the runner's shuffles carry
    locations, a few per file and partition.
    """

    KEYS_PER_FLUSH = 16384

    def __init__(self, sources, steps_by_kind, rules_by_kind, spill_dir: str, num_shards: int, exact: bool, near, num_parts: int):
        super().__init__(sources, steps_by_kind, rules_by_kind)
        self.spill_dir, self.num_shards = spill_dir, num_shards
        self.exact, self.near, self.num_parts = exact, near, num_parts

    def process(self, element):
        index = element[0]
        spill = SpillWriter(self.spill_dir, spill_schema(DOCS_SCHEMA), self.num_shards)
        keys = DedupKeyBuffer(self.exact, self.near, self.num_parts)
        key_spill = BlobSpill(self.spill_dir)
        key_locations: list[tuple[str, tuple]] = []

        def spill_keys():
            key_locations.extend((tag, (part, key_spill.put(blob))) for tag, (part, blob) in keys.flush())

        counts: Counter = Counter()
        dropped_spill = DroppedSpill(self.spill_dir, DOCS_SCHEMA, self.num_shards) if self.keep_dropped else None
        for tag, value in super().process(element):
            progress.note("read")  # the live progress line (local runner)
            if tag == "dead_letter":
                yield tag, value
                continue
            if tag == "dropped_doc":
                dropped_spill.add(*value)
                continue
            if tag == "dropped":
                reason, kind = value
                counts[("input", None, kind)] += 1
                counts[("dropped", reason, kind)] += 1
                continue
            try:  # keys first: a document whose keys cannot be made is a dead letter, never half-spilled
                key = record_key(index, value["location"], value.pop("_ordinal"), value["id"], self.num_shards)
                keys.add(value["id"], value["source_kind"], value["text"], key, value["location"])
            except Exception as e:  # noqa: BLE001
                reason = f"dedup keys failed: {one_line(e)}"
                yield "dead_letter", self.dead_row(value["source_kind"], value["location"], reason, value["text"])
                continue
            counts[("input", None, value["source_kind"])] += 1
            spill.add(value, key)
            if len(keys) >= self.KEYS_PER_FLUSH:
                spill_keys()
        spill_keys()
        key_spill.close()
        yield from key_locations
        for location in spill.close():
            yield "spill", location
        if dropped_spill is not None:
            for location in dropped_spill.close():
                yield "dropped_spill", location
        for event, n in sorted(counts.items(), key=str):
            yield "counts", (event, n)


def count_read(stats: ReadStats) -> None:
    """The reader's own count of what one file held, as Beam counters (namespace ``knowmix.read``): raw records
    seen (in all and per unit: lines, csv_rows, warc_records, ...), those that are not input, dead letters that
    stand for a file, and ``unaccounted`` (raw records neither yielded nor skipped as not input: 0 unless a
    reader lost one). ``counts.input == raw_records - not_input + file_rows`` holds when nothing was lost."""
    counter = beam.metrics.Metrics.counter
    counter("knowmix.read", "raw_records").inc(stats.records)
    if stats.records:
        counter("knowmix.read", "raw_" + stats.unit.replace(" ", "_")).inc(stats.records)
    counter("knowmix.read", "not_input").inc(stats.not_input)
    counter("knowmix.read", "file_rows").inc(stats.file_rows)
    counter("knowmix.read", "unaccounted").inc(stats.unaccounted())


def events(pcoll, label: str, metric: str, kind_of=lambda x: x["source_kind"], reason=None):
    """Map a PCollection to accounting events ``(metric, reason, source_kind)``."""
    if reason is None:
        return pcoll | label >> beam.Map(lambda x: (metric, None, kind_of(x)))
    return pcoll | label >> beam.Map(lambda x: (metric, reason(x), kind_of(x)))


# ---------------------------------------------------------------------------------------------- planning

def input_files(config: CleanConfig) -> list[tuple[int, str]]:
    """(source index, path) of every input file; a glob matching nothing is a UserError now, before any output
    is touched. (A matched file whose format cannot be told is bad input like any other: one dead letter.)"""
    return [(i, path) for i, spec in enumerate(config.sources) for path in expand_paths(spec)]


def file_sizes(paths: list[str]) -> list[int | None]:
    """Each file's size in bytes (None: cannot be told; the reader reports the file)."""
    from apache_beam.io.filesystems import FileSystems

    remote = [path for path in paths if "://" in path]
    known: dict[str, int] = {}
    try:  # one listing call for all remote files
        for path, result in zip(remote, FileSystems.match(remote) if remote else []):
            if result.metadata_list:
                known[path] = result.metadata_list[0].size_in_bytes
    except Exception:  # noqa: BLE001 - Beam raises BeamIOError and friends; those files are read whole
        pass
    sizes: list[int | None] = []
    for path in paths:
        try:
            sizes.append(known.get(path) if "://" in path else os.path.getsize(path))
        except OSError:  # a vanished or unreadable file is read whole (and reported there)
            sizes.append(None)
    return sizes


def plan_reads(config: CleanConfig, files: list[tuple[int, str]], sizes: list[int | None] | None = None) -> tuple[list, list]:
    """(files read whole as ``(index, path bytes)``, byte ranges ``(index, path bytes, start, end)`` of the
    large plain jsonl / txt-line files: ``corpora.readers.plan_ranges`` with ``[input] split_bytes``).
    ``sizes``: the files' sizes (``file_sizes``), when already measured."""
    whole, ranges = [], []
    sizes = file_sizes([path for _, path in files]) if sizes is None else sizes
    for (index, path), size in zip(files, sizes):
        split_bytes = config.split_bytes if config.split_bytes is not None else DEFAULT_SPLIT_BYTES
        pieces = plan_ranges(config.sources[index], path, size, split_bytes) if size is not None else []
        if pieces:
            ranges.extend((index, os.fsencode(path), start, end) for start, end in pieces)
        else:
            whole.append((index, os.fsencode(path)))  # bytes: a name need not be UTF-8
    return whole, ranges


def count_range(element):
    """(index, path, start, end) -> ((index, path), (start, end, line starts in it, any content))."""
    index, path, start, end = element
    n, content = count_line_starts(os.fsdecode(path), start, end)
    return (index, path), (start, end, n, content)


def number_ranges(element):
    """((index, path), the file's counted ranges) -> ``(index, path, (start, end, first line, report_empty))``
    per range: its first line number is one plus the line starts of the ranges before it."""
    (index, path), counted = element
    counted = sorted(counted)
    empty = not any(content for *_, content in counted)
    first = 1
    for start, end, n, _ in counted:
        yield index, path, (start, end, first, empty and start == 0)
        first += n


def resolve_num_shards(config: CleanConfig, files: list[tuple[int, str]], sizes: list[int | None] | None = None) -> int:
    """``num_shards = "auto"``: about 64 MB of input text per shard, at least 4 (a shard is sorted in memory);
    ``knowmix.sharding``. A file whose size cannot be told counts 0 (the reader reports it)."""
    if config.num_shards != "auto":
        return int(config.num_shards)
    sizes = file_sizes([path for _, path in files]) if sizes is None else sizes
    total = sum(text_bytes(path, size) for (_, path), size in zip(files, sizes) if size is not None)
    return auto_num_shards(total, minimum=4)


#: ``--workers`` not given: a corpus smaller than this runs in-process (starting worker processes costs more)
AUTO_WORKERS_MIN_BYTES = 16 << 20
#: a local run on N workers, split_bytes not set: ranges small enough for about this many per worker
RANGES_PER_WORKER = 4
MIN_AUTO_SPLIT_BYTES = 1 << 20


def is_local_run(beam_args: list[str]) -> bool:
    """The job runs on the local FnApiRunner, in its default (in-process) mode."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    if any(a.startswith(("--direct_running_mode", "--direct_num_workers")) for a in beam_args):
        return False
    return PipelineOptions(list(beam_args)).view_as(StandardOptions).runner in beamio.LOCAL_RUNNER_NAMES


def local_execution(beam_args: list[str], workers: int) -> list[str]:
    """The Beam flags that run the job on ``workers`` local processes: the FnApiRunner's multi-processing mode
    (``--direct_running_mode multi_processing --direct_num_workers N``), the local execution that scaled best
    when measured (README, "Runners"; Beam's Dask runner on a local cluster was slower than one process).
    Flags that name another runner or a running mode are left as given."""
    if workers <= 1 or not is_local_run(beam_args):
        return list(beam_args)
    return [*beam_args, "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]


def auto_local_run(config: CleanConfig, beam_args: list[str], workers: int | None,
                   sizes: list[int | None] | None = None) -> list[str]:
    """``knowmix clean --workers``: the Beam flags for a local run, and ``config.split_bytes`` resolved.

    ``workers`` None: one per core, or in-process for a corpus under AUTO_WORKERS_MIN_BYTES. On several local
    workers with ``split_bytes`` not set, files are cut into ranges of total / (RANGES_PER_WORKER x workers)
    (at least 1 MiB, at most the 64 MiB default), so one large file keeps every worker busy; the shards are
    the same for any split size. ``sizes``: the input files' sizes, when already measured."""
    local = is_local_run(beam_args)
    if local and sizes is None:
        sizes = file_sizes([path for _, path in input_files(config)])
    total = sum(size or 0 for size in sizes) if local else 0
    if workers is None:
        workers = (os.cpu_count() or 1) if total >= AUTO_WORKERS_MIN_BYTES else 1
    if config.split_bytes is None:
        config.split_bytes = DEFAULT_SPLIT_BYTES
        if local and workers > 1:
            per_range = -(-total // (RANGES_PER_WORKER * workers))
            config.split_bytes = min(DEFAULT_SPLIT_BYTES, max(MIN_AUTO_SPLIT_BYTES, per_range))
    return local_execution(beam_args, workers)


# ---------------------------------------------------------------------------------------------- the job


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    from knowmix.args import Parser

    parser = Parser("knowmix clean", "Clean and deduplicate raw sources into docs shards.", beam=True, progress=True)
    parser.add_argument("--config", help="job TOML ([[sources]], [output], [normalize.KIND], [rules.KIND], [dedup])")
    parser.add_argument("--source", action="append", default=[], metavar="KIND[:FORMAT]=GLOB",
                        help="a source without a config file, e.g. news=data/*.txt or qa:csv=faq.csv; repeatable")
    parser.add_argument("--output", help="output directory (overrides [output] dir)")
    parser.add_argument("--num-shards", type=int, help="output shards (overrides [output] num_shards; default: auto)")
    parser.add_argument("--cluster-table", action="store_true", help="also write doc_id -> cluster_id, cluster_size")
    parser.add_argument("--no-near-dedup", action="store_true", help="skip near-duplicate removal (MinHash-LSH)")
    parser.add_argument("--keep-dropped", action="store_true", help="also write every dropped document under OUT/dropped/")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="local runs: worker processes (default: one per core, in-process under 16 MiB of input;"
                             " 1: in-process)")
    parser.add_argument("--split-bytes", type=int, metavar="BYTES",
                        help="read plain jsonl/txt files larger than this as byte ranges (overrides [input] split_bytes;"
                             " default 64 MiB; 0: never split)")
    args, beam_args = parser.parse_known_args(argv)
    beamio.check_beam_args(beam_args, "clean")
    if args.num_shards is not None and args.num_shards < 1:
        raise UserError(f"--num-shards must be positive, got {args.num_shards}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be positive, got {args.workers}")
    if args.split_bytes is not None:
        check_split_bytes(args.split_bytes, "--split-bytes")
    return args, beam_args


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that override the config file's keys (``load_config``'s ``overrides``)."""
    given = {"num_shards": args.num_shards, "split_bytes": args.split_bytes}
    flags = {"cluster_table": args.cluster_table, "keep_dropped": args.keep_dropped}
    return {**{k: v for k, v in given.items() if v is not None}, **{k: True for k, v in flags.items() if v},
            **({"near_dedup": False} if args.no_near_dedup else {})}


@dataclass(frozen=True)
class CleanJob:
    """``knowmix clean`` resolved once, before the pipeline is built; ``build`` and ``run`` read only this.

    ``config``: the loaded configuration, its per-kind tables resolved by ``load_config`` (``config.resolved``);
    ``files``/``sizes``: the input files, globbed and measured once; ``num_shards``: the output shards (auto
    resolved); ``beam_args``: Beam's flags (local workers resolved); ``argv``: the command line the manifest
    records.
    """

    config: CleanConfig
    files: list[tuple[int, str]]
    sizes: list[int | None]
    num_shards: int
    beam_args: list[str]
    argv: list[str]

    @property
    def kinds(self) -> list[str]:
        return sorted({s.kind for s in self.config.sources})

    @property
    def steps_by_kind(self) -> dict[str, dict[str, Any]]:
        return {k: self.config.resolved.steps[k] for k in self.kinds}

    @property
    def rules_by_kind(self) -> dict[str, dict[str, Any]]:
        return {k: self.config.resolved.rules[k] for k in self.kinds}

    @property
    def near(self):
        """The ``pipelines.neardup.NearDedupConfig`` of ``[dedup]``."""
        return self.config.resolved.near

    @property
    def num_parts(self) -> int:
        """Dedup key partitions per shuffle: grows with the corpus like the shards."""
        return self.num_shards

    def options(self) -> dict:
        """The manifest's ``options``: the command line and the configuration, the shard count resolved."""
        options = {"argv": list(self.argv), **self.config.to_options()}
        options["output"]["num_shards"] = self.num_shards
        return options


def resolve(config: CleanConfig, beam_args: list[str] = (), argv: list[str] | None = None,
            workers: int | None = 1) -> CleanJob:
    """The job for a loaded config: input globbed (a glob matching nothing is a UserError now, before any output
    is touched) and measured, split size and local workers (``auto_local_run``: ``workers`` None picks them)
    and the shard count resolved."""
    files = input_files(config)
    sizes = file_sizes([path for _, path in files])
    beam_args = auto_local_run(config, list(beam_args), workers, sizes)
    argv = list(argv if argv is not None else sys.argv)
    return CleanJob(config, files, sizes, resolve_num_shards(config, files, sizes), beam_args, argv)


class PlanReads(beam.PTransform):
    """The job's reads: ``(index, path)`` per file read whole, ``(index, path, (start, end, first line,
    report_empty))`` per byte range of a large plain line file. Each range's first line number comes from a
    cheap parallel count of line starts per range, joined per file (a keyed join: no side input mid-pipeline)."""

    def __init__(self, job: CleanJob):
        super().__init__()
        self.job = job

    def expand(self, p):
        whole, ranges = plan_reads(self.job.config, self.job.files, self.job.sizes)
        reads = p | "Files" >> beam.Create(whole)
        if not ranges:
            return reads
        numbered = (
            p
            | "ByteRanges" >> beam.Create(ranges)
            | "SpreadRanges" >> beam.Reshuffle()
            | "CountLines" >> beam.Map(count_range)
            | "RangesByFile" >> beam.GroupByKey()
            | "NumberRanges" >> beam.FlatMap(number_ranges)
        )
        return (reads, numbered) | "FilesAndRanges" >> beam.Flatten()


def read_clean_and_spill(job: CleanJob, out: str) -> ReadCleanAndSpill:
    """Steps 1-3 of ``job`` as one DoFn: kept documents spilled under ``out``, their dedup keys passed on."""
    config = job.config
    fn = ReadCleanAndSpill(config.sources, job.steps_by_kind, job.rules_by_kind, beamio.join(out, SPILL_DIR),
                           job.num_shards, config.exact_dedup, job.near, job.num_parts)
    fn.quality, fn.keep_dropped = quality_step(config), config.keep_dropped
    return fn


class DedupKeys(beam.PTransform):
    """Steps 4 and 5 on the documents' keys (``ReadCleanAndSpill``'s ``exact``, ``band``, ``meta`` and ``spill``
    outputs): exact dedup, then near dedup (MinHash-LSH) with exact groups as one node each. Returns
    ``{"drops": (doc key, reason) per loser, "survivors": ..., "clusters": near-duplicate clusters or None}``."""

    def __init__(self, job: CleanJob):
        super().__init__()
        self.job = job

    def expand(self, records):
        from knowmix.pipelines.exact_dedup import ExactDedupKeys
        from knowmix.pipelines.neardup import NearDedupKeys

        job, p = self.job, records["spill"].pipeline
        drops, survivors, clusters, exact = [], [], None, None
        if job.config.exact_dedup:
            exact = {"exact": records["exact"], "meta": records["meta"]} | "Exact" >> ExactDedupKeys(job.num_parts)
            drops.append(exact.drops)
            survivors.append(exact.survivors)
        if job.near.near:
            near_inputs = {"band": records["band"], "meta": records["meta"]}
            if exact is not None:  # exact duplicates go through near dedup as one node per group
                near_inputs.update(exact_drops=exact.drops, exact_groups=exact.groups)
            texts = SpilledTexts(records["spill"], DOCS_SCHEMA, job.num_shards) if job.near.verify else None
            near = near_inputs | "Near" >> NearDedupKeys(job.near, job.num_parts, texts)
            drops.append(near.drops)
            survivors.append(near.survivors)
            clusters = near.clusters
        return {
            "drops": tuple(drops) | "AllDrops" >> beam.Flatten() if drops else p | "NoDrops" >> beam.Create([]),
            "survivors": (tuple(survivors) | "AllSurvivors" >> beam.Flatten() if survivors
                          else p | "NoSurvivors" >> beam.Create([])),
            "clusters": clusters,
        }


def once(p, label: str, make, **side_inputs):
    """One element, ``make(**side inputs as lists)``: a manifest extra computed from whole PCollections without a
    global combine (Beam's Dask runner mis-combines those over several partitions)."""
    return (
        p
        | f"{label}Once" >> beam.Create([None])
        | label >> beam.Map(lambda _, **lists: make(**lists),
                            **{k: beam.pvalue.AsList(v) for k, v in side_inputs.items()})
    )


def build(p: beam.Pipeline, job: CleanJob, out: str | None = None) -> None:
    """The clean recipe. ``out``: where the files go (a staging directory, see ``beamio.output_run``); default
    the config's output directory."""
    config = job.config
    out = out or config.output_dir

    # read, then 1-3: normalise, language id, quality rules; kept docs are spilled, their keys go on
    records = (
        p
        | "PlanReads" >> PlanReads(job)
        | "SpreadFiles" >> beam.Reshuffle()
        | "ReadAndClean" >> beam.ParDo(read_clean_and_spill(job, out))
    )
    records = beamio.split_by_tag(records, ("counts", "dead_letter", "spill", "exact", "band", "meta", "dropped_spill"),
                                  "Records")
    dead, spilled = records["dead_letter"], records["spill"]

    # 4: exact dedup, 5: near dedup (MinHash-LSH) -- on keys only: (doc key, reason) for every loser
    dedup = records | "Dedup" >> DedupKeys(job)

    # write: each shard reads its spilled batches, leaves out the losers, sorts by id; and the dead letters
    written = {"spill": spilled, "drops": dedup["drops"]} | "WriteDocs" >> WriteShardsFromSpill(
        out, DOCS_SCHEMA, job.num_shards)
    dead_written = dead | "WriteDeadLetters" >> beamio.WriteDeadLetters(out)
    extras = [once(p, "IdCollisions", lambda renamed: {
        "id_collisions": sorted(renamed, key=lambda r: r["id"])[:COLLISION_EXAMPLES]}, renamed=written["collisions"])]
    if config.keep_dropped:  # every dropped document, with its reason, under OUT/dropped/ (pipelines.dropped)
        dropped_entries = {
            "rules": records["dropped_spill"], "kept": spilled, "drops": dedup["drops"], "survivors": dedup["survivors"],
        } | "WriteDropped" >> WriteDroppedShards(out, DOCS_SCHEMA, job.num_shards)
        extras.append(once(p, "DroppedShards", with_dropped_shards, entries=dropped_entries))
    if config.quality is not None:
        extras.append(p | "ModelsEntry" >> beam.Create([models_entry(config)]))
    if dedup["clusters"] is not None and config.cluster_table:  # doc_id -> cluster under OUT/clusters/
        cluster_entries = dedup["clusters"] | "WriteClusters" >> beamio.WriteShards(
            out, CLUSTER_SCHEMA, job.num_shards, sort_key="doc_id", subdir=CLUSTERS_DIR)
        extras.append(once(p, "ClusterTable", lambda entries: {
            "cluster_table": sorted(entries, key=lambda e: e["path"])}, entries=cluster_entries))

    # the manifest: every record accounted for (input == output + dead_letter + sum(dropped))
    dead_events = (events(dead, "DeadInputs", "input"), events(dead, "DeadLetters", "dead_letter"))
    tallies = beamio.tally(dead_events | "AllEvents" >> beam.Flatten(), counted=[records["counts"], written["counts"]])
    p | "Manifest" >> beamio.WriteManifest(
        out, "docs", DOCS_SCHEMA, written["entries"], tallies, job.options(), group_name="by_source_kind",
        extra=tuple(extras) | "Extras" >> beam.Flatten(),
        finalize=_finalize_keep_dropped if config.keep_dropped else with_collision_counts, after=[dead_written],
    )


def _finalize_keep_dropped(manifest: dict) -> dict:
    """With ``keep_dropped``: the dropped shards' rows must add up to ``counts.dropped`` too."""
    return check_dropped_rows(with_collision_counts(manifest))


def with_collision_counts(manifest: dict) -> dict:
    """``counts.id_collisions`` (ids renamed to keep output ids unique) is always there, 0 when none."""
    counts = manifest["counts"]
    counts.setdefault("id_collisions", 0)
    for group in counts.get("by_source_kind", {}).values():
        group.setdefault("id_collisions", 0)
    return manifest


def run(job: CleanJob) -> dict:
    """Run the job; return the manifest it wrote, read back through ``knowmix.manifest``."""
    from knowmix.manifest import read_manifest

    config = job.config
    inputs = [("input", path) for _, path in job.files]
    with beamio.output_run(config.output_dir, inputs, " ".join(job.argv), (CLUSTERS_DIR, SPILL_DIR, DROPPED_DIR)) as output:
        try:
            with beam.Pipeline(options=beamio.pipeline_options(job.beam_args)) as p:
                build(p, job, out=output.staging)
            progress.record_counters(p.result)
        finally:
            delete_spill(output.staging)
        output.commit()
    return read_manifest(config.output_dir)


def clean_main(argv: list[str]) -> int:
    from rich.console import Console

    args, beam_args = parse_args(argv)
    job = resolve(load_config(args.config, args.source, args.output, overrides(args)), beam_args,
                  ["knowmix", "clean", *argv], args.workers)
    with progress.LiveLine("knowmix clean", args.quiet):
        manifest = run(job)
    counts, out = manifest["counts"], job.config.output_dir
    dropped = ", ".join(f"{k} {v}" for k, v in counts["dropped"].items()) or "none"
    Console(stderr=True).print(
        f"[bold]knowmix clean[/bold]: {counts['input']} in → {counts['output']} docs, "
        f"{counts['dead_letter']} dead letters, dropped: {dropped}"
        + (f"; {counts['id_collisions']} shared ids renamed (ID~N)" if counts.get("id_collisions") else "")
        + "\n"
        f"  shards: {len(manifest['shards'])} in {out}/shards   (knowmix stats {out})"
        + (f"\n  Beam counters: {progress.last_counters()}" if progress.last_counters() else "")
    )
    return 0
