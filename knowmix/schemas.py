"""The shards' Arrow schemas per manifest kind (documented in docs/shard-schemas.md).

Beam-free, so the trainer's tests and benches (which run where Beam is not installed) write shards of exactly
the schema `knowmix tokenize` writes, and a consumer (``knowmix.manifest``) refuses a shard whose schema is
not its kind's. ``docs`` and ``knowledge`` are written by ``pipelines/clean.py`` and ``kg/samples.py`` (which
may not import this package); tests pin those to the copies here.
"""

import pyarrow as pa

# The knowledge tasks, in the order of their ids everywhere (samples, token shards, the trainer's heads).
KNOWLEDGE_TASKS = ("relation", "substitution", "triple_mask")

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
])  # the columns every docs output has; newer writers add more (script, quality_score), still readable here

# the span fields every knowledge output has; newer writers add more (type_source, the replacement's id and
# type), which knowmix.manifest.type_covers accepts
_ENTITY_SPAN = pa.struct(
    [("name", pa.string()), ("entity_id", pa.string()), ("type", pa.string()), ("start", pa.int32()), ("end", pa.int32())]
)
_MENTION = pa.struct(
    [("start", pa.int32()), ("end", pa.int32()), ("original", pa.string()), ("replacement", pa.string()), ("type", pa.string())]
)
KNOWLEDGE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("task", pa.string()),
    ("doc_id", pa.string()),
    ("text", pa.string()),
    ("head", _ENTITY_SPAN),
    ("tail", _ENTITY_SPAN),
    ("relations", pa.list_(pa.string())),
    ("mentions", pa.list_(_MENTION)),
    ("triple", pa.struct([("head", pa.string()), ("relation", pa.string()), ("tail", pa.string())])),
])

# a shard of a kind must hold at least these columns with these types (a newer writer may add columns)
KIND_SCHEMAS = {
    "docs": DOCS_SCHEMA,
    "knowledge": KNOWLEDGE_SCHEMA,
    "pretrain": PRETRAIN_SCHEMA,
    "knowledge_tokens": KNOWLEDGE_TOKENS_SCHEMA,
}
