"""Source readers: `read_path(spec, path)` yields one `Document` or one `DeadLetter` per input record.

What a record is, per format:
- `txt`: a non-blank line (`txt_mode = "line"`) or a blank-line separated block (`"block"`); location `path:LINE`.
- `jsonl`: a non-blank line holding one JSON object; location `path:LINE`.
- `csv`: a data row after the header row (a quoted field may span lines); location `path:LINE` of its first line.
- `html`: the whole file (main text via `corpora.html_extract.extract_main_text`); location `path#0`.
- `warc`: a 2xx `response`/`resource` record whose content type is HTML (extracted), or a WET `conversion`
  record (plain text); other records (requests, metadata, images, redirects) are not input; location `path#N`
  (N = the record's index among all WARC records of the file).
- `mediawiki`: an article page (namespace 0, not a redirect); other pages are not input; location `path#N`
  (N = index among all pages).
- `squad`: one article (SQuAD layout: its paragraph contexts joined with "\\n") or one CMRC record
  (`context_text`, id = `context_id`); location `path#N`. This format reads the whole (decompressed) JSON
  file into memory (no streaming JSON parser is installed); the others stream.

A file-level failure (an empty file, binary content, an undecodable encoding, a file that cannot be opened)
gives one dead-letter row for the file. A stream that breaks (a truncated .gz/.bz2/.zst, malformed XML) keeps
the records read before the break and gives one dead-letter row for the rest. A record longer than
`spec.max_record_bytes` (default 8 MiB) is a dead-letter row and is skipped without being held in memory
(for line-based formats; an HTML file or WARC payload is read up to the cap).

Fields: jsonl/csv join `spec.text_fields` (present, non-empty ones) with "\n"; jsonl field names may be dotted
paths into nested objects ("meta.url"). A CSV whose header has no "text" column while `text_fields` is the
default `("text",)` uses every column except the id/url fields (so `--source qa:csv=x.csv` works on any CSV);
an explicit `text_fields` none of which is in the header gives one dead-letter row for the file.

Ids: `spec.id_field`'s value where given (jsonl/csv: a field; squad: an article/record key, CMRC defaults to
`context_id`; mediawiki: a `<page>` child such as `id`; warc: a WARC header such as `WARC-Record-ID`), else `f"{kind}:{sha1(name)[:8]}:{basename}{:LINE|#N}"` where name is the file's path relative to the
source's glob root (`corpora.sources.relative_name`), so the same files give the same ids however their
path was spelled and wherever the corpus lives.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from corpora.document import DeadLetter, Document
from corpora.encoding import (
    bom_encoding,
    canonical_encoding,
    declared_html_charset,
    decode_document,
    detect_encoding,
    open_binary,
    read_head,
)
from corpora.sources import SourceSpec, format_of, relative_name

Record = Document | DeadLetter

#: errors that mean "the (compressed) byte stream broke", caught where a stream is read
_STREAM_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, ValueError)
try:  # pragma: no branch
    import zlib

    _STREAM_ERRORS += (zlib.error,)
except ImportError:  # pragma: no cover
    pass
try:
    import zstandard

    _STREAM_ERRORS += (zstandard.ZstdError,)
except ImportError:  # pragma: no cover
    pass


class _Ctx:
    def __init__(self, spec: SourceSpec, path: str):
        self.spec = spec
        self.path = path
        self.kind = spec.kind
        # ids hash the file's normalised name relative to the source's glob root, never the path as spelled
        name = relative_name(spec, path)
        self._prefix = f"{spec.kind}:{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}:{name.rsplit('/', 1)[-1]}"

    def loc(self, suffix: str) -> str:
        return self.path + suffix

    def derived_id(self, suffix: str) -> str:
        return self._prefix + suffix

    def dead(self, suffix: str, reason: str, raw: Any = "") -> DeadLetter:
        return DeadLetter(source=self.kind, location=self.loc(suffix), reason=reason, raw=raw)

    def doc(self, suffix: str, text: str, *, id: str | None = None, url=None, title=None) -> Document:
        return Document(
            id=id if id is not None else self.derived_id(suffix),
            source_kind=self.kind,
            location=self.loc(suffix),
            text=text,
            url=url,
            title=title,
        )


# ---------------------------------------------------------------------------------------------- records


def _as_text(value: Any) -> str | None:
    """A field value as text: strings as they are, lists of strings joined by newlines, numbers via str()."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        parts = [p for p in (_as_text(v) for v in value) if p and p.strip()]
        return "\n".join(parts) if parts else None
    if isinstance(value, dict):
        return None
    return str(value)


def _fields_record(ctx: _Ctx, suffix: str, get: Callable[[str], Any], raw: Any, text_fields) -> Record:
    """A Document from a record whose fields `get(name)` returns (None when absent), else a DeadLetter."""
    spec = ctx.spec
    parts = []
    for name in text_fields:
        value = _as_text(get(name))
        if value is not None and value.strip():
            parts.append(value.strip())
    if not parts:
        return ctx.dead(suffix, f"missing or empty text field ({', '.join(text_fields)})", raw)
    doc_id = None
    if spec.id_field:
        doc_id = _as_text(get(spec.id_field))
        if doc_id is None or not doc_id.strip():
            return ctx.dead(suffix, f"missing id field {spec.id_field!r}", raw)
        doc_id = doc_id.strip()
    title = _as_text(get(spec.title_field)) if spec.title_field else None
    url = _as_text(get(spec.url_field)) if spec.url_field else None
    return ctx.doc(suffix, "\n".join(parts), id=doc_id, url=url or None, title=title or None)


def _json_getter(obj: dict) -> Callable[[str], Any]:
    def get(name: str) -> Any:
        if name in obj:
            return obj[name]
        cur: Any = obj  # dotted path into nested objects: "meta.url"
        for part in name.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return None
            cur = cur[part]
        return cur

    return get


# ------------------------------------------------------------------------------------------------ lines


@dataclass
class _Line:
    lineno: int  # 1-based; 0 for a file-level problem
    text: str | None  # decoded line (line ending kept) or None on error
    raw: bytes | str
    error: str | None = None
    fatal: bool = False  # nothing more comes from this file after it
    nbytes: int = 0


def _file_encoding(ctx: _Ctx) -> tuple[str | None, str | None, bytes]:
    """(encoding, file-level error, head) for a text file."""
    head, err = read_head(ctx.path)
    if not head:
        return None, (f"cannot read: {err}" if err else "empty file"), head
    if ctx.spec.encoding.lower() != "auto":
        enc = canonical_encoding(ctx.spec.encoding)
        if enc == "utf-8" and bom_encoding(head) == "utf-8-sig":
            enc = "utf-8-sig"
        return enc, None, head
    enc = detect_encoding(head)
    if enc is None:
        why = "NUL bytes" if b"\x00" in head else "not UTF-8, GB18030 or Big5"
        return None, f"binary or undecodable content ({why})", head
    return enc, None, head


def _iter_lines(ctx: _Ctx) -> Iterator[_Line]:
    """Decoded lines; invalid bytes, NULs and over-long lines come as error lines; a broken stream ends it."""
    limit = ctx.spec.max_record_bytes
    enc, err, head = _file_encoding(ctx)
    if err:
        yield _Line(0, None, head[:1000], err, fatal=True)
        return
    assert enc is not None
    if enc.replace("_", "-").startswith(("utf-16", "utf-32")):
        yield from _iter_wide_lines(ctx, enc)
        return
    line_enc = "utf-8" if enc == "utf-8-sig" else enc
    lineno = 0
    with open_binary(ctx.path) as f:
        try:
            while True:
                line = f.readline(limit + 1)
                if not line:
                    return
                lineno += 1
                if lineno == 1 and enc == "utf-8-sig" and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                if len(line) > limit and not line.endswith(b"\n"):
                    total = len(line)
                    while True:  # skip the rest of the line without holding it
                        chunk = f.readline(1 << 20)
                        total += len(chunk)
                        if not chunk or chunk.endswith(b"\n"):
                            break
                    yield _Line(lineno, None, line[:1000], f"line longer than {limit} bytes ({total} bytes)", nbytes=total)
                    continue
                if b"\x00" in line:
                    yield _Line(lineno, None, line, "NUL byte in line (binary data?)", nbytes=len(line))
                    continue
                try:
                    text = line.decode(line_enc)
                except UnicodeDecodeError as e:
                    yield _Line(lineno, None, line, f"invalid {line_enc} bytes at byte {e.start} of the line", nbytes=len(line))
                    continue
                yield _Line(lineno, text, line, nbytes=len(line))
        except _STREAM_ERRORS as e:
            yield _Line(lineno + 1, None, "", f"truncated or corrupt compressed data after line {lineno}: {e}", fatal=True)


def _iter_wide_lines(ctx: _Ctx, enc: str) -> Iterator[_Line]:
    limit_chars = max(1, ctx.spec.max_record_bytes // 2)
    lineno = 0
    with io.TextIOWrapper(open_binary(ctx.path), encoding=enc, errors="strict", newline="") as f:
        try:
            while True:
                line = f.readline(limit_chars + 1)
                if not line:
                    return
                lineno += 1
                if len(line) > limit_chars and not line.endswith(("\n", "\r")):
                    while True:
                        chunk = f.readline(1 << 20)
                        if not chunk or chunk.endswith(("\n", "\r")):
                            break
                    yield _Line(lineno, None, line[:1000], f"line longer than {ctx.spec.max_record_bytes} bytes")
                    continue
                yield _Line(lineno, line, line, nbytes=len(line) * 2)
        except UnicodeDecodeError as e:
            yield _Line(lineno + 1, None, "", f"invalid {enc} data after line {lineno}: {e.reason}", fatal=True)
        except _STREAM_ERRORS as e:
            yield _Line(lineno + 1, None, "", f"truncated or corrupt compressed data after line {lineno}: {e}", fatal=True)


def _line_error(ctx: _Ctx, line: _Line) -> DeadLetter:
    return ctx.dead(f":{line.lineno}" if line.lineno else "", line.error or "unreadable line", line.raw)


# -------------------------------------------------------------------------------------------- formats


def _read_txt(ctx: _Ctx) -> Iterator[Record]:
    if ctx.spec.txt_mode == "block":
        yield from _read_txt_blocks(ctx)
        return
    for line in _iter_lines(ctx):
        if line.text is None:
            yield _line_error(ctx, line)
            continue
        text = line.text.strip()
        if text:
            yield ctx.doc(f":{line.lineno}", text)


def _read_txt_blocks(ctx: _Ctx) -> Iterator[Record]:
    limit = ctx.spec.max_record_bytes
    start, parts, size, error, raw = 0, [], 0, None, b""

    def flush() -> Record | None:
        if not start:
            return None
        if error:
            return ctx.dead(f":{start}", error, raw)
        return ctx.doc(f":{start}", "\n".join(parts))

    for line in _iter_lines(ctx):
        if line.fatal:  # the block in progress (if any) was cut short: it is the one dead-letter row
            yield ctx.dead(f":{start}", line.error or "", raw) if start else _line_error(ctx, line)
            return
        if line.text is not None and not line.text.strip():
            rec = flush()
            if rec is not None:
                yield rec
            start, parts, size, error, raw = 0, [], 0, None, b""
            continue
        if not start:
            start, raw = line.lineno, line.raw
        size += line.nbytes
        if error:
            continue
        if line.text is None:
            error, raw = f"line {line.lineno}: {line.error}", line.raw
        elif size > limit:
            error, parts = f"block longer than {limit} bytes", []
        else:
            parts.append(line.text.strip())
    rec = flush()
    if rec is not None:
        yield rec


def _read_jsonl(ctx: _Ctx) -> Iterator[Record]:
    for line in _iter_lines(ctx):
        if line.text is None:
            yield _line_error(ctx, line)
            continue
        if not line.text.strip():
            continue
        suffix = f":{line.lineno}"
        try:
            obj = json.loads(line.text)
        except json.JSONDecodeError as e:
            yield ctx.dead(suffix, f"malformed JSON: {e.msg} at column {e.colno}", line.text)
            continue
        if not isinstance(obj, dict):
            yield ctx.dead(suffix, f"not a JSON object (a {type(obj).__name__})", line.text)
            continue
        yield _fields_record(ctx, suffix, _json_getter(obj), line.text, ctx.spec.text_fields)


class _CsvFeed:
    """Feeds decoded lines to csv.reader and remembers which lines (and errors) the current row took."""

    def __init__(self, ctx: _Ctx):
        self.ctx = ctx
        self.lines = _iter_lines(ctx)
        self.row_lines: list[_Line] = []
        self.row_bytes = 0
        self.stop: _Line | None = None  # fatal line, or an over-long record

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.stop is not None:
            raise StopIteration
        line = next(self.lines)
        if line.fatal:
            self.stop = line
            raise StopIteration
        self.row_lines.append(line)
        self.row_bytes += line.nbytes
        if self.row_bytes > self.ctx.spec.max_record_bytes:
            self.stop = _Line(self.row_lines[0].lineno, None, line.raw, f"CSV record longer than {self.ctx.spec.max_record_bytes} bytes (unclosed quote?)", fatal=True)
            raise StopIteration
        return line.text if line.text is not None else "\n"

    def take(self) -> tuple[int, str | None, str]:
        """(first line number, first error, raw text) of the row just read; resets for the next row."""
        lines, self.row_lines, self.row_bytes = self.row_lines, [], 0
        first = lines[0].lineno if lines else 0
        error = next((f"line {ln.lineno}: {ln.error}" for ln in lines if ln.error), None)
        raw = "".join(ln.text if ln.text is not None else _bytes_repr(ln.raw) for ln in lines)
        return first, error, raw


def _bytes_repr(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw[:4000].decode("utf-8", "backslashreplace")


def _read_csv(ctx: _Ctx) -> Iterator[Record]:
    spec = ctx.spec
    if csv.field_size_limit() < spec.max_record_bytes:
        csv.field_size_limit(spec.max_record_bytes)
    feed = _CsvFeed(ctx)
    reader = csv.reader(feed)
    header: list[str] | None = None
    text_fields: tuple[str, ...] = spec.text_fields
    while True:
        try:
            row = next(reader)
            csv_error = None
        except StopIteration:
            break
        except csv.Error as e:
            row, csv_error = None, f"malformed CSV: {e}"
        first, line_error, raw = feed.take()
        suffix = f":{first}"
        if feed.stop is not None:
            break  # the row was cut short (broken stream or over-long record): only the stop row below counts
        if header is None:
            if line_error or csv_error or not row:
                yield ctx.dead(suffix, f"unreadable CSV header ({line_error or csv_error or 'empty'})", raw)
                return
            header = [h.strip() for h in row]
            if header and header[0].startswith("\ufeff"):
                header[0] = header[0][1:]
            if spec.text_fields == ("text",) and "text" not in header:
                # default text_fields and no "text" column: every column except id/url makes the text
                text_fields = tuple(h for h in header if h and h not in (spec.id_field, spec.url_field))
            elif not any(f in header for f in text_fields):
                yield ctx.dead(suffix, f"CSV header has none of the text fields {list(text_fields)} (columns: {', '.join(header)})", raw)
                return
            continue
        if row == [] and not line_error:
            continue  # a blank line
        if line_error or csv_error:
            yield ctx.dead(suffix, line_error or csv_error or "", raw)
            continue
        assert row is not None
        if len(row) != len(header):
            yield ctx.dead(suffix, f"expected {len(header)} fields, got {len(row)}", raw)
            continue
        values = dict(zip(header, row))
        yield _fields_record(ctx, suffix, values.get, raw, text_fields)
    if feed.stop is not None:
        stop = feed.stop
        yield ctx.dead(f":{stop.lineno}" if stop.lineno else "", stop.error or "", stop.raw)


def _extract(html: str, url: str | None) -> tuple[str | None, str]:
    from corpora.html_extract import extract_main_text  # owned by corpora/html_extract.py; imported lazily

    return extract_main_text(html, url)


def _html_record(ctx: _Ctx, suffix: str, data: bytes, declared: str | None, url: str | None, id: str | None = None) -> Record:
    if ctx.spec.encoding.lower() != "auto":
        html: str | None = data.decode(canonical_encoding(ctx.spec.encoding), errors="replace")
    else:
        html, _ = decode_document(data, declared or declared_html_charset(data))
    if html is None:
        return ctx.dead(suffix, "binary content, not an HTML page", data[:1000])
    try:
        title, text = _extract(html, url)
    except ImportError:
        raise
    except Exception as e:  # noqa: BLE001 - a page the extractor chokes on is one dead-letter row
        return ctx.dead(suffix, f"HTML extraction failed: {type(e).__name__}: {e}", html)
    if not text or not text.strip():
        return ctx.dead(suffix, "no main text in HTML page (no body, or an empty one)", html)
    return ctx.doc(suffix, text.strip(), id=id, url=url, title=(title or None))


def _read_html(ctx: _Ctx) -> Iterator[Record]:
    limit = ctx.spec.max_record_bytes
    data, err = read_head(ctx.path, limit + 1)
    if err is not None:
        yield ctx.dead("#0", f"truncated or corrupt compressed data: {err}", data[:1000])
    elif not data:
        yield ctx.dead("#0", "empty file")
    elif len(data) > limit:
        yield ctx.dead("#0", f"HTML file larger than {limit} bytes", data[:1000])
    else:
        yield _html_record(ctx, "#0", data, None, None)


class _Trap:
    """A byte stream for warcio that turns a read error into end-of-stream and remembers it.

    Uses read1 so the bytes decompressed before a gzip truncation are not lost inside a buffered read.
    """

    def __init__(self, f):
        self.f = f
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        if self.error is not None:
            return b""
        try:
            if hasattr(self.f, "read1"):
                return self.f.read1(n if n and n > 0 else 1 << 16)
            return self.f.read(n)
        except _STREAM_ERRORS as e:
            self.error = e
            return b""

    def close(self) -> None:
        self.f.close()


_HTML_TYPES = ("text/html", "application/xhtml+xml")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.I)


def _charset_of(content_type: str | None) -> str | None:
    m = _CHARSET.search(content_type or "")
    if not m:
        return None
    import codecs

    try:
        codecs.lookup(m.group(1))
    except LookupError:
        return None
    return m.group(1)


def _read_warc(ctx: _Ctx) -> Iterator[Record]:
    from warcio.archiveiterator import ArchiveIterator

    limit = ctx.spec.max_record_bytes
    trap = _Trap(open_binary(ctx.path))
    index = -1
    cut_record = False
    try:
        for rec in ArchiveIterator(trap, arc2warc=True):
            index += 1
            suffix = f"#{index}"
            rtype = rec.rec_type
            url = rec.rec_headers.get_header("WARC-Target-URI")
            rec_id = rec.rec_headers.get_header(ctx.spec.id_field) if ctx.spec.id_field else None
            if rtype == "conversion":
                ctype = rec.rec_headers.get_header("Content-Type") or "text/plain"
                is_html = False
            elif rtype in ("response", "resource"):
                headers = rec.http_headers
                if headers is not None:
                    status = headers.get_statuscode() or ""
                    if not status.startswith("2"):
                        continue
                    ctype = headers.get_header("Content-Type") or ""
                else:
                    ctype = rec.rec_headers.get_header("Content-Type") or ""
                if not ctype.split(";")[0].strip().lower() in _HTML_TYPES:
                    continue
                is_html = True
            else:
                continue
            try:
                data = rec.content_stream().read(limit + 1)
            except Exception as e:  # noqa: BLE001 - a broken chunked/gzip payload is this record's problem
                yield ctx.dead(suffix, f"unreadable WARC payload: {type(e).__name__}: {e}", url or "")
                continue
            if len(data) > limit:
                yield ctx.dead(suffix, f"WARC payload larger than {limit} bytes", data[:1000])
                continue
            if getattr(rec.raw_stream, "limit", 0) > 0 and trap.error is not None:
                cut_record = True
                yield ctx.dead(suffix, f"truncated WARC record (stream broke: {trap.error})", data[:1000])
                break
            if is_html:
                yield _html_record(ctx, suffix, data, _charset_of(ctype), url, id=rec_id)
            else:
                text, _ = decode_document(data, _charset_of(ctype) or "utf-8")
                if not text or not text.strip():
                    yield ctx.dead(suffix, "empty WET text record", data[:1000])
                else:
                    yield ctx.doc(suffix, text.strip(), id=rec_id, url=url)
    except ImportError:
        raise
    except Exception as e:  # noqa: BLE001 - warcio raises ArchiveLoadFailed and friends on junk
        yield ctx.dead(f"#{index + 1}", f"malformed WARC after record {index}: {type(e).__name__}: {e}")
        return
    finally:
        trap.close()
    if trap.error is not None and not cut_record:
        yield ctx.dead(f"#{index + 1}", f"truncated or corrupt compressed data after record {index}: {trap.error}")


_NON_ARTICLE_LINK = re.compile(
    r"^\s*:?\s*(file|image|media|category|文件|檔案|档案|图像|圖像|分类|分類|媒体|媒體)\s*:", re.I
)
_DROP_TAGS = {"ref", "references", "gallery", "math", "table", "timeline", "score", "syntaxhighlight", "imagemap"}
_MAGIC_WORD = re.compile(r"__[A-Z]+__")


def wikitext_to_text(wikitext: str) -> str:
    """Plain text of a MediaWiki article: templates, refs, tables, files and categories removed, markup stripped."""
    import mwparserfromhell

    code = mwparserfromhell.parse(wikitext)
    doomed = list(code.filter_templates(recursive=False))
    doomed += [t for t in code.filter_tags(recursive=True) if str(t.tag).strip().lower() in _DROP_TAGS]
    doomed += [w for w in code.filter_wikilinks(recursive=True) if _NON_ARTICLE_LINK.match(str(w.title))]
    for node in doomed:
        try:
            code.remove(node)
        except ValueError:
            pass  # inside something already removed
    text = code.strip_code(normalize=True, collapse=True)
    text = _MAGIC_WORD.sub("", text)
    lines = [ln.strip() for ln in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _read_mediawiki(ctx: _Ctx) -> Iterator[Record]:
    from lxml import etree

    limit = ctx.spec.max_record_bytes
    trap = _Trap(open_binary(ctx.path))
    index = -1
    try:
        for _, page in etree.iterparse(trap, events=("end",), tag="{*}page", huge_tree=True):
            index += 1
            suffix = f"#{index}"
            try:
                ns = (page.findtext("{*}ns") or "0").strip()
                if ns != "0" or page.find("{*}redirect") is not None:
                    continue
                title = (page.findtext("{*}title") or "").strip() or None
                wikitext = page.findtext("{*}revision/{*}text") or ""
                page_id = None
                if ctx.spec.id_field:
                    page_id = (page.findtext("{*}" + ctx.spec.id_field) or "").strip()
                    if not page_id:
                        yield ctx.dead(suffix, f"missing id field {ctx.spec.id_field!r}", title or "")
                        continue
                if len(wikitext) > limit // 4 and len(wikitext.encode("utf-8")) > limit:
                    yield ctx.dead(suffix, f"page text longer than {limit} bytes", wikitext[:1000])
                    continue
                try:
                    text = wikitext_to_text(wikitext)
                except Exception as e:  # noqa: BLE001 - odd markup is this page's problem only
                    yield ctx.dead(suffix, f"wikitext parse failed: {type(e).__name__}: {e}", wikitext)
                    continue
                if not text:
                    yield ctx.dead(suffix, "article has no text", wikitext)
                    continue
                yield ctx.doc(suffix, text, id=page_id, title=title)
            finally:
                page.clear()
                while page.getprevious() is not None:
                    del page.getparent()[0]
    except etree.XMLSyntaxError as e:
        why = f"stream broke: {trap.error}" if trap.error is not None else str(e)
        yield ctx.dead(f"#{index + 1}", f"malformed or truncated XML after page {index}: {why}")
    finally:
        trap.close()


def _read_squad(ctx: _Ctx) -> Iterator[Record]:
    spec = ctx.spec
    enc, err, head = _file_encoding(ctx)
    if err:
        yield ctx.dead("", err, head[:1000])
        return
    try:
        with open_binary(ctx.path) as f:
            data = f.read()
    except _STREAM_ERRORS as e:
        yield ctx.dead("", f"truncated or corrupt compressed data: {e}")
        return
    try:
        text = data.decode(enc or "utf-8")
        obj = json.loads(text)
    except UnicodeDecodeError as e:
        yield ctx.dead("", f"invalid {enc} bytes at byte {e.start}", data[max(0, e.start - 200) : e.start + 200])
        return
    except json.JSONDecodeError as e:
        yield ctx.dead("", f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}", text[max(0, e.pos - 200) : e.pos + 200])
        return
    title_field = spec.title_field or "title"
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):  # SQuAD layout
        for i, article in enumerate(obj["data"]):
            suffix = f"#{i}"
            raw = json.dumps(article, ensure_ascii=False)[:1000] if not isinstance(article, str) else article
            if not isinstance(article, dict):
                yield ctx.dead(suffix, "article is not a JSON object", raw)
                continue
            paragraphs = article.get("paragraphs")
            contexts = []
            if isinstance(paragraphs, list):
                for p in paragraphs:
                    c = p.get("context") if isinstance(p, dict) else None
                    if isinstance(c, str) and c.strip():
                        contexts.append(c.strip())
            if not contexts:
                yield ctx.dead(suffix, "article has no paragraph context", raw)
                continue
            doc_id = None
            if spec.id_field:
                doc_id = _as_text(article.get(spec.id_field))
                if not doc_id:
                    yield ctx.dead(suffix, f"missing id field {spec.id_field!r}", raw)
                    continue
            yield ctx.doc(suffix, "\n".join(contexts), id=doc_id, title=_as_text(article.get(title_field)) or None,
                          url=_as_text(article.get(spec.url_field)) if spec.url_field else None)
    elif isinstance(obj, list):  # CMRC 2018 layout
        id_field = spec.id_field or "context_id"
        for i, rec in enumerate(obj):
            suffix = f"#{i}"
            raw = json.dumps(rec, ensure_ascii=False)[:1000]
            if not isinstance(rec, dict):
                yield ctx.dead(suffix, "record is not a JSON object", raw)
                continue
            text = _as_text(rec.get("context_text"))
            if not text or not text.strip():
                yield ctx.dead(suffix, "missing or empty context_text", raw)
                continue
            rec_id = _as_text(rec.get(id_field))
            if spec.id_field and not rec_id:
                yield ctx.dead(suffix, f"missing id field {id_field!r}", raw)
                continue
            yield ctx.doc(suffix, text.strip(), id=rec_id or None, title=_as_text(rec.get(title_field)) or None,
                          url=_as_text(rec.get(spec.url_field)) if spec.url_field else None)
    else:
        yield ctx.dead("", 'not the SQuAD layout {"data": [...]} nor the CMRC layout [{"context_text": ...}]', text[:1000])


_READERS: dict[str, Callable[[_Ctx], Iterator[Record]]] = {
    "txt": _read_txt,
    "jsonl": _read_jsonl,
    "csv": _read_csv,
    "html": _read_html,
    "warc": _read_warc,
    "mediawiki": _read_mediawiki,
    "squad": _read_squad,
}


def read_path(spec: SourceSpec, path: str) -> Iterator[Document | DeadLetter]:
    """Every record of one file as a Document or a DeadLetter (see the module docstring); never raises for bad input.

    A file that yields no record at all (empty, or only blank lines) gives one DeadLetter, so every file
    is accounted for. Raises UserError only when the format cannot be told from the file name.
    """
    fmt = format_of(spec, path)
    ctx = _Ctx(spec, path)
    head, err = read_head(path, 1)
    if not head:
        yield ctx.dead("", f"cannot read: {err}" if err is not None else "empty file")
        return
    n = 0
    try:
        for rec in _READERS[fmt](ctx):
            n += 1
            yield rec
    except ImportError:
        raise  # a missing dependency is not the input's fault
    except Exception as e:  # noqa: BLE001 - bad input never crashes the job: the rest of the file is one row
        n += 1
        yield ctx.dead("", f"unreadable {fmt} file: {type(e).__name__}: {e}")
    if n == 0:
        yield ctx.dead("", "no records in file")
