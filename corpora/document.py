"""The two things a reader yields for every input record: a `Document` or a `DeadLetter`.

Every input record (a line, a CSV row, a JSON article, an HTML file, a WARC response, a wiki page) gives
exactly one of them, which is what keeps `input == output + dead_letter + sum(dropped)` exact downstream.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE_KINDS = ("web", "encyclopedia", "news", "qa")
FORMATS = ("jsonl", "txt", "csv", "html", "warc", "mediawiki", "squad")

#: a dead-letter row keeps at most this many characters of the offending input
RAW_LIMIT = 1000


@dataclass(frozen=True)
class Document:
    """One document read from a source: `text` is the raw text (not yet normalised)."""

    id: str
    source_kind: str
    location: str  # path plus ":LINE" (line-based formats) or "#RECORD" (record-based formats)
    text: str
    url: str | None = None
    title: str | None = None

    def __post_init__(self) -> None:
        if self.source_kind not in SOURCE_KINDS:
            raise ValueError(f"unknown source kind {self.source_kind!r} (expected one of {', '.join(SOURCE_KINDS)})")

    def to_row(self) -> dict:
        return {
            "id": self.id,
            "source_kind": self.source_kind,
            "location": self.location,
            "url": self.url,
            "title": self.title,
            "text": self.text,
        }


def _raw_text(raw: str | bytes | None) -> str:
    if raw is None:
        return ""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        # undecodable bytes stay visible as \xNN so the row is valid JSON text
        raw = bytes(raw[: RAW_LIMIT * 4]).decode("utf-8", errors="backslashreplace")
    return raw[:RAW_LIMIT]


@dataclass(frozen=True)
class DeadLetter:
    """Input that could not be read: where it was, why, and (truncated) what it was.

    `raw` may be given as bytes; it is decoded as UTF-8 with backslash escapes and cut to `RAW_LIMIT` chars.
    """

    source: str  # the source kind of the spec that read it
    location: str
    reason: str
    raw: str

    def __post_init__(self) -> None:
        if not isinstance(self.raw, str) or len(self.raw) > RAW_LIMIT:
            object.__setattr__(self, "raw", _raw_text(self.raw))

    def to_row(self) -> dict:
        return {"source": self.source, "location": self.location, "reason": self.reason, "raw": self.raw}
