"""``knowmix tokenize``: docs shards -> ``pretrain`` shards, knowledge shards -> ``knowledge_tokens`` shards.

Two pipelines, one per input kind; each step is a named transform whose logic is a pure function elsewhere:

    pretrain:          read docs -> EncodeDocs (tokenise + jieba word starts: pipelines/word_boundaries.py)
                       -> group by hash(doc id) -> Pack (sort by id, pack: pipelines/packing.py)
                       -> shards + manifest (tokenizer entry; counts in documents, ``sequences`` = rows)
    knowledge_tokens:  read knowledge rows -> EncodeKnowledge (per task: markers, spans, segments:
                       pipelines/knowledge_tokens.py) -> the relation list (--relations, or the names seen sorted
                       after NA = 0: knowmix/relations.py) -> relation names to ids -> shards + relations.json
                       + manifest

The job: ``parse_args`` -> ``resolve_config`` (a :class:`TokenizeConfig`: every option checked and every
derived value computed once) -> ``build(pipeline, config, out)`` -> ``run(config)`` (returns the manifest, read
back through ``knowmix.manifest``) -> ``tokenize_main``.

Accounting is in input rows: ``input == output + dead_letter + sum(dropped)``; ``output`` counts documents
(or knowledge rows) that went into shards. The tokenizer file is copied beside the manifest so the trainer
finds it.

Runner portability (Beam's Dask runner included): DoFns yield ``(tag, value)`` pairs split by
``beamio.split_by_tag`` (never ``with_outputs``), the relation list is one keyed group of the distinct names
(no global combine) joined to the rows by group (no side input in mid-pipeline), and the dead letters and
relations.json feed the manifest step, the last.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Tuple

import apache_beam as beam
import pyarrow as pa

from knowmix import fileio
from knowmix.errors import UserError
from knowmix.manifest import ContractError, open_shard_dir, read_manifest
from knowmix.relations import fixed_relation_list, relation_ids, relation_list_of, write_relations_json
from knowmix.schemas import KNOWLEDGE_TOKENS_SCHEMA, PRETRAIN_SCHEMA
from knowmix.sharding import auto_num_shards
from knowmix.pipelines import beamio, progress
from knowmix.pipelines.doc_keys import shard_of
from knowmix.pipelines.knowledge_tokens import BadRow, Dropped, tokenize_knowledge
from knowmix.pipelines.packing import DocTokens, pack_documents
from knowmix.pipelines.worker_process import freeze_startup_heap
from knowmix.pipelines.tokenizer_loader import TokenizerSpec
from knowmix.pipelines.word_boundaries import encode_with_words, word_segmenter

RAW_LIMIT = 2000
TARGET_GROUP_BYTES = 16 << 20  # input bytes per packing group (held in memory while packing)
MIN_SEQ_LEN = 8


# ---------------------------------------------------------------------------------------------- the config


@dataclass
class TokenizeConfig:
    """Everything a run needs, checked and computed once from the command line."""

    input: str
    output: str
    input_kind: str  # "docs" | "knowledge"
    shard_refs: list  # the input's shards (knowmix.manifest.ShardRef)
    tokenizer: TokenizerSpec
    max_seq_len: int
    word_boundaries: bool
    user_words: list[str]
    fixed_relations: list[str] | None  # --relations; None: the names seen
    num_shards: int
    pack_groups: int
    options: dict  # the manifest's record of the options
    inputs: list[tuple[str, str | None]]  # (flag, path) of every file the run reads
    beam_args: list[str]
    command: str
    quiet: bool = False

    @property
    def out_kind(self) -> str:
        return "pretrain" if self.input_kind == "docs" else "knowledge_tokens"

    @property
    def schema(self) -> pa.Schema:
        return PRETRAIN_SCHEMA if self.out_kind == "pretrain" else KNOWLEDGE_TOKENS_SCHEMA


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    from knowmix.args import Parser

    ap = Parser("knowmix tokenize", __doc__, beam=True, progress=True)
    ap.add_argument("--input", required=True, help="a docs or knowledge shard directory")
    ap.add_argument("--output", required=True, help="output directory (pretrain or knowledge_tokens)")
    ap.add_argument("--tokenizer", required=True, help="spm:PATH.model or wordpiece:PATH/vocab.txt")
    ap.add_argument("--max-seq-len", type=int, default=512, help="tokens per output row, [CLS] and [SEP] included")
    ap.add_argument("--lowercase", dest="lowercase", action="store_true", default=None,
                    help="lower-case before tokenising (wordpiece default: the vocab's tokenizer_config.json, else on;"
                         " spm default: off)")
    ap.add_argument("--no-lowercase", dest="lowercase", action="store_false", help="do not lower-case")
    ap.add_argument("--no-word-boundaries", dest="boundaries", action="store_false",
                    help="skip jieba: every token starts a word (plain token-level masking)")
    ap.add_argument("--user-dict", help="extra words for jieba (one per line, first field), e.g. KG entity names")
    ap.add_argument("--relations", help="fixed relation ids: `name id` lines, a JSON {name: id} or a JSON list"
                                        " (id 0 becomes NA; default: the names seen, sorted after NA)")
    ap.add_argument("--num-shards", type=int, default=0, help="output shards (0: ~64 MB of input each)")
    ap.add_argument("--pack-groups", type=int, default=0, help="packing groups (0: ~16 MB of input each)")
    args, beam_args = ap.parse_known_args(argv)
    beamio.check_beam_args(beam_args, "tokenize")
    return args, beam_args


def resolve_config(args: argparse.Namespace, beam_args: list[str], argv: list[str]) -> TokenizeConfig:
    """Check the options, open the input's manifest, load the tokenizer and the word lists: one UserError
    line on anything wrong, before the output is touched."""
    if args.max_seq_len < MIN_SEQ_LEN:
        raise UserError(f"--max-seq-len {args.max_seq_len}: must be at least {MIN_SEQ_LEN}")
    try:
        src = open_shard_dir(args.input, ("docs", "knowledge"))
    except ContractError as exc:
        raise UserError(str(exc)) from None
    tokenizer = TokenizerSpec.resolve(args.tokenizer, args.lowercase)
    user_words = read_user_words(args.user_dict)
    fixed_relations = fixed_relation_list(args.relations) if args.relations else None
    input_bytes = sum(int(s["bytes"]) for s in src.manifest["shards"])
    num_shards = args.num_shards or auto_num_shards(input_bytes)
    pack_groups = args.pack_groups or auto_num_shards(input_bytes, target_bytes=TARGET_GROUP_BYTES)
    full_argv = ["knowmix", "tokenize", *argv]
    options = {
        "argv": full_argv, "input": args.input, "tokenizer": args.tokenizer,
        "max_seq_len": args.max_seq_len, "word_boundaries": args.boundaries, "num_shards": num_shards,
        "pack_groups": pack_groups if src.kind == "docs" else None, "user_dict": args.user_dict,
        "relations": args.relations,
    }
    inputs = [("--input", args.input), ("--tokenizer", args.tokenizer.partition(":")[2]), ("--user-dict", args.user_dict),
              ("--relations", args.relations)]
    return TokenizeConfig(
        input=args.input, output=args.output, input_kind=src.kind, shard_refs=src.shard_refs(), tokenizer=tokenizer,
        max_seq_len=args.max_seq_len, word_boundaries=args.boundaries, user_words=user_words,
        fixed_relations=fixed_relations, num_shards=num_shards, pack_groups=pack_groups, options=options,
        inputs=inputs, beam_args=beam_args, command=" ".join(full_argv), quiet=args.quiet,
    )


def read_user_words(path: str | None) -> list[str]:
    """``--user-dict``: the first field of every line (local or any Beam filesystem), sorted, once each."""
    if not path:
        return []
    try:
        text = fileio.read_text(path)
        return sorted({line.split()[0] for line in text.splitlines() if line.strip()})
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the user dictionary ({exc})") from None


# ---------------------------------------------------------------------------------------------- the steps


def _dead(source: str, row: dict, reason: str) -> dict:
    raw = json.dumps({k: v for k, v in row.items()}, ensure_ascii=False, default=str)[:RAW_LIMIT]
    return {"source": source, "location": str(row.get("id")), "reason": reason, "raw": raw}


class _TokenizerDoFn(beam.DoFn):
    """A DoFn holding a tokenizer (and, with word boundaries, a jieba segmenter) loaded once per worker."""

    def __init__(self, spec: TokenizerSpec, boundaries: bool, user_words: Iterable[str] = ()):
        self.spec, self.boundaries, self.user_words = spec, boundaries, list(user_words)

    def setup(self):
        self.tok = self.spec.load()
        self.seg = word_segmenter("rjieba", self.user_words) if self.boundaries else None
        freeze_startup_heap()  # a worker process's exit: 0.5 s less (pipelines.worker_process)

    def __getstate__(self):
        # runtime state from setup() (the tokenizer, jieba) stays out of pickles: Beam's Dask runner may
        # pickle a DoFn again after setup(), when a side input's graph is computed inside a worker
        return {k: v for k, v in self.__dict__.items() if k not in ("tok", "seg")}

    def teardown(self):
        self.spec.discard(self.tok)


class EncodeDocFn(_TokenizerDoFn):
    """doc row -> ``("docs", (group, DocTokens))``, ``("dead", dead-letter row)`` and ``("events", event)``."""

    def __init__(self, spec: TokenizerSpec, boundaries: bool, user_words: list[str], groups: int, source: str):
        super().__init__(spec, boundaries, user_words)
        self.groups, self.source = groups, source

    def process(self, row):
        kind = row.get("source_kind") or ""
        yield "events", ("input", None, kind)
        text, doc_id = row.get("text"), row.get("id")
        if not isinstance(text, str) or not isinstance(doc_id, str) or not doc_id:
            yield "events", ("dead_letter", None, kind)
            yield "dead", _dead(self.source, row, "missing_id_or_text")
            return
        try:
            w = encode_with_words(self.tok, self.seg, text) if text.strip() else None
        except Exception as exc:  # a record the tokenizer cannot take is a dead letter, never a failed job
            yield "events", ("dead_letter", None, kind)
            yield "dead", _dead(self.source, row, f"tokenize_error: {type(exc).__name__}: {exc}"[:200])
            return
        if w is None or len(w.enc) == 0:
            yield "events", ("dropped", "no_tokens", kind)
            return
        beam.metrics.Metrics.counter("knowmix", "tokens").inc(len(w.enc))
        yield "docs", (shard_of(doc_id, self.groups), DocTokens(doc_id, kind, w.enc.ids, w.word_start))


def pack_group(kv, max_seq_len: int, cls_id: int, sep_id: int):
    """(group, DocTokens) -> ``("rows", packed row)`` and ``("events", event)``: the group's documents sorted by
    id, then packed (``pipelines.packing.pack_documents``)."""
    _, docs = kv
    docs = sorted(docs, key=lambda d: d.doc_id)
    for d in docs:
        yield "events", ("output", None, d.source_kind)
    for row in pack_documents(docs, max_seq_len, cls_id, sep_id):
        yield "rows", row


class EncodeKnowledgeFn(_TokenizerDoFn):
    """knowledge row -> ``("rows", tokenised row)``, ``("dead", dead-letter row)`` and ``("events", event)``."""

    def __init__(self, spec: TokenizerSpec, boundaries: bool, max_seq_len: int, source: str):
        super().__init__(spec, boundaries)
        self.max_seq_len, self.source = max_seq_len, source

    def process(self, row):
        task = row.get("task") or ""
        yield "events", ("input", None, task)
        if not isinstance(row.get("id"), str) or not row.get("id"):
            yield "events", ("dead_letter", None, task)
            yield "dead", _dead(self.source, row, "missing_id")
            return
        try:
            out = tokenize_knowledge(row, self.tok, self.seg, self.max_seq_len)
        except BadRow as exc:
            yield "events", ("dead_letter", None, task)
            yield "dead", _dead(self.source, row, exc.reason)
            return
        except Dropped as exc:
            yield "events", ("dropped", exc.reason, task)
            return
        except Exception as exc:  # malformed in a way the checks did not foresee: a dead letter
            yield "events", ("dead_letter", None, task)
            yield "dead", _dead(self.source, row, f"tokenize_error: {type(exc).__name__}: {exc}"[:200])
            return
        yield "rows", out


class RelationList(beam.PTransform):
    """Tokenised knowledge rows -> a PCollection of one element: the relation list (``fixed``, or the names the
    rows hold, sorted after NA: ``knowmix.relations.relation_list_of``).

    One keyed group of the distinct names (plus an "NA", so it exists without relation rows): no global combine,
    which Beam's Dask runner gives one value per partition."""

    def __init__(self, fixed: list[str] | None):
        super().__init__()
        self.fixed = fixed

    def expand(self, rows):
        if self.fixed is not None:
            return rows.pipeline | "FixedRelations" >> beam.Create([self.fixed])
        return (
            (
                rows | "RelationNames" >> beam.FlatMap(lambda r: r["relations"] or []) | "Distinct" >> beam.Distinct(),
                rows.pipeline | "NaName" >> beam.Create(["NA"]),
            )
            | "AllNames" >> beam.Flatten()
            | "KeyNames" >> beam.Map(lambda name: ("names", name))
            | "GroupNames" >> beam.GroupByKey()
            | "Order" >> beam.Map(lambda kv: relation_list_of(kv[1]))
        )


class RelationIds(beam.PTransform):
    """Tokenised knowledge rows and the relation list -> ``("rows", row with relation ids)`` and
    ``("events", event)`` (``knowmix.relations.relation_ids``; a name not in a fixed list drops the row).

    The relation list reaches the rows by a keyed join (one copy per group), not a side input: Beam's Dask
    runner computes a side input anew, nested, in every partition that reads it."""

    def __init__(self, relations: beam.PCollection, groups: int):
        super().__init__()
        self.relations, self.groups = relations, groups

    def expand(self, rows):
        groups = self.groups
        return (
            {
                "rows": rows | "KeyByGroup" >> beam.Map(lambda r: (shard_of(r["id"], groups), r)),
                "relations": self.relations | "CopyPerGroup" >> beam.FlatMap(lambda rel: [(g, rel) for g in range(groups)]),
            }
            | "JoinRelations" >> beam.CoGroupByKey()
            | "RelationIds" >> beam.FlatMap(_relation_ids_in_group)
        )


def _relation_ids_in_group(kv):
    """(group, {rows, relations}) -> every row with relation names as ids."""
    _, grouped = kv
    relations = next(iter(grouped["relations"]))
    for row in grouped["rows"]:
        if row["relations"] is not None:
            ids = relation_ids(row["relations"], relations)
            if ids is None:
                yield "events", ("dropped", "unknown_relation", row["task"])
                continue
            row = {**row, "relations": ids}
        yield "events", ("output", None, row["task"])
        yield "rows", row


# ---------------------------------------------------------------------------------------------- the pipelines


def build(p: beam.Pipeline, config: TokenizeConfig, out: str) -> None:
    """The pipeline of the input's kind, writing under ``out``."""
    if config.out_kind == "pretrain":
        build_pretrain(p, config, out)
    else:
        build_knowledge_tokens(p, config, out)


def build_pretrain(p: beam.Pipeline, config: TokenizeConfig, out: str) -> None:
    """docs -> pretrain: encode each document, group by a hash of its id, pack each group."""
    spec, special = config.tokenizer, config.tokenizer.special_ids
    rows = p | "Read" >> beamio.ReadShardRows(config.shard_refs)  # a remote shard: verified by its reader
    encode = EncodeDocFn(spec, config.word_boundaries, config.user_words, config.pack_groups, config.input)
    encoded = beamio.split_by_tag(rows | "Encode" >> beam.ParDo(encode), ("docs", "dead", "events"), "Encoded")
    packed = beamio.split_by_tag(
        encoded["docs"]
        | "KeyedDocs" >> beam.Map(lambda kv: kv).with_output_types(Tuple[int, Any])
        | "GroupForPacking" >> beam.GroupByKey()
        | "Pack" >> beam.FlatMap(pack_group, config.max_seq_len, special["cls"], special["sep"]),
        ("rows", "events"), "Packed",
    )
    events = (encoded["events"], packed["events"]) | "AllEvents" >> beam.Flatten()
    write_outputs(p, config, out, packed["rows"], encoded["dead"], events, "by_source_kind")


def build_knowledge_tokens(p: beam.Pipeline, config: TokenizeConfig, out: str) -> None:
    """knowledge -> knowledge_tokens: encode each row, make the relation list, turn relation names into ids."""
    rows = p | "Read" >> beamio.ReadShardRows(config.shard_refs)  # a remote shard: verified by its reader
    encode = EncodeKnowledgeFn(config.tokenizer, config.word_boundaries, config.max_seq_len, config.input)
    encoded = beamio.split_by_tag(rows | "Encode" >> beam.ParDo(encode), ("rows", "dead", "events"), "Encoded")
    relations = encoded["rows"] | "Relations" >> RelationList(config.fixed_relations)
    ided = beamio.split_by_tag(
        encoded["rows"] | "WithRelationIds" >> RelationIds(relations, config.pack_groups), ("rows", "events"), "Ided",
    )
    events = (encoded["events"], ided["events"]) | "AllEvents" >> beam.Flatten()
    relations_entry = relations | "WriteRelations" >> beam.Map(_write_relations, out)
    write_outputs(p, config, out, ided["rows"], encoded["dead"], events, "by_task", extra=relations_entry)


def _write_relations(relations: list[str], out: str) -> dict:
    return write_relations_json(out, relations, beamio.write_text_atomically)


def write_outputs(p, config: TokenizeConfig, out: str, rows, dead, events, group_name: str, extra=None) -> None:
    """The sinks: shards, dead letters and, last, the manifest, which waits on every sink (shard entries and
    ``extra`` as side inputs, the dead letters through ``after``)."""
    entries = rows | "Write" >> beamio.WriteShards(out, config.schema, config.num_shards)
    dead_written = dead | "DeadLetters" >> beamio.WriteDeadLetters(out)
    tallies = beamio.tally(events)
    tokenizer_entry = config.tokenizer.entry

    def finalize(manifest: dict) -> dict:
        manifest["tokenizer"] = tokenizer_entry
        manifest["counts"]["sequences"] = sum(int(s["rows"]) for s in manifest["shards"])
        return manifest

    _ = p | "Manifest" >> beamio.WriteManifest(
        out, config.out_kind, config.schema, entries, tallies, config.options, group_name, extra=extra,
        finalize=finalize, after=[dead_written],
    )


# ---------------------------------------------------------------------------------------------- the job


def run(config: TokenizeConfig) -> dict:
    """Tokenise into ``config.output``; returns its manifest, read back through the shard contract."""
    # everything is written under `out`, beside the previous output, and swapped in once the manifest is
    # written (knowmix.outdir): a failed run leaves the previous output as it was
    with beamio.output_run(config.output, config.inputs, config.command) as output:
        out = output.staging
        config.tokenizer.write_file(out)
        live = progress.LiveLine("knowmix tokenize", config.quiet)
        with live, beam.Pipeline(options=beamio.pipeline_options(config.beam_args)) as p:
            build(p, config, out)
        progress.record_counters(p.result)
        output.commit()
    return read_manifest(config.output)


def tokenize_main(argv: list[str]) -> int:
    args, beam_args = parse_args(argv)
    manifest = run(resolve_config(args, beam_args, argv))
    c = manifest["counts"]
    dropped = ", ".join(f"{k} {v}" for k, v in c["dropped"].items()) or "none"
    print(
        f"knowmix tokenize: {manifest['kind']}: {c['input']} in, {c['output']} out in {c.get('sequences', 0)} rows,"
        f" {c['dead_letter']} dead letters, dropped: {dropped}",
        file=sys.stderr,
    )
    if progress.last_counters():
        print(f"  Beam counters: {progress.last_counters()}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # the same as `knowmix tokenize ...`
    from knowmix.cli import main

    sys.exit(main(["tokenize", *sys.argv[1:]]))
