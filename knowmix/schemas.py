"""The token shards' Arrow schemas (`pretrain`, `knowledge_tokens`; documented in docs/shard-schemas.md).

Beam-free, so the trainer's tests and benches (which run where Beam is not installed) write shards of exactly
the schema `knowmix tokenize` writes.
"""

import pyarrow as pa

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
