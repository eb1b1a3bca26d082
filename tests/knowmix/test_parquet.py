"""``knowmix export-parquet``: the same rows with the same schema as the Arrow shards, read back with
pyarrow.parquet and DuckDB (or pandas); bad input is one line, exit 2."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from knowmix.cli import main
from knowmix.manifest import open_shard_dir, read_arrow
from knowmix.parquet import INFO_NAME
from tests.pipelines.helpers_tokenize import docs_rows, write_docs_dir
from tests.trainer.helpers import make_shards


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    root = tmp_path_factory.mktemp("pq")
    docs = write_docs_dir(str(root / "docs"), docs_rows(30, 30), n_shards=3)
    pre, ktok = make_shards(str(root / "tok"), n_pretrain=40, n_knowledge=30, n_shards=2)
    return {"docs": docs, "pretrain": pre, "knowledge_tokens": ktok}


@pytest.mark.parametrize("kind", ["docs", "pretrain", "knowledge_tokens"])
def test_same_rows_same_schema(stages, tmp_path, kind, capsys):
    src = stages[kind]
    out = tmp_path / "pq"
    assert main(["export-parquet", src, "--output", str(out)]) == 0
    assert f"{kind}:" in capsys.readouterr().err
    shards = open_shard_dir(src)
    info = json.loads((out / INFO_NAME).read_text(encoding="utf-8"))
    assert info["kind"] == kind and len(info["files"]) == len(shards.shard_paths)
    for entry, path in zip(info["files"], shards.shard_paths):
        arrow = read_arrow(path)
        back = pq.read_table(out / entry["path"])
        assert back.schema.equals(arrow.schema, check_metadata=False), (back.schema, arrow.schema)
        assert back.equals(arrow)
        assert entry["rows"] == arrow.num_rows
    # the whole folder reads as one dataset; _knowmix.json is skipped
    whole = pq.read_table(str(out))
    assert whole.num_rows == sum(s["rows"] for s in shards.manifest["shards"])


def test_duckdb_or_pandas_reads_the_same_rows(stages, tmp_path):
    out = tmp_path / "pq"
    assert main(["export-parquet", stages["pretrain"], "--output", str(out)]) == 0
    arrow = open_shard_dir(stages["pretrain"]).read_all()
    want_rows = arrow.num_rows
    want_tokens = int(pc.sum(pc.list_value_length(arrow.column("input_ids"))).as_py())
    want_ids = sorted(arrow.column("id").to_pylist())
    try:
        import duckdb
    except ImportError:
        duckdb = None
    if duckdb is not None:
        got = duckdb.sql(f"SELECT count(*), sum(len(input_ids)) FROM '{out}/*.parquet'").fetchall()[0]
        assert got == (want_rows, want_tokens)
        ids = sorted(r[0] for r in duckdb.sql(f"SELECT id FROM '{out}/*.parquet'").fetchall())
    else:
        pd = pytest.importorskip("pandas")
        df = pd.concat([pd.read_parquet(p) for p in sorted(out.glob("*.parquet"))])
        assert (len(df), int(df["input_ids"].map(len).sum())) == (want_rows, want_tokens)
        ids = sorted(df["id"])
    assert ids == want_ids


def test_rerun_replaces_the_files(stages, tmp_path):
    out = tmp_path / "pq"
    assert main(["export-parquet", stages["docs"], "--output", str(out)]) == 0
    assert main(["export-parquet", stages["pretrain"], "--output", str(out)]) == 0
    assert pq.read_table(str(out)).num_rows == 40  # only the second export's rows


def test_bad_input_is_one_line(stages, tmp_path, capsys):
    assert main(["export-parquet", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such directory" in err
    # a shard whose bytes changed is refused (checksum), unless --no-verify
    bad = tmp_path / "bad"
    os.makedirs(bad)
    from knowmix.manifest import write_shard_dir
    from knowmix.schemas import DOCS_SCHEMA

    table = pa.Table.from_pylist([{"id": "a", "source_kind": "news", "text": "x"},
                                  {"id": "b", "source_kind": "news", "text": "y"}], schema=DOCS_SCHEMA)

    m = write_shard_dir(str(bad), "docs", [table])
    with open(bad / m["shards"][0]["path"], "ab") as fh:
        fh.write(b"\0")
    assert main(["export-parquet", str(bad), "--output", str(tmp_path / "o2")]) == 2
    assert "sha256" in capsys.readouterr().err
