"""Knowledge-graph loading: TSV (header), JSON lines, N-Triples (.nt / .nt.gz), plus an ``--entities`` TSV.

Every bad line is counted and reported with its file and line number (``Problem``); loading never crashes on
content. A missing file, an unknown format or a TSV header without the required columns is a ``UserError``.

Entity ids: in TSV/JSON lines the canonical name *is* the id; in N-Triples the subject/object IRI is the id and
``rdfs:label`` (or ``skos:prefLabel``) gives the name, ``skos:altLabel`` the aliases, ``rdf:type`` the type
(the IRI's local name). Other predicates with an IRI object are relations (named by the predicate's local name);
predicates with a literal object are attributes and ignored.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator
from urllib.parse import unquote

from knowmix import fileio
from knowmix.errors import UserError

REQUIRED_COLUMNS = ("head", "relation", "tail")
OPTIONAL_COLUMNS = ("head_type", "tail_type", "head_aliases", "tail_aliases")
ENTITY_COLUMNS = ("name", "type", "aliases")

RDFS_LABEL = "http://www.w3.org/2000/01/rdf-schema#label"
SKOS_PREF = "http://www.w3.org/2004/02/skos/core#prefLabel"
SKOS_ALT = "http://www.w3.org/2004/02/skos/core#altLabel"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"

# problem reasons
WRONG_COLUMNS = "wrong_column_count"
EMPTY_NAME = "empty_name"
SELF_LOOP = "self_loop"
DUPLICATE = "duplicate_triple"
MALFORMED_NT = "malformed_ntriples"
MALFORMED_JSON = "malformed_json"
UNREADABLE = "unreadable"
JUNK_NAME = "junk_name"

MIN_NAME_CHARS = 2
# placeholders of the source data (``<N>``, ``[UNK]``, ``{num}``) and HTML character references (``&amp;``): not
# parts of a name, so they are removed before the junk-name check
_PLACEHOLDER = re.compile(r"<[A-Za-z_]{1,12}>|\[[A-Za-z_]{1,12}\]|\{[A-Za-z_]{1,12}\}|&(?:#\d+|#x[0-9A-Fa-f]+|amp|lt|gt|quot|apos|nbsp);?")
_HAN = re.compile("[\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF\U00020000-\U0002FFFF]")


def is_junk_name(name: str, min_chars: int = MIN_NAME_CHARS) -> bool:
    """A KG name or alias that cannot be a name: shorter than ``min_chars`` characters, or with no Han character
    and no letter once placeholders (``<N>``) and HTML character references (``&amp``) are taken out."""
    if len(name) < min_chars:
        return True
    rest = _PLACEHOLDER.sub("", name)
    if not rest.strip():
        return True
    return not (_HAN.search(rest) or any(ch.isalpha() for ch in rest)) or len(rest.strip()) < min_chars


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    reason: str
    text: str = ""

    def __str__(self) -> str:
        text = " ".join(self.text.split("\t"))
        return f"{self.path}:{self.line}: {self.reason}" + (f" ({text})" if text else "")


@dataclass(frozen=True)
class Triple:
    head: str  # entity id
    relation: str
    tail: str  # entity id


@dataclass
class EntityInfo:
    """What the input says about one entity (before type inference)."""

    id: str
    name: str
    aliases: set[str] = field(default_factory=set)
    types: list[str] = field(default_factory=list)  # first seen first

    def add_type(self, t: str | None) -> None:
        if t and t not in self.types:
            self.types.append(t)

    def add_aliases(self, aliases: Iterable[str]) -> None:
        for a in aliases:
            a = a.strip()
            if a and a != self.name:
                self.aliases.add(a)


@dataclass
class RawGraph:
    entities: dict[str, EntityInfo] = field(default_factory=dict)
    triples: list[Triple] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    lines_read: int = 0
    min_name_chars: int | None = MIN_NAME_CHARS  # None: no junk-name check (the behaviour before; benchmarks)
    # entity id -> {source path: first type that source declares}: names typed differently by two sources are
    # homonyms (split into one entity per declared type by ``split_homonyms``)
    declared: dict[str, dict[str, str]] = field(default_factory=dict)
    triple_sources: list[str] = field(default_factory=list)  # the source of each triple, parallel to ``triples``
    # (source path, id in that file) -> the entity id it became (homonyms only); workers re-reading a KG file apply it
    renames: dict[tuple[str, str], str] = field(default_factory=dict)

    def declare(self, entity_id: str, typ: str | None, source: str) -> None:
        if typ:
            self.declared.setdefault(entity_id, {}).setdefault(source, typ)

    def junk(self, name: str) -> bool:
        return self.min_name_chars is not None and is_junk_name(name, self.min_name_chars)

    def entity(self, entity_id: str, name: str | None = None) -> EntityInfo:
        e = self.entities.get(entity_id)
        if e is None:
            e = self.entities[entity_id] = EntityInfo(entity_id, name or entity_id)
        return e


# ---------------------------------------------------------------------------------------------- helpers


def kg_format(path: str) -> str:
    p = path.lower()
    if p.endswith(".gz"):
        p = p[:-3]
    if p.endswith((".tsv", ".txt", ".tab")):
        return "tsv"
    if p.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if p.endswith(".nt"):
        return "nt"
    raise UserError(f"{path}: unknown knowledge-graph format (expected .tsv, .jsonl, .nt or .nt.gz)")


def _open_lines(path: str) -> Iterator[tuple[int, str]]:
    if not fileio.is_file(path):
        raise UserError(f"{path}: no such file")
    i = 0
    try:
        # local or on any Beam filesystem (gs://, s3://, ...); gzip by name
        with fileio.open_read(path) as raw, io.TextIOWrapper(
            gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw, encoding="utf-8", errors="replace", newline=""
        ) as fh:
            for i, line in enumerate(fh, 1):
                yield i, line.rstrip("\r\n")
    except (OSError, EOFError, zlib.error) as exc:  # e.g. a truncated .gz: what was read counts, the rest is reported
        yield i + 1, Unreadable(f"{type(exc).__name__}: {exc}")


class Unreadable(str):
    """Stands in for the lines of a file that could not be read past this point."""


def split_aliases(value: str | None) -> list[str]:
    if not value:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [a.strip() for a in str(value).split("|") if a.strip()]


def local_name(iri: str) -> str:
    for sep in ("#", "/", ":"):
        if sep in iri:
            tail = iri.rsplit(sep, 1)[1]
            if tail:
                return unquote(tail)
    return unquote(iri)


# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class TripleRecord:
    """One parsed triple line (TSV / JSON lines) with what it says about its two entities."""

    line: int
    head: str
    relation: str
    tail: str
    head_type: str | None = None
    tail_type: str | None = None
    head_aliases: tuple[str, ...] = ()
    tail_aliases: tuple[str, ...] = ()


def _check_names(path: str, line: int, head: str, relation: str, tail: str, raw: str) -> Problem | None:
    if not head or not relation or not tail:
        return Problem(path, line, EMPTY_NAME, raw[:80])
    if head == tail:
        return Problem(path, line, SELF_LOOP, raw[:80])
    return None


def _tsv_header(lines, path: str) -> tuple[list[str] | None, Problem | None]:
    """The first non-blank line of a TSV as its column names; (None, problem) if the file breaks before it."""
    for lineno, line in lines:
        if isinstance(line, Unreadable):
            return None, Problem(path, lineno, UNREADABLE, str(line))
        if line.strip():
            return [h.strip() for h in line.split("\t")], None
    return None, None


def iter_tsv(path: str) -> Iterator[TripleRecord | Problem]:
    lines = _open_lines(path)
    header, problem = _tsv_header(lines, path)
    if problem:
        yield problem
    if header is None:
        return
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise UserError(f"{path}: header lacks required column(s) {', '.join(missing)} (has: {', '.join(header)})")
    col = {name: i for i, name in enumerate(header)}
    for lineno, line in lines:
        if isinstance(line, Unreadable):
            yield Problem(path, lineno, UNREADABLE, str(line))
            return
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            yield Problem(path, lineno, WRONG_COLUMNS, f"{len(fields)} columns, header has {len(header)}")
            continue

        def get(name):
            i = col.get(name)
            return fields[i].strip() if i is not None else ""

        head, relation, tail = get("head"), get("relation"), get("tail")
        problem = _check_names(path, lineno, head, relation, tail, line)
        if problem:
            yield problem
            continue
        yield TripleRecord(
            lineno, head, relation, tail,
            get("head_type") or None, get("tail_type") or None,
            tuple(split_aliases(get("head_aliases"))), tuple(split_aliases(get("tail_aliases"))),
        )


def iter_jsonl(path: str) -> Iterator[TripleRecord | Problem]:
    for lineno, line in _open_lines(path):
        if isinstance(line, Unreadable):
            yield Problem(path, lineno, UNREADABLE, str(line))
            return
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            yield Problem(path, lineno, MALFORMED_JSON, line[:80])
            continue
        if not isinstance(obj, dict):
            yield Problem(path, lineno, MALFORMED_JSON, "not a JSON object")
            continue
        missing = [c for c in REQUIRED_COLUMNS if c not in obj]
        if missing:
            yield Problem(path, lineno, WRONG_COLUMNS, f"missing key(s) {', '.join(missing)}")
            continue
        head, relation, tail = (str(obj.get(k) or "").strip() for k in REQUIRED_COLUMNS)
        problem = _check_names(path, lineno, head, relation, tail, line)
        if problem:
            yield problem
            continue
        yield TripleRecord(
            lineno, head, relation, tail,
            (str(obj.get("head_type") or "").strip() or None), (str(obj.get("tail_type") or "").strip() or None),
            tuple(split_aliases(obj.get("head_aliases"))), tuple(split_aliases(obj.get("tail_aliases"))),
        )


_NT_TERM = r'(<[^<>"{}|^`\\\s]*>|_:[A-Za-z0-9_\-.]+|"(?:[^"\\]|\\.)*"(?:@[A-Za-z]+(?:-[A-Za-z0-9]+)*|\^\^<[^<>\s]*>)?)'
_NT_LINE = re.compile(r"^\s*(<[^<>\"{}|^`\\\s]*>|_:[A-Za-z0-9_\-.]+)\s+(<[^<>\"{}|^`\\\s]*>)\s+" + _NT_TERM + r"\s*\.\s*(?:#.*)?$")
_NT_ESCAPE = re.compile(r'\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[tbnrf"\'\\])')
_SIMPLE_ESC = {"t": "\t", "b": "\b", "n": "\n", "r": "\r", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def _unescape(s: str) -> str:
    def sub(m):
        g = m.group(1)
        if g[0] in "uU":
            return chr(int(g[1:], 16))
        return _SIMPLE_ESC[g]

    return _NT_ESCAPE.sub(sub, s)


@dataclass(frozen=True)
class Statement:
    line: int
    subject: str  # IRI or blank node, brackets removed
    predicate: str
    object: str  # IRI (brackets removed) or literal value
    is_literal: bool
    lang: str | None = None


def iter_ntriples(path: str) -> Iterator[Statement | Problem]:
    for lineno, line in _open_lines(path):
        if isinstance(line, Unreadable):
            yield Problem(path, lineno, UNREADABLE, str(line))
            return
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _NT_LINE.match(line)
        if not m:
            yield Problem(path, lineno, MALFORMED_NT, stripped[:80])
            continue
        s, p, o = m.group(1), m.group(2)[1:-1], m.group(3)
        s = s[1:-1] if s.startswith("<") else s
        if o.startswith('"'):
            end = o.rfind('"')
            value, suffix = _unescape(o[1:end]), o[end + 1 :]
            lang = suffix[1:].lower() if suffix.startswith("@") else None
            yield Statement(lineno, s, p, value, True, lang)
        else:
            yield Statement(lineno, s, p, o[1:-1] if o.startswith("<") else o, False)


# ---------------------------------------------------------------------------------------------- loading


def _add_triple(graph: RawGraph, seen: set, path: str, line: int, triple: Triple) -> None:
    if triple in seen:
        graph.problems.append(Problem(path, line, DUPLICATE, f"{triple.head} {triple.relation} {triple.tail}"))
        return
    seen.add(triple)
    graph.triples.append(triple)
    graph.triple_sources.append(path)


def _good_aliases(graph: RawGraph, path: str, line: int, aliases) -> list[str]:
    """The aliases that are names; each junk one is reported (the line itself is kept)."""
    good = []
    for a in aliases:
        if graph.junk(a):
            graph.problems.append(Problem(path, line, JUNK_NAME, f"alias {a!r}"))
        else:
            good.append(a)
    return good


def _load_records(graph: RawGraph, seen: set, path: str, records) -> None:
    for rec in records:
        graph.lines_read += 1
        if isinstance(rec, Problem):
            graph.problems.append(rec)
            continue
        junk = [n for n in (rec.head, rec.tail) if graph.junk(n)]
        if junk:
            graph.problems.append(Problem(path, rec.line, JUNK_NAME, " ".join(repr(n) for n in junk)))
            continue
        h = graph.entity(rec.head)
        h.add_type(rec.head_type)
        graph.declare(rec.head, rec.head_type, path)
        h.add_aliases(_good_aliases(graph, path, rec.line, rec.head_aliases))
        t = graph.entity(rec.tail)
        t.add_type(rec.tail_type)
        graph.declare(rec.tail, rec.tail_type, path)
        t.add_aliases(_good_aliases(graph, path, rec.line, rec.tail_aliases))
        _add_triple(graph, seen, path, rec.line, Triple(rec.head, rec.relation, rec.tail))


def _label_rank(lang: str | None) -> int:
    if lang is None:
        return 1
    if lang.startswith("zh"):
        return 0
    return 2


def _load_ntriples(graph: RawGraph, seen: set, path: str) -> None:
    labels: dict[str, tuple[int, int, str]] = {}
    alt: dict[str, set[str]] = {}
    types: dict[str, list[str]] = {}
    triples: list[tuple[int, Triple]] = []
    nodes: list[str] = []
    for st in iter_ntriples(path):
        graph.lines_read += 1
        if isinstance(st, Problem):
            graph.problems.append(st)
            continue
        if st.predicate in (RDFS_LABEL, SKOS_PREF) and st.is_literal:
            if not st.object.strip():
                graph.problems.append(Problem(path, st.line, EMPTY_NAME, "empty label"))
                continue
            if graph.junk(st.object.strip()):
                graph.problems.append(Problem(path, st.line, JUNK_NAME, repr(st.object.strip())))
                continue
            rank = (0 if st.predicate == SKOS_PREF else 1, _label_rank(st.lang))
            cur = labels.get(st.subject)
            if cur is None or rank < cur[:2]:
                labels[st.subject] = (*rank, st.object.strip())
        elif st.predicate == SKOS_ALT and st.is_literal:
            if st.object.strip():
                alt.setdefault(st.subject, set()).update(_good_aliases(graph, path, st.line, [st.object.strip()]))
        elif st.predicate == RDF_TYPE and not st.is_literal:
            lst = types.setdefault(st.subject, [])
            t = local_name(st.object)
            if t not in lst:
                lst.append(t)
        elif not st.is_literal:
            if st.subject == st.object:
                graph.problems.append(Problem(path, st.line, SELF_LOOP, st.subject))
                continue
            triples.append((st.line, Triple(st.subject, local_name(st.predicate), st.object)))
            nodes += [st.subject, st.object]
    junk: set[str] = set()
    for iri in list(dict.fromkeys(nodes + list(labels) + list(alt) + list(types))):
        name = labels[iri][2] if iri in labels else local_name(iri)
        if graph.junk(name):  # no usable label and a junk local name: the node and its triples are left out
            junk.add(iri)
            continue
        e = graph.entities.get(iri)
        if e is None:
            e = graph.entities[iri] = EntityInfo(iri, name)
        elif iri in labels:
            e.name = name
        e.add_aliases(alt.get(iri, ()))
        for t in types.get(iri, ()):
            e.add_type(t)
            graph.declare(iri, t, path)
    for line, triple in triples:
        if triple.head in junk or triple.tail in junk:
            bad = [n for n in (triple.head, triple.tail) if n in junk]
            graph.problems.append(Problem(path, line, JUNK_NAME, " ".join(repr(local_name(n)) for n in bad)))
            continue
        _add_triple(graph, seen, path, line, triple)


def load_entities_tsv(graph: RawGraph, path: str) -> None:
    """``--entities``: a TSV with header ``name``, ``type``, ``aliases`` (``|``-separated); unknown columns ignored."""
    lines = _open_lines(path)
    header, problem = _tsv_header(lines, path)
    if problem:
        graph.problems.append(problem)
    if header is None:
        return
    if "name" not in header:
        raise UserError(f"{path}: header lacks required column name (has: {', '.join(header)})")
    col = {n: i for i, n in enumerate(header)}
    for lineno, line in lines:
        if isinstance(line, Unreadable):
            graph.problems.append(Problem(path, lineno, UNREADABLE, str(line)))
            return
        if not line.strip():
            continue
        graph.lines_read += 1
        fields = line.split("\t")
        if len(fields) != len(header):
            graph.problems.append(Problem(path, lineno, WRONG_COLUMNS, f"{len(fields)} columns, header has {len(header)}"))
            continue
        name = fields[col["name"]].strip()
        if not name:
            graph.problems.append(Problem(path, lineno, EMPTY_NAME, line[:80]))
            continue
        if graph.junk(name):
            graph.problems.append(Problem(path, lineno, JUNK_NAME, repr(name)))
            continue
        e = graph.entity(name)
        if "type" in col:
            e.add_type(fields[col["type"]].strip() or None)
            graph.declare(name, fields[col["type"]].strip() or None, path)
        if "aliases" in col:
            e.add_aliases(_good_aliases(graph, path, lineno, split_aliases(fields[col["aliases"]])))


def split_homonyms(graph: RawGraph) -> dict[str, list[str]]:
    """Names that two sources declare with different types are different entities (a township 平安 and a company
    平安 are not one thing): each declared type gets its own entity ``{id}@{type}`` (same name and aliases), the
    triples of each source go to its own one, and those of sources that declare no type stay with the plain id.
    Returns {original id: [new ids]}; ``graph.renames`` maps (source, id) to the new id for re-readers."""
    split: dict[str, list[str]] = {}
    for eid, by_source in graph.declared.items():
        if len(set(by_source.values())) < 2 or eid not in graph.entities:
            continue
        orig = graph.entities[eid]
        ids = []
        for source, typ in by_source.items():
            new_id = f"{eid}@{typ}"
            graph.renames[(source, eid)] = new_id
            if new_id not in graph.entities:
                graph.entities[new_id] = EntityInfo(new_id, orig.name, set(orig.aliases), [typ])
                ids.append(new_id)
        split[eid] = ids
    if not split:
        return split
    still_used: set[str] = set()
    for i, (t, source) in enumerate(zip(graph.triples, graph.triple_sources)):
        h = graph.renames.get((source, t.head), t.head)
        tl = graph.renames.get((source, t.tail), t.tail)
        if (h, tl) != (t.head, t.tail):
            graph.triples[i] = Triple(h, t.relation, tl)
        still_used.update(x for x in (h, tl) if x in split)
    for eid in split:
        if eid in still_used:  # kept for the sources that declare no type: untyped, its type is inferred
            graph.entities[eid].types = []
        else:
            del graph.entities[eid]
    return split


def load_raw(paths: Iterable[str], entities: Iterable[str] = (), min_name_chars: int | None = MIN_NAME_CHARS) -> RawGraph:
    """Parse every KG file (format by extension) and entity file into one RawGraph, problems collected; names
    shorter than ``min_name_chars`` or without a Han character or letter are ``junk_name`` problems; homonyms
    across sources (different declared types) are split (``split_homonyms``)."""
    graph = RawGraph(min_name_chars=min_name_chars)
    seen: set[Triple] = set()
    for path in paths:
        fmt = kg_format(path)
        graph.sources.append(path)
        if fmt == "tsv":
            _load_records(graph, seen, path, iter_tsv(path))
        elif fmt == "jsonl":
            _load_records(graph, seen, path, iter_jsonl(path))
        else:
            _load_ntriples(graph, seen, path)
    for path in entities:
        graph.sources.append(path)
        load_entities_tsv(graph, path)
    split_homonyms(graph)
    return graph


def iter_triples(path: str, renames: dict | None = None, min_name_chars: int = MIN_NAME_CHARS) -> Iterator[Triple]:
    """The valid triples of one KG file (duplicates included), for workers that re-read the KG in a pipeline;
    ``renames`` is ``RawGraph.renames`` (homonyms split by source). For N-Triples, node names are not checked
    here: a node without an entity in the index is never linked, so its triples never join."""
    renames = renames or {}

    def ren(x):
        return renames.get((path, x), x)

    fmt = kg_format(path)
    if fmt == "nt":
        for st in iter_ntriples(path):
            if isinstance(st, Statement) and not st.is_literal and st.subject != st.object and st.predicate not in (
                RDF_TYPE,
            ):
                yield Triple(ren(st.subject), local_name(st.predicate), ren(st.object))
        return
    for rec in iter_tsv(path) if fmt == "tsv" else iter_jsonl(path):
        if isinstance(rec, TripleRecord) and not is_junk_name(rec.head, min_name_chars) and not is_junk_name(
            rec.tail, min_name_chars
        ):
            yield Triple(ren(rec.head), rec.relation, ren(rec.tail))
