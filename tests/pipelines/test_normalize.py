"""Normalisation: each step on its own, the per-kind defaults, Chinese punctuation, pickling, real fixtures."""

import pickle
import unicodedata
from pathlib import Path

import pytest

from knowmix.errors import UserError
from knowmix.pipelines.normalize import DEFAULT_STEPS, KEEP_FULLWIDTH, STEPS, Normalizer, normalize_text, steps_for

FIXTURES = Path(__file__).resolve().parents[2] / "corpora" / "fixtures"
ALL = {step: True for step in STEPS}


def only(step):
    return {step: True}


def test_steps_and_defaults_cover_every_kind():
    assert STEPS == ("html_entities", "nfkc", "fullwidth", "t2s", "control_chars", "whitespace")
    assert set(DEFAULT_STEPS) == {"web", "encyclopedia", "news", "qa"}
    for steps in DEFAULT_STEPS.values():
        assert set(steps) == set(STEPS)
        assert steps["t2s"] == "auto"  # convert only what is traditional


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
    with pytest.raises(UserError, match="""'t2s' must be true, false or "auto", got 'yes'"""):
        steps_for("web", {"t2s": "yes"})
    with pytest.raises(UserError, match="'nfkc' must be true or false"):
        steps_for("web", {"nfkc": "auto"})
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


# ---------------------------------------------------------------------------------- t2s only where traditional

import json  # noqa: E402

import opencc  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from knowmix.corpora.document import Document  # noqa: E402
from knowmix.corpora.readers import read_path  # noqa: E402
from knowmix.corpora.sources import SourceSpec  # noqa: E402
from knowmix.pipelines.normalize import detect_script, load_keep_words, script_counts  # noqa: E402
from knowmix.pipelines.script_chars import KEPT_IN_SIMPLIFIED, SIMPLIFIED_ONLY, TRADITIONAL_ONLY  # noqa: E402

AUTO = DEFAULT_STEPS["web"]
FORCED = {**AUTO, "t2s": True}  # the old behaviour: t2s on every document
NO_T2S = {**AUTO, "t2s": False}  # the documented steps only (entities, NFKC, width, control characters, spaces)

# Simplified text whose proper uses of 乾 昇 噁 藉 榘 塚 頫 OpenCC's t2s rewrites (or could): names, terms.
SIMPLIFIED_PROPER_USES = [
    "作家萧乾原名萧秉乾，1910年生于北京。",  # OpenCC: 萧干, 萧秉干
    "财政部部长王丙乾在会上作了报告。",  # 王丙干
    "昇辉电子股份有限公司今日发布公告。",  # 升辉电子
    "乾康公司与乾运高科签订了合作协议。",  # 干康公司, 干运高科
    "垃圾焚烧会产生二噁英等有害物质。",  # 二𫫇英
    "宴会散后，桌上杯盘狼藉，他以读书为慰藉。",  # 藉 in 狼藉, 慰藉
    "韩复榘曾任山东省政府主席。",  # 韩复矩
    "日本漫画家手塚治虫创作了《铁臂阿童木》，他生于大阪府。",  # 手冢治虫
    "赵孟頫的书法被称为赵体。",  # 赵孟𫖯
    "乾隆皇帝六下江南时，天下昇平。",
]


def drcd_articles() -> list[str]:
    data = json.loads((FIXTURES / "encyclopedia_drcd_dev_first40articles.json").read_text(encoding="utf-8"))
    return ["\n".join(p["context"] for p in article["paragraphs"]) for article in data["data"]]


def test_script_tables_agree_with_opencc():
    t2s, s2t = opencc.OpenCC("t2s"), opencc.OpenCC("s2t")
    assert len(TRADITIONAL_ONLY) > 3000 and len(SIMPLIFIED_ONLY) > 3000
    assert not set(TRADITIONAL_ONLY) & set(SIMPLIFIED_ONLY)
    assert all(t2s.convert(c) != c for c in TRADITIONAL_ONLY)  # OpenCC always rewrites them
    assert all(s2t.convert(c) != c for c in SIMPLIFIED_ONLY)
    for c in "乾昇噁藉榘塚頫" + KEPT_IN_SIMPLIFIED:  # used in simplified names and terms: evidence for neither
        assert c not in TRADITIONAL_ONLY and c not in SIMPLIFIED_ONLY, c
    assert set("國臺後發們這") <= set(TRADITIONAL_ONLY)  # hand-picked
    assert set("国们这发") <= set(SIMPLIFIED_ONLY)
    assert not set("干台后里面") & set(SIMPLIFIED_ONLY)  # also the traditional form of themselves


def test_script_counts_by_hand():
    assert script_counts("我們的國家") == (2, 0)  # 們 國
    assert script_counts("我们的国家") == (0, 2)  # 们 国
    assert script_counts("乾隆昇平，二噁英") == (0, 0)
    assert script_counts("hello") == (0, 0) and detect_script("hello") == "none"
    assert script_counts("𫫇") == (0, 1)  # outside the BMP (the simplified form of 噁)
    assert script_counts("a\ud800臺") == (1, 0)  # a lone surrogate does not break counting
    # nor conversion (OpenCC takes UTF-8 only: it raised UnicodeEncodeError; JSON input can hold them)
    assert normalize_text("國\ud800家", only("t2s")) == "国\ud800家"


@pytest.mark.parametrize("text", SIMPLIFIED_PROPER_USES)
def test_simplified_names_and_terms_pass_through_unchanged(text):
    norm = Normalizer(AUTO)
    result = norm.normalize(text)
    assert result == (text, "simplified", False)
    assert norm(text) == text


def test_the_old_always_t2s_path_rewrote_those_names():
    # the test above can fail: what OpenCC does to them when forced
    forced = Normalizer(FORCED)
    changed = [text for text in SIMPLIFIED_PROPER_USES if forced(text) != text]
    assert [t for t in SIMPLIFIED_PROPER_USES if t not in changed] == ["宴会散后，桌上杯盘狼藉，他以读书为慰藉。"]
    assert forced("作家萧乾原名萧秉乾") == "作家萧干原名萧秉干"
    assert forced("二噁英") == "二𫫇英"


def test_drcd_is_fully_converted():
    norm = Normalizer(DEFAULT_STEPS["encyclopedia"])
    reference = opencc.OpenCC("t2s")
    articles = drcd_articles()
    assert len(articles) == 40
    for text in articles:
        result = norm.normalize(text)
        assert result.script == "traditional" and result.converted
        assert not set(result.text) & set(TRADITIONAL_ONLY)
        # exactly what OpenCC makes of the text after the other steps
        assert result.text == Normalizer(NO_T2S)(reference.convert(Normalizer(NO_T2S)(text)))
    assert "欧洲" in norm(articles[0]) and "歐洲" in articles[0]


SIMPLIFIED_FIXTURES = [
    SourceSpec("encyclopedia", "squad", ("encyclopedia_cmrc2018_trial.json",)),
    SourceSpec("news", "txt", ("news_peoples_daily_199801_first400.txt",)),
    SourceSpec("news", "txt", ("finre_valid.txt",)),
    SourceSpec("qa", "csv", ("qa_medical_toyhom_300.gbk.csv",), text_fields=("title", "ask", "answer")),
    SourceSpec("web", "html", ("web_zhwikipedia_page.html",)),
    SourceSpec("web", "txt", ("kg_text_cooccurrence_wiki.tsv",)),
]


def fixture_docs(spec: SourceSpec) -> list[str]:
    path = str(FIXTURES / spec.paths[0])
    return [r.text for r in read_path(spec, path) if isinstance(r, Document)]


def test_simplified_fixture_corpora_change_only_by_the_documented_steps():
    forced_changes = 0
    for spec in SIMPLIFIED_FIXTURES:
        norm, documented = Normalizer(DEFAULT_STEPS[spec.kind]), Normalizer({**DEFAULT_STEPS[spec.kind], "t2s": False})
        texts = fixture_docs(spec)
        assert len(texts) >= 1, spec
        for text in texts:
            result = norm.normalize(text)
            assert result.text == documented(text), (spec.paths[0], text[:80])
            assert result.script in ("simplified", "none") and not result.converted
        forced_changes += sum(Normalizer(FORCED)(t) != documented(t) for t in texts)
    # the old path did rewrite some of them (舖 鐩 霑 in CMRC, 覆 in the medical Q&A)
    assert forced_changes >= 5


def mixed(n_trad: int, n_simp: int) -> str:
    """n_trad copies of a traditional sentence, n_simp of its simplified form: 2 script characters each."""
    return "我們的國家。" * n_trad + "我们的国家。" * n_simp


def test_a_mixed_document_follows_the_threshold():
    text = mixed(3, 2)  # share 6 / 10
    assert Normalizer(AUTO).normalize(text) == ("我们的国家。" * 5, "mixed", True)  # default threshold 0.5
    assert Normalizer({**AUTO, "t2s_threshold": 0.7}).normalize(text) == (text, "mixed", False)
    text = mixed(2, 3)  # share 4 / 10
    assert Normalizer(AUTO).normalize(text) == (text, "mixed", False)
    assert Normalizer({**AUTO, "t2s_threshold": 0.3})(text) == "我们的国家。" * 5
    assert Normalizer(NO_T2S).normalize(mixed(5, 0)) == (mixed(5, 0), "traditional", False)
    assert Normalizer(FORCED).normalize(mixed(0, 5)) == (mixed(0, 5), "simplified", True)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
def test_script_and_conversion_follow_the_share(n_trad, n_simp, threshold):
    text = mixed(n_trad, n_simp)
    share = n_trad / (n_trad + n_simp) if n_trad + n_simp else 0.0
    if n_trad + n_simp == 0:
        expected_script = "none"
    elif share <= 0.1:
        expected_script = "simplified"
    elif share >= 0.9:
        expected_script = "traditional"
    else:
        expected_script = "mixed"
    convert = expected_script == "traditional" or (expected_script == "mixed" and share >= threshold)
    result = Normalizer({**AUTO, "t2s_threshold": threshold}).normalize(text)
    assert result == (mixed(0, n_trad + n_simp) if convert else text, expected_script, convert)


def test_keep_words_survive_conversion(tmp_path):
    text = "乾康公司的業務發展很快，乾燥的天氣。"
    assert Normalizer(AUTO)(text) == "干康公司的业务发展很快，干燥的天气。"  # what OpenCC does to the name
    words = tmp_path / "words.txt"
    words.write_text("# company names\n乾康公司\n\n乾運高科\n", encoding="utf-8")
    assert load_keep_words(str(words)) == ("乾康公司", "乾運高科")
    norm = Normalizer({**AUTO, "keep_words": load_keep_words(str(words))})
    assert norm(text) == "乾康公司的业务发展很快，干燥的天气。"
    assert norm("乾運高科與乾康公司") == "乾運高科与乾康公司"
    assert norm("ＡＢ乾康公司") == "AB乾康公司"  # matched after NFKC, like the text
    clone = pickle.loads(pickle.dumps(norm))
    assert clone(text) == norm(text) and clone.keep_words == norm.keep_words
    simplified = "乾康公司今年的业务"
    assert norm(simplified) == simplified  # not converted at all
    with pytest.raises(UserError, match="keep_words file not found"):
        load_keep_words(str(tmp_path / "missing.txt"))


def test_title_follows_its_document():
    norm = Normalizer(AUTO)
    assert norm("乾康公司", t2s=True) == "干康公司" and norm("乾康公司") == "乾康公司"


def write_job(tmp_path, normalize_toml: str) -> str:
    job = tmp_path / "job.toml"
    job.write_text(
        f"""[[sources]]
kind = "web"
format = "txt"
paths = ["in.txt"]
[output]
dir = "out"
{normalize_toml}
""",
        encoding="utf-8",
    )
    return str(job)


def test_clean_config_normalize_options(tmp_path):
    from knowmix.pipelines.clean_config import load_config
    from knowmix.pipelines.clean_config import steps_for as config_steps_for

    (tmp_path / "names.txt").write_text("乾康公司\n", encoding="utf-8")
    job = write_job(tmp_path, '[normalize]\nkeep_words = "names.txt"\nt2s_threshold = 0.7\n[normalize.web]\nt2s = false\n')
    config = load_config(job)
    assert config.keep_words == str(tmp_path / "names.txt")  # relative to the job file
    assert config_steps_for(config, "web") == {**DEFAULT_STEPS["web"], "t2s": False, "keep_words": ("乾康公司",), "t2s_threshold": 0.7}
    assert config_steps_for(config, "news") == {**DEFAULT_STEPS["news"], "keep_words": ("乾康公司",), "t2s_threshold": 0.7}
    assert config.to_options()["normalize"] == {"web": {"t2s": False}, "keep_words": config.keep_words, "keep_kg": [],
                                                "t2s_threshold": 0.7}
    config = load_config(write_job(tmp_path, '[normalize.qa]\nt2s = "auto"\n'))
    assert config_steps_for(config, "qa") == DEFAULT_STEPS["qa"]  # no options: the steps alone


@pytest.mark.parametrize(
    "normalize_toml, message",
    [
        ('[normalize]\nkeep_words = "nowhere.txt"', "keep_words file not found: .*nowhere.txt"),
        ("[normalize]\nkeep_words = 3", "keep_words must be a file path"),
        ("[normalize]\nkeep_kg = [3]", "keep_kg must be a list of KG file paths"),
        ("[normalize]\nt2s_threshold = 1.5", "t2s_threshold must be a number between 0 and 1"),
        ('[normalize.web]\nt2s = "sometimes"', """'t2s' must be true, false or "auto", got 'sometimes'"""),
        ("[normalize]\nkeep_word = 1", r"unknown key \[normalize\] 'keep_word' \(expected keep_words, keep_kg, t2s_threshold"),
        ("[normalize.forum]\nt2s = true", r"\[normalize.forum\] is not a source kind"),
    ],
)
def test_clean_config_normalize_errors_are_one_line(tmp_path, capsys, normalize_toml, message):
    from knowmix.cli import main as knowmix

    assert knowmix(["clean", "--config", write_job(tmp_path, normalize_toml)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "job.toml" in err[0]
    import re

    assert re.search(message, err[0]), err[0]


def test_clean_job_writes_the_script_column_and_stats_show_it(tmp_path, capsys):
    """End to end: DRCD (traditional) and People's Daily (simplified) through ``knowmix clean``, then stats."""
    import pyarrow as pa

    from knowmix.cli import main as knowmix
    from knowmix.manifest import open_shard_dir

    out = tmp_path / "docs"
    drcd = FIXTURES / "encyclopedia_drcd_dev_first40articles.json"
    news = FIXTURES / "news_peoples_daily_199801_first400.txt"
    args = ["clean", "--source", f"encyclopedia:squad={drcd}", "--source", f"news:txt={news}", "--output", str(out)]
    assert knowmix(args) == 0
    table = open_shard_dir(str(out), kind="docs").read_all()
    rows = table.to_pylist()
    by_kind = {kind: [r for r in rows if r["source_kind"] == kind] for kind in ("encyclopedia", "news")}
    assert len(by_kind["encyclopedia"]) >= 35 and len(by_kind["news"]) >= 100
    for row in by_kind["encyclopedia"]:
        assert row["script"] == "traditional" and not set(row["text"] + (row["title"] or "")) & set(TRADITIONAL_ONLY)
    raw_news = {Normalizer(NO_T2S)(line) for line in news.read_text(encoding="utf-8").splitlines()}
    for row in by_kind["news"]:
        assert row["script"] in ("simplified", "none") and row["text"] in raw_news
    assert table.schema.field("script").type == pa.string()

    assert knowmix(["stats", str(out), "--json", "--html", str(tmp_path / "report.html")]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = {"all": dict.fromkeys(("simplified", "traditional", "mixed", "none"), 0)}
    for row in rows:  # counted here, from the shard rows
        for group in ("all", row["source_kind"]):
            expected.setdefault(group, dict.fromkeys(("simplified", "traditional", "mixed", "none"), 0))[row["script"]] += 1
    assert report["script"] == expected
    assert report["script"]["encyclopedia"]["traditional"] == len(by_kind["encyclopedia"])
    assert "documents by script" in (tmp_path / "report.html").read_text(encoding="utf-8")
    assert knowmix(["stats", str(out)]) == 0
    assert "traditional" in capsys.readouterr().out


SCRIPT_ALPHABET = st.sampled_from(list("我們的國家们国这這乾昇噁榘塚，。 ａＡ　\n&") + ["𫫇", "𠀀", "\u200b", "\ud800"])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(SCRIPT_ALPHABET, max_size=30).map(lambda t: t.replace("&", "&amp;")), max_size=12), st.booleans())
def test_batched_detection_equals_one_by_one(texts, with_ascii):
    from knowmix.pipelines.normalize import normalize_rows, script_counts_many

    if with_ascii:
        texts = texts + ["plain ascii"]
    assert script_counts_many(texts) == [script_counts(t) for t in texts]
    norm = Normalizer(AUTO)
    assert norm.normalize_many(texts) == [norm.normalize(t) for t in texts]
    rows = [{"source_kind": ("web", "news")[i % 2], "text": t} for i, t in enumerate(texts)]
    normalizers = {"web": norm, "news": Normalizer(FORCED)}
    assert normalize_rows(normalizers, rows) == [normalizers[r["source_kind"]].normalize(r["text"]) for r in rows]


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFFFF, blacklist_categories=("Cs",)), max_size=40))
def test_fullwidth_is_a_no_op_after_nfkc(text):
    # why Normalizer skips the full-width scan when nfkc ran
    after_nfkc = normalize_text(text, only("nfkc"))
    assert normalize_text(after_nfkc, only("fullwidth")) == after_nfkc


def test_kg_names_are_left_as_written_by_the_clean_job(tmp_path):
    """``[normalize] keep_kg``: the entity names and aliases of KG files are kept as written inside a converted
    (traditional) document, through the real clean job; without it OpenCC rewrites the name (乾 -> 干)."""
    import json

    from knowmix.cli import main as knowmix
    from knowmix.manifest import open_shard_dir

    text = "乾康公司與乾運高科的業務發展很快，兩家公司都在臺灣設立了新的辦公室，員工人數比去年增加了一倍。"
    src = tmp_path / "news.jsonl"
    src.write_text(json.dumps({"id": "1", "text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    kg = tmp_path / "kg.tsv"
    kg.write_text("head\trelation\ttail\n乾康公司\t合作\t乾運高科\n", encoding="utf-8")

    def cleaned(extra: str) -> str:
        out = tmp_path / f"out{len(extra)}"
        job = tmp_path / "job.toml"
        job.write_text(f'[[sources]]\nkind = "news"\npaths = ["news.jsonl"]\n\n[output]\ndir = "{out.name}"\n\n'
                       f"[normalize]\n{extra}\n[rules.news]\nmin_chars = 10\n", encoding="utf-8")
        assert knowmix(["clean", "--config", str(job)]) == 0
        (row,) = open_shard_dir(str(out)).read_all().to_pylist()
        assert row["script"] == "traditional"
        return row["text"]

    plain = cleaned("")
    assert "乾康公司" not in plain and "干康公司" in plain  # what t2s alone does to the name
    kept = cleaned('keep_kg = ["kg.tsv"]')
    assert "乾康公司" in kept and "乾運高科" in kept  # left as the KG writes them
    assert "臺灣" not in kept and "台湾" in kept  # the rest of the document converted
