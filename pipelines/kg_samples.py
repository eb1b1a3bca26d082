"""``knowmix kg-samples``: docs shards + a knowledge graph -> knowledge shards (relation, substitution, triple_mask).

The recipe, top to bottom (the logic lives in ``kg/``):

    docs shards -> sentences -> link (entity index as a side input)
      -> ordered entity pairs, joined with the KG triples by (head, tail) with CoGroupByKey
      -> per sentence: samples of each task (kg.samples), entity frequencies as a side input for substitution
      -> NA relation samples down-sampled to at most --na-ratio of the relation task, exactly and
         deterministically (lowest seeded hash scores; per-bucket counts, then one exact cut inside one bucket)
      -> knowledge shards (WriteShards) + manifest (WriteManifest, kind "knowledge", counts per task)

Accounting unit: the sentence. ``input`` = sentences considered; ``output`` = sentences that gave at least one
sample; every other sentence is dropped with one reason (``too_long``, ``no_entity``, ``ambiguous``,
``one_entity``, ``no_triple``, ``na_sampled_out``), so ``input == output + dead_letter + sum(dropped)`` exactly;
``counts.by_task`` holds the same per task (``no_triple`` for triple_mask), and ``counts.samples`` the rows.

Memory: the entity index (names, aliases, types and the set of connected entity pairs, no relation labels) is a
side input and must fit in one worker's memory; relation labels are read from the KG files by the workers and
joined by (head, tail), so they need not. The KG is also parsed once on the launching machine (for bad-line
reporting and type inference).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import apache_beam as beam

from kg.graph import iter_triples
from kg.index import EntityIndex, load_kg
from kg.link import SEGMENTERS, Linker, Mention, split_sentences
from kg.samples import (
    KNOWLEDGE_SCHEMA,
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
from knowmix.errors import UserError
from knowmix.manifest import ContractError, open_shard_dir
from pipelines.beamio import ReadShardRows, WriteManifest, WriteShards, clear_output, pipeline_options, tally

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


def linker_for(index: EntityIndex, segmenter: str, min_chars: int) -> Linker:
    """One Linker per worker process and index (building the automaton and segmenter dictionary is costly)."""
    key = (getattr(index, "key", id(index)), segmenter, min_chars)
    linker = _LINKERS.get(key)
    if linker is None:
        linker = _LINKERS[key] = Linker(index, segmenter, min_chars)
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
    """sentence -> (sid, linked sentence) when it has mentions; else its fate (tagged 'fate'); stats ('stats')."""

    def __init__(self, segmenter: str, min_chars: int, max_chars: int, tasks):
        self.segmenter, self.min_chars, self.max_chars, self.tasks = segmenter, min_chars, max_chars, tuple(tasks)

    def process(self, sent, index):
        beam.metrics.Metrics.counter("knowmix", "sentences").inc()
        if len(sent["text"]) > self.max_chars:
            out = {t: "too_long" for t in ("", *self.tasks)}
            yield beam.pvalue.TaggedOutput("fate", (sent["sid"], out))
            return
        res = linker_for(index, self.segmenter, self.min_chars).link(sent["text"])
        yield beam.pvalue.TaggedOutput("stats", {"_linking": {
            "sentences": 1, "matches": res.matches, "mentions": len(res.mentions),
            "rejected_word_cut": res.rejected_word_cut, "ambiguous_resolved": res.ambiguous_resolved,
            "ambiguous_dropped": res.ambiguous_dropped, "sentences_with_mentions": 1 if res.mentions else 0}})
        if not res.mentions:
            yield beam.pvalue.TaggedOutput("fate", (sent["sid"], sentence_outcomes([], res.ambiguous_dropped, [], self.tasks)))
            return
        mentions = [(m.start, m.end, m.surface, m.entity_id) for m in res.mentions]
        yield (sent["sid"], {"doc_id": sent["doc_id"], "text": sent["text"], "mentions": mentions,
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
    """(sid, {sent, rels}) -> knowledge rows (main), the sentence's fate ('fate'), NA rows ('na')."""

    def __init__(self, tasks, seed: int, probability: float):
        self.tasks, self.seed, self.probability = tuple(tasks), seed, probability

    def process(self, kv, index, freq):
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
        yield beam.pvalue.TaggedOutput("fate", (sid, sentence_outcomes(mentions, sent["ambiguous_dropped"], rows, self.tasks)))
        for row in rows:
            beam.metrics.Metrics.counter("knowmix", f"samples_{row['task']}").inc()
            if is_na(row):
                yield beam.pvalue.TaggedOutput("na", row)
            else:
                yield row


def plan_na_cut(_, positive: int, buckets: list, na_ratio: float):
    """(cut bucket, how many to keep inside it): buckets below the cut are kept whole, above it dropped."""
    total = sum(n for _, n in buckets)
    quota = na_quota(positive, total, na_ratio)
    cum = 0
    for b, n in sorted(buckets):
        if cum + n > quota:
            return (b, quota - cum)
        cum += n
    return (1 << 64, 0)  # keep all


class SplitNaFn(beam.DoFn):
    def __init__(self, seed: int):
        self.seed = seed

    def process(self, row, plan):
        cut, _ = plan
        score = na_score(self.seed, row["id"])
        b = score >> BUCKET_SHIFT
        if b < cut:
            yield row
        elif b > cut:
            yield beam.pvalue.TaggedOutput("drop", row)
        else:
            yield beam.pvalue.TaggedOutput("border", (b, (score, row["id"], row)))


def cut_border(kv, plan):
    _, items = kv
    keep = plan[1]
    for i, (_, _, row) in enumerate(sorted(items, key=lambda x: (x[0], x[1]))):
        yield row if i < keep else beam.pvalue.TaggedOutput("drop", row)


def resolve_fate(kv):
    sid, grouped = kv
    kept = any(True for _ in grouped["kept"])
    for outcomes in grouped["fate"]:
        yield {t: ((None if kept else "na_sampled_out") if r == PENDING_NA else r) for t, r in outcomes.items()}


# ---------------------------------------------------------------------------------------------- the job


def kg_extra(kg, index: EntityIndex) -> dict:
    return {"knowledge_graph": {
        "sources": list(kg.raw.sources),
        "entities": len(index.entities),
        "triples": len(kg.triples),
        "relations": len({t.relation for t in kg.triples}),
        "types_inferred": index.inferred,
        "bad_lines": kg.problem_counts(),
        "bad_line_examples": [str(p) for p in kg.problems[:MAX_PROBLEMS_LISTED]],
    }}


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


def build(p: beam.Pipeline, *, docs_dir: str, kg_paths: list[str], entity_paths: list[str], out_dir: str,
          tasks=TASKS, na_ratio: float = 0.5, seed: int = 0, num_shards: int = 1, segmenter: str = "rjieba",
          min_name_chars: int = 2, max_sentence_chars: int = 512, substitution_probability: float = 0.5,
          options_record: dict | None = None):
    tasks = tuple(t for t in TASKS if t in tasks)
    try:
        docs = open_shard_dir(docs_dir, kind="docs")
    except ContractError as exc:
        raise UserError(str(exc)) from None
    kg = load_kg(kg_paths, entity_paths)
    index = kg.index.without_relations()
    index.key = kg.index.fingerprint()
    index_si = beam.pvalue.AsSingleton(p | "EntityIndex" >> beam.Create([index]))

    sentences = (
        p
        | "ReadDocs" >> ReadShardRows(docs.shard_paths)
        | "Sentences" >> beam.FlatMap(doc_sentences, max_sentence_chars)
    )
    linked = sentences | "Link" >> beam.ParDo(
        LinkFn(segmenter, min_name_chars, max_sentence_chars, tasks), index=index_si
    ).with_outputs("fate", "stats", main="linked")

    triples = (
        p
        | "KgFiles" >> beam.Create(list(kg_paths))
        | "Triples" >> beam.FlatMap(iter_triples)
        | "KeyTriple" >> beam.Map(lambda t: ((t.head, t.tail), t.relation))
    )
    pair_rels = (
        {"sid": linked.linked | "Pairs" >> beam.FlatMap(entity_pairs), "rel": triples}
        | "JoinTriples" >> beam.CoGroupByKey()
        | "PairRelations" >> beam.FlatMap(pair_relations)
    )
    freq = beam.pvalue.AsDict(
        linked.linked
        | "MentionedEntities" >> beam.FlatMap(lambda kv: [m[3] for m in kv[1]["mentions"]])
        | "EntityFrequency" >> beam.combiners.Count.PerElement()
    )
    sampled = (
        {"sent": linked.linked, "rels": pair_rels}
        | "JoinSentence" >> beam.CoGroupByKey()
        | "Samples" >> beam.ParDo(SampleFn(tasks, seed, substitution_probability), index=index_si, freq=freq)
        .with_outputs("fate", "na", main="rows")
    )

    # NA down-sampling: exact quota, lowest seeded scores kept
    positive = beam.pvalue.AsSingleton(
        sampled.rows | "Positive" >> beam.Filter(lambda r: r["task"] == "relation")
        | "CountPositive" >> beam.combiners.Count.Globally()
    )
    buckets = beam.pvalue.AsList(
        sampled.na | "Bucket" >> beam.Map(lambda r, s=seed: na_score(s, r["id"]) >> BUCKET_SHIFT)
        | "CountBuckets" >> beam.combiners.Count.PerElement()
    )
    plan = beam.pvalue.AsSingleton(
        p | "PlanOnce" >> beam.Create([None])
        | "PlanNa" >> beam.Map(plan_na_cut, positive, buckets, na_ratio)
    )
    split = sampled.na | "SplitNa" >> beam.ParDo(SplitNaFn(seed), plan=plan).with_outputs("drop", "border", main="keep")
    border = (
        split.border | "GroupBorder" >> beam.GroupByKey()
        | "CutBorder" >> beam.FlatMap(cut_border, plan).with_outputs("drop", main="keep")
    )
    kept_na = (split.keep, border.keep) | "KeptNa" >> beam.Flatten()
    dropped_na = (split.drop, border.drop) | "DroppedNa" >> beam.Flatten()
    rows = (sampled.rows, kept_na) | "AllRows" >> beam.Flatten()

    # the fate of each sentence
    pending = sampled.fate | "Pending" >> beam.Filter(lambda kv: PENDING_NA in kv[1].values())
    settled = sampled.fate | "Settled" >> beam.Filter(lambda kv: PENDING_NA not in kv[1].values())
    resolved = (
        {"fate": pending, "kept": kept_na | "KeptBySentence" >> beam.Map(lambda r: (r["id"].rsplit(":", 2)[0], 1))}
        | "JoinKeptNa" >> beam.CoGroupByKey()
        | "Resolve" >> beam.FlatMap(resolve_fate)
    )
    fates = (
        (linked.fate | "FateLink" >> beam.Values(), settled | "FateSample" >> beam.Values(), resolved)
        | "AllFates" >> beam.Flatten()
    )
    tallies = tally(fates | "Events" >> beam.FlatMap(fate_events))

    stats = (
        (
            fates | "FateStats" >> beam.Map(fate_stats),
            rows | "RowStats" >> beam.Map(row_stats),
            dropped_na | "NaStats" >> beam.Map(lambda r: {"_tasks": {"relation": {"na_sampled_out": 1}}}),
            linked.stats,
        )
        | "AllStats" >> beam.Flatten()
        | "MergeStats" >> beam.CombineGlobally(MergeCountsFn())
    )
    extra = (stats, p | "KgInfo" >> beam.Create([kg_extra(kg, index)])) | "Extras" >> beam.Flatten()

    entries = rows | "WriteShards" >> WriteShards(out_dir, KNOWLEDGE_SCHEMA, num_shards)
    options = dict(options_record or {})
    return p | "WriteManifest" >> WriteManifest(
        out_dir, "knowledge", KNOWLEDGE_SCHEMA, entries, tallies, options, "by_task",
        extra=extra, finalize=make_finalize(tasks, na_ratio),
    )


# ---------------------------------------------------------------------------------------------- CLI


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    ap = argparse.ArgumentParser(prog="knowmix kg-samples", description=__doc__.split("\n\n")[0])
    ap.add_argument("--kg", action="append", required=True, help="KG file (.tsv, .jsonl, .nt, .nt.gz); repeatable")
    ap.add_argument("--entities", action="append", default=[], help="entities TSV (name, type, aliases); repeatable")
    ap.add_argument("--docs", required=True, help="a docs shard directory (knowmix clean output)")
    ap.add_argument("--output", required=True, help="output directory for knowledge shards")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of " + ",".join(TASKS))
    ap.add_argument("--na-ratio", type=float, default=0.5, help="most NA samples may be this share of relation samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-shards", type=int, default=0, help="output shards (default: ~64 MB of docs text per shard)")
    ap.add_argument("--segmenter", choices=SEGMENTERS, default="rjieba", help="word-boundary check for mentions")
    ap.add_argument("--min-name-chars", type=int, default=2, help="shortest name/alias that is linked")
    ap.add_argument("--max-sentence-chars", type=int, default=512, help="longer sentences are dropped (too_long)")
    ap.add_argument("--substitution-probability", type=float, default=0.5)
    return ap.parse_known_args(argv)


def kg_samples_main(argv: list[str]) -> int:
    args, beam_args = parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise UserError(f"--tasks: unknown task(s) {', '.join(unknown) or '(none given)'}; expected {','.join(TASKS)}")
    if not 0.0 <= args.na_ratio <= 1.0:
        raise UserError(f"--na-ratio: {args.na_ratio} is not between 0 and 1")
    if not 0.0 <= args.substitution_probability <= 1.0:
        raise UserError(f"--substitution-probability: {args.substitution_probability} is not between 0 and 1")
    for path in args.kg + args.entities:
        if not os.path.isfile(path):
            raise UserError(f"{path}: no such file")
    num_shards = args.num_shards
    if num_shards <= 0:
        try:
            docs = open_shard_dir(args.docs, kind="docs", verify=False)
        except ContractError as exc:
            raise UserError(str(exc)) from None
        num_shards = max(1, sum(s["bytes"] for s in docs.manifest["shards"]) // (64 << 20))
    options_record = {"argv": ["knowmix", "kg-samples", *argv], **{k: v for k, v in vars(args).items()}}
    clear_output(args.output)
    with beam.Pipeline(options=pipeline_options(beam_args)) as p:
        build(p, docs_dir=args.docs, kg_paths=args.kg, entity_paths=args.entities, out_dir=args.output,
              tasks=tasks, na_ratio=args.na_ratio, seed=args.seed, num_shards=num_shards, segmenter=args.segmenter,
              min_name_chars=args.min_name_chars, max_sentence_chars=args.max_sentence_chars,
              substitution_probability=args.substitution_probability, options_record=options_record)
    with open(os.path.join(args.output, "manifest.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    c = manifest["counts"]
    print(f"kg-samples: {c['input']} sentences, {c['output']} gave samples, dropped {json.dumps(c['dropped'], ensure_ascii=False)};"
          f" samples {json.dumps(c['samples'], ensure_ascii=False)} -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    try:
        sys.exit(kg_samples_main(sys.argv[1:]))
    except UserError as exc:
        print(f"knowmix kg-samples: {exc}", file=sys.stderr)
        sys.exit(2)
