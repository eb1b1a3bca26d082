"""Tokenizers, word boundaries, packing and the knowledge tasks, as pure functions (no Beam)."""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np
import pytest

from knowmix.errors import UserError
from knowmix.pipelines.spm_train import sentences, train, write_sample
from knowmix.pipelines.knowledge_tokens import BadRow, Dropped, tokenize_knowledge
from knowmix.pipelines.packing import DocTokens, pack_documents
from knowmix.pipelines.tokenizer_loader import load_tokenizer
from knowmix.pipelines.word_boundaries import encode_with_words, token_span, word_segmenter
from tests.pipelines.helpers_tokenize import (
    all_fixture_texts,
    cmrc_contexts,
    docs_rows,
    finre_rows,
    knowledge_rows,
    news_lines,
    write_bert_vocab,
    write_docs_dir,
)


def sha256_file(path) -> str:
    """Independent of knowmix's helper: the whole file through hashlib."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def norm_bert(s: str) -> str:
    s = unicodedata.normalize("NFD", s.lower())
    return "".join(c for c in s if unicodedata.category(c) != "Mn" and not c.isspace() and unicodedata.category(c)[0] != "C")


def norm_spm(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", s) if not c.isspace() and c != "\u2581")


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return write_bert_vocab(str(tmp_path_factory.mktemp("bert") / "vocab.txt"), all_fixture_texts())


@pytest.fixture(scope="module")
def wp(vocab):
    return load_tokenizer(f"wordpiece:{vocab}")


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("spm")
    docs = write_docs_dir(str(d / "docs"), docs_rows(40, 60))
    stats = write_sample(docs, 10**9, str(d / "sample.txt"))
    assert stats["docs"] == 100 and stats["rate"] == 1.0
    train(str(d / "sample.txt"), str(d / "m"), vocab_size=4000, num_threads=1)  # 0.9995 of 60k chars of Chinese needs ~3.4k
    return str(d / "m.model")


@pytest.fixture(scope="module")
def sp(spm_model):
    return load_tokenizer(f"spm:{spm_model}")


@pytest.fixture(scope="module")
def seg():
    return word_segmenter("rjieba")


# ---------------------------------------------------------------------------------------------- jieba


def test_rjieba_gives_jiebas_words_on_fixture_text():
    jieba = word_segmenter("jieba")
    rj = word_segmenter("rjieba")
    texts = news_lines(400) + [c["context_text"] for c in cmrc_contexts(256)] + [r[3] for r in finre_rows(300)]
    texts.append("Jean-Pierre 用 C++ 和 C# 写了 formula_1，增长 3.5%，e-mail：a.b@c.d -- 完")
    diffs = [t for t in texts if jieba.cut(t) != rj.cut(t)]
    assert diffs == []
    assert all(np.array_equal(jieba.word_starts(t), rj.word_starts(t)) for t in texts[::10] + texts[-1:])
    assert rj.cut("") == [] and rj.word_starts("").tolist() == [True]


def test_one_word_spans_and_user_words(seg):
    text = "迈向充满希望的新世纪"
    flags = seg.word_starts(text, [(2, 10)])
    assert flags[2] and not flags[3:10].any() and flags[10]
    assert word_segmenter("rjieba", ["充满希望的新世纪"]).cut(text) == ["迈向", "充满希望的新世纪"]


# ---------------------------------------------------------------------------------------------- wordpiece


def test_wordpiece_matches_transformers_bert_tokenizer(vocab, wp):
    from transformers import BertTokenizer

    texts = news_lines(150) + [c["context_text"] for c in cmrc_contexts(40)] + ["AM-OLED Ünïcode naïve tests 1998年"]
    refs = [BertTokenizer(vocab=vocab, do_lower_case=True)]
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

        refs.append(BertTokenizerLegacy(vocab_file=vocab, do_lower_case=True))  # the pure-Python reference
    except ImportError:
        pass
    for ref in refs:
        for t in texts:
            ours = wp.encode(t).ids.tolist()
            assert ours == ref.convert_tokens_to_ids(ref.tokenize(t)), (type(ref).__name__, t[:40])


EDGE = "Ünïcode naïve İstanbul ΣΟΦΟΣ e\u0301t\u00e9 x\u200by \u200b 字\x00x 𠀀字 ａｂｃ-１２ \ufffd AM-OLED 3.5% " + "x" * 120


@pytest.mark.parametrize("lowercase", [True, False])
def test_wordpiece_ids_and_offsets_match_hf_tokenizers(vocab, lowercase):
    from tokenizers import BertWordPieceTokenizer

    ours = load_tokenizer(f"wordpiece:{vocab}", lowercase)
    hf = BertWordPieceTokenizer(vocab, lowercase=lowercase, strip_accents=None, clean_text=True, handle_chinese_chars=True)
    for t in all_fixture_texts()[::3] + [EDGE, "", "\u200b", " a "]:
        e, h = ours.encode(t), hf.encode(t, add_special_tokens=False)
        assert e.ids.tolist() == h.ids and list(zip(e.starts.tolist(), e.ends.tolist())) == h.offsets, t[:40]


def test_wordpiece_offsets_map_back_to_text(wp):
    for t in news_lines(50) + ["Hello WORLD, naïve 新年"]:
        enc = wp.encode(t)
        for i, a, b in zip(enc.ids, enc.starts, enc.ends):
            piece = wp.id_to_token(i).removeprefix("##")
            if piece != "[UNK]":
                assert norm_bert(t[a:b]) == piece
        assert norm_bert(wp.decode(enc.ids)) == norm_bert(t)


def test_wordpiece_specials_markers_and_info(vocab, wp):
    ids = wp.special_ids
    assert [wp.id_to_token(ids[k]) for k in ("pad", "unk", "cls", "sep", "mask")] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert [wp.id_to_token(ids[k]) for k in ("e1", "e1_end", "e2", "e2_end")] == [f"[unused{i}]" for i in range(4)]
    info = wp.info()
    assert info["kind"] == "wordpiece" and info["file"] == "vocab.txt" and info["sha256"] == sha256_file(vocab)
    assert info["vocab_size"] == len(open(vocab, encoding="utf-8").read().splitlines()) and info["lowercase"] is True


def test_wordpiece_lowercase_from_tokenizer_config(tmp_path):
    v = write_bert_vocab(str(tmp_path / "vocab.txt"), ["ABC abc 中"], lowercase=False)
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    tok = load_tokenizer(f"wordpiece:{v}")
    assert tok.lowercase is False
    assert [tok.id_to_token(i) for i in tok.encode("ABC中").ids] == ["A", "##B", "##C", "中"]


def test_bad_tokenizer_specs(tmp_path):
    for spec in ("vocab.txt", "bpe:x", f"wordpiece:{tmp_path}/none.txt"):
        with pytest.raises(UserError):
            load_tokenizer(spec)
    (tmp_path / "v.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n中\n")
    with pytest.raises(UserError, match="unused"):
        load_tokenizer(f"wordpiece:{tmp_path}/v.txt")


# ---------------------------------------------------------------------------------------------- sentencepiece


def test_spm_special_ids_and_round_trip(spm_model, sp):
    assert sp.special_ids == {n: i for i, n in enumerate(("pad", "unk", "cls", "sep", "mask", "e1", "e1_end", "e2", "e2_end"))}
    assert sp.vocab_size == 4000 and sp.info()["sha256"] == sha256_file(spm_model)
    assert open(spm_model[: -len(".model")] + ".vocab", encoding="utf-8").readline().startswith("[PAD]")
    for t in news_lines(40) + ["生僻字𠀀 and ASCII [CLS]"]:
        enc = sp.encode(t)
        assert sp.decode(enc.ids) == unicodedata.normalize("NFKC", t).replace(" ", "\u2581") or norm_spm(sp.decode(enc.ids)) == norm_spm(t)
        assert norm_spm(sp.decode(enc.ids)) == norm_spm(t)
        # every token's char span decodes to what the token decodes to (byte-fallback runs: the last one holds the char)
        for i, a, b in zip(enc.ids, enc.starts, enc.ends):
            piece = sp.id_to_token(i)
            if not piece.startswith("<0x"):
                assert norm_spm(t[a:b]) == norm_spm(piece)
        assert not ({sp.special_ids["cls"], sp.special_ids["sep"]} & set(enc.ids.tolist()))  # control symbols


def test_spm_fast_offsets_agree_with_sentencepiece(sp):
    assert sp._lengths is not None  # identity-normalised model: offsets from the ids alone
    for t in all_fixture_texts()[::5] + [EDGE, "a  b\t\n c", ""]:
        e = sp.encode(t)
        m = sp.sp.encode_as_offset_mapping(t)
        assert e.ids.tolist() == m["ids"]
        for (a, b), s0, e0 in zip(m["offsets"], e.starts.tolist(), e.ends.tolist()):
            assert (s0, e0) == (a, b) or a == b  # byte pieces: every piece of a character spans it
        assert sp.decode(e.ids) == t  # identity normalisation: exact round trip


def test_spm_sample_is_deterministic(tmp_path):
    rows = docs_rows(40, 60)
    a = write_docs_dir(str(tmp_path / "a"), rows, n_shards=2)
    b = write_docs_dir(str(tmp_path / "b"), list(reversed(rows)), n_shards=3)
    sa = write_sample(a, 20000, str(tmp_path / "a.txt"))
    sb = write_sample(b, 20000, str(tmp_path / "b.txt"))
    assert 0 < sa["docs"] < 100 and sa == sb
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "b.txt").read_bytes()
    assert all(len(s) <= 50 for s in sentences("句子。" * 100, max_chars=50))


# ---------------------------------------------------------------------------------------------- word starts


@pytest.mark.parametrize("kind", ["wp", "sp"])
def test_word_starts_follow_jieba(kind, wp, sp, seg):
    tok = wp if kind == "wp" else sp
    for t in news_lines(60):
        w = encode_with_words(tok, seg, t)
        assert len(w.word_start) == len(w.enc) and w.word_start[0]
        char_starts = seg.word_starts(t)
        for k in range(len(w.enc)):
            if w.word_start[k]:
                assert char_starts[w.enc.starts[k]]
                assert tok.continuation is None or not tok.continuation[w.enc.ids[k]]
        # every jieba word that some token starts at is marked exactly once
        starts = {int(s) for s, f in zip(w.enc.starts, w.word_start) if f}
        for s in set(np.flatnonzero(char_starts[:-1]).tolist()) & set(w.enc.starts.tolist()):
            if tok.continuation is None or not tok.continuation[w.enc.ids[list(w.enc.starts).index(s)]]:
                assert s in starts
    w = encode_with_words(tok, None, news_lines(1)[0])
    assert w.word_start.sum() >= len(w.enc) * 0.5  # without jieba: (nearly) every token its own word


def test_mention_is_one_word_and_aligned(wp, sp, seg):
    text = "京东方正式发布AM-OLED发展规划"
    for tok in (wp, sp):
        w = encode_with_words(tok, seg, text, [(7, 12)])  # "OLED" is inside the BERT word "am-oled"? no: "-" splits
        a, b = token_span(w.enc, 7, 12)
        assert b > a and w.enc.starts[a] == 7 and w.enc.ends[b - 1] <= 12 and w.word_start[a] and not w.word_start[a + 1 : b].any()
        w = encode_with_words(tok, seg, text, [(0, 4)])  # "京东方正" cut across jieba's words
        a, b = token_span(w.enc, 0, 4)
        assert w.enc.ends[b - 1] == 4 and w.word_start[a] and not w.word_start[a + 1 : b].any() and w.word_start[b]


# ---------------------------------------------------------------------------------------------- packing


def _docs(tok, seg, rows):
    out = []
    for r in rows:
        w = encode_with_words(tok, seg, r["text"])
        out.append(DocTokens(r["id"], r["source_kind"], w.enc.ids, w.word_start))
    return out


@pytest.mark.parametrize("max_len", [16, 64, 200])
def test_packing_lengths_specials_round_trip(wp, seg, max_len):
    docs = _docs(wp, seg, docs_rows(6, 6))
    cls, sep = wp.special_ids["cls"], wp.special_ids["sep"]
    rows = pack_documents(docs, max_len, cls, sep)
    assert len({r["id"] for r in rows}) == len(rows)
    pieces = []
    for r in rows:
        ids, ws = r["input_ids"], r["word_start"]
        assert len(ids) == len(ws) <= max_len and ids[0] == cls and ids[-1] == sep and ws[0]
        assert all(ws[k] for k, i in enumerate(ids) if i in (cls, sep))
        segs, cur = [], []
        for k in range(1, len(ids)):
            if ids[k] == sep:
                segs.append(cur)
                cur = []
            else:
                cur.append(k)
        assert len(segs) == len(r["source_kinds"])
        for s in segs:
            assert s and ws[s[0]] or len(s) == max_len - 2  # a piece starts a word unless a word was longer than a row
            pieces.append([ids[k] for k in s])
    # concatenating the pieces in row order gives back every document's tokens, in order
    flat = [i for p in pieces for i in p]
    assert flat == [int(i) for d in docs for i in d.ids]
    # rows are full: only the last row, or a row closed so as not to split a word, is short
    short = [r for r in rows[:-1] if len(r["input_ids"]) < max_len - 12]
    assert len(short) <= len(rows) // 4 + 1


def test_packing_never_splits_a_word_when_avoidable():
    ws_doc = np.array([True, False, False, True, False, True, False, False], dtype=bool)
    doc = DocTokens("d", "news", np.arange(10, 18, dtype=np.int32), ws_doc)
    rows = pack_documents([doc], 7, 1, 2)  # room 5 tokens: cut at 5 (word start), not at 5 mid-word
    assert [r["input_ids"] for r in rows] == [[1, 10, 11, 12, 13, 14, 2], [1, 15, 16, 17, 2]]
    rows = pack_documents([doc], 6, 1, 2)  # room 4: last word start <= 4 is 3
    assert [r["input_ids"] for r in rows] == [[1, 10, 11, 12, 2], [1, 13, 14, 2], [1, 15, 16, 17, 2]]
    long_word = DocTokens("e", "web", np.arange(20, 30, dtype=np.int32), np.array([True] + [False] * 9))
    rows = pack_documents([long_word], 6, 1, 2)  # one word longer than a row: split it
    assert [len(r["input_ids"]) for r in rows] == [6, 6, 4]
    rows = pack_documents([doc, long_word], 12, 1, 2)  # the long word moves to a fresh row rather than split there
    assert rows[0]["input_ids"][-1] == 2 and rows[0]["source_kinds"] == ["news"] and rows[1]["id"] == "e:0"
    assert pack_documents([doc, long_word], 12, 1, 2) == rows


# ---------------------------------------------------------------------------------------------- knowledge


@pytest.mark.parametrize("kind", ["wp", "sp"])
def test_knowledge_rows_spans_markers_segments(kind, wp, sp, seg):
    tok = wp if kind == "wp" else sp
    norm = norm_bert if kind == "wp" else norm_spm
    sid = tok.special_ids
    seen = set()
    for row in knowledge_rows(60):
        try:
            out = tokenize_knowledge(row, tok, seg, 128)
        except Dropped as exc:
            assert exc.reason == "too_long"
            continue
        seen.add(row["task"])
        ids, tt, ws = out["input_ids"], out["token_type_ids"], out["word_start"]
        assert len(ids) == len(tt) == len(ws) <= 128 and ids[0] == sid["cls"] and ids[-1] == sid["sep"]

        def text_of(span):
            return norm(tok.decode(ids[span["start"] : span["end"]]))

        if row["task"] == "relation":
            e1, e2 = out["e1_pos"], out["e2_pos"]
            assert ids[e1] == sid["e1"] and ids[e2] == sid["e2"]
            assert ids[out["head_span"]["end"]] == sid["e1_end"] and ids[out["tail_span"]["end"]] == sid["e2_end"]
            assert out["head_span"]["start"] == e1 + 1 and out["tail_span"]["start"] == e2 + 1
            assert text_of(out["head_span"]) == norm(row["head"]["name"])
            assert text_of(out["tail_span"]) == norm(row["tail"]["name"])
            assert set(tt) == {0} and out["relations"] == row["relations"]
            body = [i for i in ids[1:-1] if i not in (sid["e1"], sid["e1_end"], sid["e2"], sid["e2_end"])]
            assert norm(tok.decode(body)) in norm(row["text"])
        elif row["task"] == "substitution":
            assert out["mention_labels"] == [1 if m["replacement"] else 0 for m in row["mentions"]]
            for span, m in zip(out["mention_spans"], row["mentions"]):
                assert text_of(span) == norm(row["text"][m["start"] : m["end"]]) and ws[span["start"]]
                assert not any(ws[span["start"] + 1 : span["end"]])
        else:
            t = row["triple"]
            assert text_of(out["triple_head_span"]) == norm(t["head"])
            assert text_of(out["triple_relation_span"]) == norm(t["relation"])
            assert text_of(out["triple_tail_span"]) == norm(t["tail"])
            assert ids[out["triple_tail_span"]["end"]] == sid["sep"]
            b0 = out["triple_tail_span"]["end"] + 1
            assert tt == [0] * b0 + [1] * (len(ids) - b0)
            assert text_of(out["head_span"]) == norm(row["head"]["name"]) and out["head_span"]["start"] >= b0
            assert text_of(out["tail_span"]) == norm(row["tail"]["name"])
            assert ws[out["head_span"]["start"]] and not any(ws[out["head_span"]["start"] + 1 : out["head_span"]["end"]])
    assert seen == {"relation", "substitution", "triple_mask"}


def test_knowledge_window_and_errors(wp, seg):
    row = next(r for r in knowledge_rows(10) if r["task"] == "relation")
    long_row = {**row, "text": "前" * 300 + row["text"] + "后" * 300,
                "head": {**row["head"], "start": row["head"]["start"] + 300, "end": row["head"]["end"] + 300},
                "tail": {**row["tail"], "start": row["tail"]["start"] + 300, "end": row["tail"]["end"] + 300}}
    out = tokenize_knowledge(long_row, wp, seg, 96)
    assert len(out["input_ids"]) <= 96 and wp.decode(out["input_ids"][out["head_span"]["start"] : out["head_span"]["end"]]).replace(" ", "") == norm_bert(row["head"]["name"])
    with pytest.raises(Dropped, match="too_long"):
        tokenize_knowledge(long_row, wp, seg, 12)
    with pytest.raises(BadRow, match="bad_head_span"):
        tokenize_knowledge({**row, "head": {**row["head"], "start": row["head"]["start"] + 1}}, wp, seg, 96)
    with pytest.raises(Dropped, match="overlapping_spans"):
        tokenize_knowledge({**row, "tail": row["head"]}, wp, seg, 96)
    with pytest.raises(BadRow, match="unknown_task"):
        tokenize_knowledge({**row, "task": "qa"}, wp, seg, 96)
