"""Opening input files: transparent decompression and the character encoding ("auto" detection).

`auto` looks at the first `SNIFF_BYTES` of the (decompressed) file:
1. a byte-order mark -> UTF-8 (BOM stripped), UTF-32 or UTF-16 (LE/BE; UTF-32's BOM is checked first, as
   it begins with UTF-16 LE's);
2. else UTF-8 when the sample decodes as UTF-8, or nearly so (a few invalid bytes among many valid multi-byte
   characters: the file is UTF-8 with damaged lines, which readers turn into dead-letter rows);
3. else charset-normalizer choosing between GB18030 (superset of GBK/GB2312) and Big5; failing that, whichever
   of the two decodes the sample strictly, or nearly so (a few invalid bytes: readers decode line by line, so
   each damaged line is one dead-letter row, not the whole file);
4. else None: the content is not text we can read (binary junk), and readers dead-letter the whole file.
A sample more than 1% NUL bytes (and no UTF-16 BOM) is binary. Known limits: a file whose first MiB is pure ASCII
is read as UTF-8 (later GBK lines would be dead-lettered as invalid UTF-8: set `encoding` explicitly for such
files); UTF-16 without a BOM is not detected.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import os
import re
from typing import BinaryIO

SNIFF_BYTES = 1 << 20  # decide from the first MiB
_CN_BYTES = 1 << 18  # charset-normalizer sees at most this much of it

_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "cp936": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "gb18030": "gb18030",
    "big5": "big5",
    "cp950": "big5",
    "big5hkscs": "big5hkscs",
    "utf8": "utf-8",
    "utf_8": "utf-8",
    "utf-8": "utf-8",
    "utf-8-sig": "utf-8-sig",
}


def is_text_codec(name: str) -> bool:
    """Whether `name` is a codec that turns bytes into text (`hex`, `rot13`, `base64`, `zlib` are not; CPython
    marks text encodings in `CodecInfo._is_text_encoding`, which `bytes.decode` itself checks)."""
    try:
        return codecs.lookup(name)._is_text_encoding
    except (LookupError, TypeError, ValueError):
        return False


def canonical_encoding(name: str) -> str:
    """A codec name with the GBK family mapped to GB18030 (its superset), so declared GBK never fails on GB18030 chars."""
    try:
        norm = codecs.lookup(name).name
    except LookupError:
        norm = name.lower()
    return _ALIASES.get(norm, _ALIASES.get(name.lower(), norm))


class _ZstdRaw(io.RawIOBase):
    """Zstandard frames decompressed as a raw stream; a stream that stops inside a frame raises EOFError
    (zstandard's own stream_reader silently returns the partial data)."""

    def __init__(self, f: BinaryIO):
        import zstandard

        self._f = f
        self._dctx = zstandard.ZstdDecompressor()
        self._dobj = self._dctx.decompressobj()
        self._in_frame = False
        self._buf = b""
        self._error: BaseException | None = None  # raised once the data decoded before it has been read

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        import zstandard

        while not self._buf:
            if self._error is not None:
                raise self._error
            chunk = self._f.read(1 << 16)
            if not chunk:
                if self._in_frame:
                    raise EOFError("zstd stream ended inside a frame (truncated file)")
                return 0
            while chunk:
                self._in_frame = True
                try:
                    self._buf += self._dobj.decompress(chunk)
                except zstandard.ZstdError as e:  # trailing garbage or a corrupt frame: keep what came before
                    self._error = e
                    break
                if self._dobj.eof:
                    chunk = self._dobj.unused_data
                    self._dobj = self._dctx.decompressobj()
                    self._in_frame = False
                else:
                    chunk = b""
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            super().close()


def _open_raw(path: str) -> BinaryIO:
    if "://" in path:
        from apache_beam.io.filesystems import CompressionTypes, FileSystems

        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return open(path, "rb")


def compression_of(path: str) -> str | None:
    name = os.path.basename(path).lower()
    for suffix, kind in ((".gz", "gzip"), (".bz2", "bz2"), (".zst", "zstd")):
        if name.endswith(suffix):
            return kind
    return None


def open_binary(path: str) -> BinaryIO:
    """The file's bytes, decompressed when it ends in .gz/.bz2/.zst (or starts with the gzip magic).

    The returned object supports `read(n)` and `readline(limit)`; a truncated or corrupt compressed stream
    raises EOFError/OSError from them once the intact part has been read.
    """
    raw = _open_raw(path)
    kind = compression_of(path)
    if kind is None:
        buffered = raw if hasattr(raw, "peek") else io.BufferedReader(raw)
        if buffered.peek(2)[:2] == b"\x1f\x8b":
            kind, raw = "gzip", buffered
        else:
            return buffered
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if kind == "bz2":
        return bz2.BZ2File(raw, mode="rb")
    return io.BufferedReader(_ZstdRaw(raw), buffer_size=1 << 16)


def read_head(path: str, n: int = SNIFF_BYTES) -> tuple[bytes, Exception | None]:
    """Up to n bytes from the start of the (decompressed) file, and the error that cut it short, if any."""
    buf = bytearray()
    try:
        with open_binary(path) as f:
            while len(buf) < n:
                want = min(1 << 16, n - len(buf))
                # read1: one raw read at a time, so bytes decompressed before a truncation are not lost
                chunk = f.read1(want) if hasattr(f, "read1") else f.read(want)
                if not chunk:
                    break
                buf += chunk
    except (EOFError, OSError, ValueError) as e:
        return bytes(buf), e
    except Exception as e:  # noqa: BLE001 - zlib.error, zstd.ZstdError, lzma errors all end the same way
        return bytes(buf), e
    return bytes(buf), None


def bom_encoding(sample: bytes) -> str | None:
    """"utf-8-sig", "utf-32" or "utf-16" when the sample starts with that byte-order mark (Python's utf-16 and
    utf-32 codecs read the mark and its byte order), else None."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith(codecs.BOM_UTF32_LE) or sample.startswith(codecs.BOM_UTF32_BE):
        return "utf-32"
    if sample.startswith(codecs.BOM_UTF16_LE) or sample.startswith(codecs.BOM_UTF16_BE):
        return "utf-16"
    return None


def _mostly_utf8(sample: bytes) -> bool:
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(sample, final=False)
    bad = text.count("\ufffd")
    if bad == 0:
        return True
    good = sum(1 for c in text if c > "\x7f") - bad
    return good >= 3 * bad  # GBK read as UTF-8 gives ~0.3 accidental good chars per bad one, Big5 ~0.16


def _decodes_nearly(sample: bytes, enc: str) -> bool:
    """Whether the sample decodes under `enc` with at most a few invalid bytes (one per 1000 characters, at
    least 3): a file with a damaged line is still that encoding, and readers dead-letter the damaged lines."""
    text = codecs.getincrementaldecoder(enc)("replace").decode(sample, final=False)
    bad = text.count("\ufffd")
    return bad == 0 or bad <= max(3, len(text) // 1000)


def detect_encoding(sample: bytes) -> str | None:
    """The codec to read a file whose first bytes are `sample` (see the module docstring), or None for binary."""
    bom = bom_encoding(sample)
    if bom:
        return bom
    nuls = sample.count(b"\x00")
    if nuls > len(sample) // 100:
        return None  # binary; a stray NUL or two in text is left to the readers (that line is dead-lettered)
    if nuls:
        sample = sample.replace(b"\x00", b"")
    if _mostly_utf8(sample):
        return "utf-8"
    cut = sample[:_CN_BYTES]
    nl = cut.rfind(b"\n")
    if nl > 0:
        cut = cut[: nl + 1]
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(cut, cp_isolation=["gb18030", "big5"]).best()
    except Exception:  # noqa: BLE001 - detection failing is not fatal, the plain tries follow
        best = None
    if best is not None and is_text_codec(best.encoding) and _decodes_nearly(cut, canonical_encoding(best.encoding)):
        return canonical_encoding(best.encoding)
    for enc in ("gb18030", "big5"):
        if _decodes_nearly(cut, enc):
            return enc
    return None


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def declared_html_charset(head: bytes) -> str | None:
    """The charset a `<meta charset=...>` / `<meta http-equiv content="...; charset=...">` declares, if known."""
    m = _META_CHARSET.search(head[:8192])
    if not m:
        return None
    name = m.group(1).decode("ascii", "ignore")
    if not is_text_codec(name):  # unknown, or a bytes-to-bytes codec such as "hex": sniff instead
        return None
    return canonical_encoding(name)


def decode_document(data: bytes, declared: str | None = None) -> tuple[str | None, str]:
    """Decode a whole record (an HTML file or WARC payload): BOM, then the declared charset, then detection.

    Returns (text, encoding); text is None when the bytes are not readable text. Invalid bytes under a declared
    or detected charset are replaced (a web page with one broken byte is still a page).
    """
    if declared and not is_text_codec(declared):
        declared = None  # a label such as "hex" or "rot13" names no text encoding: sniff instead
    enc = bom_encoding(data) or (canonical_encoding(declared) if declared else None) or detect_encoding(data[:SNIFF_BYTES])
    if enc is None:
        return None, "binary"
    return data.decode(enc, errors="replace"), enc
