"""A bad record costs that record, never the rest of its file.

Each test plants one bad record among good ones whose number is known from how the file was written,
and checks that every good record is read and the bad one is exactly one dead-letter row.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json

import pytest

from knowmix.corpora.document import DeadLetter, Document
from knowmix.corpora.readers import read_path
from knowmix.corpora.sources import SourceSpec


def spec(kind="news", fmt=None, **kw) -> SourceSpec:
    return SourceSpec(kind=kind, format=fmt, paths=(), **kw)


def read(s: SourceSpec, path) -> tuple[list[Document], list[DeadLetter]]:
    recs = list(read_path(s, str(path)))
    return [r for r in recs if isinstance(r, Document)], [r for r in recs if isinstance(r, DeadLetter)]


def texts(n: int, stem: str = "第{}条记录的正文内容。") -> list[str]:
    return [stem.format(i) for i in range(n)]


# ----------------------------------------------------------------------------------------------- csv


def test_csv_unclosed_quote_costs_one_row_single_column(tmp_path):
    rows = texts(40)
    lines = ["text"] + rows
    lines[5] = '"' + rows[4]  # row 5 (file line 6) opens a quote it never closes
    p = tmp_path / "a.csv"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    docs, dead = read(spec("qa"), p)
    assert [d.text for d in docs] == rows[:4] + rows[5:]
    assert [d.location for d in dead] == [f"{p}:6"]


def test_csv_unclosed_quote_closed_by_a_later_quote(tmp_path):
    rows = texts(40)
    lines = ["id,text"] + [f'{i},"{t}"' for i, t in enumerate(rows)]
    lines[11] = f'10,"{rows[10]}'  # the next row's opening quote would "close" it
    p = tmp_path / "a.csv"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    docs, dead = read(spec("qa", id_field="id"), p)
    assert [d.text for d in docs] == rows[:10] + rows[11:]
    assert [d.location for d in dead] == [f"{p}:12"] and "quote" in dead[0].reason


def test_csv_row_over_max_record_bytes_does_not_end_the_file(tmp_path):
    rows = texts(30)
    body = "\n".join(["很长的引用字段"] * 100)
    lines = ["id,text"] + [f"{i},{t}" for i, t in enumerate(rows)]
    lines.insert(6, f'99,"{body}"')
    p = tmp_path / "a.csv"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    docs, dead = read(spec("qa", max_record_bytes=500), p)
    assert [d.text for d in docs] == rows
    assert dead and dead[0].location == f"{p}:7" and "longer than 500 bytes" in dead[0].reason


def test_csv_multiline_quoted_field_still_one_record(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('id,text\n1,"第一行\n第二行,有逗号\n第三行"\n2,"下一条"\n', encoding="utf-8")
    docs, dead = read(spec("qa", id_field="id"), p)
    assert [(d.id, d.text) for d in docs] == [("1", "第一行\n第二行,有逗号\n第三行"), ("2", "下一条")] and dead == []


# ---------------------------------------------------------------------------------------------- jsonl


@pytest.mark.parametrize(
    "bad",
    ['{"text": "x", "n": ' + "9" * 5000 + "}", "[" * 100000 + "]" * 100000, '{"text": ' + '{"a":' * 5000 + "1" + "}" * 5001],
    ids=["5000-digit number", "deep list", "deep object"],
)
def test_jsonl_value_and_recursion_errors_are_one_dead_letter(tmp_path, bad):
    rows = texts(10)
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in rows]
    lines.insert(3, bad)
    p = tmp_path / "a.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    docs, dead = read(spec(), p)
    assert [d.text for d in docs] == rows
    assert [d.location for d in dead] == [f"{p}:4"]


# ------------------------------------------------------------------------------------------ encodings


def test_gbk_file_with_one_invalid_byte_early_loses_one_line(tmp_path):
    rows = [f"第{i}行：中华人民共和国的首都是北京，今天天气很好。" for i in range(300)]
    data = [r.encode("gbk") + b"\n" for r in rows]
    data[2] = data[2][:6] + b"\xff" + data[2][6:]
    p = tmp_path / "a.txt"
    p.write_bytes(b"".join(data))
    docs, dead = read(spec(), p)
    assert [d.text for d in docs] == rows[:2] + rows[3:]
    assert [d.location for d in dead] == [f"{p}:3"] and "gb18030" in dead[0].reason


def test_gbk_csv_fixture_with_one_invalid_byte(tmp_path, fixtures_dir):
    import csv

    raw = (fixtures_dir / "qa_medical_toyhom_300.gbk.csv").read_bytes()
    n_rows = len(list(csv.reader(io.StringIO(raw.decode("gb18030"))))) - 1  # independent count: 300
    nl = raw.index(b"\n", raw.index(b"\n") + 1)  # end of the first data row
    damaged = raw[: nl - 2] + b"\xff" + raw[nl - 2 :]
    p = tmp_path / "a.csv"
    p.write_bytes(damaged)
    docs, dead = read(spec("qa"), p)
    assert (len(docs), len(dead), n_rows) == (299, 1, 300)
    assert dead[0].location == f"{p}:2"


def test_utf16_bad_unit_loses_only_its_line(tmp_path):
    rows = texts(2000)
    units = [r.encode("utf-16-le") + "\n".encode("utf-16-le") for r in rows]
    units[1500] = units[1500][:4] + b"\x00\xd8" + units[1500][4:]  # a lone high surrogate
    p = tmp_path / "a.txt"
    p.write_bytes(codecs.BOM_UTF16_LE + b"".join(units))
    docs, dead = read(spec(), p)
    assert [d.text for d in docs] == rows[:1500] + rows[1501:]
    assert [d.location for d in dead] == [f"{p}:1501"]


@pytest.mark.parametrize("enc", ["utf-32", "utf-32-be", "utf-16-be"])
def test_utf32_and_big_endian_boms(tmp_path, enc):
    rows = texts(20)
    bom = {"utf-32": codecs.BOM_UTF32_LE, "utf-32-be": codecs.BOM_UTF32_BE, "utf-16-be": codecs.BOM_UTF16_BE}[enc]
    p = tmp_path / "a.txt"
    p.write_bytes(bom + "\n".join(rows).encode("utf-32-le" if enc == "utf-32" else enc))
    docs, dead = read(spec(), p)
    assert dead == [] and [d.text for d in docs] == rows


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"])
def test_line_endings(tmp_path, newline):
    rows = texts(50)
    p = tmp_path / "a.jsonl"
    p.write_bytes(newline.join(json.dumps({"text": t}, ensure_ascii=False) for t in rows).encode())
    docs, dead = read(spec(), p)
    assert dead == [] and [d.text for d in docs] == rows
    assert docs[-1].location == f"{p}:50"


def test_cr_only_txt_and_utf16(tmp_path):
    rows = texts(30)
    p = tmp_path / "a.txt"
    p.write_bytes("\r".join(rows).encode("utf-8"))
    assert [d.text for d in read(spec(), p)[0]] == rows
    q = tmp_path / "b.txt"
    q.write_bytes(codecs.BOM_UTF16_LE + "\r".join(rows).encode("utf-16-le"))
    assert [d.text for d in read(spec(), q)[0]] == rows


def test_mixed_encodings_in_one_file(tmp_path):
    rows = [f"第{i}行：今天天气很好，我们去公园散步吧。" for i in range(100)]
    data = [r.encode("utf-8") + b"\n" for r in rows]
    for i in (10, 50, 90):
        data[i] = rows[i].encode("gbk") + b"\n"
    p = tmp_path / "a.txt"
    p.write_bytes(b"".join(data))
    docs, dead = read(spec(), p)
    assert [d.text for d in docs] == [r for i, r in enumerate(rows) if i not in (10, 50, 90)]
    assert [d.location for d in dead] == [f"{p}:11", f"{p}:51", f"{p}:91"]


# ------------------------------------------------------------------------------------------- compression


def test_zst_with_trailing_garbage_keeps_the_decoded_frame(tmp_path):
    import zstandard

    rows = texts(20)
    p = tmp_path / "a.jsonl.zst"
    body = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in rows).encode()
    p.write_bytes(zstandard.ZstdCompressor().compress(body) + b"this is not a zstd frame" * 3)
    docs, dead = read(spec(), p)
    assert [d.text for d in docs] == rows
    assert len(dead) == 1 and "corrupt" in dead[0].reason


def test_gz_members_and_trailing_garbage(tmp_path):
    rows = texts(30)
    body = [("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in part)).encode() for part in (rows[:10], rows[10:])]
    p = tmp_path / "a.jsonl.gz"
    p.write_bytes(gzip.compress(body[0]) + gzip.compress(body[1]))
    docs, dead = read(spec(), p)
    assert dead == [] and [d.text for d in docs] == rows
    q = tmp_path / "b.jsonl.gz"
    q.write_bytes(gzip.compress(body[0]) + gzip.compress(body[1]) + b"garbage after the last member")
    docs, dead = read(spec(), q)
    assert [d.text for d in docs] == rows and len(dead) == 1


# ---------------------------------------------------------------------------------------------- warc


def _warc_records(n: int, bad_ctype: dict[int, str] | None = None) -> list[bytes]:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    out = []
    for i in range(n):
        buf = io.BytesIO()
        w = WARCWriter(buf, gzip=False)
        para = f"<p>第{i}篇文章的正文。雄安新区位于河北省保定市东部，由雄县、容城县、安新县组成，是国家级新区。</p>" * 3
        page = f"<html><head><title>第{i}页</title></head><body><article>{para}</article></body></html>".encode()
        ctype = (bad_ctype or {}).get(i, "text/html; charset=utf-8")
        http = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
        w.write_record(w.create_warc_record(f"http://x/{i}", "response", payload=io.BytesIO(page), http_headers=http))
        out.append(buf.getvalue())
    return out


@pytest.mark.parametrize("charset", ["hex", "rot13", "base64"])
def test_warc_non_text_charset_label(tmp_path, charset):
    recs = _warc_records(8, {3: f"text/html; charset={charset}"})
    p = tmp_path / "a.warc"
    p.write_bytes(b"".join(recs))
    docs, dead = read(spec("web"), p)
    assert [d.url for d in docs] == [f"http://x/{i}" for i in range(8)]  # the label is ignored, bytes sniffed
    assert dead == []


@pytest.mark.parametrize("delta", [-40, +40, +100000])
def test_warc_wrong_content_length_costs_one_record(tmp_path, delta):
    recs = _warc_records(8)
    head, _, rest = recs[3].partition(b"Content-Length: ")
    n, _, tail = rest.partition(b"\r\n")
    recs[3] = head + b"Content-Length: " + str(int(n) + delta).encode() + b"\r\n" + tail
    p = tmp_path / "a.warc"
    p.write_bytes(b"".join(recs))
    docs, dead = read(spec("web"), p)
    assert [d.url for d in docs] == [f"http://x/{i}" for i in range(8) if i != 3]
    assert [d.location for d in dead] == [f"{p}#3"]


def test_warc_junk_between_records(tmp_path):
    recs = _warc_records(6)
    p = tmp_path / "a.warc"
    p.write_bytes(b"".join(recs[:2]) + b"some junk that is not a record\r\n" * 3 + b"".join(recs[2:]))
    docs, dead = read(spec("web"), p)
    assert [d.url for d in docs] == [f"http://x/{i}" for i in range(6)]
    assert len(dead) == 1 and "not a WARC record" in dead[0].reason


# ------------------------------------------------------------------------------------------ file names


def test_unknown_extension_is_one_dead_letter(tmp_path):
    p = tmp_path / "notes.md"
    p.write_text("# 标题\n正文\n", encoding="utf-8")
    docs, dead = read(spec(), p)
    assert docs == [] and [(d.location, d.reason.split(" (")[0]) for d in dead] == [(str(p), "cannot tell the format from the file name")]


def test_non_utf8_file_name_is_one_dead_letter(tmp_path):
    import os

    name = os.fsdecode(b"\xff\xfe-news.txt")  # surrogate-escaped, as glob returns it
    p = os.path.join(str(tmp_path), name)
    with open(p, "w", encoding="utf-8") as f:
        f.write("第一行\n第二行\n")
    (d,) = list(read_path(spec(), p))
    assert isinstance(d, DeadLetter) and "file name is not valid UTF-8" in d.reason
    assert d.location.endswith("\\xff\\xfe-news.txt")
    d.location.encode("utf-8")  # writable into a shard or a JSON line
