"""Every shard schema of the shard contract, one definition each (documented in docs/shard-schemas.md).

Beam-free and torch-free: the writers (``pipelines/clean.py``, ``kg/samples.py`` via ``pipelines/kg_samples.py``,
``pipelines/tokenize.py``) and the readers (``knowmix.manifest``, the trainer, tests and benches that run where
Beam is not installed) import the schemas from here, so a shard a test writes has exactly the schema the job
writes.

Two views of a kind: the schema its writer writes (``DOCS_SCHEMA``, ``KNOWLEDGE_SCHEMA``, ...) and the columns
every shard of the kind must have (``KIND_SCHEMAS``, what ``knowmix.manifest`` checks): a writer that grew a
column (docs' ``script``, a span's ``type_source``) still reads outputs written before it, so the newer columns
and struct fields are listed once, below, as the ones a consumer may not require.
"""

import pyarrow as pa

# The knowledge tasks, in the order of their ids everywhere (samples, token shards, the trainer's heads).
KNOWLEDGE_TASKS = ("relation", "substitution", "triple_mask")

# ---------------------------------------------------------------------------------------------- docs (knowmix clean)

#: columns added to docs shards after the first outputs were written: a consumer does not require them
DOCS_NEWER_COLUMNS = ("script", "quality_score")

DOCS_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("source_kind", pa.string()),
    ("location", pa.string()),
    ("url", pa.string()),
    ("title", pa.string()),
    ("text", pa.string()),
    ("lang", pa.string()),
    ("lang_score", pa.float32()),
    ("n_chars", pa.int32()),
    ("script", pa.string()),  # the text's script as read: simplified | traditional | mixed | none
    ("quality_score", pa.float32()),  # P(good) from the [quality] model; null where it did not run
])

#: OUT/dropped/ of ``knowmix clean`` with ``keep_dropped``: a docs row and why it was dropped (``survivor_id``: the
#: kept duplicate; null for rule drops)
DROPPED_COLUMNS = [("reason", pa.string()), ("survivor_id", pa.string())]
DROPPED_SCHEMA = pa.schema([*DOCS_SCHEMA, *DROPPED_COLUMNS])

#: OUT/clusters/ of ``knowmix clean --cluster-table``: each near-duplicate document's cluster
CLUSTER_SCHEMA = pa.schema([("doc_id", pa.string()), ("cluster_id", pa.string()), ("cluster_size", pa.int32())])

# ---------------------------------------------------------------------------------------------- dead letters

#: the fields of every OUT/dead_letter/*.jsonl row (JSON lines, keys sorted); clean adds ``source_kind``
DEAD_LETTER_FIELDS = ("source", "location", "reason", "raw")

# ---------------------------------------------------------------------------------------------- knowledge (kg-samples)

_ENTITY_SPAN_FIELDS = [
    ("name", pa.string()), ("entity_id", pa.string()), ("type", pa.string()), ("start", pa.int32()), ("end", pa.int32()),
]
_MENTION_FIELDS = [
    ("start", pa.int32()), ("end", pa.int32()), ("original", pa.string()), ("replacement", pa.string()),
    ("type", pa.string()),
]
#: ``type_source``: where the entity's type came from (declared | role_majority | role_signature), for the audit
#: view; added after the first knowledge outputs, like the mention's entity and replacement ids and types
ENTITY_SPAN = pa.struct(_ENTITY_SPAN_FIELDS + [("type_source", pa.string())])
MENTION = pa.struct(_MENTION_FIELDS + [
    ("entity_id", pa.string()), ("type_source", pa.string()), ("replacement_id", pa.string()),
    ("replacement_type", pa.string()),
])
TRIPLE = pa.struct([("head", pa.string()), ("relation", pa.string()), ("tail", pa.string())])


def _knowledge_schema(span: pa.DataType, mention: pa.DataType) -> pa.Schema:
    return pa.schema([
        ("id", pa.string()),
        ("task", pa.string()),
        ("doc_id", pa.string()),
        ("text", pa.string()),
        ("head", span),
        ("tail", span),
        ("relations", pa.list_(pa.string())),
        ("mentions", pa.list_(mention)),
        ("triple", TRIPLE),
    ])


KNOWLEDGE_SCHEMA = _knowledge_schema(ENTITY_SPAN, MENTION)

# ---------------------------------------------------------------------------------------------- token shards (tokenize)

SPAN = pa.struct([("start", pa.int32()), ("end", pa.int32())])

PRETRAIN_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("input_ids", pa.list_(pa.int32())),
    ("word_start", pa.list_(pa.bool_())),
    ("source_kinds", pa.list_(pa.string())),
])

KNOWLEDGE_TOKENS_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("task", pa.string()),
    ("input_ids", pa.list_(pa.int32())),
    ("token_type_ids", pa.list_(pa.int8())),
    ("word_start", pa.list_(pa.bool_())),
    ("e1_pos", pa.int32()),
    ("e2_pos", pa.int32()),
    ("head_span", SPAN),
    ("tail_span", SPAN),
    ("relations", pa.list_(pa.int32())),
    ("mention_spans", pa.list_(SPAN)),
    ("mention_labels", pa.list_(pa.int8())),
    ("triple_head_span", SPAN),
    ("triple_relation_span", SPAN),
    ("triple_tail_span", SPAN),
])

# ---------------------------------------------------------------------------------------------- what a consumer requires

#: a shard of a kind must hold at least these columns with these types (a newer writer may add columns, and
#: fields inside struct columns: ``knowmix.manifest.type_covers``)
KIND_SCHEMAS = {
    "docs": pa.schema([f for f in DOCS_SCHEMA if f.name not in DOCS_NEWER_COLUMNS]),
    "knowledge": _knowledge_schema(pa.struct(_ENTITY_SPAN_FIELDS), pa.struct(_MENTION_FIELDS)),
    "pretrain": PRETRAIN_SCHEMA,
    "knowledge_tokens": KNOWLEDGE_TOKENS_SCHEMA,
}
