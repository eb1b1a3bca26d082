"""The tokenizer side of the shard contract: relation files, relations.json, the manifest's tokenizer entry."""

from __future__ import annotations

import hashlib
import json

import pytest

from knowmix.errors import UserError
from knowmix.relations import (
    fixed_relation_list,
    read_relation_file,
    read_relations_json,
    relation_ids,
    relation_list_of,
    write_relations_json,
)
from knowmix.tokenizer_entry import SPECIAL_NAMES, TokenizerInfo, tokenizer_entry, verified_tokenizer_file

# FinRE's relation2id.txt layout, its first lines written out by hand
RELATION2ID = "unknown 0\n注资 1\n拥有 2\n\n纠纷 3\n"


@pytest.mark.parametrize("layout, text", [
    ("lines", RELATION2ID),
    ("json object", json.dumps({"拥有": 2, "unknown": 0, "纠纷": 3, "注资": 1}, ensure_ascii=False)),
    ("json list", json.dumps(["unknown", "注资", "拥有", "纠纷"], ensure_ascii=False)),
    ("lines with a BOM", "\ufeff" + RELATION2ID),
])
def test_relation_files_in_every_layout(tmp_path, layout, text):
    path = tmp_path / "rel"
    path.write_text(text, encoding="utf-8")
    assert read_relation_file(str(path)) == ["unknown", "注资", "拥有", "纠纷"]
    assert fixed_relation_list(str(path)) == ["NA", "注资", "拥有", "纠纷"]  # id 0 is NA in token shards


@pytest.mark.parametrize("text, needle", [
    ("a 0\nb 2\n", "must run 0..1"),
    ("a 0\nb 0\n", "must run 0..1"),
    ("a 0\nb\n", ":2: expected `name id`"),
    ("a 0\na 1\n", "duplicate relation names"),
    ("", "no relations"),
    ("[1, 2", "not a JSON list"),
    ('{"a": "x"}', "not a JSON object"),
])
def test_bad_relation_files_are_one_line(tmp_path, text, needle):
    path = tmp_path / "rel"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=needle):
        read_relation_file(str(path))
    with pytest.raises(UserError, match="no such file"):
        read_relation_file(str(tmp_path / "missing"))


def test_fixed_list_refuses_a_second_na(tmp_path):
    path = tmp_path / "rel"
    path.write_text("unknown 0\nNA 1\n", encoding="utf-8")
    with pytest.raises(UserError, match="duplicate"):
        fixed_relation_list(str(path))


def test_relations_json_round_trip_and_ids(tmp_path):
    names = relation_list_of(["收购", "NA", "注资", "收购"])
    assert names == ["NA", "收购", "注资"]
    assert write_relations_json(str(tmp_path), names) == {"relations": {"file": "relations.json", "count": 3}}
    assert json.loads((tmp_path / "relations.json").read_text(encoding="utf-8")) == names
    assert read_relations_json(str(tmp_path)) == names
    assert relation_ids(["注资", "NA"], names) == [2, 0] and relation_ids(["卖出"], names) is None
    (tmp_path / "relations.json").write_text('["收购"]', encoding="utf-8")
    with pytest.raises(UserError, match='starting with "NA"'):
        read_relations_json(str(tmp_path))


def test_tokenizer_entry_written_read_and_verified(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n", encoding="utf-8")
    digest = hashlib.sha256(vocab.read_bytes()).hexdigest()
    special = {k: i for i, k in enumerate(SPECIAL_NAMES)}
    entry = tokenizer_entry("wordpiece", str(vocab), digest, 30, special, True)
    assert entry["file"] == "vocab.txt" and list(entry["special_ids"]) == list(SPECIAL_NAMES)
    info = TokenizerInfo.from_entry(json.loads(json.dumps(entry)), "m.json", "data.pretrain")
    assert info.to_dict() == entry
    assert verified_tokenizer_file(str(tmp_path), "vocab.txt", digest, "data.pretrain") == str(vocab)
    assert verified_tokenizer_file(str(tmp_path), "other.txt", digest, "data.pretrain") == ""
    with pytest.raises(UserError, match="tokenizer.sha256"):
        verified_tokenizer_file(str(tmp_path), "vocab.txt", "0" * 64, "data.pretrain")
    with pytest.raises(UserError, match="tokenizer.file"):
        verified_tokenizer_file(str(tmp_path), "../vocab.txt", digest, "data.pretrain")
    with pytest.raises(UserError, match="lacks mask"):
        TokenizerInfo.from_entry({**entry, "special_ids": {"pad": 0, "unk": 1, "cls": 2, "sep": 3}}, "m.json", "k")
    with pytest.raises(UserError, match="no `tokenizer` entry"):
        TokenizerInfo.from_entry(None, "m.json", "k")
