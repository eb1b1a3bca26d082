"""``knowmix tokenize`` and ``knowmix spm-train`` end to end on the FnApiRunner, real Arrow shard dirs."""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata

import pyarrow as pa
import pytest

from knowmix.errors import UserError
from knowmix.manifest import open_shard_dir, write_shard_dir
from knowmix.pipelines.spm_train import spm_train_main
from knowmix.schemas import KNOWLEDGE_TOKENS_SCHEMA, PRETRAIN_SCHEMA
from knowmix.pipelines.tokenize import tokenize_main
from knowmix.pipelines.tokenizer_loader import load_tokenizer
from tests.pipelines.helpers_tokenize import (
    DOCS_SCHEMA,
    all_fixture_texts,
    docs_rows,
    knowledge_rows,
    write_bert_vocab,
    write_docs_dir,
    write_knowledge_dir,
)


def sha256_file(path) -> str:
    """Independent of knowmix's helper: the whole file through hashlib."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def squash(s: str, kind: str) -> str:
    if kind == "wordpiece":
        s = unicodedata.normalize("NFD", s.lower())
        return "".join(c for c in s if unicodedata.category(c) != "Mn" and not c.isspace() and unicodedata.category(c)[0] != "C")
    return "".join(c for c in unicodedata.normalize("NFKC", s) if not c.isspace() and c != "\u2581")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokjob")
    rows = docs_rows(20, 30)
    rows.append({**rows[0], "id": "zz-empty", "text": "   \n "})  # no tokens: dropped
    rows.append({**rows[0], "id": None})  # no id: dead letter
    write_docs_dir(str(d / "docs"), rows, n_shards=2)
    krows = knowledge_rows(40)
    bad = dict(next(r for r in krows if r["task"] == "relation"))
    bad["id"] = "rel-bad"
    bad["head"] = {**bad["head"], "start": bad["head"]["start"] + 1}  # span no longer matches the name
    krows.append(bad)
    write_knowledge_dir(str(d / "kn"), krows)
    vocab = write_bert_vocab(str(d / "bert" / "vocab.txt"), all_fixture_texts())
    assert spm_train_main(["--docs", str(d / "docs"), "--vocab-size", "4000", "--output", str(d / "tok" / "spm"),
                           "--num-threads", "1"]) == 0
    return {"dir": d, "docs_rows": rows, "k_rows": krows, "specs": {
        "wordpiece": f"wordpiece:{vocab}", "spm": f"spm:{d / 'tok' / 'spm.model'}"}}


def run_tok(work, kind, src, out, *extra):
    out = str(work["dir"] / out)
    assert tokenize_main(["--input", str(work["dir"] / src), "--output", out, "--tokenizer", work["specs"][kind], *extra]) == 0
    return out


def test_spm_train_writes_model_and_vocab(work):
    prefix = work["dir"] / "tok" / "spm"
    assert (prefix.parent / "spm.model").exists() and (prefix.parent / "spm.vocab").exists()
    assert not [p for p in os.listdir(prefix.parent) if p.startswith(".spm-sample")]
    tok = load_tokenizer(work["specs"]["spm"])
    assert list(tok.special_ids.values()) == list(range(9)) and tok.vocab_size == 4000
    with pytest.raises(UserError, match="vocab-size"):
        spm_train_main(["--docs", str(work["dir"] / "docs"), "--vocab-size", "100", "--output", str(work["dir"] / "x")])
    with pytest.raises(UserError, match="expected docs"):
        spm_train_main(["--docs", str(work["dir"] / "kn"), "--output", str(work["dir"] / "x")])


@pytest.mark.parametrize("kind", ["wordpiece", "spm"])
def test_pretrain_job(work, kind):
    out = run_tok(work, kind, "docs", f"pre-{kind}", "--max-seq-len", "96", "--num-shards", "2", "--pack-groups", "3")
    sd = open_shard_dir(out, "pretrain")
    m = sd.manifest
    c = m["counts"]
    assert (c["input"], c["output"], c["dead_letter"], c["dropped"]) == (len(work["docs_rows"]), len(work["docs_rows"]) - 2, 1, {"no_tokens": 1})
    assert c["sequences"] == sum(s["rows"] for s in m["shards"]) > 0
    tok = load_tokenizer(work["specs"][kind])
    assert m["tokenizer"] == tok.info() and m["tokenizer"]["sha256"] == sha256_file(tok.path)
    assert sha256_file(os.path.join(out, m["tokenizer"]["file"])) == tok.sha256  # copied beside the manifest
    assert [f["name"] for f in m["schema"]] == PRETRAIN_SCHEMA.names
    dead = [json.loads(line) for line in open(os.path.join(out, "dead_letter", "part-00000.jsonl"), encoding="utf-8")]
    assert [d["reason"] for d in dead] == ["missing_id_or_text"]

    table = sd.read_all()
    cls, sep = tok.special_ids["cls"], tok.special_ids["sep"]
    texts = {r["id"]: squash(r["text"], kind) for r in work["docs_rows"] if r["id"]}
    all_text = "".join(texts.values())
    n_tokens = 0
    for r in table.to_pylist():
        ids, ws = r["input_ids"], r["word_start"]
        assert len(ids) == len(ws) <= 96 and ids[0] == cls and ids[-1] == sep and ws[0]
        pieces, cur = [], []
        for i in ids[1:]:
            if i == sep:
                pieces.append(cur)
                cur = []
            else:
                cur.append(i)
        assert len(pieces) == len(r["source_kinds"]) and set(r["source_kinds"]) <= {"news", "encyclopedia"}
        first_doc = r["id"].rsplit(":", 1)[0]
        assert first_doc in texts
        for k, p in enumerate(pieces):
            n_tokens += len(p)
            decoded = squash(tok.decode(p), kind)
            assert decoded and decoded in (texts[first_doc] if k == 0 else all_text)  # round trip, modulo normalisation
    assert n_tokens == sum(len(tok.encode(r["text"])) for r in work["docs_rows"] if r["id"] and r["text"].strip())


def test_pretrain_is_deterministic(work):
    a = run_tok(work, "wordpiece", "docs", "det-a", "--max-seq-len", "64", "--num-shards", "3", "--pack-groups", "2")
    b = run_tok(work, "wordpiece", "docs", "det-b", "--max-seq-len", "64", "--num-shards", "3", "--pack-groups", "2")
    sa, sb = open_shard_dir(a).manifest["shards"], open_shard_dir(b).manifest["shards"]
    assert [s["sha256"] for s in sa] == [s["sha256"] for s in sb]
    # the same docs in a different shard layout give the same rows
    c_in = str(work["dir"] / "docs-relayout")
    rows = sorted((r for r in work["docs_rows"]), key=lambda r: str(r["id"]), reverse=True)
    write_shard_dir(c_in, "docs", [pa.Table.from_pylist(rows[i::3], schema=DOCS_SCHEMA) for i in range(3)])
    c = run_tok(work, "wordpiece", "docs-relayout", "det-c", "--max-seq-len", "64", "--num-shards", "3", "--pack-groups", "2")
    assert [s["sha256"] for s in open_shard_dir(c).manifest["shards"]] == [s["sha256"] for s in sa]


def test_without_word_boundaries(work):
    out = run_tok(work, "wordpiece", "docs", "pre-nowwm", "--max-seq-len", "128", "--no-word-boundaries")
    with_ = run_tok(work, "wordpiece", "docs", "pre-wwm", "--max-seq-len", "128")
    t0, t1 = open_shard_dir(out).read_all(), open_shard_dir(with_).read_all()
    frac = lambda t: sum(sum(w) for w in t.column("word_start").to_pylist()) / sum(len(w) for w in t.column("word_start").to_pylist())
    assert frac(t0) > 0.95 > frac(t1)  # Chinese words average more than one character


@pytest.mark.parametrize("kind", ["wordpiece", "spm"])
def test_knowledge_job(work, kind):
    out = run_tok(work, kind, "kn", f"ktok-{kind}", "--max-seq-len", "128")
    sd = open_shard_dir(out, "knowledge_tokens")
    m = sd.manifest
    c = m["counts"]
    assert c["input"] == len(work["k_rows"]) and c["dead_letter"] == 1
    assert c["input"] == c["output"] + c["dead_letter"] + sum(c["dropped"].values()) and c["output"] == c["sequences"]
    assert set(c["by_task"]) == {"relation", "substitution", "triple_mask"}
    assert [f["name"] for f in m["schema"]] == KNOWLEDGE_TOKENS_SCHEMA.names
    relations = json.load(open(os.path.join(out, "relations.json"), encoding="utf-8"))
    assert relations[0] == "NA" and relations[1:] == sorted(relations[1:]) and m["relations"]["count"] == len(relations)
    tok = load_tokenizer(work["specs"][kind])
    assert m["tokenizer"] == tok.info()
    src = {r["id"]: r for r in work["k_rows"]}
    table = sd.read_all().to_pylist()
    assert [r["id"] for r in table] == sorted(r["id"] for r in table) or len(m["shards"]) == 1
    for r in table:
        s = src[r["id"]]
        assert r["task"] == s["task"] and len(r["input_ids"]) == len(r["token_type_ids"]) == len(r["word_start"]) <= 128
        if r["task"] == "relation":
            assert [relations[i] for i in r["relations"]] == s["relations"]
            hs = r["head_span"]
            assert squash(tok.decode(r["input_ids"][hs["start"]:hs["end"]]), kind) == squash(s["head"]["name"], kind)
            assert r["input_ids"][r["e1_pos"]] == tok.special_ids["e1"] and r["mention_spans"] is None
        elif r["task"] == "substitution":
            assert r["mention_labels"] == [1, 0] and r["e1_pos"] is None and r["relations"] is None
        else:
            ts = r["triple_tail_span"]
            assert squash(tok.decode(r["input_ids"][ts["start"]:ts["end"]]), kind) == squash(s["triple"]["tail"], kind)
            assert r["token_type_ids"][-1] == 1 and r["token_type_ids"][0] == 0
    dead = [json.loads(line) for line in open(os.path.join(out, "dead_letter", "part-00000.jsonl"), encoding="utf-8")]
    assert [(d["location"], d["reason"]) for d in dead] == [("rel-bad", "bad_head_span")]


def test_knowledge_fixed_relations_file(work):
    rel_file = os.path.join(os.path.dirname(__file__), "..", "..", "corpora", "fixtures", "finre_relation2id.txt")
    out = run_tok(work, "wordpiece", "kn", "ktok-fixed", "--max-seq-len", "128", "--relations", rel_file)
    relations = json.load(open(os.path.join(out, "relations.json"), encoding="utf-8"))
    assert relations[0] == "NA" and len(relations) == 44 and relations[1] == "注资"
    c = open_shard_dir(out).manifest["counts"]
    assert c["input"] == c["output"] + c["dead_letter"] + sum(c["dropped"].values())


def test_user_errors(work, tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        tokenize_main(["--input", str(tmp_path / "none"), "--output", str(tmp_path / "o"), "--tokenizer", work["specs"]["spm"]])
    with pytest.raises(UserError, match="expected spm"):
        tokenize_main(["--input", str(work["dir"] / "docs"), "--output", str(tmp_path / "o"), "--tokenizer", "vocab.txt"])
    with pytest.raises(UserError, match="max-seq-len"):
        tokenize_main(["--input", str(work["dir"] / "docs"), "--output", str(tmp_path / "o"),
                       "--tokenizer", work["specs"]["spm"], "--max-seq-len", "4"])


def test_user_dict_makes_one_word(work, tmp_path):
    user = tmp_path / "user.txt"
    user.write_text("中共中央总书记 10 nt\n", encoding="utf-8")
    out = run_tok(work, "wordpiece", "docs", "pre-user", "--max-seq-len", "512", "--user-dict", str(user))
    tok = load_tokenizer(work["specs"]["wordpiece"])
    target = tok.encode("中共中央总书记").ids.tolist()
    found = 0
    for r in open_shard_dir(out).read_all().to_pylist():
        ids, ws = r["input_ids"], r["word_start"]
        for k in range(len(ids) - len(target) + 1):
            if ids[k : k + len(target)] == target and ws[k]:
                assert not any(ws[k + 1 : k + len(target)])
                found += 1
    assert found > 0
