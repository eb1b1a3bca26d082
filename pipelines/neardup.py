"""Near-duplicate removal (step 5 of the clean job): MinHash-LSH and connected components, all in Beam,
on packed dedup keys (``pipelines.dedup``), never on documents.

The recipe, as the pipeline graph reads top to bottom:

1. Keys (made where the document is cleaned, :class:`pipelines.dedup.DedupKeyBuffer`): a MinHash signature
   (``pipelines.minhash``) cut into ``bands x rows`` (chosen from the threshold by datasketch's
   ``_optimal_param`` minimisation, weights ``LSH_WEIGHTS``), one 64-bit hash per band, packed with the
   document's 64-bit *doc key* into blobs keyed ``(band, hash % num_parts)``.
2. ``GroupBuckets``: a partition's blobs are concatenated and sorted by hash; each run of equal hashes is a
   bucket (``dedup.bucket_docs``), which emits star edges to its smallest doc key. With exact dedup on
   (``pipelines.exact_dedup``), a group of exact duplicates
   counts once per bucket (as its smallest doc key) and is unfolded again after step 3, so exact duplicates,
   often a large share of web text, cost the component search nothing. With ``verify``, the bucket's candidate pairs (all
   pairs in small buckets, star edges in large ones) are checked by exact shingle Jaccard >= threshold first:
   the texts (fetched by the caller's ``texts_for``: the clean job reads them back from its spill files) are
   joined to the pairs by doc key with two ``CoGroupByKey`` steps (never a side input).
3. ``Components``: large-star / small-star (Kiveris et al., "Connected Components in MapReduce and Beyond",
   SoCC 2014), unrolled ``max_rounds`` times in the graph. Both steps leave a converged graph (a forest of
   stars, each centred on its component's minimum) unchanged, so extra rounds are harmless. The last round
   counts its *changes* (large-star: a node with both a smaller and a larger neighbour; small-star: a node
   with >= 2 smaller neighbours); zero changes proves the graph had converged, otherwise the step that
   passes the edges on fails the pipeline with a clear error (raise ``max_rounds``). No side inputs: Beam's Dask runner (2.77)
   recomputes a side input's whole upstream graph inside each task that reads it, so a per-round gate on the
   previous round's change count grows without bound there; the price is that every round re-shuffles
   the edge set (only documents that have a near-duplicate candidate, usually a small share of the corpus).
4. Decisions: each component's members are joined (by doc-key partition, ``exact_dedup.WithMeta``) to their
   meta records (source-kind priority, length, id) and to the exact-dedup losers; the survivor is the smallest
   by ``dedup.survivor_order(prefer_longer=True)``, the order exact dedup uses too; the others become ``(doc key, "near_duplicate")``; a cluster row
   ``{doc_id, cluster_id (smallest id), cluster_size}`` is written per member. Exact-duplicate losers are left
   out of clusters: they share every band with their exact survivor, so leaving them out changes no component.

No step sees all edges or all signatures: every shuffle is keyed by a band partition, a node or a doc-key
partition; the only global value is the last round's change count (one integer). Beam's Dask runner (2.77)
does not keep tagged outputs of a multi-output ParDo apart, so every step here has a single output.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from itertools import combinations
from typing import Any, Mapping, NamedTuple

import apache_beam as beam

from knowmix.errors import UserError
from knowmix.pipelines.dedup import BAND_DTYPE, bucket_docs, ranked, unpack
from knowmix.pipelines.exact_dedup import WithMeta, survivor_ids
from knowmix.pipelines.minhash import TOKENIZERS, optimal_params, text_jaccard
from knowmix.pipelines.spill import resolve_blobs

NAMESPACE = "knowmix.neardup"
VERIFY_ALL_PAIRS_MAX = 16  # verify mode: buckets up to this size check all pairs, larger ones star edges
# (false-positive, false-negative) weights of the bands x rows choice (datasketch's ``_optimal_param``).
# datasketch's default (0.5, 0.5) gives 9 x 13 at threshold 0.8 / 128 perms: a pair at Jaccard 0.8 becomes a
# candidate with probability 0.40 only (0.69 at 0.85), too few for dedup. (0.2, 0.8) gives 12 x 10: 0.74 at 0.8,
# 0.93 at 0.85, 0.994 at 0.9, and 0.012 at 0.5. With ``verify`` the exact check removes false positives, so the
# choice leans further to recall: (0.05, 0.95) gives 16 x 8: 0.947 at 0.8, 0.994 at 0.85.
LSH_WEIGHTS = (0.2, 0.8)
VERIFY_LSH_WEIGHTS = (0.05, 0.95)


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class NearDedupConfig:
    near: bool = True
    ngram: int = 5
    num_perm: int = 128
    threshold: float = 0.8
    verify: bool = False
    tokenizer: str = "char"  # "char" | "jieba"
    seed: int = 1
    max_rounds: int = 30

    def __post_init__(self):
        _check(self, "[dedup]")

    @staticmethod
    def from_dict(d: Mapping, where: str = "[dedup]") -> "NearDedupConfig":
        """The ``[dedup]`` table of a job config; ``exact`` (the exact-dedup switch) is ignored here."""
        if not isinstance(d, Mapping):
            raise UserError(f"{where}: expected a table, got {type(d).__name__}")
        known = {f.name for f in fields(NearDedupConfig)}
        values: dict[str, Any] = {}
        for key, value in d.items():
            if key == "exact":
                continue
            if key not in known:
                raise UserError(f"{where}: unknown key {key!r} (known: exact, {', '.join(sorted(known))})")
            values[key] = value
        for key in ("threshold",):  # TOML writes 1 for 1.0; ints are fine where a float is expected
            if isinstance(values.get(key), int) and not isinstance(values.get(key), bool):
                values[key] = float(values[key])
        config = NearDedupConfig.__new__(NearDedupConfig)
        for f in fields(NearDedupConfig):
            object.__setattr__(config, f.name, values.get(f.name, f.default))
        _check(config, where)
        return config

    @property
    def bands_rows(self) -> tuple[int, int]:
        fp, fn = VERIFY_LSH_WEIGHTS if self.verify else LSH_WEIGHTS
        return optimal_params(self.threshold, self.num_perm, fp, fn)


def _check(config: NearDedupConfig, where: str) -> None:
    def bad(key, expected):
        raise UserError(f"{where}: {key} = {getattr(config, key)!r} is not valid: expected {expected}")

    for key in ("near", "verify"):
        if not isinstance(getattr(config, key), bool):
            bad(key, "true or false")
    for key, low, high in (("ngram", 1, 64), ("num_perm", 2, 1024), ("seed", 0, 2**32 - 1), ("max_rounds", 1, 200)):
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            bad(key, f"an integer from {low} to {high}")
    t = config.threshold
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < t < 1.0:
        bad("threshold", "a number between 0 and 1 (exclusive)")
    if config.tokenizer not in TOKENIZERS:
        bad("tokenizer", " or ".join(repr(t) for t in TOKENIZERS))


# ---------------------------------------------------------------------------------------------- buckets


def _bucket_docs(blobs, fold_exact: bool = False):
    """Band blobs of one partition -> the distinct doc keys of each bucket with >= 2 of them
    (``dedup.bucket_docs``; with ``fold_exact`` a group of exact duplicates counts once, see ``_unfold_exact``)."""
    return bucket_docs(unpack(resolve_blobs(blobs), BAND_DTYPE), fold_exact)


def _star_edges(kv, fold_exact: bool = False):
    """(band partition, blobs) -> (doc key, the bucket's smallest doc key) for every other doc in each bucket."""
    for docs in _bucket_docs(kv[1], fold_exact):
        root = int(docs[0])
        for d in docs[1:].tolist():
            yield d, root


def _candidate_pairs(kv, fold_exact: bool = False):
    """verify mode: (band partition, blobs) -> pairs (larger, smaller) per bucket: all pairs in small buckets,
    star edges in large ones."""
    for docs in _bucket_docs(kv[1], fold_exact):
        docs = docs.tolist()
        if len(docs) <= VERIFY_ALL_PAIRS_MAX:
            for small, large in combinations(docs, 2):
                yield large, small
        else:
            for d in docs[1:]:
                yield d, docs[0]


def _attach_first_text(kv):
    """(larger doc key, {pairs, text}) -> (smaller doc key, (pair, larger text))."""
    _, groups = kv
    texts = list(groups["text"])
    if not texts:
        return
    for pair in groups["pairs"]:
        yield pair[1], (pair, texts[0])


class _VerifyFn(beam.DoFn):
    def __init__(self, config: NearDedupConfig):
        self.config = config

    def setup(self):
        self.checked = beam.metrics.Metrics.counter(NAMESPACE, "verified_pairs")
        self.rejected = beam.metrics.Metrics.counter(NAMESPACE, "rejected_pairs")

    def process(self, kv):
        _, groups = kv
        texts = list(groups["text"])
        if not texts:
            return
        c = self.config
        for pair, first_text in groups["half"]:
            self.checked.inc()
            if text_jaccard(first_text, texts[0], c.ngram, c.tokenizer) >= c.threshold:
                yield pair
            else:
                self.rejected.inc()

def _both_ways(edge):
    u, v = edge
    yield u, v
    yield v, u


def _large_star(kv, changes: bool = False):
    """(u, neighbours) -> (v, m) for every neighbour v > u, m = min of u and its neighbours; with ``changes``,
    (None, 1) instead if u has both a smaller and a larger neighbour (the step changes the graph there)."""
    u, neighbours = kv
    ns = set(neighbours)
    ns.discard(u)
    if not ns:
        return
    m = min(min(ns), u)
    larger = [v for v in ns if v > u]
    if changes:
        if m < u and larger:
            yield None, 1
        return
    for v in larger:
        yield v, m


def _small_star(kv, changes: bool = False):
    """(u, smaller neighbours) -> (v, m) for each of them but m, and (u, m), m = the smallest; with ``changes``,
    (None, 1) instead if u has >= 2 smaller neighbours."""
    u, smaller = kv
    ss = set(smaller)
    ss.discard(u)
    if not ss:
        return
    m = min(ss)
    if changes:
        if len(ss) >= 2:
            yield None, 1
        return
    for v in ss:
        if v != m:
            yield v, m
    yield u, m


class ConnectedComponents(beam.PTransform):
    """Edges ``(larger node, smaller node)`` -> the converged star forest ``(node, component minimum)`` for
    every non-minimum node. Fails (``RuntimeError`` naming ``max_rounds``) if ``max_rounds`` rounds of
    large-star + small-star did not reach a round without change."""

    def __init__(self, max_rounds: int):
        super().__init__()
        self.max_rounds = max_rounds

    def expand(self, edges):
        changes = None
        for r in range(1, self.max_rounds + 1):
            large = edges | f"BothWays{r}" >> beam.FlatMap(_both_ways) | f"GroupLarge{r}" >> beam.GroupByKey()
            large_edges = large | f"LargeStar{r}" >> beam.FlatMap(_large_star)
            small = large_edges | f"GroupSmall{r}" >> beam.GroupByKey()
            edges = small | f"SmallStar{r}" >> beam.FlatMap(_small_star)
            if r == self.max_rounds:  # only the last round's change count matters
                changes = (
                    (
                        large | f"LargeChanges{r}" >> beam.FlatMap(_large_star, changes=True),
                        small | f"SmallChanges{r}" >> beam.FlatMap(_small_star, changes=True),
                    )
                    | f"Changes{r}" >> beam.Flatten()
                    | f"Sum{r}" >> beam.CombinePerKey(sum)
                )
        max_rounds = self.max_rounds

        def check(element):
            u, v = element
            if u is None:  # the last round's change count
                if v:
                    raise RuntimeError(
                        f"near dedup: connected components did not converge in max_rounds = {max_rounds} "
                        f"rounds ({v} changes in the last round); raise [dedup] max_rounds"
                    )
                return
            yield element

        # the check sits on the data path (not a leaf, not a side input): Beam's Dask runner (2.77) computes
        # only the pipeline's last leaf, and recomputes side inputs' upstream graphs inside tasks
        return (edges, changes) | "WithChangeCount" >> beam.Flatten() | "CheckConverged" >> beam.FlatMap(check)


# ---------------------------------------------------------------------------------------------- decisions


def _near_outcome(kv, output: str):
    """(component root, members) -> with ``output`` "drops", (doc key, "near_duplicate") for every member but
    the survivor (kind priority, longer text, smaller id, text, location); with "clusters", a cluster row per
    member. Exact-duplicate losers are left out: their survivor has the same bands, so it is in the same
    component."""
    _, members = kv
    alive = ranked((m for m in members if not m.exact_loser), prefer_longer=True)
    if len(alive) < 2:
        return
    if output == "drops":
        for m in alive[1:]:
            yield m.doc, "near_duplicate"
    else:
        cluster_id = min(m.id for m in alive)
        for m in alive:
            yield {"doc_id": m.id, "cluster_id": cluster_id, "cluster_size": len(alive)}


def _unfold_exact(kv):
    """(doc key, {"root": its component root, "group": members of the exact group it stands for}) -> (doc key,
    root) for it and every member of its group."""
    doc, groups = kv
    roots = list(groups["root"])
    if not roots:
        return
    yield doc, roots[0]
    for member in set(groups["group"]):
        if member != doc:
            yield member, roots[0]


def _component_members(kv):
    """(root, non-root members) -> (doc key, root) for the root and every member."""
    root, members = kv
    yield root, root
    for m in set(members):
        yield m, root


class NearDecisions(NamedTuple):
    drops: beam.PCollection  # (doc key, "near_duplicate")
    clusters: beam.PCollection  # {"doc_id", "cluster_id", "cluster_size"}
    survivors: beam.PCollection | None = None  # (doc key, survivor id) for every loser


class NearDedupKeys(beam.PTransform):
    """{"band": band blobs, "meta": meta blobs[, "exact_drops": (doc key, reason), "exact_groups": (doc key,
    group key)]} -> :class:`NearDecisions`. With the exact inputs, a group of exact duplicates goes through the
    buckets and components as one node (its group key) and is unfolded again before the decisions.

    ``texts_for`` (verify mode only) is a PTransform from doc keys (with repeats) to ``(doc key, text)``
    for each of them: the documents' text lives wherever the caller keeps it.
    """

    def __init__(self, config: NearDedupConfig, num_parts: int, texts_for: beam.PTransform | None = None):
        super().__init__()
        if config.verify and texts_for is None:
            raise ValueError("verify needs texts_for")
        self.config, self.num_parts, self.texts_for = config, num_parts, texts_for

    def expand(self, inputs):
        c = self.config
        fold = "exact_groups" in inputs
        buckets = inputs["band"] | "GroupBuckets" >> beam.GroupByKey()
        if c.verify:
            pairs = (
                buckets
                | "CandidatePairs" >> beam.FlatMap(_candidate_pairs, fold_exact=fold)
                | "DistinctPairs" >> beam.Distinct()
            )
            texts = pairs | "PairDocs" >> beam.FlatMap(lambda pair: pair) | "Texts" >> self.texts_for
            half = (
                {"pairs": pairs | "PairByFirst" >> beam.Map(lambda pair: (pair[0], pair)), "text": texts}
                | "JoinFirstText" >> beam.CoGroupByKey()
                | "AttachFirstText" >> beam.FlatMap(_attach_first_text)
            )
            edges = {"half": half, "text": texts} | "JoinSecondText" >> beam.CoGroupByKey() | "Verify" >> beam.ParDo(_VerifyFn(c))
        else:
            edges = buckets | "StarEdges" >> beam.FlatMap(_star_edges, fold_exact=fold)
        members = (
            edges
            | "Components" >> ConnectedComponents(c.max_rounds)
            | "ByRoot" >> beam.Map(lambda e: (e[1], e[0]))
            | "GroupByRoot" >> beam.GroupByKey()
            | "Members" >> beam.FlatMap(_component_members)
        )
        if fold:
            members = (
                {"root": members, "group": inputs["exact_groups"] | "ByGroup" >> beam.Map(lambda m: (m[1], m[0]))}
                | "JoinExactGroups" >> beam.CoGroupByKey()
                | "UnfoldExact" >> beam.FlatMap(_unfold_exact)
            )
        grouped = members | "WithMeta" >> WithMeta(inputs["meta"], self.num_parts, inputs.get("exact_drops"))
        # two single-output steps (Beam's Dask runner mixes up tagged outputs)
        return NearDecisions(
            grouped | "Drops" >> beam.FlatMap(_near_outcome, output="drops"),
            grouped | "Clusters" >> beam.FlatMap(_near_outcome, output="clusters"),
            grouped | "Survivors" >> beam.FlatMap(survivor_ids, decide=functools.partial(_near_outcome, output="drops")),
        )
