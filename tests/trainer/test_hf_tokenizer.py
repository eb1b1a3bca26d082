"""The exported Hugging Face tokenizer gives knowmix's ids on every fixture text (SentencePiece unigram and BPE,
WordPiece), and a `knowmix export` folder works with AutoTokenizer + AutoModelForMaskedLM + pipeline("fill-mask").

Before tokenizer.json existed, AutoTokenizer on an spm export built an empty 5-token BertTokenizer: every
character became [UNK] and fill-mask returned empty strings."""

from __future__ import annotations

import os
import shutil

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from knowmix.corpora.document import Document  # noqa: E402
from knowmix.corpora.readers import read_path  # noqa: E402
from knowmix.corpora.sources import SourceSpec  # noqa: E402
from knowmix.manifest import write_shard_dir  # noqa: E402
from knowmix.pipelines.spm_train import sentences, train  # noqa: E402
from knowmix.pipelines.spm_tokenizer import SpmTokenizer  # noqa: E402
from knowmix.pipelines.wordpiece import WordPieceTokenizer  # noqa: E402
from tests.pipelines.helpers_tokenize import FIXTURES, all_fixture_texts, write_bert_vocab  # noqa: E402
from knowmix.trainer.hf import write_tokenizer  # noqa: E402

EDGE_TEXTS = [
    "Ａ１，  a\u3000b ﬁ\t中\n", "😀 emoji 𠀀 and 龘", " leading space", "two  spaces", "12345 abc DEF Ünïcödé",
    "北京是中国的首都。", "E=mc² ½ № ①", "\x00nul\ufffd", "",
]


def fixture_texts() -> list[str]:
    """Every text of the fixture corpora: each source read as `knowmix clean` reads it, the FinRE sentences and
    entity names, and the KG co-occurrence sentences and triple names."""
    texts = list(all_fixture_texts())
    sources = [
        (SourceSpec(kind="news", format=None, paths=()), "news_peoples_daily_199801_first400.txt"),
        (SourceSpec(kind="encyclopedia", format=None, paths=()), "encyclopedia_cmrc2018_trial.json"),
        (SourceSpec(kind="encyclopedia", format=None, paths=()), "encyclopedia_drcd_dev_first40articles.json"),
        (SourceSpec(kind="qa", format=None, paths=()), "qa_medical_toyhom_300.gbk.csv"),
        (SourceSpec(kind="web", format=None, paths=()), "web_zhwikipedia_page.html"),
    ]
    for spec, name in sources:
        docs = [r for r in read_path(spec, os.path.join(FIXTURES, name)) if isinstance(r, Document)]
        assert docs, name
        texts += [d.text for d in docs] + [d.title for d in docs if d.title]
    for name in ("kg_text_cooccurrence_wiki.tsv", "world_triples.tsv", "admin_triples_county_up.tsv"):
        with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
            for line in fh:
                texts += [f for f in line.rstrip("\n").split("\t") if f]
    return texts + EDGE_TEXTS


@pytest.fixture(scope="module")
def texts():
    return fixture_texts()


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory, texts):
    """SentencePiece unigram and BPE models trained here (character coverage < 1, so byte fallback is used) and
    a BERT-Chinese-like vocab.txt."""
    root = tmp_path_factory.mktemp("tok")
    sample = root / "sample.txt"
    with open(sample, "w", encoding="utf-8") as fh:
        for t in all_fixture_texts():
            for s in sentences(t):
                fh.write(s + "\n")
    files = {}
    for model_type in ("unigram", "bpe"):
        train(str(sample), str(root / model_type), 3000, model_type, character_coverage=0.98, num_threads=1)
        files[model_type] = str(root / f"{model_type}.model")
    files["wordpiece"] = write_bert_vocab(str(root / "wp" / "vocab.txt"), all_fixture_texts()[:300])
    return files


def knowmix_tokenizer(kind: str, path: str, lowercase: bool):
    return WordPieceTokenizer(path, lowercase) if kind == "wordpiece" else SpmTokenizer(path, lowercase)


def export_tokenizer(tok, out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    return write_tokenizer(out_dir, tok.info(), tok.path, 512)


@pytest.mark.parametrize("lowercase", [False, True])
@pytest.mark.parametrize("kind", ["unigram", "bpe", "wordpiece"])
def test_hf_ids_equal_knowmix_on_every_fixture_text(tokenizer_files, texts, tmp_path, kind, lowercase):
    ours = knowmix_tokenizer(kind, tokenizer_files[kind], lowercase)
    written = export_tokenizer(ours, str(tmp_path / "hf"))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert name in written and (tmp_path / "hf" / name).is_file()
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert hf.is_fast and len(hf) == ours.vocab_size
    sp = ours.special_ids
    assert (hf.pad_token_id, hf.unk_token_id, hf.cls_token_id, hf.sep_token_id, hf.mask_token_id) == tuple(
        sp[k] for k in ("pad", "unk", "cls", "sep", "mask"))
    markers = [ours.id_to_token(sp[k]) for k in ("e1", "e1_end", "e2", "e2_end")]
    assert hf.convert_tokens_to_ids(markers) == [sp[k] for k in ("e1", "e1_end", "e2", "e2_end")]
    got = hf(texts, add_special_tokens=True, verbose=False)["input_ids"]
    mismatched = [t for t, ids in zip(texts, got) if ids != [sp["cls"], *ours.encode(t).ids.tolist(), sp["sep"]]]
    assert mismatched == [], f"{len(mismatched)}/{len(texts)} differ, e.g. {mismatched[0][:80]!r}"
    assert len(texts) > 3000
    # pairs: [CLS] A [SEP] B [SEP] with token types 0 / 1 (the triple_mask layout)
    pair = hf("中国", "首都北京")
    a, b = ours.encode("中国").ids.tolist(), ours.encode("首都北京").ids.tolist()
    assert pair["input_ids"] == [sp["cls"], *a, sp["sep"], *b, sp["sep"]]
    assert pair["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    # the text's characters survive: not the all-[UNK] tokenizer of the old spm export
    assert hf.decode(hf("北京是中国的首都")["input_ids"], skip_special_tokens=True).replace(" ", "") == "北京是中国的首都"


def _spm_shards(root: str, model_path: str) -> tuple[str, str]:
    """Pretrain and knowledge_tokens shards whose manifests name the SentencePiece model (the ids are the
    trainer fixtures' small ids, all valid in a 3000-piece model)."""
    from tests.trainer.helpers import RELATIONS, knowledge_table, pretrain_table

    info = SpmTokenizer(model_path).info()
    pre, ktok = os.path.join(root, "pretrain"), os.path.join(root, "ktok")
    for d, kind, table in ((pre, "pretrain", pretrain_table(32, 32)), (ktok, "knowledge_tokens", knowledge_table(24))):
        os.makedirs(d, exist_ok=True)
        shutil.copyfile(model_path, os.path.join(d, info["file"]))
        write_shard_dir(d, kind, [table], extra={"tokenizer": info})
    import json

    with open(os.path.join(ktok, "relations.json"), "w", encoding="utf-8") as fh:
        json.dump(RELATIONS, fh, ensure_ascii=False)
    return pre, ktok


@pytest.mark.parametrize("kind", ["unigram", "bpe", "wordpiece"])
def test_knowmix_export_works_with_fill_mask(tokenizer_files, tmp_path, kind):
    """train -> export -> AutoTokenizer + AutoModelForMaskedLM + pipeline("fill-mask"). WordPiece runs use the
    trainer fixtures' small vocabulary, so the text is made of its characters."""
    from tests.trainer.helpers import VOCAB, make_shards, tiny_overrides
    from knowmix.trainer.cli import export_main, train_main

    text = "我们是中国的人"
    if kind == "wordpiece":  # one token per character, at its line in the vocabulary
        pre, ktok = make_shards(str(tmp_path / "d"), n_pretrain=32, n_knowledge=24, n_shards=1)
        expected = [VOCAB.index(c) for c in text]
    else:
        pre, ktok = _spm_shards(str(tmp_path / "d"), tokenizer_files[kind])
        expected = SpmTokenizer(tokenizer_files[kind]).encode(text).ids.tolist()
        assert 1 not in expected  # no [UNK]
    run = tmp_path / "run"
    assert train_main(["", *tiny_overrides(pre, ktok, str(run), **{"train.max_steps": 2})]) == 0
    hf_dir = tmp_path / "hf"
    assert export_main([str(run), "--hf", str(hf_dir)]) == 0
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
        assert (hf_dir / name).is_file(), name
    tok = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    model = transformers.AutoModelForMaskedLM.from_pretrained(str(hf_dir))
    assert tok(text)["input_ids"] == [tok.cls_token_id, *expected, tok.sep_token_id]
    fill = transformers.pipeline("fill-mask", model=model, tokenizer=tok, top_k=5)
    out = fill(f"我们是中国{tok.mask_token}的人")
    assert len(out) == 5
    for r in out:
        # the unmasked context comes back (an all-[UNK] tokenizer decodes it to nothing)
        assert r["sequence"].replace(" ", "").startswith("我们是中国"), r
        if r["token"] not in tok.all_special_ids:
            assert r["token_str"] != "", r
