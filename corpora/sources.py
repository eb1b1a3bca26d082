"""Source specs: what a `[[sources]]` table (or a `--source KIND[:FORMAT]=GLOB` shorthand) says to read.

```toml
[[sources]]
kind = "qa"                     # web | encyclopedia | news | qa
format = "csv"                  # jsonl | txt | csv | html | warc | mediawiki | squad  (else from the extension)
paths = ["data/zhidao/*.csv"]   # globs; .gz / .bz2 / .zst read transparently
encoding = "auto"               # auto (BOM, UTF-8, GB18030/GBK, Big5) or any Python text codec name
text_fields = ["title", "question", "reply"]   # jsonl/csv: joined with "\\n" into the text
id_field = "id"                 # optional (jsonl/csv/squad): the doc id is that value
title_field = "title"           # optional
url_field = "url"               # optional
txt_mode = "line"               # txt: "line" (one document per line) or "block" (blank-line separated)
max_record_bytes = 8388608      # a longer line/record/file becomes a dead-letter row (default 8 MiB)
```
"""

from __future__ import annotations

import codecs
import difflib
import glob
import os
from dataclasses import dataclass, fields

from knowmix.corpora.document import FORMATS, SOURCE_KINDS
from knowmix.errors import UserError

#: default cap on one record (a line, a CSV row, an HTML file, a WARC payload, a wiki page's text)
DEFAULT_MAX_RECORD_BYTES = 8 * 1024 * 1024
TXT_MODES = ("line", "block")
#: a plain jsonl / txt-line file larger than this is read as byte ranges of this size (the clean job's
#: ``[input] split_bytes``; 0: read every file whole); see ``corpora.readers.plan_ranges``
DEFAULT_SPLIT_BYTES = 64 * 1024 * 1024


def check_split_bytes(value, where: str) -> int:
    """``split_bytes`` as given: a non-negative integer (0 turns splitting off), else a UserError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"{where}: split_bytes must be a non-negative integer (bytes; 0: never split a file), got {value!r}")
    return value
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst")


@dataclass(frozen=True)
class SourceSpec:
    kind: str
    format: str | None
    paths: tuple[str, ...]
    encoding: str = "auto"
    text_fields: tuple[str, ...] = ("text",)
    id_field: str | None = None
    title_field: str | None = None
    url_field: str | None = None
    txt_mode: str = "line"
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES


_KEYS = tuple(f.name for f in fields(SourceSpec))


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_choice(where: str, key: str, value, options) -> None:
    if value not in options:
        raise UserError(
            f"{where}: {key} = {value!r} is not one of {', '.join(options)}" + _suggest(str(value), options)
        )


def _str_tuple(where: str, key: str, value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise UserError(f"{where}: {key} must be a non-empty string or list of non-empty strings, got {value!r}")
    return tuple(value)


def _opt_str(where: str, key: str, value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise UserError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def _check_encoding(where: str, enc) -> str:
    if not isinstance(enc, str):
        raise UserError(f"{where}: encoding must be a string, got {enc!r}")
    if enc.lower() == "auto":
        return "auto"
    try:
        info = codecs.lookup(enc)
    except LookupError:
        raise UserError(f"{where}: encoding = {enc!r} is not a known codec (use \"auto\", \"utf-8\", \"gb18030\", \"big5\", ...)") from None
    if not info._is_text_encoding:  # hex, rot13, base64, zlib...: bytes-to-bytes or str-to-str, not a charset
        raise UserError(f"{where}: encoding = {enc!r} is not a text encoding (use \"auto\", \"utf-8\", \"gb18030\", \"big5\", ...)")
    return enc


def _validate(spec: SourceSpec, where: str) -> SourceSpec:
    _check_choice(where, "kind", spec.kind, SOURCE_KINDS)
    if spec.format is not None:
        _check_choice(where, "format", spec.format, FORMATS)
    _check_choice(where, "txt_mode", spec.txt_mode, TXT_MODES)
    if not isinstance(spec.max_record_bytes, int) or isinstance(spec.max_record_bytes, bool) or spec.max_record_bytes < 1:
        raise UserError(f"{where}: max_record_bytes must be a positive integer, got {spec.max_record_bytes!r}")
    return spec


def source_from_dict(d: dict, where: str) -> SourceSpec:
    """A spec from a TOML `[[sources]]` table; `where` (e.g. "job.toml: sources[2]") prefixes every error."""
    if not isinstance(d, dict):
        raise UserError(f"{where}: a source must be a table, got {type(d).__name__}")
    for key in d:
        if key not in _KEYS:
            raise UserError(f"{where}: unknown key {key!r}" + _suggest(key, _KEYS) + f"; known keys: {', '.join(_KEYS)}")
    for key in ("kind", "paths"):
        if key not in d:
            raise UserError(f"{where}: missing key {key!r}")
    kind = d["kind"]
    if not isinstance(kind, str):
        raise UserError(f"{where}: kind must be a string, got {kind!r}")
    fmt = _opt_str(where, "format", d.get("format"))
    spec = SourceSpec(
        kind=kind,
        format=fmt,
        paths=_str_tuple(where, "paths", d["paths"]),
        encoding=_check_encoding(where, d.get("encoding", "auto")),
        text_fields=_str_tuple(where, "text_fields", d.get("text_fields", ("text",))),
        id_field=_opt_str(where, "id_field", d.get("id_field")),
        title_field=_opt_str(where, "title_field", d.get("title_field")),
        url_field=_opt_str(where, "url_field", d.get("url_field")),
        txt_mode=d.get("txt_mode", "line"),
        max_record_bytes=d.get("max_record_bytes", DEFAULT_MAX_RECORD_BYTES),
    )
    return _validate(spec, where)


def source_from_shorthand(s: str) -> SourceSpec:
    """`KIND[:FORMAT]=GLOB`, e.g. `web=pages/*.html` or `qa:csv=zhidao.csv`."""
    where = f"--source {s!r}"
    head, sep, path = s.partition("=")
    if not sep or not head.strip() or not path.strip():
        raise UserError(f"{where}: expected KIND[:FORMAT]=GLOB, e.g. qa:csv=data/*.csv")
    kind, _, fmt = head.strip().partition(":")
    spec = SourceSpec(kind=kind.strip(), format=fmt.strip() or None, paths=(path.strip(),))
    return _validate(spec, where)


def _is_url(path: str) -> bool:
    return "://" in path


def expand_paths(spec: SourceSpec) -> list[str]:
    """The files the spec's globs match, sorted and de-duplicated; a glob matching nothing is a UserError.

    Local globs use `glob` (`**` is recursive); `scheme://` paths (gs://, s3://, ...) use Beam's FileSystems.
    """
    out: set[str] = set()
    for pattern in spec.paths:
        if _is_url(pattern):
            from apache_beam.io.filesystems import FileSystems

            try:
                matched = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
            except Exception as e:  # noqa: BLE001 - Beam raises BeamIOError and friends
                raise UserError(f"{spec.kind} source: cannot list {pattern!r}: {e}") from None
        else:
            matched = [p for p in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(p)]
        if not matched:
            raise UserError(f"{spec.kind} source: {pattern!r} matches no file")
        out.update(matched)
    return sorted(out)


_GLOB_CHARS = "*?["


def glob_root(pattern: str) -> str:
    """The directory part of a glob before its first wildcard, normalised: ``det/*.txt`` -> ``/abs/det``,
    ``./det/A.txt`` -> ``/abs/det``, ``cfg/../in/**/*.jsonl`` -> ``/abs/in``; a URL keeps its ``scheme://``."""
    first = min((i for i in (pattern.find(c) for c in _GLOB_CHARS) if i >= 0), default=len(pattern))
    head = pattern[:first]
    if _is_url(pattern):
        return head.rsplit("/", 1)[0]
    return os.path.abspath(os.path.dirname(os.path.expanduser(head)) or ".")


def source_root(spec: SourceSpec) -> str | None:
    """The directory every file of ``spec`` is named relative to: its globs' common root (None: no globs)."""
    roots = sorted({glob_root(p) for p in spec.paths})
    if not roots:
        return None
    if len(roots) == 1:
        return roots[0]
    if any(_is_url(r) for r in roots):
        return os.path.commonprefix(roots).rsplit("/", 1)[0]
    return os.path.commonpath(roots)


def relative_name(spec: SourceSpec, path: str) -> str:
    """The name a file goes by in ids and locations: its path relative to the source's glob root, normalised.

    So ``det/A.txt``, ``./det/A.txt``, ``/abs/det/A.txt`` or a run from another directory name the file the
    same (``A.txt``), and moving the corpus elsewhere changes no id. A path outside the root (or a spec with no
    globs) keeps its absolute normalised path. Undecodable bytes of a file name show as ``\\xNN``.
    """
    root = source_root(spec)
    if _is_url(path):
        return path[len(root) :].lstrip("/") if root and path.startswith(root + "/") else path
    name = os.path.abspath(os.path.expanduser(path))
    if root is not None and not _is_url(root):
        rel = os.path.relpath(name, root)
        if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
            name = rel
    return os.fsencode(name.replace(os.sep, "/")).decode("utf-8", "backslashreplace")


_EXT_FORMATS = (
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
    (".txt", "txt"),
    (".csv", "csv"),
    (".html", "html"),
    (".htm", "html"),
    (".xhtml", "html"),
    (".warc", "warc"),
    (".wet", "warc"),
    (".arc", "warc"),
    (".xml", "mediawiki"),
    (".json", "squad"),
)


def format_of(spec: SourceSpec, path: str) -> str:
    """The spec's explicit format, else the one the file name says (compression suffixes ignored).

    `.json` alone is SQuAD/CMRC JSON; a compressed `.json.gz`/`.json.zst`/`.json.bz2` is JSON lines.
    """
    if spec.format is not None:
        return spec.format
    name = os.path.basename(path).lower()
    compressed = False
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name, compressed = name[: -len(suffix)], True
            break
    if compressed and name.endswith(".json"):
        return "jsonl"
    for ext, fmt in _EXT_FORMATS:
        if name.endswith(ext):
            return fmt
    raise UserError(f"{path}: cannot tell the format from the file name; set format = one of {', '.join(FORMATS)}")
