"""``knowmix tokenize``: docs shards -> ``pretrain`` shards, knowledge shards -> ``knowledge_tokens`` shards.

The recipe (logic in ``pipelines/tokenizers.py``):

    docs:       read rows -> tokenise + jieba word starts (per doc) -> group by hash(doc id) -> sort by id, pack
                -> shards (kind pretrain) + manifest (tokenizer entry; counts in documents, ``sequences`` = rows)
    knowledge:  read rows -> tokenise per task (markers, spans, segments) -> relation names to ids
                (relations.json: --relations file or the sorted names seen, NA = 0) -> shards (kind knowledge_tokens)

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
import math
import os
import shutil
import sys
import tempfile
from typing import Any, Tuple

import apache_beam as beam

from knowmix import fileio
from knowmix.errors import UserError
from knowmix.manifest import ContractError, open_shard_dir
from knowmix.schemas import KNOWLEDGE_TOKENS_SCHEMA, PRETRAIN_SCHEMA
from pipelines import beamio, progress
from pipelines.tokenizers import (
    BadRow,
    DocTokens,
    Dropped,
    TokenizerSpec,
    WordSegmenter,
    encode_with_words,
    load_tokenizer,
    pack_documents,
    tokenize_knowledge,
)

RAW_LIMIT = 2000
TARGET_SHARD_BYTES = 64 << 20  # input (compressed) bytes per output shard
TARGET_GROUP_BYTES = 16 << 20  # input bytes per packing group (held in memory while packing)


def _dead(source: str, row: dict, reason: str) -> dict:
    raw = json.dumps({k: v for k, v in row.items()}, ensure_ascii=False, default=str)[:RAW_LIMIT]
    return {"source": source, "location": str(row.get("id")), "reason": reason, "raw": raw}


# ---------------------------------------------------------------------------------------------- docs


class EncodeDocFn(beam.DoFn):
    """doc row -> ``("docs", (group, DocTokens))``, ``("dead", dead-letter row)`` and ``("events", event)``."""

    def __init__(self, spec: TokenizerSpec, boundaries: bool, user_words: list[str], groups: int, source: str):
        self.spec, self.boundaries = spec, boundaries
        self.user_words, self.groups, self.source = user_words, groups, source

    def setup(self):
        self.tok = self.spec.load()
        self.seg = WordSegmenter("rjieba", self.user_words) if self.boundaries else None

    def __getstate__(self):
        # runtime state from setup() (the tokenizer, jieba) stays out of pickles: Beam's Dask runner may
        # pickle a DoFn again after setup(), when a side input's graph is computed inside a worker
        return {k: v for k, v in self.__dict__.items() if k not in ("tok", "seg")}

    def teardown(self):
        shutil.rmtree(os.path.dirname(self.tok.path), ignore_errors=True)

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
        yield "docs", (beamio.shard_of(doc_id, self.groups), DocTokens(doc_id, kind, w.enc.ids, w.word_start))


def _pack_group(kv, max_seq_len: int, cls_id: int, sep_id: int):
    """(group, DocTokens) -> ``("rows", packed row)`` and ``("events", event)``."""
    _, docs = kv
    docs = sorted(docs, key=lambda d: d.doc_id)
    for d in docs:
        yield "events", ("output", None, d.source_kind)
    for row in pack_documents(docs, max_seq_len, cls_id, sep_id):
        yield "rows", row


# ---------------------------------------------------------------------------------------------- knowledge


class EncodeKnowledgeFn(beam.DoFn):
    """knowledge row -> ``("rows", tokenised row)``, ``("dead", dead-letter row)`` and ``("events", event)``."""

    def __init__(self, spec: TokenizerSpec, boundaries: bool, max_seq_len: int, source: str):
        self.spec, self.boundaries = spec, boundaries
        self.max_seq_len, self.source = max_seq_len, source

    def setup(self):
        self.tok = self.spec.load()
        self.seg = WordSegmenter("rjieba") if self.boundaries else None

    def __getstate__(self):
        # runtime state from setup() (the tokenizer, jieba) stays out of pickles: Beam's Dask runner may
        # pickle a DoFn again after setup(), when a side input's graph is computed inside a worker
        return {k: v for k, v in self.__dict__.items() if k not in ("tok", "seg")}

    def teardown(self):
        shutil.rmtree(os.path.dirname(self.tok.path), ignore_errors=True)

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


def _order_relations(kv) -> list[str]:
    """("names", distinct names seen, with one "NA") -> the relation list: NA = 0, then the names sorted."""
    return ["NA", *sorted(n for n in set(kv[1]) if n != "NA")]


def _relation_ids_in_group(kv):
    """(group, {rows, relations}) -> every row with relation names as ids (``_relation_ids``)."""
    _, grouped = kv
    relations = next(iter(grouped["relations"]))
    for row in grouped["rows"]:
        yield from _relation_ids(row, relations)


def _relation_ids(row, relations: list[str]):
    """Relation names -> ids: ``("rows", row)`` and ``("events", event)``."""
    if row["relations"] is not None:
        index = {name: i for i, name in enumerate(relations)}
        ids = [index.get(name) for name in row["relations"]]
        if any(i is None for i in ids):
            yield "events", ("dropped", "unknown_relation", row["task"])
            return
        row = {**row, "relations": ids}
    yield "events", ("output", None, row["task"])
    yield "rows", row


def read_relations(path: str) -> list[str]:
    """A JSON list of names, or ``name id`` lines (e.g. FinRE's relation2id.txt); id 0 becomes ``NA``."""
    try:
        text = fileio.read_text(path)  # local or any Beam filesystem (gs://, s3://, ...)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the relation list ({exc})") from None
    if text.lstrip().startswith("["):
        try:
            names = [str(x) for x in json.loads(text)]
        except ValueError as exc:
            raise UserError(f"{path}: not a JSON list ({exc})") from None
    else:
        pairs = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                pairs.append((int(parts[-1]), " ".join(parts[:-1])))
            except (ValueError, IndexError):
                raise UserError(f"{path}:{n}: expected `name id`") from None
        pairs.sort()
        if [i for i, _ in pairs] != list(range(len(pairs))):
            raise UserError(f"{path}: ids must run 0..{len(pairs) - 1} without gaps")
        names = [name for _, name in pairs]
    if not names:
        raise UserError(f"{path}: no relations")
    names[0] = "NA"
    if len(set(names)) != len(names):
        raise UserError(f"{path}: duplicate relation names")
    return names


def _write_relations(names: list[str], out_dir: str) -> dict:
    beamio.write_text_atomically(beamio.join(out_dir, "relations.json"), json.dumps(names, ensure_ascii=False, indent=0) + "\n")
    return {"relations": {"file": "relations.json", "count": len(names)}}


# ---------------------------------------------------------------------------------------------- the job


def parse_args(argv: list[str]):
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
    ap.add_argument("--relations", help="fixed relation ids: JSON list or `name id` lines (default: names seen, sorted)")
    ap.add_argument("--num-shards", type=int, default=0, help="output shards (0: ~64 MB of input each)")
    ap.add_argument("--pack-groups", type=int, default=0, help="packing groups (0: ~16 MB of input each)")
    args, beam_args = ap.parse_known_args(argv)
    beamio.check_beam_args(beam_args, "tokenize")
    return args, beam_args


def _read_user_words(path: str | None) -> list[str]:
    if not path:
        return []
    try:
        text = fileio.read_text(path)  # local or any Beam filesystem
        return sorted({line.split()[0] for line in text.splitlines() if line.strip()})
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the user dictionary ({exc})") from None


def _load_tokenizer(spec: str, lowercase: bool | None, local_dir: str):
    """``load_tokenizer`` for a file on any Beam filesystem too: a remote tokenizer file (and, for WordPiece,
    the ``tokenizer_config.json`` beside it) is copied into ``local_dir`` first, since the libraries open files by
    name; the workers get its bytes with the job (``TokenizerSpec``). Messages name the remote path."""
    kind, sep, path = spec.partition(":")
    if not sep or not fileio.is_remote(path):
        return load_tokenizer(spec, lowercase)
    if not fileio.is_file(path):
        raise UserError(f"{path}: no such tokenizer file")
    local = fileio.copy_to_local(path, local_dir)
    config = fileio.join(path.rsplit("/", 1)[0], "tokenizer_config.json")
    if kind == "wordpiece" and fileio.is_file(config):
        fileio.copy_to_local(config, local_dir)
    try:
        return load_tokenizer(f"{kind}:{local}", lowercase)
    except UserError as exc:
        raise UserError(str(exc).replace(local, path)) from None


def _copy_tokenizer_file(path: str, out_dir: str) -> None:
    """The tokenizer file beside the manifest (``out_dir`` local or remote), so the trainer finds it."""
    fileio.write_bytes(fileio.join(out_dir, os.path.basename(path)), fileio.read_bytes(path))


def run(argv: list[str]) -> dict:
    args, beam_args = parse_args(argv)
    if args.max_seq_len < 8:
        raise UserError(f"--max-seq-len {args.max_seq_len}: must be at least 8")
    try:
        src = open_shard_dir(args.input, ("docs", "knowledge"))
    except ContractError as exc:
        raise UserError(str(exc)) from None
    local_dir = tempfile.mkdtemp(prefix="knowmix-tokenizer-")
    try:
        tok = _load_tokenizer(args.tokenizer, args.lowercase, local_dir)
        return _run(args, beam_args, argv, src, tok)
    finally:
        shutil.rmtree(local_dir, ignore_errors=True)


def _run(args, beam_args: list[str], argv: list[str], src, tok) -> dict:
    info = tok.info()
    user_words = _read_user_words(args.user_dict)
    relations_fixed = read_relations(args.relations) if args.relations else None
    in_bytes = sum(int(s["bytes"]) for s in src.manifest["shards"])
    num_shards = args.num_shards or max(1, math.ceil(in_bytes / TARGET_SHARD_BYTES))
    groups = args.pack_groups or max(1, math.ceil(in_bytes / TARGET_GROUP_BYTES))
    out_kind = "pretrain" if src.kind == "docs" else "knowledge_tokens"
    schema = PRETRAIN_SCHEMA if out_kind == "pretrain" else KNOWLEDGE_TOKENS_SCHEMA
    options = {
        "argv": ["knowmix", "tokenize", *argv], "input": args.input, "tokenizer": args.tokenizer,
        "max_seq_len": args.max_seq_len, "word_boundaries": args.boundaries, "num_shards": num_shards,
        "pack_groups": groups if out_kind == "pretrain" else None, "user_dict": args.user_dict,
        "relations": args.relations,
    }
    spec = TokenizerSpec(tok)
    inputs = [("--input", args.input), ("--tokenizer", args.tokenizer.partition(":")[2]), ("--user-dict", args.user_dict),
              ("--relations", args.relations)]

    def finalize(manifest: dict) -> dict:
        manifest["tokenizer"] = info
        manifest["counts"]["sequences"] = sum(int(s["rows"]) for s in manifest["shards"])
        return manifest

    # everything is written under `out`, beside the previous output, and swapped in once the manifest is
    # written (knowmix.outdir): a failed run leaves the previous output as it was
    with beamio.output_run(args.output, inputs, " ".join(options["argv"])) as output:
        out = output.staging
        _copy_tokenizer_file(tok.path, out)
        live = progress.LiveLine("knowmix tokenize", args.quiet)
        with live, beam.Pipeline(options=beamio.pipeline_options(beam_args)) as p:
            rows = p | "Read" >> beamio.ReadShardRows(src.shard_refs())  # a remote shard: verified by its reader
            extra = None
            if out_kind == "pretrain":
                enc = beamio.split_by_tag(
                    rows | "Encode" >> beam.ParDo(EncodeDocFn(spec, args.boundaries, user_words, groups, args.input)),
                    ("docs", "dead", "events"), "Encoded",
                )
                packed = beamio.split_by_tag(
                    enc["docs"]
                    | "KeyedDocs" >> beam.Map(lambda kv: kv).with_output_types(Tuple[int, Any])
                    | "GroupForPacking" >> beam.GroupByKey()
                    | "Pack" >> beam.FlatMap(_pack_group, args.max_seq_len, tok.special_ids["cls"], tok.special_ids["sep"]),
                    ("rows", "events"), "Packed",
                )
                out_rows, events = packed["rows"], (enc["events"], packed["events"]) | "AllEvents" >> beam.Flatten()
                group_name = "by_source_kind"
            else:
                enc = beamio.split_by_tag(
                    rows | "Encode" >> beam.ParDo(EncodeKnowledgeFn(spec, args.boundaries, args.max_seq_len, args.input)),
                    ("rows", "dead", "events"), "Encoded",
                )
                if relations_fixed is not None:
                    relations = p | "FixedRelations" >> beam.Create([relations_fixed])
                else:
                    # one keyed group of the distinct names (plus an "NA", so it exists without relation rows): no
                    # global combine, which Beam's Dask runner gives one value per partition
                    relations = (
                        (
                            enc["rows"]
                            | "RelationNames" >> beam.FlatMap(lambda r: r["relations"] or [])
                            | "Distinct" >> beam.Distinct(),
                            p | "NaName" >> beam.Create(["NA"]),
                        )
                        | "AllNames" >> beam.Flatten()
                        | "KeyNames" >> beam.Map(lambda name: ("names", name))
                        | "GroupNames" >> beam.GroupByKey()
                        | "Order" >> beam.Map(_order_relations)
                    )
                # the relation list reaches the rows by a keyed join (one copy per group), not a side input:
                # Beam's Dask runner computes a side input anew, nested, in every partition that reads it
                ided = beamio.split_by_tag(
                    {
                        "rows": enc["rows"] | "KeyByGroup" >> beam.Map(lambda r: (beamio.shard_of(r["id"], groups), r)),
                        "relations": relations | "CopyPerGroup" >> beam.FlatMap(lambda rel: [(g, rel) for g in range(groups)]),
                    }
                    | "JoinRelations" >> beam.CoGroupByKey()
                    | "RelationIds" >> beam.FlatMap(_relation_ids_in_group),
                    ("rows", "events"), "Ided",
                )
                out_rows = ided["rows"]
                events = (enc["events"], ided["events"]) | "AllEvents" >> beam.Flatten()
                extra = relations | "WriteRelations" >> beam.Map(_write_relations, out)
                group_name = "by_task"
            # the manifest is the last step and waits on every sink: shard entries and relations.json (side inputs)
            # and the dead letters (``after``)
            entries = out_rows | "Write" >> beamio.WriteShards(out, schema, num_shards)
            dead_written = enc["dead"] | "DeadLetters" >> beamio.WriteDeadLetters(out)
            tallies = beamio.tally(events)
            _ = p | "Manifest" >> beamio.WriteManifest(
                out, out_kind, schema, entries, tallies, options, group_name, extra=extra, finalize=finalize,
                after=[dead_written],
            )
        progress.record_counters(p.result)
        output.commit()
    return json.loads(fileio.read_text(fileio.join(args.output, "manifest.json")))


def tokenize_main(argv: list[str]) -> int:
    manifest = run(argv)
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
