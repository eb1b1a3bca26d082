"""Sentence splitting and entity linking against an EntityIndex.

Linking, per sentence:
1. every occurrence of a name or alias (at least ``min_chars`` characters) is found with one pyahocorasick
   automaton;
2. an occurrence that cuts through a word of the segmenter is rejected (``白银`` inside ``白银计划``); the
   segmenter has every KG surface form in its user dictionary, so entity names stay whole words;
3. of the rest, the longest non-overlapping occurrences are kept (longest first, then leftmost);
4. a surface form naming more than one entity is dropped unless exactly one of its candidates has a triple with
   another, unambiguously linked entity of the sentence (then it is resolved to that candidate);
5. a mention through a *common word* (``CommonWords``: 合作 "cooperation" as the alias of the city 合作市, the
   company 平安 "safe") is kept only when corroborated: another linked entity of the sentence has a triple with the
   entity, or (``link_document``) the entity is linked through a name that is not a common word elsewhere in the
   same document. Rejected ones are counted (``common_word_rejected``), admitted ones too
   (``common_word_corroborated``).
6. the precision rules of ``kg.link_filters`` (``LinkFilters``): a place or company at the start of an
   organisation's name (北京商报), inside a 《title》 or before 人 (中国人) is not linked (``org_prefix_rejected``,
   ``title_rejected``, ``demonym_rejected``); a short alias of a county or township (新罗) needs the
   corroboration of step 5 (``short_alias_rejected`` / ``short_alias_corroborated``).

Segmenters (``HMM=False``: unknown words fall apart into characters and never swallow a name): ``rjieba``
(default: jieba's algorithm in Rust, many times faster; fed the same user words with the same frequencies it gives
jieba's words exactly — checked on every fixture sentence in the tests), ``jieba`` (the Python original), or
``none`` (no word-boundary check). jieba's own ``add_word`` counts a re-added word's frequency twice in its total
and rjieba's does not, which made them differ on ~0.2% of sentences; the Segmenter keeps the total exact for both.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import ahocorasick

from knowmix.kg.index import EntityIndex
from knowmix.kg.link_filters import LinkFilters, MentionFilter
from knowmix.kg.mmap_match import mapped_matcher
from knowmix.kg.segmenter import Segmenter, jieba_dictionary_path

_TERMINATOR = re.compile(r"(?:[。！？!?]+|…+|\.(?=\s|$)|\n+)[”’\"'）)」』】》]*")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Half-open spans of the sentences of ``text``: split after Chinese/Latin terminal punctuation
    (``。！？!?…``, a ``.`` before whitespace or the end) and at line breaks; closing quotes and brackets stay
    with their sentence; surrounding whitespace is trimmed and empty pieces are skipped."""
    spans = []
    start = 0
    for m in _TERMINATOR.finditer(text):
        spans.append((start, m.end()))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


PROPER_NOUN_TAGS = ("nr", "ns", "nt", "nz")  # jieba's person / place / organisation / other proper nouns (+ nrt, nrfg)
COMMON_WORD_MIN_FREQ = 100  # a non-proper-noun word rarer than this in jieba's dictionary is not common (介休市 v 2)
COMMON_WORD_MAX_FREQ = 50_000  # an alias more frequent than this in jieba's dictionary is common even if a proper noun


class CommonWords:
    """Which KG surface forms are common words, from jieba's dictionary (word, frequency, part of speech).

    An *alias* is common when jieba tags it with anything but a proper-noun tag (``nr``/``ns``/``nt``/``nz`` and
    their variants), or its frequency exceeds ``max_freq`` (None: no such rule). A *canonical name* is common only
    by its tag: a proper noun in the dictionary never needs corroboration. Words not in the dictionary are not
    common, and neither are those rarer than ``min_freq``: jieba's tags are noisy on rare entries (介休市 ``v``,
    工商银行 ``j``), and a word that rare is no everyday word a name could be mistaken for.
    """

    def __init__(self, min_freq: int = COMMON_WORD_MIN_FREQ, max_freq: int | None = COMMON_WORD_MAX_FREQ,
                 path: str | None = None, words=None):
        self.min_freq, self.max_freq = min_freq, max_freq
        self.path = path or jieba_dictionary_path()
        entries: dict[str, tuple[int, str]] = {}
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                try:
                    entries[parts[0]] = (int(parts[1]), parts[2])
                except ValueError:
                    continue
        # ``words``: iterated once (a KG's 10M+ surface forms are not made into a set); the entries kept are
        # those among them
        self.entries = entries if words is None else {w: entries[w] for w in words if w in entries}

    def is_common(self, surface: str, canonical: bool) -> bool:
        entry = self.entries.get(surface)
        if entry is None:
            return False
        freq, tag = entry
        if not tag.startswith(PROPER_NOUN_TAGS):
            return freq >= self.min_freq
        return not canonical and self.max_freq is not None and freq > self.max_freq


class _LongEnough:
    """The surface forms of at least ``min_chars`` of a mapped index, decoded each time they are iterated."""

    def __init__(self, surfaces, min_chars: int):
        self.surfaces, self.min_chars = surfaces, min_chars

    def __iter__(self):
        return (s for s in self.surfaces if len(s) >= self.min_chars)

    def __bool__(self) -> bool:
        return any(True for _ in self)


class Mention(NamedTuple):
    start: int
    end: int
    surface: str
    entity_id: str


@dataclass
class LinkResult:
    mentions: list[Mention] = field(default_factory=list)
    matches: int = 0  # occurrences found by the automaton
    rejected_word_cut: int = 0  # occurrences cutting a word and overlapping no kept mention
    ambiguous_resolved: int = 0
    ambiguous_dropped: int = 0
    common_word_corroborated: int = 0
    common_rejected: list[Mention] = field(default_factory=list)  # common-word mentions without corroboration
    org_prefix_rejected: int = 0  # kg.link_filters: mentions starting an organisation's name
    org_name_verb_rejected: int = 0  # ... of those, through a verb of the KG's organisation names (联合, 控股)
    title_rejected: int = 0  # ... inside 《…》
    demonym_rejected: int = 0  # ... followed by 人 (中国人)
    short_alias_rejected: int = 0  # of common_rejected: short admin aliases that are no common word
    short_alias_corroborated: int = 0

    @property
    def common_word_rejected(self) -> int:
        return len(self.common_rejected) - self.short_alias_rejected

    @property
    def entity_ids(self) -> list[str]:
        return list(dict.fromkeys(m.entity_id for m in self.mentions))


class Linker:
    """Links one sentence at a time; build once per worker (the automaton and segmenter dictionary are costly).

    The automaton runs over UTF-16-LE code units spelled as Latin-1 characters (two per code unit):
    pyahocorasick finds a node's child by scanning the children, and over bytes no node has more than 256 of
    them instead of thousands of CJK characters at the root, which makes matching about twice as fast with a
    million names. A match whose end is not on an even byte is a misaligned one and skipped; character offsets are
    byte offsets / 2 (sentences with characters beyond the BMP are mapped by decoding).
    """

    def __init__(self, index: EntityIndex, segmenter: str = "rjieba", min_chars: int = 2,
                 common_words: CommonWords | None | str = "default", filters: LinkFilters | None | str = "default"):
        """``common_words``: the common-word policy ("default": jieba's dictionary with ``COMMON_WORD_MAX_FREQ``;
        None: every surface form is linked as before, ``--allow-common-aliases``). ``filters``: the rules of
        ``kg.link_filters`` ("default": all on; None: all off)."""
        self.index = index
        self.min_chars = min_chars
        # an index file's automaton is used in place from its mapped pages (kg/mmap_match.py): nothing to build
        self._mapped = mapped_matcher(index, min_chars)
        if self._mapped is not None:
            ids_of = index.surface_to_ids  # looked up only for common words
            # decoded as iterated, never one list: a worker's private memory stays small at 10M+ surface forms;
            # a segmenter takes every one into its dictionary anyway, so then one list serves every step
            surfaces = _LongEnough(index.surface_to_ids, min_chars)
            if segmenter != "none":
                surfaces = list(surfaces)
        else:
            # one pass over the surface forms (an index file decodes them in order; no lookup per surface)
            ids_of = {s: ids for s, ids in index.surface_to_ids.items() if len(s) >= min_chars}
            surfaces = sorted(ids_of)
        if common_words == "default":
            common_words = CommonWords(words=surfaces)
        # surface -> the entities for which it is a common word (the only mentions that need corroboration)
        self._common: dict[str, frozenset[str]] = {}
        if common_words is not None:
            entries = common_words.entries  # the KG's surface forms found in jieba's dictionary: from the smaller side
            # a lookup in a mapped index is a binary search (log2 n string reads), a pass over its surface forms n
            # reads: from jieba's side only when that is fewer reads (about 15M surface forms and up)
            found = ((s for s in entries if len(s) >= min_chars and s in ids_of)
                     if isinstance(surfaces, _LongEnough) and len(entries) * math.log2(len(ids_of) + 1) < len(ids_of)
                     else (s for s in surfaces if s in entries))
            for s in found:
                ids = frozenset(eid for eid in ids_of[s]
                                if common_words.is_common(s, index.get(eid).name == s))
                if ids:
                    self._common[s] = ids
        filters = LinkFilters() if filters == "default" else filters
        # short admin aliases that are no common word: corroborated like common words, counted apart
        self._short = {s: ids - self._common.get(s, frozenset())
                       for s, ids in (filters.short_alias_pairs(index, ids_of) if filters else {}).items()}
        self._short = {s: ids for s, ids in self._short.items() if ids}
        for s, ids in self._short.items():
            self._common[s] = self._common.get(s, frozenset()) | ids
        self._entries: list[tuple[int, int, str, tuple[str, ...]]] = []
        if self._mapped is None:
            auto = ahocorasick.Automaton(ahocorasick.STORE_INTS)
            for s in surfaces:
                key = s.encode("utf-16-le")
                auto.add_word(key.decode("latin-1"), len(self._entries))
                self._entries.append((len(key), len(s), s, ids_of[s]))
            if surfaces:
                auto.make_automaton()
        else:
            auto = self._mapped
        self._auto = auto if surfaces else None
        self.segmenter = Segmenter(segmenter, surfaces)
        self._filter = None
        if filters and (filters.org_prefix or filters.title or filters.demonym):
            self._filter = MentionFilter(filters, None if segmenter == "none" else self.segmenter, names=surfaces)

    def _matches(self, sentence: str) -> list[tuple[int, int, str, tuple[str, ...]]]:
        """Every occurrence of a surface form: (start, end, surface, entity ids), character offsets."""
        if self._mapped is not None:
            return self._mapped.matches(sentence)
        raw = sentence.encode("utf-16-le")
        entries = self._entries
        hits = self._auto.iter(raw.decode("latin-1"))
        if len(raw) == 2 * len(sentence):  # no surrogate pairs: two bytes per character
            return [(end - n, end, surface, ids)
                    for e, i in hits if e & 1
                    for _, n, surface, ids in (entries[i],)
                    for end in ((e + 1) >> 1,)]
        out = []
        for e, i in hits:
            if e & 1:
                _, nchars, surface, ids = entries[i]
                end = len(raw[: e + 1].decode("utf-16-le", errors="replace"))
                if sentence[end - nchars : end] == surface:
                    out.append((end - nchars, end, surface, ids))
        return out

    def link(self, sentence: str) -> LinkResult:
        result = LinkResult()
        if self._auto is None:
            return result
        found = self._matches(sentence)
        result.matches = len(found)
        if not found:
            return result
        kind = self.segmenter.kind
        if kind == "rjieba":
            bounds = self.segmenter.word_bounds(sentence)
            ok = [f for f in found if f[0] in bounds and f[1] in bounds]
            rejected = [f for f in found if f[0] not in bounds or f[1] not in bounds] if len(ok) < len(found) else []
        elif kind == "jieba":
            inner = self.segmenter.inner_positions(sentence, [(f[0], f[1]) for f in found])
            ok = [f for f in found if f[0] not in inner and f[1] not in inner]
            rejected = [f for f in found if f[0] in inner or f[1] in inner] if len(ok) < len(found) else []
        else:
            ok, rejected = found, []
        # longest first, then leftmost; an occupancy map keeps it linear
        ok.sort(key=lambda f: (f[0] - f[1], f[0]))
        occupied = bytearray(len(sentence))
        taken: list[tuple] = []
        for f in ok:
            if occupied.find(1, f[0], f[1]) < 0:
                taken.append(f)
                occupied[f[0]:f[1]] = b"\x01" * (f[1] - f[0])
        taken.sort()
        result.rejected_word_cut = sum(1 for f in rejected if occupied.find(1, f[0], f[1]) < 0)
        # ambiguity: resolve by a triple with an unambiguous entity of the sentence (not one named by a common word)
        common = self._common
        sure = None
        for start, end, s, ids in taken:
            if len(ids) == 1:
                result.mentions.append(Mention(start, end, s, ids[0]))
                continue
            if sure is None:
                sure = {f[3][0] for f in taken if len(f[3]) == 1 and f[3][0] not in common.get(f[2], ())}
            hits = [c for c in ids if any(u != c and self.index.connected(c, u) for u in sure)]
            if len(hits) == 1:
                result.ambiguous_resolved += 1
                result.mentions.append(Mention(start, end, s, hits[0]))
            else:
                result.ambiguous_dropped += 1
        if self._filter is not None and result.mentions:
            result.mentions = self._filter.apply(sentence, result.mentions, result)
        if common:
            flagged = [m for m in result.mentions if m.surface in common and m.entity_id in common[m.surface]]
            if flagged:
                self._corroborate_in_sentence(result, flagged)
        return result

    def is_common(self, m: Mention) -> bool:
        return m.entity_id in self._common.get(m.surface, ())

    def _is_short(self, m: Mention) -> bool:
        """A short admin alias that is no common word (``kg.link_filters``; counted apart)."""
        return m.entity_id in self._short.get(m.surface, ())

    def _corroborate_in_sentence(self, result: LinkResult, flagged: list[Mention]) -> None:
        """Common-word mentions (``flagged``) stay only when another (non-common) linked entity of the sentence has
        a triple with theirs; the others move to ``common_rejected`` (``link_document`` may still admit them)."""
        flagged_set = set(flagged)
        anchors = {m.entity_id for m in result.mentions if m not in flagged_set}
        connected = self.index.connected
        rejected = []
        for m in flagged:
            e = m.entity_id
            if e in anchors or any(connected(e, u) for u in anchors):
                if self._short and self._is_short(m):
                    result.short_alias_corroborated += 1
                else:
                    result.common_word_corroborated += 1
            else:
                rejected.append(m)
        if rejected:
            result.common_rejected = rejected
            if self._short:
                result.short_alias_rejected = sum(map(self._is_short, rejected))
            drop = set(rejected)
            result.mentions = [m for m in result.mentions if m not in drop]

    def link_document(self, sentences) -> list[LinkResult]:
        """Link every sentence of one document; a common-word mention rejected in its sentence is admitted when
        the same entity is linked through a surface that is not a common word anywhere in the document."""
        results = [self.link(s) for s in sentences]
        if not any(r.common_rejected for r in results):
            return results
        named = {m.entity_id for r in results for m in r.mentions if not self.is_common(m)}
        for r in results:
            if not r.common_rejected:
                continue
            admitted = [m for m in r.common_rejected if m.entity_id in named]
            if admitted:
                r.common_rejected = [m for m in r.common_rejected if m.entity_id not in named]
                short = sum(map(self._is_short, admitted)) if self._short else 0
                r.short_alias_rejected -= short
                r.short_alias_corroborated += short
                r.common_word_corroborated += len(admitted) - short
                r.mentions = sorted(r.mentions + admitted)
        return results
