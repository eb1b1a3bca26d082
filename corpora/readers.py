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

A bad record costs that record, never the rest of its file; readers recover at the next record boundary:
- lines end at "\n", "\r\n" or a lone "\r", and each line is decoded on its own with the file's (declared or
  detected) encoding, so an invalid byte (GBK, UTF-8), a bad UTF-16/32 unit, a NUL, or a line of another
  encoding is one dead-letter line; a JSON line that does not parse (malformed, a 5000-digit number, nesting
  too deep) is one dead letter;
- csv: a row that spans lines but is not one well-formed record (a quote left open: read strictly it breaks,
  has the wrong number of fields, or runs past `max_record_bytes`) is a dead letter for its first line, and
  the lines after it are read again as rows; an open quote on the last line is a dead letter;
- warc: records are framed by their header block and Content-Length; one that does not end where its length
  says costs that record, and reading goes on at the next line starting "WARC/1."; bytes between records that
  are no record are one dead letter; a charset label naming no text encoding ("hex", "rot13") is ignored;
- compressed files: what decoded before a break (a truncated .gz/.bz2/.zst, trailing garbage after the last
  gzip member or zstd frame, malformed XML) is kept, and the rest is one dead-letter row.
A file-level failure (an empty file, binary content, an undecodable encoding, a file that cannot be opened, a
name with no known extension, a name that is not valid UTF-8) gives one dead-letter row for the file. A record
longer than `spec.max_record_bytes` (default 8 MiB) is a dead-letter row and is skipped without being held in
memory (for line-based formats; an HTML file or WARC payload is read up to the cap). Known limit: CSV is
ambiguous where a later field's quote happens to close an earlier row's open quote into a valid record (a
quote right before a line break inside a quoted field); that is read as one record.

`read_path(spec, path, stats)` also counts what the file held (`ReadStats`: raw lines, CSV rows, WARC records,
pages, articles; those that are not input; dead letters that stand for a file), apart from what it yielded.

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

import codecs
import csv
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from knowmix.corpora.document import FORMATS, DeadLetter, Document
from knowmix.corpora.encoding import (
    bom_encoding,
    canonical_encoding,
    declared_html_charset,
    decode_document,
    detect_encoding,
    is_text_codec,
    open_binary,
    read_head,
)
from knowmix.corpora.sources import SourceSpec, format_of, relative_name
from knowmix.errors import UserError

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


@dataclass
class ReadStats:
    """What one `read_path` call saw, counted where the bytes become records, apart from what it yielded.

    `records` are the raw records of the format's `unit` (lines; blocks in txt block mode; csv rows, the header
    included; html pages; warc records; pages of a MediaWiki dump; articles of a SQuAD file or cmrc records); `not_input` those that
    are not input (blank lines, the CSV header, WARC requests and non-HTML responses, non-article pages);
    `file_rows` the dead letters that stand for a whole file or the unreadable rest of one rather than for one
    raw record. Every raw record that is input gives exactly one Document or DeadLetter, so
    `docs + dead == records - not_input + file_rows` (`unaccounted()` is the difference, 0 unless a record was lost).
    """

    unit: str = "records"
    records: int = 0
    not_input: int = 0
    file_rows: int = 0
    docs: int = 0
    dead: int = 0

    def unaccounted(self) -> int:
        return self.records - self.not_input + self.file_rows - self.docs - self.dead


class _Ctx:
    def __init__(self, spec: SourceSpec, path: str):
        self.spec = spec
        self.path = path
        self.kind = spec.kind
        # ids hash the file's normalised name relative to the source's glob root, never the path as spelled
        name = relative_name(spec, path)
        self._prefix = f"{spec.kind}:{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}:{name.rsplit('/', 1)[-1]}"

    range: "ByteRange | None" = None  # set by read_range: read only the lines this range owns

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
        if not is_text_codec(ctx.spec.encoding):  # sources.py refuses these; a hand-made spec may not
            return None, f"encoding {ctx.spec.encoding!r} is not a text encoding", head
        enc = canonical_encoding(ctx.spec.encoding)
        if enc == "utf-8" and bom_encoding(head) == "utf-8-sig":
            enc = "utf-8-sig"
        return enc, None, head
    enc = detect_encoding(head)
    if enc is None:
        why = "NUL bytes" if b"\x00" in head else "not UTF-8, GB18030 or Big5"
        return None, f"binary or undecodable content ({why})", head
    return enc, None, head


_READ_BLOCK = 1 << 20
_EOL_BYTES = re.compile(rb"\r\n?|\n")
_EOL_STR = re.compile(r"\r\n?|\n")
_STR_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
#: what a text-decoding error becomes inside a decoded wide (UTF-16/32) line: a lone surrogate, which no
#: strictly valid decoding produces (surrogateescape uses U+DC80..U+DCFF), so a line holding it had bad data
_BAD_UNIT = "\udc00"
codecs.register_error("knowmix.bad_unit", lambda e: (_BAD_UNIT, e.end))


def _blocks(f) -> Iterator[bytes]:
    """The stream's bytes a block at a time (read1: what came before a broken compressed stream is not lost)."""
    read = f.read1 if hasattr(f, "read1") else f.read
    while True:
        block = read(_READ_BLOCK)
        if not block:
            return
        yield block


def _split_lines(blocks: Iterator, limit: int, split: Callable, eol: re.Pattern) -> Iterator[tuple[Any, int, bool]]:
    """(line, size, too_long) for every line of a stream given as blocks (all bytes or all str).

    A line ends at "\\n", "\\r\\n" or a lone "\\r" (kept on the line). A line longer than `limit` comes once as
    (its first 1000 units, its size, True) and is skipped without being held in memory.
    """
    carry = None  # the unterminated tail of the last block
    skipping = -1  # size so far of an over-long line being skipped; -1 when not skipping
    head = None
    after_cr = False  # the last line ended in "\r": a "\n" starting the next block belongs to it
    for block in blocks:
        if after_cr:
            after_cr = False
            if block[:1] in ("\n", b"\n"):
                block = block[1:]
        if skipping >= 0:
            m = eol.search(block)
            if m is None:
                skipping += len(block)
                continue
            skipping += m.end()
            yield head, skipping, True
            skipping = -1
            after_cr = m.end() == len(block) and block[-1:] in ("\r", b"\r")
            block = block[m.end() :]
        if carry:
            block, carry = carry + block, None
        lines = split(block)
        if lines:
            last = lines[-1]
            if last[-1:] in ("\n", b"\n"):
                pass
            elif last[-1:] in ("\r", b"\r"):
                after_cr = True
            else:
                carry = lines.pop()
        if len(block) <= limit:  # no line of it can be too long
            for line in lines:
                yield line, len(line), False
        else:
            for line in lines:
                yield (line[:1000], len(line), True) if len(line) > limit else (line, len(line), False)
        if carry is not None and len(carry) > limit:
            skipping, head, carry = len(carry), carry[:1000], None
    if skipping >= 0:
        yield head, skipping, True
    elif carry:
        yield carry, len(carry), False


def _iter_lines(ctx: _Ctx) -> Iterator[_Line]:
    """Decoded lines, each decoded on its own with the file's encoding: invalid bytes, NULs and over-long lines
    come as error lines (one line each); a broken stream ends it with a fatal line. A context with a byte
    range (``read_range``) gives only the lines that range owns."""
    if ctx.range is not None:
        yield from _iter_range_lines(ctx)
        return
    limit = ctx.spec.max_record_bytes
    enc, err, head = _file_encoding(ctx)
    if err:
        yield _Line(0, None, head[:1000], err, fatal=True)
        return
    assert enc is not None
    line_enc = "utf-8" if enc == "utf-8-sig" else enc
    if enc.replace("_", "-").startswith(("utf-16", "utf-32")) or "\n\r".encode(line_enc) != b"\n\r":
        yield from _iter_wide_lines(ctx, enc)
        return
    lineno = 0
    with open_binary(ctx.path) as f:
        try:  # blocks that never end in "\r": a line's size and raw bytes do not depend on where blocks end
            for line, size, too_long in _split_lines(_whole_line_blocks(f), limit, _byte_lines, _EOL_BYTES):
                lineno += 1
                if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                if too_long:
                    yield _Line(lineno, None, line, f"line longer than {limit} bytes ({size} bytes)", nbytes=size)
                    continue
                if b"\x00" in line:
                    yield _Line(lineno, None, line, "NUL byte in line (binary data?)", nbytes=size)
                    continue
                try:
                    text = line.decode(line_enc)
                except UnicodeDecodeError as e:
                    yield _Line(lineno, None, line, f"invalid {line_enc} bytes at byte {e.start} of the line", nbytes=size)
                    continue
                yield _Line(lineno, text, line, nbytes=size)
        except _STREAM_ERRORS as e:
            yield _Line(lineno + 1, None, "", f"truncated or corrupt compressed data after line {lineno}: {e}", fatal=True)


def _byte_lines(data: bytes) -> list[bytes]:
    return data.splitlines(True)  # bytes split only at \n, \r\n and \r


def _str_lines(text: str) -> list[str]:
    return _STR_LINES.findall(text)


def _iter_wide_lines(ctx: _Ctx, enc: str) -> Iterator[_Line]:
    """Lines of a UTF-16/UTF-32 (or other non-ASCII-compatible) file, split after decoding so a line break is
    a whole code unit; a line holding an invalid unit is one error line, the lines around it are intact."""
    unit = 4 if "32" in enc else 2 if "16" in enc else 1  # bytes per code unit, for the size cap
    limit_chars = max(1, ctx.spec.max_record_bytes // unit)
    decoder = codecs.getincrementaldecoder(enc)("knowmix.bad_unit")

    def texts(f) -> Iterator[str]:
        for block in _blocks(f):
            text = decoder.decode(block, final=False)
            if text:
                yield text
        text = decoder.decode(b"", final=True)
        if text:
            yield text

    lineno = 0
    with open_binary(ctx.path) as f:
        try:
            for line, size, too_long in _split_lines(texts(f), limit_chars, _str_lines, _EOL_STR):
                lineno += 1
                if lineno == 1 and line.startswith("\ufeff"):
                    line = line[1:]
                if too_long:
                    yield _Line(lineno, None, line.replace(_BAD_UNIT, "\ufffd"), f"line longer than {ctx.spec.max_record_bytes} bytes", nbytes=size * unit)
                elif _BAD_UNIT in line:
                    yield _Line(lineno, None, line.replace(_BAD_UNIT, "\ufffd"), f"invalid {enc} data at character {line.index(_BAD_UNIT)} of the line", nbytes=size * unit)
                elif "\x00" in line:
                    yield _Line(lineno, None, line, "NUL character in line (binary data?)", nbytes=size * unit)
                else:
                    yield _Line(lineno, line, line, nbytes=size * unit)
        except _STREAM_ERRORS as e:
            yield _Line(lineno + 1, None, "", f"truncated or corrupt compressed data after line {lineno}: {e}", fatal=True)


def _line_error(ctx: _Ctx, line: _Line) -> DeadLetter:
    if line.fatal:  # the file, or the unreadable rest of it: no one raw record
        ctx.stats.file_rows += 1
    return ctx.dead(f":{line.lineno}" if line.lineno else "", line.error or "unreadable line", line.raw)


# -------------------------------------------------------------------------------------------- formats


def _read_txt(ctx: _Ctx) -> Iterator[Record]:
    if ctx.spec.txt_mode == "block":
        yield from _read_txt_blocks(ctx)
        return
    stats = ctx.stats
    stats.unit = "lines"
    for line in _iter_lines(ctx):
        stats.records += not line.fatal
        if line.text is None:
            yield _line_error(ctx, line)
            continue
        text = line.text.strip()
        if text:
            yield ctx.doc(f":{line.lineno}", text)
        else:
            stats.not_input += 1


def _read_txt_blocks(ctx: _Ctx) -> Iterator[Record]:
    limit = ctx.spec.max_record_bytes
    start, parts, size, error, raw = 0, [], 0, None, b""
    ctx.stats.unit = "blocks"

    def flush() -> Record | None:
        if not start:
            return None
        ctx.stats.records += 1
        if error:
            return ctx.dead(f":{start}", error, raw)
        return ctx.doc(f":{start}", "\n".join(parts))

    for line in _iter_lines(ctx):
        if line.fatal:  # the block in progress (if any) was cut short: it is the one dead-letter row
            if start:
                ctx.stats.records += 1
                yield ctx.dead(f":{start}", line.error or "", raw)
            else:
                yield _line_error(ctx, line)
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
    stats = ctx.stats
    stats.unit = "lines"
    for line in _iter_lines(ctx):
        stats.records += not line.fatal
        if line.text is None:
            yield _line_error(ctx, line)
            continue
        if not line.text.strip():
            stats.not_input += 1
            continue
        suffix = f":{line.lineno}"
        try:
            obj = json.loads(line.text)
        except json.JSONDecodeError as e:
            yield ctx.dead(suffix, f"malformed JSON: {e.msg} at column {e.colno}", line.text)
            continue
        except (ValueError, RecursionError) as e:  # a 5000-digit number, nesting deeper than the parser's stack
            yield ctx.dead(suffix, f"unreadable JSON: {type(e).__name__}: {_one_line(e)}", line.text)
            continue
        if not isinstance(obj, dict):
            yield ctx.dead(suffix, f"not a JSON object (a {type(obj).__name__})", line.text)
            continue
        yield _fields_record(ctx, suffix, _json_getter(obj), line.text, ctx.spec.text_fields)


class _CsvFeed:
    """Feeds decoded lines to csv.reader and remembers which lines (and errors) the current row took.

    Lines can be given back (`give_back`) to be read again: how a row that went wrong across lines is undone.
    """

    def __init__(self, ctx: _Ctx):
        self.ctx = ctx
        self.lines = _iter_lines(ctx)
        self.given_back: list[_Line] = []  # stack: the next line to read is the last one
        self.row_lines: list[_Line] = []
        self.row_bytes = 0
        self.over = False  # the current row went over max_record_bytes (its reading was cut there)
        self.stop: _Line | None = None  # the fatal line that ended the file
        self.exhausted = False  # the file's lines have all been read

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.over:
            raise StopIteration
        if self.given_back:
            line = self.given_back.pop()
        elif self.stop is not None:
            raise StopIteration
        else:
            try:
                line = next(self.lines)
            except StopIteration:
                self.exhausted = True
                raise
            if line.fatal:
                self.stop = line
                raise StopIteration
        self.row_lines.append(line)
        self.row_bytes += line.nbytes
        if len(self.row_lines) > 1 and self.row_bytes > self.ctx.spec.max_record_bytes:
            self.over = True
            raise StopIteration
        return line.text if line.text is not None else "\n"

    def take(self) -> list[_Line]:
        """The lines of the row just read; resets for the next row."""
        lines, self.row_lines, self.row_bytes, self.over = self.row_lines, [], 0, False
        return lines

    def give_back(self, lines: list[_Line]) -> None:
        self.given_back.extend(reversed(lines))


def _one_line(e: BaseException) -> str:
    """An exception's message on one line, cut to 200 characters."""
    return " ".join(str(e).split())[:200]


def _bytes_repr(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw[:4000].decode("utf-8", "backslashreplace")


def _row_text(lines: list[_Line]) -> str:
    return "".join(ln.text if ln.text is not None else _bytes_repr(ln.raw) for ln in lines)


def _quoting_error(text: str) -> str | None:
    """Why a row that spans lines is not one well-formed CSV record (read strictly), or None if it is.

    A quoted field may hold line breaks, but a quote left open runs on into the rows after it: read leniently,
    they become one record ending at the next quote or the end of the file. Read strictly, that record breaks
    (text after the closing quote, or no closing quote at all), which is what tells the two apart.
    """
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as e:
        return str(e)
    return None if len(rows) == 1 else f"{len(rows)} records"


def _read_csv(ctx: _Ctx) -> Iterator[Record]:
    spec = ctx.spec
    if csv.field_size_limit() < spec.max_record_bytes:
        csv.field_size_limit(spec.max_record_bytes)
    stats = ctx.stats
    stats.unit = "csv rows"
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
        over = feed.over
        lines = feed.take()
        if not lines:
            break
        suffix = f":{lines[0].lineno}"
        if feed.stop is not None and not feed.given_back:
            break  # the row was cut short by a broken stream: only the stop row below counts
        if feed.exhausted and not feed.given_back and len(lines) == 1 and '"' in _row_text(lines) and _quoting_error(_row_text(lines)):
            stats.records += 1  # the last row, ended by the end of the file inside a quoted field
            yield ctx.dead(suffix, f"unclosed quote at the end of the file ({_quoting_error(_row_text(lines))})", _row_text(lines))
            continue
        wrong_width = header is not None and row is not None and len(row) != len(header)
        if len(lines) > 1 and (over or csv_error or wrong_width or _quoting_error(_row_text(lines))):
            # a quote left open: this row's first line is the bad record; the lines after it are read again
            stats.records += 1
            if over:
                why = f"CSV record longer than {spec.max_record_bytes} bytes (unclosed quote?)"
            elif wrong_width:
                why = f"unclosed or stray quote: the record starting here spans {len(lines)} lines and has {len(row or ())} fields, not {len(header or ())}"
            else:
                why = f"unclosed or stray quote: the record starting here does not end well ({csv_error or _quoting_error(_row_text(lines))})"
            yield ctx.dead(suffix, why, _row_text(lines[:1]))
            feed.give_back(lines[1:])
            reader = csv.reader(feed)
            continue
        line_error = next((f"line {ln.lineno}: {ln.error}" for ln in lines if ln.error), None)
        raw = _row_text(lines)
        stats.records += 1
        if header is None:
            if line_error or csv_error or not row:
                stats.file_rows += 1
                yield ctx.dead(suffix, f"unreadable CSV header ({line_error or csv_error or 'empty'})", raw)
                return
            stats.not_input += 1
            header = [h.strip() for h in row]
            if header and header[0].startswith("\ufeff"):
                header[0] = header[0][1:]
            if spec.text_fields == ("text",) and "text" not in header:
                # default text_fields and no "text" column: every column except id/url makes the text
                text_fields = tuple(h for h in header if h and h not in (spec.id_field, spec.url_field))
            elif not any(f in header for f in text_fields):
                stats.file_rows += 1
                yield ctx.dead(suffix, f"CSV header has none of the text fields {list(text_fields)} (columns: {', '.join(header)})", raw)
                return
            continue
        if row == [] and not line_error:
            stats.not_input += 1
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
        stats.file_rows += 1
        yield ctx.dead(f":{stop.lineno}" if stop.lineno else "", stop.error or "", stop.raw)


def _extract(html: str, url: str | None) -> tuple[str | None, str]:
    from knowmix.corpora.html_extract import extract_main_text  # owned by corpora/html_extract.py; imported lazily

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
    ctx.stats.unit = "html pages"
    ctx.stats.records += 1
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
    return m.group(1) if is_text_codec(m.group(1)) else None


def _warc_record(ctx: _Ctx, suffix: str, rec, limit: int) -> Record | None:
    """One parsed WARC record (warcio's) as a Document or DeadLetter; None when it is not input (a request,
    metadata, a non-2xx or non-HTML response)."""
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
                return None
            ctype = headers.get_header("Content-Type") or ""
        else:
            ctype = rec.rec_headers.get_header("Content-Type") or ""
        if not ctype.split(";")[0].strip().lower() in _HTML_TYPES:
            return None
        is_html = True
    else:
        return None
    try:
        data = rec.content_stream().read(limit + 1)
    except Exception as e:  # noqa: BLE001 - a broken chunked/gzip payload is this record's problem
        return ctx.dead(suffix, f"unreadable WARC payload: {type(e).__name__}: {_one_line(e)}", url or "")
    if len(data) > limit:
        return ctx.dead(suffix, f"WARC payload larger than {limit} bytes", data[:1000])
    if is_html:
        return _html_record(ctx, suffix, data, _charset_of(ctype), url, id=rec_id)
    text, _ = decode_document(data, _charset_of(ctype) or "utf-8")
    if not text or not text.strip():
        return ctx.dead(suffix, "empty WET text record", data[:1000])
    return ctx.doc(suffix, text.strip(), id=rec_id, url=url)


class _Bytes:
    """A byte stream read through a buffer that can give bytes back (`unread`) and peek; a broken compressed
    stream reads as its end, and the error is kept in `error`."""

    def __init__(self, f):
        self.f = f
        self.buf = bytearray()
        self.error: BaseException | None = None
        self.eof = False

    def _more(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.f.read1(1 << 16) if hasattr(self.f, "read1") else self.f.read(1 << 16)
        except _STREAM_ERRORS as e:
            self.error, chunk = e, b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def readline(self, limit: int) -> bytes:
        start = 0
        while True:
            i = self.buf.find(b"\n", start, limit)
            if i >= 0:
                return self._take(i + 1)
            start = len(self.buf)
            if len(self.buf) >= limit or not self._more():
                return self._take(limit)

    def read(self, n: int) -> bytes:
        while len(self.buf) < n and self._more():
            pass
        return self._take(n)

    def skip(self, n: int) -> int:
        done = 0
        while done < n:
            chunk = self.read(min(n - done, 1 << 20))
            if not chunk:
                break
            done += len(chunk)
        return done

    def peek(self, n: int) -> bytes:
        while len(self.buf) < n and self._more():
            pass
        return bytes(self.buf[:n])

    def unread(self, data: bytes) -> None:
        self.buf[:0] = data


_WARC_START = b"WARC/1."
#: a record's end (CRLF CRLF) and the next record's first line inside one payload: the length was too long
_SWALLOWED_RECORD = re.compile(rb"\r\n\r\nWARC/1\.\d\r\n")
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\d+)[ \t]*\r?$", re.I | re.M)


def _warc_frames(r: _Bytes, limit: int) -> Iterator[tuple[str, bytes, Any]]:
    """The records of an uncompressed WARC stream, framed by their header block and Content-Length.

    Yields ("record", header, payload), ("large", header, payload head) for a payload over `limit` (skipped),
    ("bad", header, why) for a record that does not end where its Content-Length says (with CRLF CRLF) or has
    no valid header block, ("cut", header, why) when the stream
    breaks inside a record (the last one), and ("junk", first bytes, size) for bytes between records that
    are no record. After a bad record, reading goes on from the line after its "WARC/1." line, at the next
    line that starts with "WARC/1.": a wrong length costs that record only (bytes in between are its own).
    """
    junk, n_junk, in_bad = b"", 0, False
    at_line_start = True
    while True:
        line = r.readline(1 << 16)
        if not line:
            break
        is_start = at_line_start and line.startswith(_WARC_START)
        at_line_start = line.endswith(b"\n")
        if not is_start:
            if not in_bad and line.strip():
                n_junk += len(line)
                junk = (junk + line)[:1000]
            continue
        if n_junk:
            yield "junk", junk, n_junk
            junk, n_junk = b"", 0
        in_bad = False
        parts, size, complete = [line], len(line), False
        while size < (1 << 20):
            part = r.readline(1 << 16)
            if not part:
                break
            parts.append(part)
            size += len(part)
            if part in (b"\r\n", b"\n"):
                complete = True
                break
        head = b"".join(parts)
        m = _CONTENT_LENGTH.search(head)
        if r.error is not None and not complete:
            yield "cut", head, f"truncated WARC record (stream broke: {r.error})"
            return
        if not complete or m is None:
            r.unread(head[len(line) :])
            in_bad = at_line_start = True
            yield "bad", head, "WARC header block without a valid Content-Length"
            continue
        length = int(m.group(1))
        large = length > limit
        body = r.read(min(length, limit + 1))
        got = len(body) + (r.skip(length - len(body)) if large else 0)
        tail = r.read(4)
        if got < length and r.error is not None:
            yield "cut", head, f"truncated WARC record (stream broke: {r.error})"
            return
        ends_well = tail == b"\r\n\r\n" or (tail[:2] == b"\n\n" and (r.unread(tail[2:]) or True))
        if got == length and ends_well and not large and _SWALLOWED_RECORD.search(body):
            ends_well = False  # too long a Content-Length that happened to end on a CRLF CRLF: it took a record
        if got == length and ends_well:
            yield ("large" if large else "record"), head, body
            continue
        r.unread((b"" if large else body) + tail)
        in_bad = at_line_start = True
        yield "bad", head, f"WARC record does not end where its Content-Length ({length}) says"
    if r.error is not None:
        yield "cut", b"", f"truncated or corrupt compressed data: {r.error}"
    elif n_junk:
        yield "junk", junk, n_junk


def _read_warc(ctx: _Ctx) -> Iterator[Record]:
    from warcio.archiveiterator import ArchiveIterator

    limit = ctx.spec.max_record_bytes
    stats = ctx.stats
    stats.unit = "warc records"
    r = _Bytes(open_binary(ctx.path))
    try:
        if not r.peek(64).lstrip().startswith(b"WARC/"):  # an ARC file (or junk): warcio reads it as it can
            yield from _read_warc_stream(ctx, r)
            return
        index = -1
        for what, head, value in _warc_frames(r, limit):
            if what == "junk":
                stats.file_rows += 1
                yield ctx.dead(f"#{index + 1}", f"not a WARC record: {value} bytes between records", head)
                continue
            if what == "cut" and not head:
                stats.file_rows += 1
                yield ctx.dead(f"#{index + 1}", value.replace("data:", f"data after record {index}:"))
                continue
            index += 1
            stats.records += 1
            suffix = f"#{index}"
            if what in ("bad", "cut"):
                yield ctx.dead(suffix, value, head)
                continue
            if what == "large":
                yield ctx.dead(suffix, f"WARC record larger than {limit} bytes", head + value[:1000])
                continue
            try:
                rec = next(iter(ArchiveIterator(io.BytesIO(head + value + b"\r\n\r\n"), arc2warc=True)))
                out = _warc_record(ctx, suffix, rec, limit)
            except ImportError:
                raise
            except Exception as e:  # noqa: BLE001 - a record warcio cannot parse is this record's problem
                out = ctx.dead(suffix, f"unreadable WARC record: {type(e).__name__}: {_one_line(e)}", head)
            if out is None:
                stats.not_input += 1
            else:
                yield out
    finally:
        r.f.close()


def _read_warc_stream(ctx: _Ctx, r: _Bytes) -> Iterator[Record]:
    """ARC files (and anything that does not start as a WARC does), read by warcio's own iterator."""
    from warcio.archiveiterator import ArchiveIterator

    limit = ctx.spec.max_record_bytes
    stats = ctx.stats
    index = -1
    try:
        for rec in ArchiveIterator(r, arc2warc=True):
            index += 1
            stats.records += 1
            suffix = f"#{index}"
            if getattr(rec.raw_stream, "limit", 0) > 0 and r.error is not None:
                yield ctx.dead(suffix, f"truncated record (stream broke: {r.error})")
                return
            out = _warc_record(ctx, suffix, rec, limit)
            if out is None:
                stats.not_input += 1
            else:
                yield out
    except ImportError:
        raise
    except Exception as e:  # noqa: BLE001 - warcio raises ArchiveLoadFailed and friends on junk
        stats.file_rows += 1
        yield ctx.dead(f"#{index + 1}", f"malformed WARC/ARC after record {index}: {type(e).__name__}: {_one_line(e)}")
        return
    if r.error is not None:
        stats.file_rows += 1
        yield ctx.dead(f"#{index + 1}", f"truncated or corrupt compressed data after record {index}: {r.error}")


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
    stats = ctx.stats
    stats.unit = "pages"
    try:
        for _, page in etree.iterparse(trap, events=("end",), tag="{*}page", huge_tree=True):
            index += 1
            stats.records += 1
            suffix = f"#{index}"
            try:
                ns = (page.findtext("{*}ns") or "0").strip()
                if ns != "0" or page.find("{*}redirect") is not None:
                    stats.not_input += 1
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
            except Exception as e:  # noqa: BLE001 - anything odd in one page is that page's problem only
                yield ctx.dead(suffix, f"unreadable page: {type(e).__name__}: {_one_line(e)}")
            finally:
                page.clear()
                while page.getprevious() is not None:
                    del page.getparent()[0]
    except etree.XMLSyntaxError as e:
        why = f"stream broke: {trap.error}" if trap.error is not None else str(e)
        stats.file_rows += 1
        yield ctx.dead(f"#{index + 1}", f"malformed or truncated XML after page {index}: {why}")
    finally:
        trap.close()


def _read_squad(ctx: _Ctx) -> Iterator[Record]:
    spec = ctx.spec
    stats = ctx.stats
    stats.unit = "articles"
    stats.file_rows += 1  # until the file parses, any dead letter stands for the whole file
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
    except (ValueError, RecursionError) as e:
        yield ctx.dead("", f"unreadable JSON: {type(e).__name__}: {_one_line(e)}", text[:1000])
        return
    title_field = spec.title_field or "title"
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):  # SQuAD layout
        stats.file_rows -= 1
        stats.records += len(obj["data"])
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
        stats.unit, stats.file_rows, stats.records = "cmrc records", stats.file_rows - 1, stats.records + len(obj)
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


def _counted(ctx: _Ctx, fmt: str, stats: ReadStats, where: str, report_empty: bool) -> Iterator[Record]:
    """The records of ``_READERS[fmt]`` counted into ``stats``; an exception is one dead letter for the rest of
    the file (or range: ``where``), and a file that gave nothing is one (``report_empty``)."""
    try:
        for rec in _READERS[fmt](ctx):
            if isinstance(rec, Document):
                stats.docs += 1
            else:
                stats.dead += 1
            yield rec
    except ImportError:
        raise  # a missing dependency is not the input's fault
    except Exception as e:  # noqa: BLE001 - bad input never crashes the job: the rest of the file is one row
        stats.file_rows += 1
        stats.dead += 1
        yield ctx.dead("", f"unreadable {fmt} file{where}: {type(e).__name__}: {_one_line(e)}")
    if report_empty and stats.docs + stats.dead == 0:
        stats.file_rows += 1
        stats.dead += 1
        yield ctx.dead("", "no records in file")


def read_path(spec: SourceSpec, path: str | bytes, stats: ReadStats | None = None) -> Iterator[Document | DeadLetter]:
    """Every record of one file as a Document or a DeadLetter (see the module docstring); never raises for bad input.

    A file that yields no record at all (empty, or only blank lines) gives one DeadLetter, so every file
    is accounted for; so do a file whose format cannot be told from its name and a file whose name is not
    valid UTF-8 (it could not be written into a shard's `location`: rename it). `stats`, when given, is
    filled in as the file is read (see ReadStats). A path given as bytes is decoded as `os.fsdecode` does.
    """
    stats = stats if stats is not None else ReadStats()
    path = os.fsdecode(path)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        stats.file_rows += 1
        stats.dead += 1
        yield DeadLetter(spec.kind, shown, "file name is not valid UTF-8 (not read: rename the file)", "")
        return
    try:
        fmt = format_of(spec, path)
    except UserError:
        stats.file_rows += 1
        stats.dead += 1
        yield DeadLetter(spec.kind, path, f"cannot tell the format from the file name (not read: set format = one of {', '.join(FORMATS)})", "")
        return
    ctx = _Ctx(spec, path)
    ctx.stats = stats
    head, err = read_head(path, 1)
    if not head:
        stats.file_rows += 1
        stats.dead += 1
        yield ctx.dead("", f"cannot read: {err}" if err is not None else "empty file")
        return
    yield from _counted(ctx, fmt, stats, "", report_empty=True)


# ------------------------------------------------------------------------------------------- byte ranges
#
# A large plain JSONL or txt (line mode) file can be read as byte ranges, Hadoop-style: a line *starts* at
# byte 0 and after every line break ("\n", "\r\n", a lone "\r"); a range [start, end) owns the lines that
# start inside it, and reads each of them to its end even where that is past `end`. So every line is read
# by exactly one range, whatever the split size. A range's first line number is one plus the line starts
# of the ranges before it (`count_line_starts`, summed by the job): locations, ids and record ordinals are
# the ones a whole-file read gives. CSV stays whole: whether a byte offset is inside a quoted field can only
# be told by parsing from the file's start.


@dataclass(frozen=True)
class ByteRange:
    """Bytes [start, end) of a file; `first_line`: the line number of the first line starting in it;
    `report_empty`: this range gives the file's "no records in file" dead letter if it yields nothing
    (the job sets it on the first range of a file with no non-whitespace byte)."""

    start: int
    end: int
    first_line: int = 1
    report_empty: bool = False


_SPLITTABLE_FORMATS = ("jsonl", "txt")


def splittable_format(spec: SourceSpec, path: str) -> bool:
    """Whether the file's format is read line by line, one record a line (jsonl, txt in line mode), so it can
    be read as byte ranges when it is uncompressed (compression is checked by `plan_ranges`). Records of such a
    file are numbered by their line (the job's record ordinal), which no split changes."""
    try:
        fmt = format_of(spec, path)
    except UserError:
        return False
    return fmt in _SPLITTABLE_FORMATS and (fmt != "txt" or spec.txt_mode == "line")


#: a file up to this much larger than the split size is read whole (Hadoop's SPLIT_SLOP): no range of a few bytes
SPLIT_SLOP = 1.1


def plan_ranges(spec: SourceSpec, path: str, size: int, split_bytes: int) -> list[tuple[int, int]]:
    """The byte ranges to read a file of `size` bytes in, when the file is an uncompressed jsonl/txt-line file in
    an ASCII-compatible encoding (not UTF-16/32) larger than `SPLIT_SLOP` x `split_bytes`: ceil(size /
    split_bytes) ranges of equal size (each at most `split_bytes`), else [] (read the file whole). Equal ranges,
    not full ones and a remainder: Beam's local runner deals a stage's elements to its workers by count, so a
    tail range of a few KB would cost a worker the share of a full one (measured: 8 files of 6.2-6.3 MB at a
    6.25 MB split size gave one worker 6 of the 8 full pieces). Reads the file's head to tell its encoding."""
    from knowmix.corpora.encoding import compression_of

    if (split_bytes <= 0 or size <= split_bytes * SPLIT_SLOP or not splittable_format(spec, path)
            or compression_of(path)):
        return []
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return []
    ctx = _Ctx(spec, path)
    enc, err, head = _file_encoding(ctx)
    if err or enc is None or head[:2] == b"\x1f\x8b" or not _byte_lines_ok(enc):
        return []
    n = -(-size // split_bytes)
    bounds = [i * size // n for i in range(n + 1)]
    return list(zip(bounds, bounds[1:]))


def _byte_lines_ok(enc: str) -> bool:
    line_enc = "utf-8" if enc == "utf-8-sig" else enc
    return not enc.replace("_", "-").startswith(("utf-16", "utf-32")) and "\n\r".encode(line_enc) == b"\n\r"


def count_line_starts(path: str, start: int, end: int) -> tuple[int, bool]:
    """(how many lines start in bytes [start, end) of the file, whether those bytes hold anything but ASCII
    whitespace). Position p starts a line when p == 0 or byte p-1 ends a line ("\\n", or "\\r" not followed by
    "\\n"), so this reads bytes [start-1, end)."""
    from knowmix.corpora.encoding import _open_raw

    lo = max(0, start - 1)
    n = 1 if start == 0 and end > 0 else 0
    content = False
    pending_cr = False
    last = b""
    with _open_raw(path) as f:
        f.seek(lo)
        left = end - lo
        while left > 0:
            chunk = f.read(min(_READ_BLOCK, left))
            if not chunk:
                break
            left -= len(chunk)
            if pending_cr and chunk[:1] != b"\n":
                n += 1
            n += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
            pending_cr = chunk.endswith(b"\r")
            if pending_cr:
                n -= 1  # a "\r" ending the chunk: a lone one only if the next chunk starts with no "\n"
            if not content:  # byte start-1 (the first of the first chunk when start > 0) is not the range's
                content = bool((chunk[1:] if left + len(chunk) == end - lo and lo < start else chunk).strip())
            last = chunk[-1:]
    if last == b"\n":
        n -= 1  # a break at byte end-1 starts a line at `end`: the next range's
    return n, content


def _first_line_start(f, start: int) -> int | None:
    """The first position >= start where a line starts (`f` is positioned anywhere); None: at the end of file."""
    if start == 0:
        return 0
    f.seek(start - 1)
    pos = start - 1
    while True:
        chunk = f.read(_READ_BLOCK)
        if not chunk:
            return None
        m = _EOL_BYTES.search(chunk)
        if m is None:
            pos += len(chunk)
            continue
        if m.group() == b"\r" and m.end() == len(chunk):  # "\r" at the chunk's end: is it "\r\n"?
            nxt = f.read(1)
            return pos + m.end() + (1 if nxt == b"\n" else 0)
        return pos + m.end()


def _whole_line_blocks(f) -> Iterator[bytes]:
    """`_blocks`, but a block never ends in "\\r" (the "\\n" of a "\\r\\n" comes with it), so the sizes
    `_split_lines` reports add up to the bytes read."""
    for block in _blocks(f):
        while block.endswith(b"\r"):
            more = f.read(1)
            if not more:
                break
            block += more
            if more != b"\r":
                break
        yield block


def _iter_range_lines(ctx: _Ctx) -> Iterator[_Line]:
    """`_iter_lines` for the lines that start inside `ctx.range` (see the section comment)."""
    from knowmix.corpora.encoding import _open_raw

    rng = ctx.range
    assert rng is not None
    limit = ctx.spec.max_record_bytes
    enc, err, head = _file_encoding(ctx)
    if err or enc is None or not _byte_lines_ok(enc):
        if rng.start == 0:  # the file-level problem is reported once, by the first range
            yield _Line(0, None, head[:1000], err or f"encoding {enc} cannot be read by byte range", fatal=True)
        return
    line_enc = "utf-8" if enc == "utf-8-sig" else enc
    with _open_raw(ctx.path) as f:
        try:
            offset = _first_line_start(f, rng.start)
            if offset is None or offset >= rng.end:
                return
            f.seek(offset)
            lineno = rng.first_line - 1
            for line, size, too_long in _split_lines(_whole_line_blocks(f), limit, _byte_lines, _EOL_BYTES):
                if offset >= rng.end:
                    return
                offset += size
                lineno += 1
                yield _decoded_line(lineno, line, size, too_long, line_enc, limit)
        except _STREAM_ERRORS as e:
            yield _Line(0, None, "", f"cannot read bytes {rng.start}-{rng.end}: {e}", fatal=True)


def _decoded_line(lineno: int, line: bytes, size: int, too_long: bool, line_enc: str, limit: int) -> _Line:
    """One raw line as `_iter_lines` gives it for an ASCII-compatible encoding."""
    if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    if too_long:
        return _Line(lineno, None, line, f"line longer than {limit} bytes ({size} bytes)", nbytes=size)
    if b"\x00" in line:
        return _Line(lineno, None, line, "NUL byte in line (binary data?)", nbytes=size)
    try:
        text = line.decode(line_enc)
    except UnicodeDecodeError as e:
        return _Line(lineno, None, line, f"invalid {line_enc} bytes at byte {e.start} of the line", nbytes=size)
    return _Line(lineno, text, line, nbytes=size)


def read_range(spec: SourceSpec, path: str | bytes, rng: ByteRange, stats: ReadStats | None = None) -> Iterator[Document | DeadLetter]:
    """The records of the lines that start in byte range `rng` of a jsonl or txt (line mode) file, as
    `read_path` gives them for the whole file (same locations, ids, dead letters); `stats` counts this
    range's share. File-level dead letters come once per file (from the range at byte 0, or the one with
    `report_empty`)."""
    stats = stats if stats is not None else ReadStats()
    path = os.fsdecode(path)
    fmt = format_of(spec, path)
    if fmt not in _SPLITTABLE_FORMATS:
        raise ValueError(f"{path}: {fmt} files are read whole, not by byte range")
    ctx = _Ctx(spec, path)
    ctx.stats = stats
    ctx.range = rng
    yield from _counted(ctx, fmt, stats, f" (bytes {rng.start}-{rng.end})", report_empty=rng.report_empty)
