"""Quality rules: configuration, each rule with a kept and a dropped example, and a table of real
kept/dropped texts (fixture corpora plus realistic junk) under the right kind's defaults."""

import csv
import io
import json
import random
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from knowmix.errors import UserError
from knowmix.pipelines import quality as q
from knowmix.pipelines.langid import LanguageIdentifier
from knowmix.pipelines.normalize import DEFAULT_STEPS, Normalizer
from knowmix.pipelines.quality import (
    DEFAULT_RULES,
    REASONS,
    Doc,
    check_language,
    check_quality,
    quality_signals,
    rules_for,
)

FIXTURES = Path(__file__).resolve().parents[2] / "corpora" / "fixtures"
WEB = DEFAULT_RULES["web"]

# a real paragraph (People's Daily, 1 Jan 1998; three lines), kept by the strict web defaults
NEWS_LINES = (FIXTURES / "news_peoples_daily_199801_first400.txt").read_text(encoding="utf-8").splitlines()
GOOD = "\n".join(NEWS_LINES[6:9])


# ----------------------------------------------------------------------------------------- configuration


def test_defaults_per_kind():
    assert set(DEFAULT_RULES) == {"web", "encyclopedia", "news", "qa"}
    keys = set(WEB)
    for kind, rules in DEFAULT_RULES.items():
        assert set(rules) == keys, kind
        assert rules["langs"] == ["zh"]
    # encyclopedia lenient, web strict, qa allows short answers
    enc, news, qa = DEFAULT_RULES["encyclopedia"], DEFAULT_RULES["news"], DEFAULT_RULES["qa"]
    for key in ("min_chars", "min_cjk_ratio", "min_terminal_punct_lines", "min_lang_score"):
        assert enc[key] <= news[key] <= WEB[key], key
    for key in ("max_top_2gram", "max_dup_5gram", "max_dup_line_frac", "max_symbol_ratio", "max_digit_ratio"):
        assert enc[key] >= news[key] >= WEB[key], key
    assert qa["min_chars"] < news["min_chars"] < WEB["min_chars"]


def test_rules_for_overrides_and_errors():
    rules = rules_for("web", {"min_chars": 100, "max_top_2gram": 0.3, "langs": ["zh", "en"]})
    assert rules["min_chars"] == 100 and rules["max_top_2gram"] == 0.3 and rules["langs"] == ["zh", "en"]
    assert DEFAULT_RULES["web"]["min_chars"] == 200  # defaults untouched
    with pytest.raises(UserError, match=r"job\.toml \[rules\.web\].*'min_char'"):
        rules_for("web", {"min_char": 100}, where="job.toml [rules.web]")
    with pytest.raises(UserError, match="'min_chars' must be an integer"):
        rules_for("web", {"min_chars": 1.5})
    with pytest.raises(UserError, match="'max_top_2gram' must be a number"):
        rules_for("web", {"max_top_2gram": "high"})
    with pytest.raises(UserError, match="'langs' must be a list"):
        rules_for("web", {"langs": "zh"})
    with pytest.raises(UserError, match="unknown source kind 'forum'"):
        rules_for("forum")


def test_check_language():
    assert check_language("zh", 0.99, WEB) is None
    assert check_language("zh", 0.3, WEB) == "lang"
    assert check_language("en", 0.99, WEB) == "lang"
    assert check_language("zh", 0.4, DEFAULT_RULES["encyclopedia"]) is None
    assert check_language("en", 0.99, rules_for("web", {"langs": ["zh", "en"]})) is None


def test_reasons_and_signals():
    assert len(REASONS) == len(set(REASONS)) == 15
    assert "lang" not in REASONS  # check_language's reason, kept apart
    signals = quality_signals(GOOD)
    assert {"cjk_ratio", "top_2gram", "dup_10gram", "entropy", "flagged_ratio", "repetition"} <= set(signals)
    assert all(isinstance(v, float) for v in signals.values())
    assert check_quality(GOOD, WEB) is None
    assert check_quality("", WEB) == "too_short"


# ------------------------------------------------------------------------------- each rule, keep and drop

SEO = (
    "澳门赌场官方网站，百家乐在线开户送彩金，时时彩注册送88元，真人娱乐城24小时在线。" * 4
    + "欢迎来到最好的网上赌场，博彩平台信誉第一，老虎机、六合彩、赌球应有尽有，快来注册领取彩金吧！"
)
HAHA = "这个视频太好笑了" + "哈" * 120 + "，我笑死了，推荐大家都去看看这个视频，真的非常好笑，转发给朋友们一起看看吧。" * 3
KEYWORDS = "手机 手机壳 手机膜 手机支架 手机充电器 手机数据线 手机耳机 手机电池 手机配件 手机维修 手机回收。\n" * 4


def _lines(*parts):
    return "\n".join(parts)


# (rule, kept text, dropped text, rules); reasons checked against the rule's own reason
RULE_CASES = [
    (q.rule_length, GOOD, GOOD[:150], WEB, "too_short"),
    (q.rule_length, GOOD[:250], GOOD, rules_for("web", {"max_chars": 300}), "too_long"),
    (q.rule_cjk_ratio, GOOD, "Windows 11 的 Start Menu 和 Taskbar 可以在 Settings > Personalization 中修改。" * 4, WEB, "cjk_ratio"),
    (q.rule_symbol_ratio, GOOD, GOOD + "★☆■◆※" * 20, WEB, "symbol_ratio"),
    (q.rule_digit_ratio, GOOD, GOOD + "电话：" + "13800138000，" * 20, WEB, "digit_ratio"),
    (q.rule_url_ratio, GOOD, GOOD + "\n" + "http://www.example.com/news/2023/12/31/index.html\n" * 3, WEB, "url_ratio"),
    (q.rule_flagged_words, GOOD + "警方捣毁一个网络赌博团伙。", SEO, WEB, "flagged_words"),
    (q.rule_terminal_punct, GOOD, _lines(*[ln.rstrip("。") + "，还有" for ln in NEWS_LINES[6:9]]), WEB, "terminal_punct"),
    (q.rule_short_lines, GOOD, _lines(*"首页 新闻 体育 财经 科技 汽车 房产 教育 旅游 联系我们 关于我们".split(), GOOD), WEB, "short_lines"),
    (q.rule_dup_lines, GOOD, _lines(NEWS_LINES[6], NEWS_LINES[6], NEWS_LINES[7], NEWS_LINES[6]), WEB, "dup_lines"),
    (
        q.rule_dup_paragraphs,
        GOOD.replace("\n", "\n\n"),
        "\n\n".join([NEWS_LINES[6] + "\n" + NEWS_LINES[7]] * 3 + [NEWS_LINES[8]]),
        WEB,
        "dup_paragraphs",
    ),
    (q.rule_repetition, GOOD, HAHA, WEB, "repetition"),
    (q.rule_top_ngram, GOOD, KEYWORDS, WEB, "top_ngram"),
    (
        q.rule_dup_ngram,
        GOOD,
        "".join(f"第{i}条：本站所有内容均来自互联网，如有侵权请联系管理员删除。" for i in "一二三四五六七八"),
        WEB,
        "dup_ngram",
    ),
    (q.rule_entropy, GOOD, "我们是我们的我们，" * 30, WEB, "entropy"),
]


@pytest.mark.parametrize("rule, kept, dropped, rules, reason", RULE_CASES, ids=[c[4] for c in RULE_CASES])
def test_each_rule_keeps_and_drops(rule, kept, dropped, rules, reason):
    assert reason in REASONS
    assert rule(Doc(kept), rules) is None
    assert rule(Doc(dropped), rules) == reason


def test_every_reason_has_a_case():
    assert {c[4] for c in RULE_CASES} == set(REASONS)


def test_disabled_rules():
    off = rules_for(
        "web",
        {"min_cjk_ratio": 0, "min_terminal_punct_lines": 0, "max_repetition": 1, "max_short_lines": 1, "min_entropy": 0},
    )
    assert q.rule_cjk_ratio(Doc("English only text."), off) is None
    assert q.rule_terminal_punct(Doc("没有标点"), off) is None
    assert q.rule_repetition(Doc(HAHA), off) is None
    assert q.rule_entropy(Doc("我们" * 100), off) is None


def test_ngram_rules_skip_short_texts():
    short = "中国中国中国中国中国中国中国中国中国"
    assert q.rule_top_ngram(Doc(short), WEB) is None
    assert q.rule_top_ngram(Doc(short), rules_for("web", {"min_ngram_chars": 10})) == "top_ngram"


def test_ngram_signals_match_a_plain_reference():
    """The one-sort vectorised n-gram statistics agree with a direct Counter/loop implementation."""
    from collections import Counter
    import math
    import re

    def reference(text):
        w = re.sub(r"[\W_]+", "", text)
        out = {}
        for n in (2, 3, 4):
            grams = Counter(w[i : i + n] for i in range(len(w) - n + 1))
            out[f"top_{n}gram"] = min(1.0, max(grams.values()) * n / len(w)) if grams else 0.0
        for n in range(5, 11):
            seen, covered = set(), [False] * len(w)
            for i in range(len(w) - n + 1):
                g = w[i : i + n]
                if g in seen:
                    covered[i : i + n] = [True] * n
                seen.add(g)
            out[f"dup_{n}gram"] = sum(covered) / len(w)
        counts = Counter(w)
        out["entropy"] = -sum(c / len(w) * math.log2(c / len(w)) for c in counts.values())
        return out

    for text in (GOOD, SEO, HAHA, KEYWORDS, NEWS_LINES[0], "ab", "一二三四五六七八九十一二三四五六七八九十"):
        got = quality_signals(text)
        for key, want in reference(text).items():
            assert got[key] == pytest.approx(want), (key, text[:20])


# The former implementation (one hashed sort of every n-gram, n = 1..10; the regex scan for repetition on
# every text), kept verbatim as the reference: the faster one must return bit-identical values.
_OLD_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)
_OLD_ALL_NS = (1,) + q.TOP_NGRAM_NS + q.DUP_NGRAM_NS
_OLD_N_OF_SEG = np.array(_OLD_ALL_NS, dtype=np.int64)
_OLD_FIRST_DUP_SEG = 1 + len(q.TOP_NGRAM_NS)


def _old_ngram_stats(doc):
    cached = doc._cache.get("ngrams")
    if cached is not None:
        return cached
    codes = doc.codes.astype(np.uint64)
    total = len(codes)
    stats = {f"top_{n}gram": 0.0 for n in q.TOP_NGRAM_NS}
    stats.update({f"dup_{n}gram": 0.0 for n in q.DUP_NGRAM_NS})
    stats["entropy"] = 0.0
    if total == 0:
        doc._cache["ngrams"] = stats
        return stats
    lens = [total - n + 1 for n in _OLD_ALL_NS if total - n + 1 > 0]
    n_keys = sum(lens)
    offsets = np.cumsum([0] + lens)
    buf = np.empty(n_keys, dtype=np.uint64)
    np.multiply(codes, _OLD_HASH_MUL, out=buf[:total])
    h = buf[:total]
    for i in range(1, len(lens)):
        n, m = _OLD_ALL_NS[i], lens[i]
        dst = buf[offsets[i] : offsets[i] + m]
        np.multiply(h[:m], _OLD_HASH_MUL, out=dst)
        dst += codes[n - 1 :]
        h = dst
    idx_bits = np.uint64(int(n_keys).bit_length())
    buf <<= idx_bits
    buf |= np.arange(n_keys, dtype=np.uint64)
    keys = np.sort(buf)
    idx = (keys & ((np.uint64(1) << idx_bits) - np.uint64(1))).astype(np.int64)
    group = keys >> idx_bits
    first = np.empty(n_keys, dtype=bool)
    first[0] = True
    np.not_equal(group[1:], group[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, n_keys))
    gseg = np.searchsorted(offsets, idx[starts], side="right") - 1
    p = sizes[gseg == 0] / total
    stats["entropy"] = max(0.0, float(-(p * np.log2(p)).sum()))
    for i, n in enumerate(q.TOP_NGRAM_NS, start=1):
        if i < len(lens):
            stats[f"top_{n}gram"] = min(1.0, int(sizes[gseg == i].max()) * n / total)
    if len(lens) > _OLD_FIRST_DUP_SEG:
        rep = idx[~first]
        rep = rep[rep >= offsets[_OLD_FIRST_DUP_SEG]]
        if len(rep):
            rseg = np.searchsorted(offsets, rep, side="right") - 1
            width = total + 1
            base = (rseg - _OLD_FIRST_DUP_SEG) * width + (rep - offsets[rseg])
            size = len(q.DUP_NGRAM_NS) * width
            delta = np.bincount(base, minlength=size)[:size] - np.bincount(base + _OLD_N_OF_SEG[rseg], minlength=size)[:size]
            covered = np.count_nonzero(np.cumsum(delta).reshape(len(q.DUP_NGRAM_NS), width), axis=1)
            for i, n in enumerate(q.DUP_NGRAM_NS):
                stats[f"dup_{n}gram"] = int(covered[i]) / total
    doc._cache["ngrams"] = stats
    return stats


def _synthetic_texts():
    rng = random.Random(20260101)
    texts = ["", "a", "ab", "abc", "abcd", "abcde", "aaaaa", "aaaaaa", "。，！", "我们" * 100, "哈" * 50, HAHA, SEO, KEYWORDS]
    texts += ["中国" * 3 + "美国" * 3, "首页 | 新闻 | 体育 | 娱乐 | 财经 | 登录 | 注册\n" * 7, "ab\nab\nab\nab\nab\nab", "𠀀𠀁𠀀𠀁𠀀𠀁𠀀𠀁𠀀𠀁"]
    alphabets = ["ab", "abc", "我们的", "一二三四五六七八九十", "天地玄黄宇宙洪荒日月盈昃", "0123456789", "哈 。\n", "ab 我\n"]
    for _ in range(300):
        alphabet = rng.choice(alphabets)
        texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400))))
    # shuffled fixture sentences with planted repeats
    pool = [s for ln in NEWS_LINES for s in ln.split("，") if len(s) >= 4]
    for _ in range(100):
        parts = [rng.choice(pool) for _ in range(rng.randint(1, 30))]
        if rng.random() < 0.5:
            parts += parts[: rng.randint(1, len(parts))]
        rng.shuffle(parts)
        texts.append("，".join(parts) + "。")
    # large alphabets (over 4095 distinct characters: the level-by-level path), with and without repeats
    big = "".join(chr(0x4E00 + rng.randrange(6000)) for _ in range(12000))
    texts += [big, big[:5000] + "。" + big[:5000], "".join(chr(0x4E00 + i) for i in range(4200)) * 2 + "中国中国中国"]
    texts.append("".join(chr(0x4E00 + i) for i in range(4095)) * 2)  # exactly 4095: the packed path's limit
    return texts


def _all_fixture_texts():
    return NEWS_LINES + list(_cmrc().values()) + _drcd() + _qa() + _synthetic_texts()


def test_signals_identical_to_the_former_implementation(monkeypatch):
    """Every signal and every verdict equals the former implementation's, bit for bit, on every fixture
    text (news lines, CMRC 2018 and DRCD contexts, medical Q&A rows) and on synthetic repetitive/junk text."""
    texts = _all_fixture_texts()
    new = [(quality_signals(t), [check_quality(t, rules_for(k)) for k in DEFAULT_RULES]) for t in texts]
    monkeypatch.setattr(q, "_ngram_stats", _old_ngram_stats)
    monkeypatch.setattr(q, "_may_repeat", lambda points: True)  # the regex scan on every text, as before
    monkeypatch.setattr(q.Doc, "classes", property(lambda self: None))  # the regexes count, as before
    old = [(quality_signals(t), [check_quality(t, rules_for(k)) for k in DEFAULT_RULES]) for t in texts]
    for text, (got_signals, got_verdicts), (want_signals, want_verdicts) in zip(texts, new, old):
        assert got_signals == want_signals, text[:40]
        assert got_verdicts == want_verdicts, text[:40]
    assert sum(s["dup_5gram"] > 0 for s, _ in new) > 100 and sum(s["repetition"] > 0 for s, _ in new) > 20


def test_character_class_table_counts_like_the_regexes():
    """The BMP class table gives the former regex counts: Han, digits, symbols, word characters."""
    texts = _all_fixture_texts() + ["".join(map(chr, range(lo, lo + 4096))) for lo in range(0, 0x10000, 4096)]
    texts.append("\ud800\udfff a\x01_１２")  # lone surrogates, \x01 (the table's marker), underscore, full-width
    for text in texts:
        doc = Doc(text)
        if doc.classes is None:
            continue
        assert doc.class_count(q._HAN_CHAR) == len(text) - len(q._HAN_RUN_RE.sub("", text))
        assert doc.class_count(q._DIGIT) == q._DIGIT_RE.subn("", text)[1]
        assert doc.class_count(q._SYMBOL) == q._SYMBOL_RE.subn("", text)[1]
        word = q._NON_WORD_RE.sub("", text).encode("utf-32-le", "surrogatepass")
        assert doc.codes.tobytes() == word
    assert Doc("𠀀中国").classes is None and list(Doc("𠀀中国1").codes) == [0x20000, 0x4E2D, 0x56FD, 0x31]


def test_repetition_precheck_never_skips_a_match():
    rng = random.Random(7)
    for _ in range(3000):
        alphabet = rng.choice(["ab", "abc", "哈哈哈呵", "a b\n", "abcd"])
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        if q._REPEAT_RE.search(text):
            assert q._may_repeat(Doc(text).points), text


def test_terminal_punctuation_variants():
    for line in ("他说：“好。”", "完了！", "真的吗？", "等等……", "见图。（新华社记者兰红光摄）", "Done.", "（完）"):
        assert q._is_terminal(line) is (line != "（完）"), line


# ----------------------------------------------------------------------- table of real kept/dropped texts


@lru_cache(maxsize=None)
def _lid():
    return LanguageIdentifier()


def verdict(kind, text):
    """Steps 1-3 of the cleaning job: normalise, language id, quality rules."""
    text = Normalizer(DEFAULT_STEPS[kind])(text)
    rules = rules_for(kind)
    lang, score = _lid().predict(text)
    return check_language(lang, score, rules) or check_quality(text, rules)


def _cmrc():
    return {d["context_id"]: d["context_text"] for d in json.loads((FIXTURES / "encyclopedia_cmrc2018_trial.json").read_text())}


def _drcd():
    data = json.loads((FIXTURES / "encyclopedia_drcd_dev_first40articles.json").read_text())
    return [p["context"] for a in data["data"] for p in a["paragraphs"]]


def _qa():
    raw = (FIXTURES / "qa_medical_toyhom_300.gbk.csv").read_bytes().decode("gb18030")
    return ["\n".join((r["title"], r["ask"], r["answer"])) for r in csv.DictReader(io.StringIO(raw))]


KEYWORD_LINES = "\n".join(
    [
        "手机 手机壳 手机膜 手机支架 手机充电器 手机数据线 手机耳机。",
        "手机电池 手机配件 手机维修 手机回收 手机价格 手机排行榜。",
        "手机品牌 手机推荐 手机评测 手机报价 手机大全 手机商城。",
        "华为手机 苹果手机 小米手机 三星手机 荣耀手机 魅族手机。",
        "二手手机 手机批发 手机壁纸 手机游戏 手机铃声 手机主题。",
        "老人手机 学生手机 游戏手机 拍照手机 5G手机 折叠屏手机。",
        "手机套餐 手机流量 手机话费 手机充值 手机号码 手机定位。",
    ]
)
NAV_MENU = "\n".join(
    "首页 公司简介 新闻中心 产品展示 产品中心 解决方案 客户案例 技术支持 下载中心 人才招聘 联系我们 在线留言 网站地图 "
    "设为首页 加入收藏 返回顶部 上一页 下一页 尾页 友情链接 关于我们 服务条款 隐私政策 版权所有 京ICP备12345678号 "
    "客服热线：400-123-4567 更多>> 热门推荐 最新资讯 行业动态 常见问题 会员中心 登录 注册 购物车 我的订单 帮助中心 "
    "投诉建议 商务合作 媒体报道 企业文化 发展历程 荣誉资质 组织架构".split()
)
NUMBERS = " ".join(str(i * 7919 % 100000) for i in range(120))
ENGLISH = (
    "The quick development of the economy in the past year has brought great changes to the lives of ordinary "
    "people. Reforms continued to deepen, and living standards improved further across the country, according "
    "to the annual report released on Tuesday."
)
REPEATED_LINES = "\n".join([NEWS_LINES[6]] * 4 + [NEWS_LINES[7]])
URL_LIST = GOOD + "\n相关链接：\n" + "\n".join(
    f"http://www.example.com/news/1998/01/01/article_{i:04d}.html" for i in range(5)
)
SYMBOLS = "★★★★★ 全场包邮 ★★★★★\n" + GOOD + "\n■■■ 限时抢购 ■■■ ◆◆◆ 正品保证 ◆◆◆ ☆☆☆ 七天退换 ☆☆☆ ❤❤❤ 好评返现 ❤❤❤"

TABLE = [
    # real fixture texts
    ("news", lambda: NEWS_LINES[6], None, "news paragraph"),
    ("news", lambda: NEWS_LINES[10], None, "news paragraph on reunification"),
    ("news", lambda: NEWS_LINES[1], "too_short", "news byline"),
    ("news", lambda: NEWS_LINES[4], "too_short", "news salutation"),
    ("news", lambda: NEWS_LINES[2], "too_short", "news date line"),
    ("news", lambda: NEWS_LINES[0], "too_short", "news headline"),
    ("web", lambda: NEWS_LINES[6], "too_short", "one news paragraph is too short for web"),
    ("web", lambda: "\n".join(NEWS_LINES[5:12]), None, "news article as a web page"),
    ("encyclopedia", lambda: _cmrc()["TRIAL_800"], None, "cmrc2018 context"),
    ("encyclopedia", lambda: _cmrc()["TRIAL_71"], None, "cmrc2018 biography"),
    ("encyclopedia", lambda: _cmrc()["TRIAL_798"], None, "cmrc2018 context cut mid-sentence"),
    ("web", lambda: _cmrc()["TRIAL_798"], "terminal_punct", "truncated text under web rules"),
    ("web", lambda: _cmrc()["TRIAL_71"], "dup_ngram", "formulaic biography under web rules"),
    ("encyclopedia", lambda: _drcd()[0], None, "drcd traditional-script paragraph"),
    ("qa", lambda: _qa()[0], None, "medical Q&A"),
    ("qa", lambda: _qa()[1], None, "medical Q&A 2"),
    ("web", lambda: _qa()[0], "too_short", "Q&A is too short for web rules"),
    # realistic junk
    ("web", lambda: NAV_MENU, "terminal_punct", "navigation menu"),
    ("web", lambda: SEO, "flagged_words", "gambling SEO spam"),
    ("web", lambda: REPEATED_LINES, "dup_lines", "repeated lines"),
    ("web", lambda: NUMBERS, "lang", "a string of numbers"),
    ("web", lambda: ENGLISH, "lang", "English paragraph"),
    ("qa", lambda: HAHA, "repetition", "laughing reply"),
    ("web", lambda: KEYWORD_LINES, "top_ngram", "keyword stuffing"),
    ("web", lambda: URL_LIST, "url_ratio", "page ending in a link list"),
    ("web", lambda: SYMBOLS, "symbol_ratio", "shop banner symbols"),
]


@pytest.mark.parametrize("kind, get_text, expected, what", TABLE, ids=[t[3] for t in TABLE])
def test_table_of_real_kept_and_dropped(kind, get_text, expected, what):
    assert verdict(kind, get_text()) == expected


def test_fixture_corpora_are_kept_under_their_own_kind():
    assert [verdict("encyclopedia", t) for t in list(_cmrc().values())[:40]] == [None] * 40
    assert [verdict("encyclopedia", t) for t in _drcd()[:40]] == [None] * 40
    assert [verdict("qa", t) for t in _qa()[:60]] == [None] * 60
    long_news = [ln for ln in NEWS_LINES if len(ln) >= 80][:40]
    assert sum(verdict("news", t) is None for t in long_news) >= 38
