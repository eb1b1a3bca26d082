"""Readers over the fixture corpora, and every kind of bad input giving one clear dead-letter row."""

from __future__ import annotations

import bz2
import gzip
import io
import json

import pytest

from knowmix.corpora.document import RAW_LIMIT, DeadLetter, Document
from knowmix.corpora.readers import read_path, wikitext_to_text
from knowmix.corpora.sources import SourceSpec


def spec(kind="web", fmt=None, **kw) -> SourceSpec:
    return SourceSpec(kind=kind, format=fmt, paths=(), **kw)


def read(s: SourceSpec, path) -> tuple[list[Document], list[DeadLetter]]:
    recs = list(read_path(s, str(path)))
    assert all(isinstance(r, (Document, DeadLetter)) for r in recs)
    return [r for r in recs if isinstance(r, Document)], [r for r in recs if isinstance(r, DeadLetter)]


def one_dead(dead: list[DeadLetter], reason_part: str) -> DeadLetter:
    assert len(dead) == 1, [d.reason for d in dead]
    assert reason_part in dead[0].reason, dead[0].reason
    return dead[0]


# ------------------------------------------------------------------------------------------ fixtures


def test_cmrc_list_layout(fixtures_dir):
    path = fixtures_dir / "encyclopedia_cmrc2018_trial.json"
    docs, dead = read(spec("encyclopedia"), path)
    assert (len(docs), dead) == (256, [])
    d = docs[0]
    assert (d.id, d.title, d.source_kind, d.location) == ("TRIAL_800", "泡泡战士", "encyclopedia", f"{path}#0")
    assert d.text.startswith("基于《跑跑卡丁车》与《泡泡堂》上所开发的游戏，由韩国Nexon开发与发行。")
    assert len({x.id for x in docs}) == 256


def test_squad_layout_one_document_per_article(fixtures_dir):
    path = fixtures_dir / "encyclopedia_drcd_dev_first40articles.json"
    docs, dead = read(spec("encyclopedia"), path)
    assert (len(docs), dead) == (40, [])
    raw = json.loads(path.read_text(encoding="utf-8"))["data"]
    assert sum(d.text.count("\n") + 1 for d in docs) == 188  # every paragraph context, one per line
    assert docs[0].title == "梵文" and docs[0].text.startswith("在歐洲，梵語的學術研究，由德國學者陸特和漢斯雷頓開創。")
    assert docs[0].text.split("\n")[1] == raw[0]["paragraphs"][1]["context"].strip()
    assert docs[-1].location == f"{path}#39"
    by_id = read(spec("encyclopedia", id_field="id"), path)[0]
    assert by_id[0].id == raw[0]["id"] == "1147"


def test_news_txt_one_document_per_line(fixtures_dir):
    path = fixtures_dir / "news_peoples_daily_199801_first400.txt"
    docs, dead = read(spec("news"), path)
    assert (len(docs), dead) == (400, [])
    assert docs[0].text == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert docs[1].text == "中共中央总书记、国家主席江泽民"
    assert docs[1].location == f"{path}:2" and docs[1].url is None and docs[1].title is None


def test_gbk_csv_without_declared_charset_decodes(fixtures_dir):
    path = fixtures_dir / "qa_medical_toyhom_300.gbk.csv"
    s = spec("qa", text_fields=("title", "ask", "answer"), title_field="title")
    docs, dead = read(s, path)
    assert (len(docs), dead) == (300, [])
    d = docs[0]
    assert d.title == "高血压患者能吃党参吗？" and d.location == f"{path}:2"
    assert d.text.split("\n")[0] == "高血压患者能吃党参吗？"
    assert "党参有降血脂，降血压的作用" in d.text
    # default text_fields and no "text" column: all columns make the text
    docs2, _ = read(spec("qa"), path)
    assert docs2[0].text.startswith("心血管科\n高血压患者能吃党参吗？")


def test_html_page_main_text(fixtures_dir):
    docs, dead = read(spec("web"), fixtures_dir / "web_zhwikipedia_page.html")
    assert dead == [] and len(docs) == 1
    assert docs[0].title == "雄安新区"
    assert "雄安新区是中国第19个国家级新区" in docs[0].text


def test_ids_deterministic_and_unique_per_path(fixtures_dir, tmp_path):
    path = fixtures_dir / "news_peoples_daily_199801_first400.txt"
    a = [d.id for d in read(spec("news"), path)[0]]
    b = [d.id for d in read(spec("news"), path)[0]]
    assert a == b and len(set(a)) == 400
    assert a[0].startswith("news:") and a[0].endswith("news_peoples_daily_199801_first400.txt:1")
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x" / "n.txt").write_text("同一行\n", encoding="utf-8")
    (tmp_path / "y" / "n.txt").write_text("同一行\n", encoding="utf-8")
    ix = read(spec("news"), tmp_path / "x" / "n.txt")[0][0].id
    iy = read(spec("news"), tmp_path / "y" / "n.txt")[0][0].id
    assert ix != iy


def test_rows():
    d = Document(id="i", source_kind="qa", location="p:1", text="t")
    assert list(d.to_row()) == ["id", "source_kind", "location", "url", "title", "text"]
    dl = DeadLetter(source="qa", location="p:1", reason="r", raw=b"\xff" + "字".encode() * 2000)
    assert len(dl.raw) == RAW_LIMIT and dl.raw.startswith("\\xff字")
    assert dl.to_row() == {"source": "qa", "location": "p:1", "reason": "r", "raw": dl.raw}
    with pytest.raises(ValueError):
        Document(id="i", source_kind="blog", location="p", text="t")


# ---------------------------------------------------------------------------------------- bad input

GOOD = ["第一条新闻的正文内容。", "第二条新闻的正文内容。", "第三条新闻的正文内容。"]


def jsonl(lines) -> bytes:
    return b"".join((json.dumps({"id": f"r{i}", "text": t}, ensure_ascii=False) + "\n").encode() for i, t in enumerate(lines))


@pytest.mark.parametrize("encoding", ["auto", "utf-8"])
def test_invalid_utf8_line(tmp_path, encoding):
    p = tmp_path / "a.jsonl"
    good = jsonl(GOOD)
    lines = good.splitlines(keepends=True)
    p.write_bytes(lines[0] + b'{"text": "\xe4\xb8 broken \xff"}\n' + b"".join(lines[1:]))
    docs, dead = read(spec("news", encoding=encoding), p)
    assert [d.text for d in docs] == GOOD
    dl = one_dead(dead, "invalid utf-8")
    assert dl.location == f"{p}:2" and "broken" in dl.raw and dl.source == "news"


def test_gbk_and_big5_and_utf16_txt_decode(tmp_path):
    simp = ["中华人民共和国的首都是北京。", "今天天气很好，我们去公园散步吧。"]
    trad = ["中華民國的首都是臺北。", "今天天氣很好，我們去公園散步吧。"]
    cases = [("gbk", simp), ("big5", trad), ("utf-16", simp), ("utf-8-sig", trad)]
    for enc, lines in cases:
        p = tmp_path / f"{enc}.txt"
        p.write_bytes("\n".join(lines * 20).encode(enc))
        docs, dead = read(spec("news"), p)
        assert dead == [] and [d.text for d in docs] == lines * 20, enc


def test_malformed_json_line_and_non_object(tmp_path):
    p = tmp_path / "a.jsonl"
    lines = jsonl(GOOD).splitlines(keepends=True)
    p.write_bytes(lines[0] + b'{"text": "unterminated\n' + lines[1] + b"[1, 2]\n\n" + lines[2])
    docs, dead = read(spec("news"), p)
    assert [d.text for d in docs] == GOOD
    assert [d.reason.split(":")[0] for d in dead] == ["malformed JSON", "not a JSON object (a list)"]
    assert [d.location for d in dead] == [f"{p}:2", f"{p}:4"]


def test_missing_or_empty_text_field(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text(
        '{"id": 1, "text": "有正文"}\n{"id": 2, "body": "没有text字段"}\n{"id": 3, "text": "  "}\n{"text": "无id"}\n',
        encoding="utf-8",
    )
    docs, dead = read(spec("qa", id_field="id"), p)
    assert [(d.id, d.text) for d in docs] == [("1", "有正文")]
    assert [d.reason for d in dead] == ["missing or empty text field (text)"] * 2 + ["missing id field 'id'"]


def test_jsonl_fields_joined_title_url_nested(tmp_path):
    p = tmp_path / "a.jsonl"
    row = {"q": "问题？", "a": ["回答一", "回答二"], "meta": {"url": "http://x", "title": "标题"}}
    p.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    s = spec("qa", text_fields=("q", "a"), url_field="meta.url", title_field="meta.title")
    (d,), dead = read(s, p)
    assert (d.text, d.url, d.title, dead) == ("问题？\n回答一\n回答二", "http://x", "标题", [])


def test_csv_wrong_field_count_multiline_and_bad_bytes(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes(
        "id,title,text\n1,标题一,正文一\n2,标题二,正文二,多余\n3,标题三,\"跨行的\n正文三\"\n".encode()
        + "4,标题四,".encode() + b"\xff\xfe\n"
        + "5,标题五,正文五\n".encode()
    )
    docs, dead = read(spec("qa", fmt="csv", encoding="utf-8", id_field="id", title_field="title"), p)
    assert [(d.id, d.text, d.location) for d in docs] == [
        ("1", "正文一", f"{p}:2"),
        ("3", "跨行的\n正文三", f"{p}:4"),
        ("5", "正文五", f"{p}:7"),
    ]
    assert [(d.location, d.reason) for d in dead] == [
        (f"{p}:3", "expected 3 fields, got 4"),
        (f"{p}:6", "line 6: invalid utf-8 bytes at byte 12 of the line"),
    ]


def test_csv_unclosed_quote_is_capped(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("text\n好的一行\n\"没有闭合的引号\n" + "后面的行\n" * 200, encoding="utf-8")
    docs, dead = read(spec("qa", max_record_bytes=500), p)
    assert [d.text for d in docs] == ["好的一行"] + ["后面的行"] * 200  # the open quote costs its own row only
    assert one_dead(dead, "CSV record longer than 500 bytes").location == f"{p}:3"


def test_csv_header_without_configured_fields(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("a,b\n1,2\n", encoding="utf-8")
    docs, dead = read(spec("qa", text_fields=("question",)), p)
    assert docs == [] and "none of the text fields ['question']" in one_dead(dead, "CSV header").reason


@pytest.mark.parametrize("name", ["a.txt", "a.jsonl", "a.csv", "a.html", "a.json", "a.xml", "a.warc", "a.txt.gz"])
def test_empty_file(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(gzip.compress(b"") if name.endswith(".gz") else b"")
    docs, dead = read(spec("web"), p)
    assert docs == [] and one_dead(dead, "empty file").location.startswith(str(p))


def test_blank_only_file_is_accounted_for(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("\n  \n\n", encoding="utf-8")
    assert read(spec("news"), p) == ([], [DeadLetter("news", str(p), "no records in file", "")])


def test_ten_megabyte_single_line(tmp_path):
    p = tmp_path / "big.txt"
    with open(p, "wb") as f:
        f.write("短的一行。\n".encode())
        f.write(("长" * (10 * 1024 * 1024 // 3 + 10)).encode())
        f.write("\n最后一行。\n".encode())
    docs, dead = read(spec("web"), p)  # default cap 8 MiB
    assert [d.text for d in docs] == ["短的一行。", "最后一行。"]
    dl = one_dead(dead, "line longer than 8388608 bytes")
    assert dl.location == f"{p}:2" and len(dl.raw) <= RAW_LIMIT
    docs, dead = read(spec("web", max_record_bytes=16 * 1024 * 1024), p)
    assert dead == [] and len(docs[1].text) == 10 * 1024 * 1024 // 3 + 10


def test_binary_junk_named_txt(tmp_path):
    import random

    p = tmp_path / "junk.txt"
    rng = random.Random(7)
    p.write_bytes(bytes(rng.randrange(256) for _ in range(20000)))
    docs, dead = read(spec("web"), p)
    assert docs == [] and one_dead(dead, "binary or undecodable content").location == str(p)


def test_nul_line_in_text_file(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes("第一行\n".encode() * 50 + b"bad\x00line\n" + "最后一行\n".encode())
    docs, dead = read(spec("web"), p)
    assert len(docs) == 51 and one_dead(dead, "NUL byte").location == f"{p}:51"


@pytest.mark.parametrize("ext", ["gz", "bz2", "zst"])
def test_compressed_and_truncated(tmp_path, ext):
    import zstandard

    compress = {"gz": gzip.compress, "bz2": bz2.compress, "zst": zstandard.ZstdCompressor().compress}[ext]
    lines = [f"第{i}行：这是一条用于测试压缩流截断的新闻正文。" for i in range(3000)]
    data = compress(jsonl(lines), 1) if ext == "bz2" else compress(jsonl(lines))  # bz2: 100 kB blocks
    whole = tmp_path / f"a.jsonl.{ext}"
    whole.write_bytes(data)
    docs, dead = read(spec("news"), whole)
    assert dead == [] and [d.text for d in docs] == lines
    cut = tmp_path / f"cut.jsonl.{ext}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    docs, dead = read(spec("news"), cut)
    assert 0 < len(docs) < len(lines) and [d.text for d in docs] == lines[: len(docs)]
    dl = one_dead(dead, "truncated or corrupt compressed data")
    assert dl.location == f"{cut}:{len(docs) + 1}" or dl.location.startswith(f"{cut}:")


def test_txt_block_mode(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes("第一段第一行\n第一段第二行\n\n\n第二段\n".encode() + b"\xff\xfe bad\n" + "\n第三段\n".encode())
    docs, dead = read(spec("news", txt_mode="block", encoding="utf-8"), p)
    assert [(d.text, d.location) for d in docs] == [("第一段第一行\n第一段第二行", f"{p}:1"), ("第三段", f"{p}:8")]
    assert one_dead(dead, "line 6: invalid utf-8").location == f"{p}:5"


# ---------------------------------------------------------------------------------------------- html

def test_html_without_body_or_text(tmp_path):
    empty_body = tmp_path / "a.html"
    empty_body.write_text("<html><head><title>只有标题</title></head></html>", encoding="utf-8")
    docs, dead = read(spec("web"), empty_body)
    assert docs == [] and one_dead(dead, "no main text in HTML page").location == f"{empty_body}#0"


def test_html_gbk_declared_by_meta(tmp_path):
    p = tmp_path / "a.htm"
    body = "".join(f"<p>第{i}段：这是一个用GBK编码的网页，正文足够长，用来测试声明的字符集是否被正确使用。</p>" for i in range(3))
    p.write_bytes(f'<html><head><meta charset="gbk"><title>编码测试</title></head><body>{body}</body></html>'.encode("gbk"))
    (d,), dead = read(spec("web"), p)
    assert dead == [] and "用GBK编码的网页" in d.text


# ---------------------------------------------------------------------------------------------- warc

def _warc(records, gz=True) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=gz)
    for rtype, url, status, ctype, payload in records:
        if rtype in ("response",):
            http = StatusAndHeaders(status, [("Content-Type", ctype)], protocol="HTTP/1.1")
            rec = w.create_warc_record(url, rtype, payload=io.BytesIO(payload), http_headers=http)
        else:
            rec = w.create_warc_record(url, rtype, payload=io.BytesIO(payload), warc_content_type=ctype)
        w.write_record(rec)
    return buf.getvalue()


def _page(i: int) -> str:
    para = f"<p>第{i}篇文章的正文。雄安新区位于河北省保定市东部，由雄县、容城县、安新县组成，是国家级新区。</p>"
    return f"<html><head><title>第{i}页</title></head><body><article>{para * 3}</article></body></html>"


def test_warc_html_responses_and_wet(tmp_path):
    p = tmp_path / "a.warc.gz"
    p.write_bytes(
        _warc(
            [
                ("request", "http://x/0", None, "application/http; msgtype=request", b"GET / HTTP/1.1\r\n\r\n"),
                ("response", "http://x/0", "200 OK", "text/html; charset=gbk", _page(0).encode("gbk")),
                ("response", "http://x/img", "200 OK", "image/png", b"\x89PNG\x00\x00"),
                ("response", "http://x/gone", "404 Not Found", "text/html", b"<html><body>no</body></html>"),
                ("response", "http://x/empty", "200 OK", "text/html", b"<html><head></head></html>"),
                ("response", "http://x/1", "200 OK", "text/html", _page(1).encode()),
                ("conversion", "http://x/2", None, "text/plain", "纯文本记录，来自WET文件。".encode()),
            ]
        )
    )
    docs, dead = read(spec("web"), p)
    assert [d.url for d in docs] == ["http://x/0", "http://x/1", "http://x/2"]
    assert "第0篇文章的正文" in docs[0].text and docs[0].title and docs[2].text == "纯文本记录，来自WET文件。"
    assert [d.location for d in docs] == [f"{p}#1", f"{p}#5", f"{p}#6"]
    assert one_dead(dead, "no main text").location == f"{p}#4"


def test_warc_truncated_gz(tmp_path):
    data = _warc([("response", f"http://x/{i}", "200 OK", "text/html", _page(i).encode()) for i in range(6)])
    p = tmp_path / "cut.warc.gz"
    p.write_bytes(data[: len(data) - 200])
    docs, dead = read(spec("web"), p)
    assert [d.url for d in docs] == [f"http://x/{i}" for i in range(len(docs))] and 3 <= len(docs) <= 5
    assert "truncated" in one_dead(dead, "").reason


def test_warc_junk(tmp_path):
    p = tmp_path / "junk.warc"
    p.write_bytes(b"this is not a WARC file at all\n" * 10)
    docs, dead = read(spec("web"), p)
    assert docs == [] and len(dead) == 1


# ----------------------------------------------------------------------------------------- mediawiki

WIKI_NS = "http://www.mediawiki.org/xml/export-0.10/"


def _wiki(pages) -> str:
    out = [f'<mediawiki xmlns="{WIKI_NS}" version="0.10" xml:lang="zh"><siteinfo><sitename>维基百科</sitename></siteinfo>']
    for i, (title, ns, redirect, text) in enumerate(pages):
        esc = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        red = f'<redirect title="{redirect}" />' if redirect else ""
        out.append(
            f"<page><title>{title}</title><ns>{ns}</ns><id>{100 + i}</id>{red}"
            f'<revision><id>9{i}</id><text xml:space="preserve">{esc}</text></revision></page>'
        )
    return "".join(out) + "</mediawiki>"


ARTICLE = (
    "{{Infobox settlement|name=雄安新区|population=120万}}\n"
    "'''雄安新区'''是[[中华人民共和国]]河北省的[[国家级新区|国家级新区]]<ref>{{cite web|url=http://x}}</ref>。\n"
    "[[File:Xiongan.jpg|thumb|雄安新区市民中心]]\n"
    "== 历史 ==\n"
    "2017年4月1日正式成立。\n"
    "{| class=\"wikitable\"\n|-\n| 表格 || 内容\n|}\n"
    "[[Category:河北省]]\n[[分类:国家级新区]]\n__NOTOC__"
)


def test_wikitext_to_text():
    text = wikitext_to_text(ARTICLE)
    assert text.startswith("雄安新区是中华人民共和国河北省的国家级新区。")
    assert "历史" in text and "2017年4月1日正式成立。" in text
    for junk in ("Infobox", "cite", "thumb", "市民中心", "Category", "河北省]]", "分类", "NOTOC", "表格", "{{", "[["):
        assert junk not in text, junk


def test_mediawiki_articles_only_and_bz2(tmp_path):
    xml = _wiki(
        [
            ("雄安新区", 0, None, ARTICLE),
            ("雄安", 0, "雄安新区", "#REDIRECT [[雄安新区]]"),
            ("Talk:雄安新区", 1, None, "讨论页"),
            ("空条目", 0, None, "{{stub}}"),
            ("北京", 0, None, "'''北京'''是中国的首都。"),
        ]
    )
    p = tmp_path / "zhwiki.xml.bz2"
    p.write_bytes(bz2.compress(xml.encode()))
    docs, dead = read(spec("encyclopedia"), p)
    assert [(d.title, d.location) for d in docs] == [("雄安新区", f"{p}#0"), ("北京", f"{p}#4")]
    assert docs[1].text == "北京是中国的首都。"
    assert one_dead(dead, "article has no text").location == f"{p}#3"
    by_id = read(spec("encyclopedia", id_field="id"), p)[0]
    assert [d.id for d in by_id] == ["100", "104"]


def test_mediawiki_truncated(tmp_path):
    xml = _wiki([(f"条目{i}", 0, None, f"第{i}个条目的正文。" * 20) for i in range(10)])
    p = tmp_path / "cut.xml"
    p.write_text(xml[: len(xml) * 3 // 4], encoding="utf-8")
    docs, dead = read(spec("encyclopedia"), p)
    assert 5 <= len(docs) < 10 and [d.title for d in docs] == [f"条目{i}" for i in range(len(docs))]
    assert one_dead(dead, "malformed or truncated XML").location == f"{p}#{len(docs)}"


# --------------------------------------------------------------------------------------------- squad

def test_squad_malformed_and_bad_articles(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"title": "x", "paragraphs": [', encoding="utf-8")
    docs, dead = read(spec("encyclopedia"), bad)
    assert docs == [] and one_dead(dead, "malformed JSON").location == str(bad)
    mixed = tmp_path / "mixed.json"
    mixed.write_text(
        json.dumps(
            {"data": [{"title": "甲", "paragraphs": [{"context": "甲的正文。"}]}, {"title": "乙", "paragraphs": []}, "x"]},
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    docs, dead = read(spec("encyclopedia"), mixed)
    assert [(d.title, d.text) for d in docs] == [("甲", "甲的正文。")]
    assert [(d.location, d.reason) for d in dead] == [
        (f"{mixed}#1", "article has no paragraph context"),
        (f"{mixed}#2", "article is not a JSON object"),
    ]
    other = tmp_path / "other.json"
    other.write_text('{"rows": []}', encoding="utf-8")
    assert "nor the CMRC layout" in one_dead(read(spec("encyclopedia"), other)[1], "not the SQuAD layout").reason


def test_txt_block_mode_truncated_gz(tmp_path):
    blocks = [f"第{i}段第一行。\n第{i}段第二行。" for i in range(2000)]
    data = gzip.compress("\n\n".join(blocks).encode())
    p = tmp_path / "cut.txt.gz"
    p.write_bytes(data[: len(data) // 2])
    docs, dead = read(spec("news", txt_mode="block"), p)
    assert 0 < len(docs) < 2000 and [d.text for d in docs] == blocks[: len(docs)]
    assert one_dead(dead, "truncated or corrupt compressed data").location == f"{p}:{3 * len(docs) + 1}"
