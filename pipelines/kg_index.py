"""``knowmix kg-index``: KG files -> the entity index file that kg-samples memory-maps (``--kg-index``), as a Beam job.

The launcher never parses the KG: it builds a one-step pipeline and reads back only the header of the file the
step wrote. The step (``BuildIndexFile``) runs on a worker, which reads the KG files through Beam's FileSystems
(local, gs://, s3://, ...), parses them, splits homonyms, infers types, counts bad lines and writes the index
file (``kg.index_file.build_index_file``). The figures kg-samples and this command report (entities, triples,
inferred types, homonyms, bad lines with examples) are computed there and stored in the file's header.

Why one worker and not a parallel parse: parsing lines is a small part of the build (measured on a generated
300k-triple TSV on a 2-core machine: 0.6 s of 13.1 s); merging entities across lines and files, type inference
(per relation role, over the whole graph) and the matching automaton need the whole graph in one place. So the
build is one step whose memory is the KG's (README: per-name figures), and what the workers share afterwards is
the file, not a copy of the graph per process.

Where the launcher learns the file's name (content-addressed when ``--output`` is a directory): the step writes
a small receipt beside it, which the launcher reads and deletes.

The file's shape (every Beam job's): ``parse_args`` -> ``resolve`` (a ``KgIndexJob``) -> ``build(pipeline, job)``
-> ``run(job)`` (returns the index path) -> ``kg_index_main``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import apache_beam as beam

from knowmix import fileio
from knowmix.errors import UserError
from knowmix.kg.graph import MIN_NAME_CHARS, kg_format
from knowmix.kg.index import TypeRules
from knowmix.kg.index_file import SUFFIX, build_index_file, read_header


@dataclass(frozen=True)
class KgIndexJob:
    """What ``build`` and ``run`` read. ``output``: an index file path, or a directory where the file is named by
    its content (``kgindex-<key>.kgi``); a remote path not ending in ``.kgi`` is a directory."""

    kg_paths: list[str]
    entity_paths: list[str]
    output: str
    min_name_chars: int = MIN_NAME_CHARS
    type_rules: TypeRules = TypeRules()
    beam_args: list[str] = field(default_factory=list)

    @property
    def output_is_dir(self) -> bool:
        if fileio.is_remote(self.output):
            return not self.output.endswith(SUFFIX)
        return os.path.isdir(self.output)

    @property
    def output_dir(self) -> str:
        if self.output_is_dir:
            return self.output
        if fileio.is_remote(self.output):
            return self.output.rstrip("/").rsplit("/", 1)[0]
        return os.path.dirname(os.path.abspath(self.output))


class BuildIndexFile(beam.DoFn):
    """One element in (None), the index file's path out: the whole build, on the worker that runs it. A local
    output is written in place (atomically); a remote one is built in the worker's temp dir and copied."""

    def __init__(self, job: KgIndexJob):
        self.kg_paths, self.entity_paths = list(job.kg_paths), list(job.entity_paths)
        self.output, self.output_is_dir = job.output, job.output_is_dir
        self.min_name_chars, self.type_rules = job.min_name_chars, job.type_rules

    def process(self, _):
        if not fileio.is_remote(self.output):
            yield build_index_file(self.kg_paths, self.entity_paths, self.output, self.min_name_chars, self.type_rules)
            return
        with tempfile.TemporaryDirectory(prefix="knowmix-kgindex-") as tmp:
            local = build_index_file(self.kg_paths, self.entity_paths, tmp, self.min_name_chars, self.type_rules)
            dest = fileio.join(self.output, os.path.basename(local)) if self.output_is_dir else self.output
            fileio.copy_file(local, dest)
        yield dest


def write_receipt(path: str, receipt: str) -> str:
    fileio.write_text(receipt, json.dumps({"path": path}))
    return path


def build(p: beam.Pipeline, job: KgIndexJob, receipt: str) -> None:
    """The one step, and its receipt (the written file's path, for the launcher)."""
    (
        p
        | "Start" >> beam.Create([None])
        | "BuildIndexFile" >> beam.ParDo(BuildIndexFile(job))
        | "Receipt" >> beam.Map(write_receipt, receipt)
    )


def run(job: KgIndexJob) -> str:
    """Run the job; return the index file's path (read from the step's receipt, which is then deleted)."""
    from knowmix.pipelines.beamio import pipeline_options

    if not fileio.is_remote(job.output_dir):
        os.makedirs(job.output_dir, exist_ok=True)
    receipt = fileio.join(job.output_dir, f".kgindex-receipt-{uuid.uuid4().hex}.json")
    try:
        with beam.Pipeline(options=pipeline_options(job.beam_args)) as p:
            build(p, job, receipt)
        return json.loads(fileio.read_text(receipt))["path"]
    finally:
        if fileio.exists(receipt):
            fileio.delete_under(job.output_dir, [os.path.basename(receipt)])


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    from knowmix.args import Parser
    from knowmix.pipelines.beamio import check_beam_args

    ap = Parser("knowmix kg-index", __doc__.split("\n\n")[0], beam=True)
    ap.add_argument("--kg", action="append", required=True, help="KG file (.tsv, .jsonl, .nt, .nt.gz); repeatable")
    ap.add_argument("--entities", action="append", default=[], help="entities TSV (name, type, aliases)")
    ap.add_argument("--output", required=True,
                    help="index file, or a directory (content-addressed name kgindex-<key>.kgi; a local one must exist)")
    ap.add_argument("--min-name-chars", type=int, default=MIN_NAME_CHARS, help="shorter names are junk_name bad lines")
    ap.add_argument("--type-min-support", type=int, default=TypeRules.min_support,
                    help="typed entities a relation role needs before an untyped entity in it takes their type")
    ap.add_argument("--type-min-share", type=float, default=TypeRules.min_share,
                    help="... and the share of all the role's entities they must exceed")
    args, beam_args = ap.parse_known_args(argv)
    check_beam_args(beam_args, "kg-index")
    for path in args.kg + args.entities:
        if not fileio.is_file(path):  # local or any Beam filesystem
            raise UserError(f"{path}: no such file")
    for path in args.kg:
        kg_format(path)  # by its name: an unknown format is one line here, not a worker's error
    if not fileio.is_remote(args.output):
        parent = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(args.output) and not os.path.isdir(parent):
            raise UserError(f"--output: {parent}: no such directory")
    return args, beam_args


def resolve(args: argparse.Namespace, beam_args: list[str]) -> KgIndexJob:
    return KgIndexJob(list(args.kg), list(args.entities), args.output, args.min_name_chars,
                      TypeRules(args.type_min_support, args.type_min_share), list(beam_args))


def kg_index_main(argv: list[str]) -> int:
    args, beam_args = parse_args(argv)
    t = time.perf_counter()
    path = run(resolve(args, beam_args))
    kg = read_header(path)["meta"]["knowledge_graph"]
    size = "" if fileio.is_remote(path) else f", {os.path.getsize(path)} bytes"
    print(f"kg-index: {kg['entities']} entities, {kg['triples']} triples, {sum(kg['bad_lines'].values())} bad lines"
          f"{size} in {time.perf_counter() - t:.1f}s -> {path}", file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":  # the same as `knowmix kg-index ...`
    from knowmix.cli import main

    sys.exit(main(["kg-index", *sys.argv[1:]]))
