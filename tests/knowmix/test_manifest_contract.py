"""A consumer trusts nothing in a shard directory: each damage below is refused with one line naming the file.

The directory is written by ``write_shard_dir`` from rows made here (so the expected counts are the rows we
made, not what the writer reports); each case damages a copy of it the way a disk, a hand edit or an
attacker would, and checks ``open_shard_dir`` and ``knowmix stats`` (which verifies by default).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pyarrow as pa
import pytest

from knowmix.cli import main as knowmix
from knowmix.manifest import ContractError, open_shard_dir, write_shard_dir, write_table
from knowmix.schemas import DOCS_SCHEMA, KNOWLEDGE_SCHEMA

def sha256_file(path) -> str:
    """Independent of knowmix's helper: the whole file through hashlib."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


N_ROWS = (7, 5)  # rows per shard


def doc(i: int) -> dict:
    return {"id": f"d{i:03d}", "source_kind": "news", "location": f"in.txt:{i}", "url": None, "title": None,
            "text": f"第{i}篇文章的正文。" * 3, "lang": "zh", "lang_score": 0.99, "n_chars": 30}


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("contract") / "good")
    ids = iter(range(100))
    tables = [pa.Table.from_pylist([doc(next(ids)) for _ in range(n)], schema=DOCS_SCHEMA) for n in N_ROWS]
    write_shard_dir(out, "docs", tables)
    return out


@pytest.fixture
def bad(good, tmp_path) -> str:
    out = str(tmp_path / "bad")
    shutil.copytree(good, out)
    return out


def shard(out: str, i: int = 0) -> str:
    return os.path.join(out, "shards", f"part-{i:05d}-of-{len(N_ROWS):05d}.arrow")


def edit_manifest(out: str, change) -> None:
    path = os.path.join(out, "manifest.json")
    with open(path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    change(manifest)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh)


def refused(out: str, capsys, *needles: str, verify_only: bool = False) -> str:
    """open_shard_dir and `knowmix stats` both refuse with one line holding every needle."""
    with pytest.raises(ContractError) as info:
        open_shard_dir(out)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    capsys.readouterr()
    assert knowmix(["stats", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(n in err[0] for n in needles), err
    return message


def test_the_untouched_directory_is_accepted(good):
    d = open_shard_dir(good, kind="docs")
    assert d.read_all().num_rows == sum(N_ROWS)
    assert [d.open_shard(i).num_rows for i in range(2)] == list(N_ROWS)


# ---------------------------------------------------------------------------------------------- damaged shards


def test_a_flipped_byte(bad, capsys):
    path = shard(bad, 1)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    refused(bad, capsys, path, "sha256")


def test_a_truncated_shard(bad, capsys):
    path = shard(bad)
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)
    refused(bad, capsys, path, "sha256")
    # without verification the damage is still one line naming the shard, when it is read
    capsys.readouterr()
    assert knowmix(["stats", bad, "--no-verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and path in err[0] and "Arrow" in err[0], err


def test_a_missing_shard(bad, capsys):
    os.unlink(shard(bad, 1))
    refused(bad, capsys, shard(bad, 1), "missing")


def test_a_shard_that_is_a_directory(bad, capsys):
    os.unlink(shard(bad))
    os.mkdir(shard(bad))
    refused(bad, capsys, shard(bad), "directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_shard(bad, capsys):
    os.chmod(shard(bad), 0)
    refused(bad, capsys, shard(bad), "cannot read")


def test_a_shard_row_count_edited_in_the_manifest(bad, capsys):
    def change(m):  # rows and counts edited together, so only the shard itself can tell
        m["shards"][0]["rows"] += 1
        m["counts"]["output"] += 1
        m["counts"]["input"] += 1

    edit_manifest(bad, change)
    refused(bad, capsys, shard(bad), f"{N_ROWS[0]} rows, the manifest says {N_ROWS[0] + 1}")
    # --no-verify skips the shards' own checks: the same directory is then read
    assert knowmix(["stats", bad, "--no-verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verified"] is False


def test_a_shard_of_another_kind_with_matching_checksums(bad, capsys):
    """A valid knowledge shard behind a docs manifest (sha256, bytes and rows all updated) is not a docs shard."""
    rows = [{"id": f"k{i}", "task": "relation", "doc_id": "d", "text": "文", "head": None, "tail": None,
             "relations": [], "mentions": [], "triple": None} for i in range(N_ROWS[0])]
    entry = write_table(shard(bad), pa.Table.from_pylist(rows, schema=KNOWLEDGE_SCHEMA))
    edit_manifest(bad, lambda m: m["shards"][0].update(entry))
    refused(bad, capsys, shard(bad), "schema differs from the manifest's")
    # and with the manifest's schema rewritten to match, the kind's own schema still refuses it
    from knowmix.manifest import schema_to_json

    edit_manifest(bad, lambda m: m.update(schema=schema_to_json(KNOWLEDGE_SCHEMA)))
    refused(bad, capsys, "manifest.json", "lacks the docs column 'source_kind'")


# ---------------------------------------------------------------------------------------------- the shard list


def test_a_manifest_listing_a_shard_twice(bad, capsys):
    def change(m):
        m["shards"].append(dict(m["shards"][0]))
        m["counts"]["output"] += N_ROWS[0]
        m["counts"]["input"] += N_ROWS[0]

    edit_manifest(bad, change)
    refused(bad, capsys, "shards/part-00000-of-00002.arrow twice")


def test_a_manifest_listing_a_shard_twice_under_another_spelling(bad, capsys):
    def change(m):
        m["shards"].append({**m["shards"][0], "path": "./shards//part-00000-of-00002.arrow"})
        m["counts"]["output"] += N_ROWS[0]
        m["counts"]["input"] += N_ROWS[0]

    edit_manifest(bad, change)
    refused(bad, capsys, "shards/part-00000-of-00002.arrow twice")


def test_a_manifest_leaving_a_shard_out(bad, capsys):
    edit_manifest(bad, lambda m: m["shards"].pop(1))
    message = refused(bad, capsys, shard(bad, 1), "not in the manifest", f"hold {N_ROWS[0]} rows")
    assert f"counts.output is {sum(N_ROWS)}" in message


def test_a_manifest_leaving_a_shard_out_and_deleting_it(bad, capsys):
    edit_manifest(bad, lambda m: m["shards"].pop(1))
    os.unlink(shard(bad, 1))
    refused(bad, capsys, "manifest.json", f"hold {N_ROWS[0]} rows but counts.output is {sum(N_ROWS)}")


@pytest.mark.parametrize("path", ["/etc/hostname", "../good/shards/part-00000-of-00002.arrow",
                                  "shards/../../good/shards/part-00000-of-00002.arrow", "C:/x.arrow", "shards\\x.arrow"])
def test_a_shard_path_that_leaves_the_directory(bad, capsys, path):
    edit_manifest(bad, lambda m: m["shards"][0].update(path=path))
    refused(bad, capsys, "manifest.json", repr(path))


def test_a_shard_that_is_a_link_out_of_the_directory(bad, good, capsys):
    os.unlink(shard(bad))
    os.symlink(shard(good), shard(bad))  # same bytes, same sha256: only the confinement can refuse it
    refused(bad, capsys, shard(bad), "leaves")


# ---------------------------------------------------------------------------------------------- types and keys


@pytest.mark.parametrize("key", ["schema_version", "kind", "shards", "counts"])
def test_a_missing_key(bad, capsys, key):
    edit_manifest(bad, lambda m: m.pop(key))
    refused(bad, capsys, "manifest.json", f"missing key {key!r}")


@pytest.mark.parametrize("change, needle", [
    (lambda m: m.update(schema_version="1"), "schema_version must be an integer"),
    (lambda m: m.update(kind=5), "kind 5 is not one of"),
    (lambda m: m.update(shards={"path": "x"}), "shards must be a list"),
    (lambda m: m["shards"].__setitem__(0, "shards/part-00000-of-00002.arrow"), "shards[0] must be an object"),
    (lambda m: m["shards"][0].update(rows="7"), "rows (shards/part-00000-of-00002.arrow) must be a count"),
    (lambda m: m["shards"][0].update(rows=-1), "must be a count"),
    (lambda m: m["shards"][0].update(rows=True), "must be a count"),
    (lambda m: m["shards"][0].pop("sha256"), "shards[0] lacks 'sha256'"),
    (lambda m: m["shards"][0].update(sha256=None), "64 lower-case hex digits"),
    (lambda m: m["shards"][0].update(path=None), "shards[0].path must be a non-empty string"),
    (lambda m: m["shards"][0].update(path=""), "shards[0].path must be a non-empty string"),
    (lambda m: m.update(counts=[1, 2]), "counts must be an object"),
    (lambda m: m["counts"].update(output="12"), "counts.output must be a count"),
    (lambda m: m["counts"].pop("dead_letter"), "counts lacks 'dead_letter'"),
    (lambda m: m["counts"].update(dropped=3), "counts.dropped must be an object"),
    (lambda m: m["counts"]["dropped"].update(lang="x"), "counts.dropped.lang must be a count"),
    (lambda m: m["counts"].update(input=13), "counts do not add up"),
    (lambda m: m.update(schema="docs"), "schema must be a list"),
    (lambda m: m.update(cluster_table=[{"path": "../x"}]), "cluster_table[0] lacks"),
])
def test_a_wrong_type_or_value(bad, capsys, change, needle):
    edit_manifest(bad, change)
    refused(bad, capsys, "manifest.json", needle)


@pytest.mark.parametrize("content", [b"", b"[1, 2]", b"{not json", "\ufeff{}".encode("utf-16")])
def test_a_manifest_that_is_not_a_json_object(bad, capsys, content):
    open(os.path.join(bad, "manifest.json"), "wb").write(content)
    refused(bad, capsys, "manifest.json")


def test_a_manifest_that_is_a_directory(bad, capsys):
    os.unlink(os.path.join(bad, "manifest.json"))
    os.mkdir(os.path.join(bad, "manifest.json"))
    refused(bad, capsys, "manifest.json")


def test_the_rows_of_each_kind_add_up_to_its_own_count(tmp_path):
    """pretrain/knowledge_tokens rows are sequences, knowledge rows are samples: each has its own count."""
    from knowmix.manifest import check_manifest

    entry = {"path": "shards/a.arrow", "rows": 4, "bytes": 1, "sha256": "0" * 64}
    base = {"schema_version": 1, "shards": [entry]}
    counts = {"input": 9, "output": 9, "dead_letter": 0, "dropped": {}}
    check_manifest({**base, "kind": "pretrain", "counts": {**counts, "sequences": 4}})
    check_manifest({**base, "kind": "knowledge", "counts": {**counts, "samples": {"total": 4}}})
    with pytest.raises(ContractError, match="counts.sequences is 5"):
        check_manifest({**base, "kind": "knowledge_tokens", "counts": {**counts, "sequences": 5}})
    with pytest.raises(ContractError, match="counts.output is 9"):
        check_manifest({**base, "kind": "docs", "counts": counts})


def test_a_consumer_reads_older_and_current_writers_shards():
    """The writers' schemas (knowmix.schemas, what clean and kg-samples write) satisfy their kind; so do outputs
    written before the newer columns and struct fields existed (listed by hand here: the first docs writer's
    nine columns, the first span's five fields); a shard that lacks a column the consumer reads is refused."""
    from knowmix.manifest import schema_mismatch, schema_to_json

    first_docs = ["id", "source_kind", "location", "url", "title", "text", "lang", "lang_score", "n_chars"]
    for kind, written in (("docs", DOCS_SCHEMA), ("knowledge", KNOWLEDGE_SCHEMA)):
        assert schema_mismatch(kind, schema_to_json(written)) is None
    older = pa.schema([DOCS_SCHEMA.field(n) for n in first_docs])
    assert schema_mismatch("docs", schema_to_json(older)) is None
    for name in first_docs:
        assert f"column {name!r}" in schema_mismatch("docs", schema_to_json(older.remove(older.get_field_index(name))))
    first_span = pa.struct([("name", pa.string()), ("entity_id", pa.string()), ("type", pa.string()),
                            ("start", pa.int32()), ("end", pa.int32())])
    older_knowledge = KNOWLEDGE_SCHEMA.set(KNOWLEDGE_SCHEMA.get_field_index("head"), pa.field("head", first_span))
    assert schema_mismatch("knowledge", schema_to_json(older_knowledge)) is None
    # a struct column that lost an expected field is refused; one with an extra field (a newer writer) is not
    span = KNOWLEDGE_SCHEMA.field("head").type
    fewer = pa.struct([f for f in span if f.name != "type"])
    more = pa.struct([*span, pa.field("a_newer_field", pa.string())])
    assert schema_mismatch("knowledge", schema_to_json(KNOWLEDGE_SCHEMA.set(KNOWLEDGE_SCHEMA.get_field_index("head"), pa.field("head", fewer)))) is not None
    assert schema_mismatch("knowledge", schema_to_json(KNOWLEDGE_SCHEMA.set(KNOWLEDGE_SCHEMA.get_field_index("head"), pa.field("head", more)))) is None


def test_a_shard_checksum_is_the_file_checksum(good):
    """The independent reference for every sha256 case above: hashlib over the file equals the entry."""
    import hashlib

    m = open_shard_dir(good).manifest
    for entry in m["shards"]:
        path = os.path.join(good, entry["path"])
        assert hashlib.sha256(open(path, "rb").read()).hexdigest() == entry["sha256"] == sha256_file(path)


# ---------------------------------------------------------------------------------------------- the jobs' inputs


def _flip(out):
    path = shard(out, 1)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    return shard(out, 1)


def _truncate(out):
    with open(shard(out), "r+b") as fh:
        fh.truncate(100)
    return shard(out)


def _twice(out):
    def change(m):
        m["shards"].append(dict(m["shards"][0]))
        m["counts"]["output"] += N_ROWS[0]
        m["counts"]["input"] += N_ROWS[0]

    edit_manifest(out, change)
    return "shards/part-00000-of-00002.arrow twice"


def _left_out(out):
    edit_manifest(out, lambda m: m["shards"].pop(1))
    return shard(out, 1)


def _rows_edited(out):
    edit_manifest(out, lambda m: m["shards"][1].update(rows=N_ROWS[1] - 1))
    # named by the shard where it is verified first, by the manifest where its sum is checked first
    return (f"part-00001-of-00002.arrow: {N_ROWS[1]} rows, the manifest says {N_ROWS[1] - 1}",
            f"hold {sum(N_ROWS) - 1} rows but counts.output is {sum(N_ROWS)}")


def _escaping(out):
    edit_manifest(out, lambda m: m["shards"][0].update(path="../../../etc/passwd"))
    return "leaves the directory"


@pytest.mark.parametrize("damage", [_flip, _truncate, _twice, _left_out, _rows_edited, _escaping])
@pytest.mark.parametrize("job", ["kg-samples", "tokenize"])
def test_the_jobs_refuse_a_damaged_input_with_one_line(bad, tmp_path, capsys, damage, job):
    needles = damage(bad)
    needles = (needles,) if isinstance(needles, str) else needles
    out = str(tmp_path / "out")
    if job == "kg-samples":
        from tests.kg.helpers import ADMIN

        args = ["kg-samples", "--kg", ADMIN, "--docs", bad, "--output", out]
    else:
        vocab = tmp_path / "vocab.txt"
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"第篇文章的正"]) + "\n", encoding="utf-8")
        args = ["tokenize", "--input", bad, "--output", out, "--tokenizer", f"wordpiece:{vocab}"]
    capsys.readouterr()
    assert knowmix(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and any(n in err[0] for n in needles), err
    assert not os.path.exists(os.path.join(out, "manifest.json"))
