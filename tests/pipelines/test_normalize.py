"""Normalisation: each step on its own, the per-kind defaults, Chinese punctuation, pickling, real fixtures."""

import pickle
import unicodedata
from pathlib import Path

import pytest

from knowmix.errors import UserError
from pipelines.normalize import DEFAULT_STEPS, KEEP_FULLWIDTH, STEPS, Normalizer, normalize_text, steps_for

FIXTURES = Path(__file__).resolve().parents[2] / "corpora" / "fixtures"
ALL = {step: True for step in STEPS}


def only(step):
    return {step: True}


def test_steps_and_defaults_cover_every_kind():
    assert STEPS == ("html_entities", "nfkc", "fullwidth", "t2s", "control_chars", "whitespace")
    assert set(DEFAULT_STEPS) == {"web", "encyclopedia", "news", "qa"}
    for steps in DEFAULT_STEPS.values():
        assert set(steps) == set(STEPS)


def test_html_entities():
    assert normalize_text("A&amp;B &lt;p&gt; &#x4e2d;&#25991; &quot;x&quot;", only("html_entities")) == 'A&B <p> 中文 "x"'
    assert normalize_text("A&amp;B", {"html_entities": False}) == "A&amp;B"


def test_nfkc_maps_compatibility_forms_but_keeps_chinese_punctuation():
    text = "ＡＢＣ１２３ ①　﨑，你好！真的？（是）：对；好……"
    out = normalize_text(text, only("nfkc"))
    assert out == "ABC123 1 﨑，你好！真的？（是）：对；好……".replace("﨑", unicodedata.normalize("NFKC", "﨑"))
    for ch in "，。、：；！？（）“”‘’《》【】「」…—·":
        assert ch in normalize_text(f"前{ch}后", only("nfkc")), ch
    # plain NFKC would have turned them into ASCII: the exception is deliberate
    assert unicodedata.normalize("NFKC", KEEP_FULLWIDTH) == "!,:;?()..."


def test_nfkc_leaves_ascii_and_drops_placeholder_noncharacters():
    assert normalize_text("x, y! (z)...", only("nfkc")) == "x, y! (z)..."
    assert normalize_text("a\ufdd0，b", only("nfkc")) == "a，b"


def test_fullwidth_only_maps_the_ascii_block():
    out = normalize_text("ＡＢＣ１２３＃％　，！？（）①", only("fullwidth"))
    assert out == "ABC123#% ，！？（）①"  # ① is not full-width ASCII: left for nfkc


def test_t2s():
    assert normalize_text("臺灣的乾隆皇帝說話，歷史與語言", only("t2s")) == "台湾的乾隆皇帝说话，历史与语言"
    assert normalize_text("plain ascii", only("t2s")) == "plain ascii"


def test_control_and_zero_width_characters():
    text = "a\u200bb\u200dc\ufeffd\x07e\x1bf\u00adg\u202eh\u2060i\tj\nk\r\nl\rm\x85n"
    assert normalize_text(text, only("control_chars")) == "abcdefghi\tj\nk\nl\nmn"


def test_whitespace():
    text = "  第一段  第一行。  \r\n第二行。\t\t\n\n\n\n\u3000\u3000第二段。 \u2028第三行。\u2029末段。  "
    assert normalize_text(text, only("whitespace")) == "第一段 第一行。\n第二行。\n\n\u3000\u3000第二段。\n第三行。\n\n末段。".replace(
        "\u3000\u3000", ""
    )
    assert normalize_text("a\n\n\n\n\nb", only("whitespace")) == "a\n\nb"
    assert normalize_text("a \n \n \n b", only("whitespace")) == "a\n\nb"


def test_all_steps_together():
    raw = "　　臺灣&nbsp;ＡＩ研究，２０２３年！\u200b  \r\n\r\n\r\n下一段：（完）"
    assert normalize_text(raw, ALL) == "台湾 AI研究，2023年！\n\n下一段：（完）"
    assert Normalizer(DEFAULT_STEPS["web"])(raw) == normalize_text(raw, ALL)


def test_steps_off_is_identity():
    raw = "　臺灣&amp;ＡＩ\u200b\r\n"
    assert normalize_text(raw, {step: False for step in STEPS}) == raw
    assert normalize_text(raw, {}) == raw


def test_unknown_step_and_bad_value_are_user_errors():
    with pytest.raises(UserError, match="job.toml.*'nfkd'"):
        steps_for("web", {"nfkd": True}, where="job.toml [normalize.web]")
    with pytest.raises(UserError, match="'t2s' must be true or false"):
        steps_for("web", {"t2s": "yes"})
    with pytest.raises(UserError, match="unknown source kind"):
        steps_for("forum")
    assert steps_for("news", {"t2s": False}) == {**DEFAULT_STEPS["news"], "t2s": False}


def test_normalizer_pickles_without_the_converter():
    norm = Normalizer(ALL)
    assert norm("臺灣") == "台湾"  # creates the OpenCC converter
    assert norm._converter is not None
    data = pickle.dumps(norm)
    assert b"opencc" not in data.lower()
    clone = pickle.loads(data)
    assert clone._converter is None and clone("臺灣") == "台湾"


def test_idempotent_on_fixture_texts():
    import csv
    import io
    import json

    texts = (FIXTURES / "news_peoples_daily_199801_first400.txt").read_text(encoding="utf-8").splitlines()[:50]
    texts += [d["context_text"] for d in json.loads((FIXTURES / "encyclopedia_cmrc2018_trial.json").read_text())[:30]]
    drcd = json.loads((FIXTURES / "encyclopedia_drcd_dev_first40articles.json").read_text())
    texts += [p["context"] for p in drcd["data"][0]["paragraphs"]]
    raw = (FIXTURES / "qa_medical_toyhom_300.gbk.csv").read_bytes().decode("gb18030")
    texts += ["\n".join(r.values()) for r in list(csv.DictReader(io.StringIO(raw)))[:30]]
    norm = Normalizer(ALL)
    for text in texts:
        once = norm(text)
        assert norm(once) == once
        assert "，" in once or "," not in text  # Chinese commas survive
    # the traditional-script DRCD paragraph becomes simplified
    assert "欧洲" in norm(drcd["data"][0]["paragraphs"][0]["context"])
