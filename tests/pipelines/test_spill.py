"""knowmix.pipelines.spill: documents and dedup keys spilled to files and read back by location."""

from __future__ import annotations

import pyarrow as pa
import pytest

from knowmix.pipelines.doc_keys import shard_of
from knowmix.pipelines.spill import BlobSpill, SpillWriter, read_blobs, read_spilled, resolve_blobs

SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string())])


def test_spilled_rows_come_back_by_shard(tmp_path):
    writer = SpillWriter(str(tmp_path), SCHEMA, num_shards=3, flush_rows=7)
    rows = [{"id": f"d{i}", "text": "文本" * i} for i in range(50)]
    for r in rows:
        writer.add(r)
    locations = writer.close()
    assert len({path for _, (path, _) in locations}) == 1  # one file per writer
    for shard in range(3):
        table = read_spilled([loc for s, loc in locations if s == shard], SCHEMA)
        expected = [r for r in rows if shard_of(r["id"], 3) == shard]
        assert sorted(table.to_pylist(), key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])
    only_ids = read_spilled([loc for _, loc in locations], SCHEMA, columns=["id"])
    assert only_ids.column_names == ["id"] and only_ids.num_rows == 50


def test_an_empty_writer_writes_no_file(tmp_path):
    assert SpillWriter(str(tmp_path), SCHEMA, num_shards=2).close() == []
    spill = BlobSpill(str(tmp_path))
    spill.close()
    assert list(tmp_path.iterdir()) == []


def test_blobs_come_back_in_the_order_asked_and_in_line_blobs_pass_through(tmp_path):
    spill = BlobSpill(str(tmp_path))
    blobs = [bytes([i]) * (i * 13 + 1) for i in range(20)]
    locations = [spill.put(b) for b in blobs]
    spill.close()
    order = list(reversed(range(20)))
    assert read_blobs([locations[i] for i in order]) == [blobs[i] for i in order]
    assert resolve_blobs([b"inline", locations[3], b"", locations[0]]) == [b"inline", blobs[3], b"", blobs[0]]


def test_a_truncated_key_file_is_an_error_not_silent_loss(tmp_path):
    spill = BlobSpill(str(tmp_path))
    location = spill.put(b"x" * 100)
    spill.close()
    with open(location[0], "r+b") as fh:
        fh.truncate(60)
    with pytest.raises(RuntimeError, match="truncated"):
        read_blobs([location])


def test_shard_ids_are_made_unique_by_content_order_and_free_suffixes():
    from knowmix.pipelines.spill import KEY_COLUMN, resolve_id_collisions

    schema = pa.schema([("id", pa.string()), ("source_kind", pa.string()), ("location", pa.string()),
                        ("text", pa.string()), (KEY_COLUMN, pa.int64())])
    rows = [
        ("7", "web", "a:1", "丙"), ("7", "web", "b:1", "甲"), ("7", "encyclopedia", "c:1", "乙"),
        ("7~2", "web", "d:1", "丁"), ("7", "web", "e:1", "甲"), ("8", "web", "f:1", "戊"),
    ]
    table = pa.Table.from_pylist(
        [dict(zip(("id", "source_kind", "location", "text"), r), **{KEY_COLUMN: i}) for i, r in enumerate(rows)],
        schema=schema,
    )
    out, renamed, dropped = resolve_id_collisions(table)
    got = sorted((r["id"], r["text"]) for r in out.to_pylist())
    # encyclopedia first (kind priority), then web by text (丙 U+4E19 < 甲 U+7532); 7~2 is taken; e:1 is
    # b:1's text with the same id: one document
    assert got == [("7", "乙"), ("7~2", "丁"), ("7~3", "丙"), ("7~4", "甲"), ("8", "戊")]
    assert [(r["id"], r["location"]) for r in renamed] == [("7~3", "a:1"), ("7~4", "b:1")]
    assert dropped == [("web", "exact_duplicate")]
    untouched = table.filter(pa.array([r[0] == "8" for r in rows]))
    assert resolve_id_collisions(untouched)[0] is untouched
