"""Property tests for the readers: random files with random bad records planted in them.

On every example: every good record is read exactly once and in order, every bad one is exactly one
dead-letter row, docs + dead letters equal the number of records written (counted by the generator, not the
reader), and the reader's own raw count (ReadStats) matches the file's line/row count and leaves nothing
unaccounted. The number of examples is the Hypothesis profile's (100 by default; a `long` profile soaks).
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from knowmix.corpora.document import DeadLetter, Document
from knowmix.corpora.readers import ReadStats, read_path
from knowmix.corpora.sources import SourceSpec

PROPS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ALPHABET = list("中文数据清洗测试的一是在不了有和人这新闻问答百科北京上海abcXYZ019 ,.;:!?'\"[]{}#-_/\\")
TEXT = st.text(alphabet=ALPHABET, min_size=1, max_size=30).map(str.strip).filter(bool)
#: bytes that are invalid in the encoding (so the line holding them is one dead letter)
BAD_BYTES = {"utf-8": b"\xff\xfe", "gb18030": b"\xff\xff", "utf-16-le": b"\x00\xd8"}

Plan = list[tuple[str, str]]  # (what, text): what is "good", "bad" (planted bad record) or "blank"


def plans(bad_kinds: list[str], allow_newline: bool = False):
    text = TEXT
    if allow_newline:
        text = st.lists(TEXT, min_size=1, max_size=3).map("\n".join)
    item = st.one_of(
        text.map(lambda t: ("good", t)),
        st.tuples(st.sampled_from(bad_kinds), TEXT).map(lambda x: ("bad:" + x[0], x[1])),
        st.just(("blank", "")),
    )
    return st.lists(item, min_size=0, max_size=25)


def encode_line(line: str, enc: str) -> bytes:
    return line.encode(enc)


def garbage(data: bytes, enc: str) -> bytes:
    """Random bytes made into one undecodable line: no line breaks, and invalid bytes up front."""
    data = data.replace(b"\n", b"\xff").replace(b"\r", b"\xff")
    if enc == "utf-16-le":
        data = data[: len(data) // 2 * 2].replace(b"\n\x00", b"\xff\xff").replace(b"\r\x00", b"\xff\xff")
    return BAD_BYTES[enc] + "x".encode(enc) + data  # "x": a lone UTF-16 surrogate stays lone


def compress(data: bytes, how: str) -> tuple[bytes, str]:
    if how == "gz":
        return gzip.compress(data), ".gz"
    if how == "zst":
        import zstandard

        return zstandard.ZstdCompressor().compress(data), ".zst"
    return data, ""


def write(name: str, data: bytes) -> str:
    d = tempfile.mkdtemp(prefix="props-")
    path = os.path.join(d, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def read_all(spec: SourceSpec, path: str) -> tuple[list[Document], list[DeadLetter], ReadStats]:
    stats = ReadStats()
    recs = list(read_path(spec, path, stats))
    return [r for r in recs if isinstance(r, Document)], [r for r in recs if isinstance(r, DeadLetter)], stats


def check(plan: Plan, docs, dead, stats: ReadStats, raw_records: int, newline: str = "\n") -> None:
    good = [t.replace("\n", newline).strip() for what, t in plan if what == "good"]
    n_bad = sum(what.startswith("bad") for what, _ in plan)
    assert [d.text for d in docs] == good  # every good record exactly once, in order
    if not good and not n_bad:  # nothing to read: the file is accounted for by one row
        assert len(dead) == 1
        return
    assert len(dead) == n_bad, [d.reason for d in dead]
    assert stats.records == raw_records
    assert stats.unaccounted() == 0


ENCODINGS = st.sampled_from(["utf-8", "gb18030", "utf-16-le"])
NEWLINES = st.sampled_from(["\n", "\r\n", "\r"])
COMPRESSION = st.sampled_from(["", "gz", "zst"])


def line_file(lines: list[bytes], newline: str, enc: str, final_newline: bool) -> bytes:
    nl = newline.encode(enc)
    body = nl.join(lines) + (nl if final_newline and lines else b"")
    return (codecs.BOM_UTF16_LE if enc == "utf-16-le" else b"") + body


def spec_for(enc: str, fmt: str, **kw) -> SourceSpec:
    # UTF-16 is found by its BOM ("auto"); the others are declared, so detection's guess is not under test here
    return SourceSpec(kind="news", format=fmt, paths=(), encoding="auto" if enc == "utf-16-le" else enc, **kw)


@PROPS
@given(plan=plans(["bytes", "garbage"]), enc=ENCODINGS, newline=NEWLINES, how=COMPRESSION, final=st.booleans(), junk=st.binary(max_size=40))
def test_txt_lines(plan, enc, newline, how, final, junk):
    lines = []
    for what, t in plan:
        if what == "bad:bytes":
            lines.append(encode_line(t, enc) + BAD_BYTES[enc] + encode_line(t, enc))
        elif what == "bad:garbage":
            lines.append(garbage(junk, enc))
        else:
            lines.append(encode_line(t, enc))
    data, ext = compress(line_file(lines, newline, enc, final), how)
    docs, dead, stats = read_all(spec_for(enc, "txt"), write("a.txt" + ext, data))
    # a blank last line with no line break after it is no line at all
    check(plan, docs, dead, stats, len(lines) - (not final and bool(lines) and lines[-1] == b""))


@PROPS
@given(plan=plans(["bytes", "json", "deep", "number", "garbage", "array"], allow_newline=True), enc=ENCODINGS, newline=NEWLINES,
       how=COMPRESSION, junk=st.binary(max_size=40))
def test_jsonl_lines(plan, enc, newline, how, junk):
    lines = []
    for what, t in plan:
        good = json.dumps({"text": t, "meta": {"n": len(t)}}, ensure_ascii=False)
        bad = {
            "bad:bytes": lambda: encode_line(good[:-2], enc) + BAD_BYTES[enc] + encode_line(good[-2:], enc),
            "bad:json": lambda: encode_line(good[:-1], enc),
            "bad:deep": lambda: encode_line("[" * 50000 + "]" * 50000, enc),
            "bad:number": lambda: encode_line('{"text": "x", "n": ' + "7" * 5000 + "}", enc),
            "bad:garbage": lambda: garbage(junk, enc),
            "bad:array": lambda: encode_line(json.dumps([t], ensure_ascii=False), enc),
        }
        lines.append(encode_line(good, enc) if what == "good" else b"" if what == "blank" else bad[what]())
    data, ext = compress(line_file(lines, newline, enc, True), how)
    docs, dead, stats = read_all(spec_for(enc, "jsonl"), write("a.jsonl" + ext, data))
    check(plan, docs, dead, stats, len(lines))


def csv_field(t: str) -> str:
    return '"' + t.replace('"', '""') + '"'


def no_quote_before_newline(t: str) -> str:
    """A quote right before a line break in a quoted field (the opening quote included) can close a quote an
    earlier row left open, and the bytes are then valid CSV either way (the lines `0,"0`, then `1,` and three
    quote characters, then `0"` are one record or two): no reader can tell, so the generator does not write it."""
    while '"\n' in t:
        t = t.replace('"\n', "\n")
    return t.strip() or "x"


@PROPS
@given(plan=plans(["bytes", "quote", "fields", "garbage"], allow_newline=True), enc=ENCODINGS, newline=NEWLINES,
       how=COMPRESSION, junk=st.binary(max_size=40))
def test_csv_rows(plan, enc, newline, how, junk):
    rows = []  # one entry per CSV record (a good record's quoted field may hold line breaks)
    plan = [(what, no_quote_before_newline(t)) for what, t in plan]
    for i, (what, t) in enumerate(plan):
        row = {
            "good": lambda: f"{i},{csv_field(t)}".encode(enc),
            "blank": lambda: b"",
            "bad:bytes": lambda: f"{i},".encode(enc) + BAD_BYTES[enc] + t.replace("\n", " ").replace('"', "").encode(enc),
            "bad:quote": lambda: (f'{i},"' + (t.replace('"', "").strip() or "x")).replace("\n", " ").encode(enc),  # a quote left open
            "bad:fields": lambda: f"{i},{csv_field(t)},{csv_field(t)}".encode(enc),
            "bad:garbage": lambda: garbage(junk, enc).replace(b'"', b"\xff"),
        }[what]()
        rows.append(row.replace("\n".encode(enc), newline.encode(enc)) if what == "good" else row)
    data, ext = compress(line_file(["id,text".encode(enc)] + rows, newline, enc, True), how)
    docs, dead, stats = read_all(spec_for(enc, "csv", id_field="id"), write("a.csv" + ext, data))
    # + the header row; a quoted field keeps the file's own line breaks
    check(plan, docs, dead, stats, len(rows) + 1, newline)


@PROPS
@given(
    damage=st.lists(st.one_of(st.just(0), st.integers(-300, -1), st.integers(1, 3000), st.just("junk")), min_size=1, max_size=8),
    gz=st.booleans(),
)
def test_warc_records(damage, gz):
    """Records whose Content-Length is off by `delta` (0: intact) or that are followed by junk: every intact
    record that no damage touches is read exactly once, each damaged one costs at most itself (one dead letter
    or, where a short length ends on a CRLF CRLF inside it, a cut page and the junk after it)."""
    from tests.corpora.test_readers_recovery import _warc_records

    recs = _warc_records(len(damage))
    for i, d in enumerate(damage):
        if d == "junk":
            recs[i] += b"junk between records\r\n"
        elif d:
            head, _, rest = recs[i].partition(b"Content-Length: ")
            n, _, tail = rest.partition(b"\r\n")
            recs[i] = head + b"Content-Length: " + str(max(0, int(n) + d)).encode() + b"\r\n" + tail
    data = b"".join(gzip.compress(r) for r in recs) if gz else b"".join(recs)
    docs, dead, stats = read_all(SourceSpec(kind="web", format="warc", paths=()), write("a.warc" + (".gz" if gz else ""), data))
    intact = [f"http://x/{i}" for i, d in enumerate(damage) if d in (0, "junk")]
    urls = [d.url for d in docs]
    assert [u for u in urls if u in intact] == intact
    assert len(urls) == len(set(urls))
    n_damaged = sum(d not in (0, "junk") for d in damage)
    assert len(docs) + len(dead) <= len(damage) + n_damaged + sum(d == "junk" for d in damage)
    assert stats.records == len(damage) and stats.unaccounted() == 0
