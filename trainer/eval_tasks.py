"""The task files ``knowmix eval`` reads, in the layouts their communities publish, as plain functions.

- ``cls``: CLUE single-sentence classification, JSON lines with ``sentence`` and ``label`` (TNEWS's and IFLYTEK's
  other fields ignored); ``pair``: CLUE sentence pairs, ``sentence1``, ``sentence2``, ``label`` (AFQMC, OCNLI,
  CMNLI; OCNLI's ``-`` = no gold label is a bad line).
- ``re``: relation classification, per line either the Chinese NRE TSV ``head \\t tail \\t relation \\t sentence``
  (FinRE, SanWen: blank lines between records are skipped; the entity spans are the first occurrences of the
  names that do not overlap) or OpenNRE JSON lines (``text`` or ``token``, ``h``/``t`` with ``name`` and ``pos``,
  ``relation``); ``--relations``: read by ``knowmix.relations.read_relation_file`` (relation2id.txt, rel2id.json).
- ``probe``: a KG TSV (header with ``head``, ``relation``, ``tail``, optionally ``tail_type``; or headerless
  ``head \\t relation \\t tail``) and a TOML file of per-relation templates (``located_in = "{head}位于{tail}。"``).

A malformed line becomes a :class:`Problem` (``path:line: reason``), is skipped and counted; only a missing or
unreadable file is a :class:`~knowmix.errors.UserError`.
"""

from __future__ import annotations

import json
import os
import string
import tomllib
from dataclasses import dataclass, field

from knowmix.errors import UserError

KINDS = ("cls", "pair", "re", "probe")


@dataclass
class Example:
    label: str
    text: str
    text_b: str | None = None
    head: tuple[int, int] | None = None  # half-open character spans in ``text`` (re)
    tail: tuple[int, int] | None = None
    line: int = 0  # where it was read (for a `path:line: reason` when it cannot be encoded)


@dataclass
class Split:
    path: str
    examples: list = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "path:line: reason", one per skipped line
    reported: int = 0  # how many of ``problems`` have been shown

    @property
    def skipped(self) -> int:
        return len(self.problems)


@dataclass
class Triple:
    head: str
    relation: str
    tail: str
    tail_type: str
    line: int = 0


def _lines(path: str):
    """(line number, text) of every line; a missing or undecodable file is a UserError."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for n, line in enumerate(fh, 1):
                yield n, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None


def _label(value) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, str)):
        text = str(value).strip()
        return text if text and text != "-" else None
    return None


def read_clue(path: str, pair: bool) -> Split:
    """CLUE JSON lines: ``sentence`` + ``label`` (``pair``: ``sentence1``, ``sentence2``, ``label``)."""
    split = Split(path)
    keys = ("sentence1", "sentence2") if pair else ("sentence",)
    for n, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            split.problems.append(f"{path}:{n}: not a JSON object")
            continue
        if not isinstance(obj, dict):
            split.problems.append(f"{path}:{n}: not a JSON object")
            continue
        texts = [obj.get(k) for k in keys]
        bad = [k for k, t in zip(keys, texts) if not isinstance(t, str) or not t.strip()]
        if bad:
            split.problems.append(f"{path}:{n}: no {bad[0]}")
            continue
        label = _label(obj.get("label"))
        if label is None:
            split.problems.append(f"{path}:{n}: no gold label ({obj.get('label')!r})")
            continue
        split.examples.append(Example(label, texts[0], texts[1] if pair else None, line=n))
    return split


def _find_pair(text: str, head: str, tail: str) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The first occurrences of ``head`` and ``tail`` in ``text`` that do not overlap."""
    hs = [i for i in range(len(text)) if text.startswith(head, i)]
    ts = [i for i in range(len(text)) if text.startswith(tail, i)]
    for h in hs:
        for t in ts:
            if h + len(head) <= t or t + len(tail) <= h:
                return (h, h + len(head)), (t, t + len(tail))
    return None


def _opennre(obj: dict) -> tuple[Example | None, str]:
    if "text" in obj and isinstance(obj["text"], str):
        text, offsets = obj["text"], None
    elif isinstance(obj.get("token"), list) and all(isinstance(x, str) for x in obj["token"]):
        toks = obj["token"]
        sep = "" if all(len(x) == 1 for x in toks) else " "
        offsets, pos = [], 0
        for x in toks:
            offsets.append(pos)
            pos += len(x) + len(sep)
        offsets.append(pos)
        text = sep.join(toks)
    else:
        return None, "no text or token list"
    spans = []
    for key in ("h", "t"):
        ent = obj.get(key)
        if not isinstance(ent, dict) or not isinstance(ent.get("name"), str):
            return None, f"no {key}.name"
        pos = ent.get("pos")
        if not (isinstance(pos, list) and len(pos) == 2 and all(isinstance(p, int) for p in pos)):
            return None, f"no {key}.pos [start, end]"
        a, b = pos
        if offsets is not None:
            if not 0 <= a < b <= len(offsets) - 1:
                return None, f"{key}.pos {pos} outside the token list"
            a, b = offsets[a], offsets[b] - len(sep)
        if not (0 <= a < b <= len(text)) or text[a:b].replace(" ", "") != ent["name"].replace(" ", ""):
            return None, f"{key}.pos {pos} does not cover {key}.name {ent['name']!r}"
        spans.append((a, b))
    if spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]:
        return None, "head and tail overlap"
    label = _label(obj.get("relation"))
    if label is None:
        return None, "no relation"
    return Example(label, text, head=spans[0], tail=spans[1]), ""


def read_re(path: str) -> Split:
    """Relation classification lines: NRE TSV or OpenNRE JSON lines (decided per line by a leading ``{``)."""
    split = Split(path)
    for n, line in _lines(path):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                split.problems.append(f"{path}:{n}: not a JSON object")
                continue
            ex, why = _opennre(obj) if isinstance(obj, dict) else (None, "not a JSON object")
            if ex is None:
                split.problems.append(f"{path}:{n}: {why}")
            else:
                ex.line = n
                split.examples.append(ex)
            continue
        parts = line.split("\t")
        if len(parts) != 4:
            split.problems.append(f"{path}:{n}: expected 4 tab-separated fields (head, tail, relation, sentence),"
                                  f" found {len(parts)}")
            continue
        head, tail, rel, text = (p.strip() for p in parts)
        if not head or not tail or not rel or not text:
            split.problems.append(f"{path}:{n}: an empty field")
            continue
        spans = _find_pair(text, head, tail)
        if spans is None:
            what = "head" if head not in text else "tail" if tail not in text else "head and tail (only overlapping)"
            split.problems.append(f"{path}:{n}: {what} not in the sentence")
            continue
        split.examples.append(Example(rel, text, head=spans[0], tail=spans[1], line=n))
    return split


def read_kg(path: str) -> Split:
    """Probe triples: a TSV with a header naming ``head``, ``relation``, ``tail`` (and optionally ``tail_type``),
    or headerless ``head \\t relation \\t tail`` lines. An untyped tail's type is ``RELATION:tail`` (the role, as
    the knowledge path infers it for an untyped graph)."""
    split = Split(path)
    cols = None
    for n, line in _lines(path):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("\t")]
        if cols is None:
            names = [p.lower() for p in parts]
            if all(c in names for c in ("head", "relation", "tail")):
                cols = {c: names.index(c) for c in ("head", "relation", "tail")}
                if "tail_type" in names:
                    cols["tail_type"] = names.index("tail_type")
                continue
            cols = {"head": 0, "relation": 1, "tail": 2}
        width = max(cols.values()) + 1
        if len(parts) < width:
            split.problems.append(f"{path}:{n}: expected at least {width} tab-separated fields, found {len(parts)}")
            continue
        head, rel, tail = parts[cols["head"]], parts[cols["relation"]], parts[cols["tail"]]
        if not head or not rel or not tail:
            split.problems.append(f"{path}:{n}: an empty head, relation or tail")
            continue
        ttype = parts[cols["tail_type"]] if "tail_type" in cols else ""
        split.examples.append(Triple(head, rel, tail, ttype or f"{rel}:tail", line=n))
    return split


def read_templates(path: str) -> dict[str, str]:
    """``relation = "template"`` pairs; each template names ``{head}`` and exactly one ``{tail}``."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    out = {}
    for rel, tpl in doc.items():
        if not isinstance(tpl, str):
            raise UserError(f"{path}: {rel} must be a template string such as \"{{head}}位于{{tail}}。\"")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(tpl) if f is not None]
        except ValueError as exc:
            raise UserError(f"{path}: {rel}: {exc}") from None
        if fields.count("tail") != 1 or "head" not in fields or set(fields) - {"head", "tail"}:
            raise UserError(f"{path}: {rel}: a template names {{head}} and exactly one {{tail}} (found {fields})")
        out[str(rel)] = tpl
    if not out:
        raise UserError(f"{path}: no templates")
    return out


def template_parts(template: str) -> list[tuple[str, str]]:
    """A template as ``[("text", literal) | ("head", "") | ("tail", "")]`` in order."""
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        if literal:
            parts.append(("text", literal))
        if name is not None:
            parts.append((name, ""))
    return parts
