"""Near-duplicate removal (step 5 of the clean job): MinHash-LSH and connected components, all in Beam.

The recipe, as the pipeline graph reads top to bottom:

1. ``Signatures``: per document a MinHash signature (``pipelines.minhash``), cut into ``bands x rows``
   (chosen from the threshold by datasketch's ``_optimal_param`` minimisation, weights ``LSH_WEIGHTS``);
   one ``(band key, node)`` per band.
   A *node* is a string that sorts like ``survivor_key(doc, prefer_longer=True)`` (source-kind priority, then
   longer text, then smaller id), so the smallest node of a component is its survivor.
2. ``Buckets``: group by band key; each bucket with >= 2 nodes emits star edges to its smallest node.
   With ``verify``, the bucket's candidate pairs (all pairs in small buckets, star edges in large ones) are
   checked by exact shingle Jaccard >= threshold first: the texts are joined to the pairs by document id with
   two ``CoGroupByKey`` steps (never a side input).
3. ``Components``: large-star / small-star (Kiveris et al., "Connected Components in MapReduce and Beyond",
   SoCC 2014), unrolled ``max_rounds`` times in the graph. Both steps leave a converged graph (a forest of
   stars, each centred on its component's minimum) unchanged, so extra rounds are harmless. The last round
   counts its *changes* (large-star: a node with both a smaller and a larger neighbour; small-star: a node
   with >= 2 smaller neighbours); zero changes proves the graph had converged, otherwise the step that
   passes the edges on fails the pipeline with a clear error (raise ``max_rounds``). No side inputs: Beam's Dask runner (2.77)
   recomputes a side input's whole upstream graph inside each task that reads it, so a per-round gate on the
   previous round's change count grows without bound there; the price is that every round re-shuffles
   the edge set (only documents that have a near-duplicate candidate, usually a small share of the corpus).
4. ``Clusters``: group members by component root -> cluster id (smallest doc id), size, survivor (the root);
   join back to the documents by id -> kept / dropped / cluster rows.

No step sees all edges or all signatures: every shuffle is keyed by a band key, a node or a document id; the
only global value is the last round's change count (one integer). Beam's Dask runner (2.77) does not keep
tagged outputs of a multi-output ParDo apart, so every step here has a single output.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import combinations
from typing import Any, Iterable, Mapping, NamedTuple

import apache_beam as beam

from knowmix.errors import UserError
from pipelines.dedup import survivor_key
from pipelines.minhash import TOKENIZERS, MinHasher, band_keys, is_empty_signature, optimal_params, text_jaccard

NAMESPACE = "knowmix.neardup"
VERIFY_ALL_PAIRS_MAX = 16  # verify mode: buckets up to this size check all pairs, larger ones star edges
_LEN_OFFSET = 10**12
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


# ---------------------------------------------------------------------------------------------- nodes


def node_of(doc: Mapping) -> str:
    """A string whose order is ``survivor_key(doc, prefer_longer=True)``'s order (fixed-width prefix + id)."""
    priority, neg_len, doc_id = survivor_key(doc, prefer_longer=True)
    return f"{priority:02d}{_LEN_OFFSET + neg_len:012d}{doc_id}"


def id_of(node: str) -> str:
    return node[14:]


# ---------------------------------------------------------------------------------------------- DoFns


class _SignatureFn(beam.DoFn):
    """doc -> (band key, node) per band; docs without any shingle (empty text) get none."""

    def __init__(self, config: NearDedupConfig):
        self.config = config

    def setup(self):
        c = self.config
        self.hasher = MinHasher(c.num_perm, c.ngram, c.tokenizer, c.seed)
        self.bands, self.rows = c.bands_rows
        self.docs = beam.metrics.Metrics.counter(NAMESPACE, "signatures")
        self.empty = beam.metrics.Metrics.counter(NAMESPACE, "no_shingles")

    def process(self, doc):
        sig = self.hasher.signature(doc["text"])
        self.docs.inc()
        if is_empty_signature(sig):
            self.empty.inc()
            return
        node = node_of(doc)
        for key in band_keys(sig, self.bands, self.rows):
            yield key, node


def _star_edges(kv):
    """A bucket -> edges (node, smallest node) for every other node in it."""
    _, nodes = kv
    nodes = set(nodes)
    if len(nodes) < 2:
        return
    root = min(nodes)
    for n in nodes:
        if n != root:
            yield n, root


def _candidate_pairs(kv):
    """verify mode: a bucket -> candidate pairs (larger, smaller): all pairs if small, else star edges."""
    _, nodes = kv
    nodes = sorted(set(nodes))
    if len(nodes) < 2:
        return
    if len(nodes) <= VERIFY_ALL_PAIRS_MAX:
        for small, large in combinations(nodes, 2):
            yield large, small
    else:
        for n in nodes[1:]:
            yield n, nodes[0]


def _attach_first_text(kv):
    """(id of the larger node, {pairs, text}) -> (id of the smaller node, (pair, larger text))."""
    _, groups = kv
    texts = list(groups["text"])
    if not texts:
        return
    for pair in groups["pairs"]:
        yield id_of(pair[1]), (pair, texts[0])


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


def _cluster_members(kv):
    """(root node, member nodes) -> (doc id, (cluster id, cluster size, is survivor)) for every member."""
    root, members = kv
    nodes = set(members)
    nodes.add(root)
    ids = [id_of(n) for n in nodes]
    cluster_id = min(ids)
    size = len(nodes)
    for n in nodes:
        yield id_of(n), (cluster_id, size, n == root)


def _route(kv, output: str):
    """(doc id, {doc, cluster}) -> the doc if ``output`` is "kept" and it survives (or is in no cluster), the doc
    if "dropped" and it loses, its cluster row if "clusters" and it is in a cluster."""
    _, groups = kv
    assignments = list(groups["cluster"])
    for doc in groups["doc"]:
        if not assignments:
            if output == "kept":
                yield doc
            continue
        cluster_id, size, survivor = assignments[0]
        if output == "clusters":
            yield {"doc_id": doc["id"], "cluster_id": cluster_id, "cluster_size": size}
        elif (output == "kept") == survivor:
            yield doc


class NearDedupOutputs(NamedTuple):
    """What :class:`NearDedup` returns: ``.kept``, ``.dropped``, ``.clusters`` (also ``outputs["kept"]``)."""

    kept: beam.PCollection
    dropped: beam.PCollection
    clusters: beam.PCollection

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)


# ---------------------------------------------------------------------------------------------- the transform


class NearDedup(beam.PTransform):
    """docs -> outputs ``.kept``, ``.dropped`` (reason ``near_duplicate``) and ``.clusters``
    (``{"doc_id", "cluster_id", "cluster_size"}`` for every doc in a cluster of size >= 2).

    Docs need ``id`` (unique), ``source_kind`` and ``text``; every other column passes through untouched.
    """

    def __init__(self, config: NearDedupConfig | None = None):
        super().__init__()
        self.config = config or NearDedupConfig()

    def expand(self, docs):
        c = self.config
        if not c.near:
            p = docs.pipeline
            return NearDedupOutputs(
                docs | "NearDedupOff" >> beam.Map(lambda d: d),
                p | "NoDropped" >> beam.Create([]),
                p | "NoClusters" >> beam.Create([]),
            )

        buckets = (
            docs
            | "Signatures" >> beam.ParDo(_SignatureFn(c))
            | "GroupBuckets" >> beam.GroupByKey()
        )
        if c.verify:
            texts = docs | "TextById" >> beam.Map(lambda d: (d["id"], d["text"]))
            pairs = (
                buckets
                | "CandidatePairs" >> beam.FlatMap(_candidate_pairs)
                | "DistinctPairs" >> beam.Distinct()
                | "PairByFirst" >> beam.Map(lambda pair: (id_of(pair[0]), pair))
            )
            edges = (
                {"pairs": pairs, "text": texts}
                | "JoinFirstText" >> beam.CoGroupByKey()
                | "AttachFirstText" >> beam.FlatMap(_attach_first_text)
            )
            edges = (
                {"half": edges, "text": texts}
                | "JoinSecondText" >> beam.CoGroupByKey()
                | "Verify" >> beam.ParDo(_VerifyFn(c))
            )
        else:
            edges = buckets | "StarEdges" >> beam.FlatMap(_star_edges)

        assignments = (
            edges
            | "Components" >> ConnectedComponents(c.max_rounds)
            | "ByRoot" >> beam.Map(lambda e: (e[1], e[0]))
            | "GroupByRoot" >> beam.GroupByKey()
            | "Members" >> beam.FlatMap(_cluster_members)
        )
        joined = (
            {"doc": docs | "DocById" >> beam.Map(lambda d: (d["id"], d)), "cluster": assignments}
            | "JoinClusters" >> beam.CoGroupByKey()
        )
        # three single-output steps (Beam's Dask runner mixes up tagged outputs)
        return NearDedupOutputs(*(joined | f"Route{o.title()}" >> beam.FlatMap(_route, output=o) for o in ("kept", "dropped", "clusters")))


def count_clusters(rows: Iterable[Mapping]) -> dict[int, int]:
    """Cluster-size histogram ``{size: number of clusters}`` from cluster rows (for stats and tests)."""
    seen: dict[str, int] = {}
    for r in rows:
        seen[r["cluster_id"]] = r["cluster_size"]
    hist: dict[int, int] = {}
    for size in seen.values():
        hist[size] = hist.get(size, 0) + 1
    return dict(sorted(hist.items()))
