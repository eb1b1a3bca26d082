"""``knowmix kg-samples``: docs shards + a knowledge graph -> knowledge shards (relation, substitution, triple_mask).

The recipe, top to bottom (the logic lives in ``kg/``):

    KG files -> the entity index file (kg.index_file: built by the kg-index job first, or given by --kg-index)
    docs shards -> sentences -> link, one document at a time (the index mapped by each worker process from its
      path in DoFn.setup; a common-word mention needs corroboration in its sentence or document, see kg.link)
      -> ordered entity pairs, joined with the KG triples by (head, tail) with CoGroupByKey
      -> per sentence: samples of each task (kg.samples), entity frequencies as a side input for substitution
      -> NA relation samples down-sampled to at most --na-ratio of the relation task, exactly and
         deterministically (lowest seeded hash scores; per-bucket counts, one plan, joined back by bucket)
      -> knowledge shards (WriteShards) + manifest (WriteManifest, kind "knowledge", counts per task)

The file's shape (every Beam job's): ``parse_args`` -> ``resolve`` (a ``KgSamplesJob``, resolved once) ->
``build(pipeline, job)``: the recipe above as named transforms (LinkSentences, JoinRelations, MakeSamples,
DownsampleNa, SentenceFates, KnowledgeStats) whose logic is plain functions (here and in ``kg/``) -> ``run(job)``
(returns the manifest read back) -> ``kg_samples_main``.

Accounting unit: the sentence. ``input`` = sentences considered; ``output`` = sentences that gave at least one
sample; every other sentence is dropped with one reason (``too_long``, ``no_entity``, ``ambiguous``,
``one_entity``, ``no_triple``, ``na_sampled_out``), so ``input == output + dead_letter + sum(dropped)`` exactly;
``counts.by_task`` holds the same per task (``no_triple`` for triple_mask), and ``counts.samples`` the rows.

Runner portability (Beam's Dask runner included): DoFns yield ``(tag, value)`` pairs split by
``beamio.split_by_tag`` (never ``with_outputs``), there is no global combine (per-key combines, keyed joins and
side inputs of the manifest step instead), and every branch feeds the manifest step, the pipeline's last. The
NA plan reaches the NA rows by a join on their bucket, not a side input: the Dask runner computes a side input
anew, nested, in every partition that reads it (the entity index and frequencies still are side inputs).

Memory and the job graph: the entity index (names, aliases, types and the connected entity pairs, no relation
labels) is one file of sorted arrays (kg.index_file) that every worker process memory-maps in ``DoFn.setup``
(the processes of one machine share its pages); the job graph carries only its path, so its size does not
grow with the KG. The file is written by ``knowmix kg-index`` (then ``--kg-index FILE``) or, without that flag,
by the same Beam job (``pipelines.kg_index``) run first on the same runner into the output's ``_spill/`` (removed
when the output is swapped in): a worker parses the KG, never the launcher, which reads only the file's header.
Type inference, bad-line and homonym figures are computed by that step and stored in the header. Relation labels are read from the KG files by the
workers and joined by (head, tail). The linker's automaton is read in place from the file; the segmenter's
dictionary (every name a word) is still built per process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from knowmix.kg.graph import iter_triples, kg_format
from knowmix.kg.index import EntityIndex, TypeRules
from knowmix.kg.index_file import open_index, read_header
from knowmix.kg.link import COMMON_WORD_MAX_FREQ, COMMON_WORD_MIN_FREQ, CommonWords, Linker, Mention, split_sentences
from knowmix.kg.link_filters import LinkFilters
from knowmix.kg.segmenter import SEGMENTERS
from knowmix.kg.samples import (
    NA,
    PENDING_NA,
    TASKS,
    SubstitutionSampler,
    is_na,
    na_quota,
    na_score,
    sentence_id,
    sentence_outcomes,
    sentence_samples,
)
from knowmix import fileio
from knowmix.errors import UserError
from knowmix.manifest import ContractError, open_shard_dir, read_manifest
from knowmix.schemas import KNOWLEDGE_SCHEMA
from knowmix.sharding import auto_num_shards
from knowmix.pipelines import progress
from knowmix.pipelines.worker_process import freeze_startup_heap
from knowmix.pipelines.beamio import (
    ReadShardRows,
    WriteManifest,
    WriteShards,
    output_run,
    pipeline_options,
    split_by_tag,
    tally,
)

BUCKET_SHIFT = 48  # NA score buckets: the top 16 bits of a 64-bit score
MAX_PROBLEMS_LISTED = 50


# ---------------------------------------------------------------------------------------------- helpers


def merge_counts(a: dict, b: dict) -> dict:
    """Add nested dicts of numbers (b into a)."""
    for k, v in b.items():
        if isinstance(v, dict):
            merge_counts(a.setdefault(k, {}), v)
        else:
            a[k] = a.get(k, 0) + v
    return a


class MergeCountsFn(beam.CombineFn):
    def create_accumulator(self):
        return {}

    def add_input(self, acc, d):
        return merge_counts(acc, d)

    def merge_accumulators(self, accs):
        out: dict = {}
        for a in accs:
            merge_counts(out, a)
        return out

    def extract_output(self, acc):
        return acc


def sorted_deep(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: sorted_deep(d[k]) for k in sorted(d)}
    return d


_LINKERS: dict[tuple, Linker] = {}
_SAMPLERS: dict[tuple, SubstitutionSampler] = {}


@dataclass(frozen=True)
class CommonWordPolicy:
    """``--allow-common-aliases`` (off: common words need corroboration) and the frequency bounds of CommonWords."""

    allow: bool = False
    min_freq: int = COMMON_WORD_MIN_FREQ
    max_freq: int | None = COMMON_WORD_MAX_FREQ
    filters: LinkFilters | None = LinkFilters()  # kg.link_filters (None: --no-link-filters)


def linker_for(index: EntityIndex, segmenter: str, min_chars: int, common: CommonWordPolicy = CommonWordPolicy()) -> Linker:
    """One Linker per worker process and index (building the automaton and segmenter dictionary is costly)."""
    key = (getattr(index, "key", id(index)), segmenter, min_chars, common)
    linker = _LINKERS.get(key)
    if linker is None:
        words = None if common.allow else CommonWords(
            common.min_freq, common.max_freq, words=(s for s in index.surface_to_ids if len(s) >= min_chars))
        linker = _LINKERS[key] = Linker(index, segmenter, min_chars, common_words=words, filters=common.filters)
    return linker


def doc_sentences(row: dict, max_chars: int):
    """Docs row -> one {sid, doc_id, text} per sentence."""
    doc_id, text = row["id"], row["text"] or ""
    for i, (s, e) in enumerate(split_sentences(text)):
        yield {"sid": sentence_id(doc_id, i), "doc_id": doc_id, "text": text[s:e]}


def fate_events(outcomes: dict) -> list[tuple]:
    r = outcomes[""]
    return [("input", None, None), ("output", None, None) if r is None else ("dropped", r, None)]


def fate_stats(outcomes: dict) -> dict:
    by_task = {}
    for task, r in outcomes.items():
        if not task:
            continue
        by_task[task] = {"input": 1, "output": 1} if r is None else {"input": 1, "dropped": {r: 1}}
    return {"_by_task": by_task}


def row_stats(row: dict) -> dict:
    task = row["task"]
    s: dict = {"samples": 1}
    if task == "relation":
        s["labels"] = {r: 1 for r in row["relations"]}
        s["per_type"] = {f"{row['head']['type']}->{row['tail']['type']}": 1}
    elif task == "substitution":
        ms = row["mentions"]
        replaced = sum(1 for m in ms if m["replacement"] is not None)
        s["labels"] = {"replaced": replaced, "original": len(ms) - replaced}
        per_type: dict = {}
        for m in ms:
            per_type[str(m["type"])] = per_type.get(str(m["type"]), 0) + 1
        s["per_type"] = per_type
    else:
        s["labels"] = {row["triple"]["relation"]: 1}
        s["per_type"] = {f"{row['head']['type']}->{row['tail']['type']}": 1}
    return {"_tasks": {task: s}}


# ---------------------------------------------------------------------------------------------- DoFns


class LinkFn(beam.DoFn):
    """docs row -> per sentence ``("linked", (sid, linked sentence))`` when it has mentions, else
    ``("fate", (sid, outcomes))``; and ``("stats", linking stats)``. A whole document at a time: a common-word
    mention may be corroborated by another sentence of its document. The index is mapped from ``index_path``
    and the linker built once per process, in ``setup``."""

    def __init__(self, index_path: str, segmenter: str, min_chars: int, max_chars: int, tasks,
                 common: CommonWordPolicy = CommonWordPolicy()):
        self.index_path = index_path
        self.segmenter, self.min_chars, self.max_chars, self.tasks = segmenter, min_chars, max_chars, tuple(tasks)
        self.common = common

    def setup(self):
        self.linker = linker_for(open_index(self.index_path), self.segmenter, self.min_chars, self.common)
        freeze_startup_heap()  # a worker process's exit: 0.5 s less (pipelines.worker_process)

    def process(self, row):
        sents = list(doc_sentences(row, self.max_chars))
        beam.metrics.Metrics.counter("knowmix", "sentences").inc(len(sents))
        short = []
        for sent in sents:
            if len(sent["text"]) > self.max_chars:
                yield "fate", (sent["sid"], {t: "too_long" for t in ("", *self.tasks)})
            else:
                short.append(sent)
        results = self.linker.link_document([x["text"] for x in short])
        for sent, res in zip(short, results):
            yield "stats", {"_linking": {
                "sentences": 1, "matches": res.matches, "mentions": len(res.mentions),
                "rejected_word_cut": res.rejected_word_cut, "ambiguous_resolved": res.ambiguous_resolved,
                "ambiguous_dropped": res.ambiguous_dropped, "sentences_with_mentions": 1 if res.mentions else 0,
                "common_word_rejected": res.common_word_rejected,
                "common_word_corroborated": res.common_word_corroborated,
                "org_prefix_rejected": res.org_prefix_rejected, "org_name_verb_rejected": res.org_name_verb_rejected,
                "title_rejected": res.title_rejected,
                "demonym_rejected": res.demonym_rejected, "short_alias_rejected": res.short_alias_rejected,
                "short_alias_corroborated": res.short_alias_corroborated}}
            if not res.mentions:
                yield "fate", (sent["sid"], sentence_outcomes([], res.ambiguous_dropped, [], self.tasks))
                continue
            mentions = [(m.start, m.end, m.surface, m.entity_id) for m in res.mentions]
            yield "linked", (sent["sid"], {"doc_id": sent["doc_id"], "text": sent["text"], "mentions": mentions,
                                           "ambiguous_dropped": res.ambiguous_dropped})


def entity_pairs(kv):
    sid, sent = kv
    ids = list(dict.fromkeys(m[3] for m in sent["mentions"]))
    for h in ids:
        for t in ids:
            if h != t:
                yield ((h, t), sid)


def pair_relations(kv):
    (h, t), grouped = kv
    rels = sorted(set(grouped["rel"]))
    if not rels:
        return
    for sid in sorted(set(grouped["sid"])):
        yield (sid, (h, t, rels))


class SampleFn(beam.DoFn):
    """(sid, {sent, rels}) -> ``("rows", knowledge row)``, ``("na", NA relation row)``, ``("fate", (sid, outcomes))``."""

    def __init__(self, index_path: str, tasks, seed: int, probability: float):
        self.index_path = index_path
        self.tasks, self.seed, self.probability = tuple(tasks), seed, probability

    def setup(self):
        self.index = open_index(self.index_path)

    def process(self, kv, freq):
        index = self.index
        sid, grouped = kv
        sents = list(grouped["sent"])
        if not sents:
            return
        sent = sents[0]
        rel_map = {(h, t): rels for h, t, rels in grouped["rels"]}
        mentions = [Mention(*m) for m in sent["mentions"]]
        sampler = None
        if "substitution" in self.tasks:
            key = (getattr(index, "key", id(index)), id(freq), self.probability)
            sampler = _SAMPLERS.get(key)
            if sampler is None:
                _SAMPLERS.clear()
                sampler = _SAMPLERS[key] = SubstitutionSampler(index, freq, probability=self.probability)
        rows = sentence_samples(sent["doc_id"], sid, sent["text"], mentions, index,
                                lambda h, t: rel_map.get((h, t), ()), self.tasks, sampler, self.seed)
        yield "fate", (sid, sentence_outcomes(mentions, sent["ambiguous_dropped"], rows, self.tasks))
        for row in rows:
            beam.metrics.Metrics.counter("knowmix", f"samples_{row['task']}").inc()
            yield ("na" if is_na(row) else "rows"), row


def plan_na_cut(positive: int, buckets: list, na_ratio: float) -> tuple[int, int]:
    """(cut bucket, how many to keep inside it): buckets below the cut are kept whole, above it dropped."""
    total = sum(n for _, n in buckets)
    quota = na_quota(positive, total, na_ratio)
    cum = 0
    for b, n in sorted(buckets):
        if cum + n > quota:
            return (b, quota - cum)
        cum += n
    return (1 << 64, 0)  # keep all


def na_decisions(kv, na_ratio: float):
    """("plan", [("positive", n) | ("bucket", (b, n))]) -> (b, how many NA rows of bucket b to keep), every b."""
    _, items = kv
    items = list(items)
    positive = sum(n for what, n in items if what == "positive")
    buckets = [bn for what, bn in items if what == "bucket"]
    cut, keep = plan_na_cut(positive, buckets, na_ratio)
    for b, n in buckets:
        yield b, (n if b < cut else keep if b == cut else 0)


def cut_bucket(kv, seed: int):
    """(bucket, {rows, keep}) -> ``("keep", row)`` for the lowest-scored ``keep`` rows (score, then id), else ``("drop", row)``."""
    _, grouped = kv
    keep = sum(grouped["keep"])
    ordered = sorted(grouped["rows"], key=lambda r: (na_score(seed, r["id"]), r["id"]))
    for i, row in enumerate(ordered):
        yield ("keep" if i < keep else "drop"), row


def resolve_fate(kv):
    sid, grouped = kv
    kept = any(True for _ in grouped["kept"])
    for outcomes in grouped["fate"]:
        yield {t: ((None if kept else "na_sampled_out") if r == PENDING_NA else r) for t, r in outcomes.items()}


# ---------------------------------------------------------------------------------------------- KG triples, index, manifest


class ReadTriplesFn(beam.DoFn):
    """KG file path -> its valid triples, homonyms renamed as in the index (its header's ``renames``)."""

    def __init__(self, index_path: str, min_name_chars: int):
        self.index_path, self.min_name_chars = index_path, min_name_chars

    def setup(self):
        self.renames = open_index(self.index_path).renames()

    def process(self, path):
        yield from iter_triples(path, renames=self.renames, min_name_chars=self.min_name_chars)


def kg_extra(index_path: str) -> dict:
    """The manifest's ``knowledge_graph`` entry, from the index file's header (computed when it was built)."""
    return {"knowledge_graph": read_header(index_path)["meta"]["knowledge_graph"]}


def prepare_index(index_path: str | None, kg_paths: list[str], entity_paths: list[str], out_dir: str,
                  min_name_chars: int, type_rules: TypeRules, beam_args: list[str] = ()) -> str:
    """The index file the job reads: ``index_path`` checked against the job's KG options (its header only), or
    one built now by the kg-index job (``pipelines.kg_index``: on a worker of the same runner, never in this
    process) into ``out_dir/_spill`` (the output's scratch folder, removed when the output is swapped in)."""
    params = {"kg": list(kg_paths), "entities": list(entity_paths), "min_name_chars": min_name_chars,
              "type_min_support": type_rules.min_support, "type_min_share": type_rules.min_share}
    if index_path is not None:
        try:
            built = read_header(index_path)["meta"]["params"]
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"--kg-index: {index_path}: {exc}") from None
        differ = [f"{k} {built.get(k)!r} (this run: {v!r})" for k, v in params.items() if built.get(k) != v]
        if differ:
            raise UserError(f"--kg-index: {index_path} was built with other KG options: {'; '.join(differ)}")
        return index_path
    from knowmix.pipelines import kg_index

    spill = fileio.join(out_dir, "_spill")
    if not fileio.is_remote(spill):
        os.makedirs(spill, exist_ok=True)
    return kg_index.run(kg_index.KgIndexJob(list(kg_paths), list(entity_paths), spill, min_name_chars, type_rules,
                                            list(beam_args)))


def make_finalize(tasks, na_ratio: float):
    def finalize(manifest: dict) -> dict:
        by_task = manifest.pop("_by_task", {})
        task_stats = manifest.pop("_tasks", {})
        linking = manifest.pop("_linking", {})
        counts = manifest["counts"]
        counts["by_task"] = {}
        for task in tasks:
            c = by_task.get(task, {})
            counts["by_task"][task] = {"input": c.get("input", 0), "output": c.get("output", 0), "dead_letter": 0,
                                       "dropped": dict(sorted(c.get("dropped", {}).items()))}
        samples = {t: task_stats.get(t, {}).get("samples", 0) for t in tasks}
        counts["samples"] = {"total": sum(samples.values()), **samples}
        knowledge: dict = {"tasks": {}, "linking": sorted_deep(linking), "na_ratio_limit": na_ratio}
        for task in tasks:
            s = task_stats.get(task, {})
            entry = {"samples": s.get("samples", 0), "labels": sorted_deep(s.get("labels", {})),
                     "per_type": sorted_deep(s.get("per_type", {}))}
            if task == "relation":
                na = entry["labels"].get(NA, 0)
                entry["na_ratio"] = round(na / entry["samples"], 6) if entry["samples"] else 0.0
                entry["na_sampled_out"] = s.get("na_sampled_out", 0)
                entry["per_relation"] = {k: v for k, v in entry["labels"].items() if k != NA}
            elif task == "triple_mask":
                entry["per_relation"] = entry["labels"]
            knowledge["tasks"][task] = entry
        manifest["knowledge_stats"] = knowledge
        # the keys `knowmix stats` shows for a knowledge manifest
        tk = knowledge["tasks"]
        manifest["na_ratio"] = tk["relation"]["na_ratio"] if "relation" in tk else None
        manifest["label_distribution"] = {t: v["labels"] for t, v in tk.items()}
        manifest["per_relation"] = {t: v["per_relation"] for t, v in tk.items() if "per_relation" in v}
        manifest["per_type"] = {t: v["per_type"] for t, v in tk.items()}
        return manifest

    return finalize


# ---------------------------------------------------------------------------------------------- the job


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    from knowmix.args import Parser
    from knowmix.pipelines.beamio import check_beam_args

    ap = Parser("knowmix kg-samples", __doc__, beam=True, progress=True)
    ap.add_argument("--kg", action="append", required=True, help="KG file (.tsv, .jsonl, .nt, .nt.gz); repeatable")
    ap.add_argument("--entities", action="append", default=[], help="entities TSV (name, type, aliases); repeatable")
    ap.add_argument("--docs", required=True, help="a docs shard directory (knowmix clean output)")
    ap.add_argument("--output", required=True, help="output directory for knowledge shards")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of " + ",".join(TASKS))
    ap.add_argument("--na-ratio", type=float, default=0.5, help="most NA samples may be this share of relation samples")
    ap.add_argument("--seed", type=int, default=0, help="seed of the NA down-sampling and the substitution choices")
    ap.add_argument("--num-shards", type=int, default=0, help="output shards (0: ~64 MB of docs text per shard)")
    ap.add_argument("--segmenter", choices=SEGMENTERS, default="rjieba", help="word-boundary check for mentions")
    ap.add_argument("--min-name-chars", type=int, default=2, help="shortest name/alias that is linked")
    ap.add_argument("--max-sentence-chars", type=int, default=512, help="longer sentences are dropped (too_long)")
    ap.add_argument("--substitution-probability", type=float, default=0.5,
                    help="chance that a linked mention is replaced by a same-type entity (substitution task)")
    add_quality_args(ap)
    add_index_args(ap)
    args, beam_args = ap.parse_known_args(argv)
    check_beam_args(beam_args, "kg-samples")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise UserError(f"--tasks: unknown task(s) {', '.join(unknown) or '(none given)'}; expected {','.join(TASKS)}")
    if not 0.0 <= args.na_ratio <= 1.0:
        raise UserError(f"--na-ratio: {args.na_ratio} is not between 0 and 1")
    if not 0.0 <= args.substitution_probability <= 1.0:
        raise UserError(f"--substitution-probability: {args.substitution_probability} is not between 0 and 1")
    for path in args.kg + args.entities:
        if not fileio.is_file(path):  # local or any Beam filesystem (gs://, s3://, ...)
            raise UserError(f"{path}: no such file")
    for path in args.kg:
        kg_format(path)  # by its name: an unknown format is one line here, not a worker's error
    return args, beam_args


def add_quality_args(ap: argparse.ArgumentParser) -> None:
    """Linking precision and type hygiene (kg.link.CommonWords, kg.index.TypeRules): one block of flags."""
    g = ap.add_argument_group("linking precision and type inference")
    g.add_argument("--allow-common-aliases", action="store_true",
                   help="link common words (合作, 平安) without corroboration, as before")
    g.add_argument("--common-word-min-freq", type=int, default=COMMON_WORD_MIN_FREQ,
                   help="a non-proper-noun word of jieba's dictionary is common from this frequency on")
    g.add_argument("--common-word-max-freq", type=int, default=COMMON_WORD_MAX_FREQ,
                   help="an alias more frequent than this in jieba's dictionary is common even as a proper noun (0: off)")
    g.add_argument("--no-link-filters", default="", const="all", nargs="?", metavar="RULES",
                   help="switch off the precision rules of kg.link_filters: all, or some of "
                        "org_prefix,org_name_verbs,short_alias,title,demonym (comma-separated)")
    g.add_argument("--type-min-support", type=int, default=TypeRules.min_support,
                   help="typed entities a relation role needs before an untyped entity in it takes their type")
    g.add_argument("--type-min-share", type=float, default=TypeRules.min_share,
                   help="... and the share of all the role's entities they must exceed")


def add_index_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--kg-index", default=None,
                    help="an index file of the same --kg/--entities (knowmix kg-index); without it one is built "
                         "before the job starts")


def quality_options(args: argparse.Namespace) -> dict:
    """build() keywords from the flags of add_quality_args."""
    return {"common": CommonWordPolicy(args.allow_common_aliases, args.common_word_min_freq,
                                       args.common_word_max_freq or None, LinkFilters.without(args.no_link_filters)),
            "type_rules": TypeRules(args.type_min_support, args.type_min_share)}


@dataclass(frozen=True)
class KgSamplesJob:
    """``knowmix kg-samples`` resolved once (``resolve``, from the flags; tests make one directly): what ``build``
    and ``run`` read. ``index_path``: a prebuilt index file (``knowmix kg-index``), else one is built into the
    output's ``_spill/`` when the pipeline is built (``prepare_index``). ``options``: the manifest's record of
    the run; ``beam_args``: Beam's flags."""

    docs_dir: str
    kg_paths: list[str]
    entity_paths: list[str]
    out_dir: str
    tasks: tuple[str, ...] = TASKS
    na_ratio: float = 0.5
    seed: int = 0
    num_shards: int = 1
    segmenter: str = "rjieba"
    min_name_chars: int = 2
    max_sentence_chars: int = 512
    substitution_probability: float = 0.5
    common: CommonWordPolicy = CommonWordPolicy()
    type_rules: TypeRules = TypeRules()
    index_path: str | None = None
    options: dict = field(default_factory=dict)
    beam_args: list[str] = field(default_factory=list)

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(t for t in TASKS if t in self.tasks))  # the tasks' id order


def resolve(args: argparse.Namespace, beam_args: list[str], argv: list[str]) -> KgSamplesJob:
    """The job for parsed flags: tasks in their canonical order, the shard count resolved (0: about 64 MB of docs
    shards per output shard, ``knowmix.sharding``; read from the docs manifest), the options record."""
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    num_shards = args.num_shards
    if num_shards <= 0:
        docs = open_docs(args.docs, verify=False)
        num_shards = auto_num_shards(sum(s["bytes"] for s in docs.manifest["shards"]), whole_shards_only=True)
    shown = {k: v for k, v in vars(args).items() if k not in ("quiet", "log_level")}  # not job options
    return KgSamplesJob(
        docs_dir=args.docs, kg_paths=list(args.kg), entity_paths=list(args.entities), out_dir=args.output,
        tasks=tuple(t for t in TASKS if t in tasks), na_ratio=args.na_ratio, seed=args.seed, num_shards=num_shards,
        segmenter=args.segmenter, min_name_chars=args.min_name_chars, max_sentence_chars=args.max_sentence_chars,
        substitution_probability=args.substitution_probability, index_path=args.kg_index,
        options={"argv": list(argv), **shown}, beam_args=list(beam_args), **quality_options(args),
    )


def open_docs(docs_dir: str, verify: bool = True):
    """The docs input's ShardDir; a broken one is a one-line UserError."""
    try:
        return open_shard_dir(docs_dir, kind="docs", verify=verify)
    except ContractError as exc:
        raise UserError(str(exc)) from None


class LinkSentences(beam.PTransform):
    """docs rows -> ``{"linked": (sid, linked sentence), "fate": (sid, outcomes), "stats": linking stats}``
    (``LinkFn``: sentences split, too-long ones dropped, mentions linked a document at a time)."""

    def __init__(self, job: KgSamplesJob, index_path: str):
        super().__init__()
        self.job, self.index_path = job, index_path

    def expand(self, rows):
        job = self.job
        fn = LinkFn(self.index_path, job.segmenter, job.min_name_chars, job.max_sentence_chars, job.tasks, job.common)
        return split_by_tag(rows | "Link" >> beam.ParDo(fn), ("linked", "fate", "stats"), "Linked")


class JoinRelations(beam.PTransform):
    """Linked sentences + the KG files -> ``(sid, (head, tail, relations))`` for each ordered entity pair of a
    sentence that has triples: the triples are read by the workers and joined by (head, tail)."""

    def __init__(self, job: KgSamplesJob, index_path: str):
        super().__init__()
        self.job, self.index_path = job, index_path

    def expand(self, linked):
        triples = (
            linked.pipeline
            | "KgFiles" >> beam.Create(list(self.job.kg_paths))
            | "Triples" >> beam.ParDo(ReadTriplesFn(self.index_path, self.job.min_name_chars))
            | "KeyTriple" >> beam.Map(lambda t: ((t.head, t.tail), t.relation))
        )
        return (
            {"sid": linked | "Pairs" >> beam.FlatMap(entity_pairs), "rel": triples}
            | "JoinTriples" >> beam.CoGroupByKey()
            | "PairRelations" >> beam.FlatMap(pair_relations)
        )


class MakeSamples(beam.PTransform):
    """{"sent": linked sentences, "rels": their pairs' relations} -> ``{"rows", "na", "fate"}`` (``SampleFn``);
    entity frequencies (for substitution) are a side input."""

    def __init__(self, job: KgSamplesJob, index_path: str):
        super().__init__()
        self.job, self.index_path = job, index_path

    def expand(self, inputs):
        job = self.job
        freq = beam.pvalue.AsDict(
            inputs["sent"]
            | "MentionedEntities" >> beam.FlatMap(lambda kv: [m[3] for m in kv[1]["mentions"]])
            | "EntityFrequency" >> beam.combiners.Count.PerElement()
        )
        fn = SampleFn(self.index_path, job.tasks, job.seed, job.substitution_probability)
        return split_by_tag(
            inputs | "JoinSentence" >> beam.CoGroupByKey() | "Samples" >> beam.ParDo(fn, freq=freq),
            ("rows", "na", "fate"), "Sampled",
        )


class DownsampleNa(beam.PTransform):
    """{"na": NA relation rows, "rows": the other rows} -> ``{"keep": NA rows kept, "drop": NA rows cut}``: at most
    ``na_ratio`` of the relation task's output is NA, exactly and deterministically (the lowest seeded scores,
    ``kg.samples.na_score``).

    Per-bucket counts (the score's top bits) and the positive count make one plan (``na_decisions``: how many
    rows of each bucket to keep), joined back to the NA rows by bucket and cut there (``cut_bucket``): keyed
    joins, no global combine and no side input in the middle of the pipeline (Beam's Dask runner computes a
    side input anew, nested, in every partition that reads it)."""

    def __init__(self, seed: int, na_ratio: float):
        super().__init__()
        self.seed, self.na_ratio = seed, na_ratio

    def expand(self, inputs):
        seed = self.seed
        na_by_bucket = inputs["na"] | "Bucket" >> beam.Map(lambda r, s=seed: (na_score(s, r["id"]) >> BUCKET_SHIFT, r))
        positive = (
            inputs["rows"] | "Positive" >> beam.FlatMap(lambda r: ("relation",) if r["task"] == "relation" else ())
            | "CountPositive" >> beam.combiners.Count.PerElement()
            | "PlanPositive" >> beam.Map(lambda kv: ("plan", ("positive", kv[1])))
        )
        bucket_counts = (
            na_by_bucket | "BucketKeys" >> beam.Keys()
            | "CountBuckets" >> beam.combiners.Count.PerElement()
            | "PlanBuckets" >> beam.Map(lambda kv: ("plan", ("bucket", kv)))
        )
        decisions = (
            (positive, bucket_counts) | "PlanInputs" >> beam.Flatten()
            | "GroupPlan" >> beam.GroupByKey()
            | "PlanNa" >> beam.FlatMap(na_decisions, self.na_ratio)
        )
        return split_by_tag(
            {"rows": na_by_bucket, "keep": decisions}
            | "JoinBuckets" >> beam.CoGroupByKey()
            | "CutNa" >> beam.FlatMap(cut_bucket, seed),
            ("keep", "drop"), "CutNaBy",
        )


class SentenceFates(beam.PTransform):
    """Every sentence's outcome per task, once the NA cut is known: ``{"link": fates from linking, "sample":
    fates from sampling, "kept_na": the NA rows kept}`` -> one outcomes dict per sentence (a sentence whose only
    samples were NA rows that were all cut is ``na_sampled_out``)."""

    def expand(self, inputs):
        sampled = inputs["sample"]
        pending = sampled | "Pending" >> beam.Filter(lambda kv: PENDING_NA in kv[1].values())
        settled = sampled | "Settled" >> beam.Filter(lambda kv: PENDING_NA not in kv[1].values())
        kept = inputs["kept_na"] | "KeptBySentence" >> beam.Map(lambda r: (r["id"].rsplit(":", 2)[0], 1))
        resolved = {"fate": pending, "kept": kept} | "JoinKeptNa" >> beam.CoGroupByKey() | "Resolve" >> beam.FlatMap(resolve_fate)
        return (
            (inputs["link"] | "FateLink" >> beam.Values(), settled | "FateSample" >> beam.Values(), resolved)
            | "AllFates" >> beam.Flatten()
        )


class KnowledgeStats(beam.PTransform):
    """Per-sentence fates, rows, cut NA rows and linking stats -> one merged stats dict (``make_finalize`` turns
    it into the manifest's ``counts.by_task``, ``counts.samples`` and ``knowledge_stats``). One key, not
    CombineGlobally: Beam's Dask runner gives a global combine one value per partition."""

    def expand(self, inputs):
        return (
            (
                inputs["fates"] | "FateStats" >> beam.Map(fate_stats),
                inputs["rows"] | "RowStats" >> beam.Map(row_stats),
                inputs["dropped_na"] | "NaStats" >> beam.Map(lambda r: {"_tasks": {"relation": {"na_sampled_out": 1}}}),
                inputs["linking"],
            )
            | "AllStats" >> beam.Flatten()
            | "KeyStats" >> beam.Map(lambda d: ("stats", d))
            | "MergeStats" >> beam.CombinePerKey(MergeCountsFn())
            | "StatsValue" >> beam.Values()
        )


def build(p: beam.Pipeline, job: KgSamplesJob, out: str | None = None):
    """The kg-samples recipe (the module docstring's, step by step). ``out``: where the files go (a staging
    directory, see ``beamio.output_run``); default ``job.out_dir``."""
    out = out or job.out_dir
    docs = open_docs(job.docs_dir)
    index_path = prepare_index(job.index_path, job.kg_paths, job.entity_paths, out, job.min_name_chars, job.type_rules,
                               job.beam_args)

    # docs -> sentences -> linked mentions; ordered entity pairs joined with the KG's triples
    rows = p | "ReadDocs" >> ReadShardRows(docs.shard_refs())  # a remote shard is verified by the worker reading it
    linked = rows | "LinkSentences" >> LinkSentences(job, index_path)
    pair_rels = linked["linked"] | "JoinRelations" >> JoinRelations(job, index_path)

    # per sentence: the samples of each task; NA relation samples cut to the --na-ratio quota
    sampled = {"sent": linked["linked"], "rels": pair_rels} | "MakeSamples" >> MakeSamples(job, index_path)
    na = {"na": sampled["na"], "rows": sampled["rows"]} | "DownsampleNa" >> DownsampleNa(job.seed, job.na_ratio)
    rows = (sampled["rows"], na["keep"]) | "AllRows" >> beam.Flatten()

    # accounting: each sentence's fate; statistics of the rows and the linking
    fates = {"link": linked["fate"], "sample": sampled["fate"], "kept_na": na["keep"]} | "SentenceFates" >> SentenceFates()
    tallies = tally(fates | "Events" >> beam.FlatMap(fate_events))
    stats = {"fates": fates, "rows": rows, "dropped_na": na["drop"], "linking": linked["stats"]} | "Stats" >> KnowledgeStats()
    kg_info = p | "KgIndexPath" >> beam.Create([index_path]) | "KgInfo" >> beam.Map(kg_extra)

    # the manifest is the last step and waits on every branch (shard entries, tallies, stats are its side inputs)
    entries = rows | "WriteShards" >> WriteShards(out, KNOWLEDGE_SCHEMA, job.num_shards)
    return p | "WriteManifest" >> WriteManifest(
        out, "knowledge", KNOWLEDGE_SCHEMA, entries, tallies, dict(job.options), "by_task",
        extra=(stats, kg_info) | "Extras" >> beam.Flatten(), finalize=make_finalize(job.tasks, job.na_ratio),
    )


def run(job: KgSamplesJob, quiet: bool = False) -> dict:
    """Run the job; return the manifest it wrote, read back through ``knowmix.manifest``. The output is written
    beside the previous one and swapped in once the manifest is written (``knowmix.outdir``)."""
    inputs = [("--docs", job.docs_dir), *(("--kg", k) for k in job.kg_paths), *(("--entities", e) for e in job.entity_paths)]
    with output_run(job.out_dir, inputs, " ".join(job.options.get("argv", []))) as output:
        with progress.LiveLine("knowmix kg-samples", quiet), beam.Pipeline(options=pipeline_options(job.beam_args)) as p:
            build(p, job, out=output.staging)
        output.commit()
    if fileio.is_remote(job.out_dir):  # a remote output is written in place: its scratch folder goes now
        fileio.delete_under(fileio.join(job.out_dir, "_spill"))
    progress.record_counters(p.result)
    return read_manifest(job.out_dir)


def kg_samples_main(argv: list[str]) -> int:
    args, beam_args = parse_args(argv)
    job = resolve(args, beam_args, ["knowmix", "kg-samples", *argv])
    manifest = run(job, quiet=args.quiet)
    c = manifest["counts"]
    print(f"kg-samples: {c['input']} sentences, {c['output']} gave samples, dropped {json.dumps(c['dropped'], ensure_ascii=False)};"
          f" samples {json.dumps(c['samples'], ensure_ascii=False)} -> {job.out_dir}", file=sys.stderr)
    if progress.last_counters():
        print(f"  Beam counters: {progress.last_counters()}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # the same as `knowmix kg-samples ...`
    from knowmix.cli import main

    sys.exit(main(["kg-samples", *sys.argv[1:]]))
