"""Precision rules of the linker beyond the common-word rule, each switchable in ``LinkFilters``.

1. **Organisation-name prefix** (``org_prefix``): a mention followed, within the same run of Han/Latin characters,
   by a few name-like words and an organisation suffix (``北京``商报, ``长春``高新, ``江苏泰州``口岸船舶有限公司,
   ``万达``影视公司) names a company, newspaper or bank of its own, not the place or company it starts with: it is
   not linked (``org_prefix_rejected``). The words between (the gap) must be no function words or verbs in jieba's
   dictionary (``收购``, ``的``, ``和`` end the name), the suffix must be whole words of the segmenter (``中国银行业``
   is no bank), and a legal form right after the mention (``中国铝业``公司, ``首钢``总公司) is the longer name of
   the same entity, kept. Public bodies, branches, schools and ports (``北京市``高级人民法院, ``大连``分行,
   ``北京``邮电大学, ``大连``港) are named after the place and are not in the suffix list.
   **Verbs of organisation names** (``org_name_verbs``): a verb of the gap that occurs inside an organisation name
   of the KG itself (a name holding a suffix: 控股 in 国药控股有限公司, 联合 in 首钢京唐钢铁联合有限责任公司) is a
   word of names, not a predicate, and does not end the name (``中国``联合网络通信有限公司, ``中国``光大金融控股有限公司);
   a verb no organisation of the KG carries (收购, 持有, 成立) still does (万科收购中粮地产公司 keeps 万科). Such
   rejections are counted apart too (``org_name_verb_rejected``, included in ``org_prefix_rejected``).
2. **Short aliases of low-level administrative units** (``short_alias``): an alias of at most
   ``short_alias_max_chars`` characters of an entity declared as a county or township (新罗 for 新罗区, 庆安 for
   庆安县, 商城 for 商城县) is, far more often than not, a historical, foreign or ordinary word; such a mention
   needs the same corroboration as a common word (``kg.link``: a triple with another linked entity of the
   sentence, or the entity linked by another name in the document). Counted as ``short_alias_rejected`` /
   ``short_alias_corroborated`` where it is no common word too (then it counts as one).
3. **Titles** (``title``): a mention inside a book-title bracket ``《…》`` is part of the title of a work, a treaty, a
   newspaper or a law (《中华人民共和国和朝鲜民主主义人民共和国友好合作互助条约》, 《大理今昔》), a name of its
   own: not linked (``title_rejected``).
4. **Demonyms** (``demonym``): a mention followed by ``人`` as a word of its own (中国人, 英国人; not 人民 or
   人口, which the segmenter keeps whole) names the people, a word of its own: not linked (``demonym_rejected``).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

# legal forms: right after a company's name they make its longer name (中国铝业公司 is 中国铝业)
LEGAL_FORMS = ("股份有限公司", "有限责任公司", "有限公司", "集团公司", "股份公司", "总公司", "公司", "集团")
# kinds of commercial organisations named after a place or an owner (newspapers, banks, exchanges, media, ...);
# not 控股 (联想控股), which jieba tags as the verb "to hold a controlling stake" (渝开发仍控股高瑞房地产公司)
ORG_KINDS = ("证券报", "商报", "日报", "晚报", "早报", "时报", "银行", "证券", "高新", "股份", "交易所",
             "电视台", "影视", "传媒", "基金", "保险", "信托")
# jieba part-of-speech tags of function words, which end an organisation's name: prepositions, conjunctions,
# particles, pronouns, adverbs, modal particles, interjections (的 和 与 在 将 已 ...)
FUNCTION_TAGS = ("p", "c", "u", "uj", "ul", "uv", "ud", "ug", "uz", "r", "rr", "rz", "rg", "d", "df", "dg", "y", "e")
# ... and, for words of two or more characters, verbs, numerals, measure words, localisers, onomatopoeia (收购 一家
# 之间). A single character tagged so is kept: HMM-free segmentation splits an unknown name into characters
# (泉州市亿力经贸发展有限公司: 亿 is a numeral in the dictionary)
LONG_WORD_STOP_TAGS = FUNCTION_TAGS + ("v", "vd", "vg", "vi", "m", "mq", "q", "f", "o")
VERB_TAGS = ("v", "vd", "vg", "vi")  # of those, the verbs: tolerated where the KG's organisation names hold them
_NAME_RUN = re.compile(r"[\u4E00-\u9FFFA-Za-z]*")


@dataclass(frozen=True)
class LinkFilters:
    """Which precision rules are on, and their parameters (defaults: both on)."""

    org_prefix: bool = True
    org_max_gap: int = 8  # characters between the mention and the suffix
    org_name_verbs: bool = True  # verbs found inside the KG's organisation names do not end a name (see above)
    short_alias: bool = True
    short_alias_max_chars: int = 2
    short_alias_types: tuple[str, ...] = ("county", "township")
    title: bool = True
    demonym: bool = True

    RULES = ("org_prefix", "org_name_verbs", "short_alias", "title", "demonym")

    @classmethod
    def without(cls, rules: str) -> "LinkFilters | None":
        """``--no-link-filters`` (a comma-separated list of RULES, or ``all``) -> the filters left on (None: none)."""
        from dataclasses import replace

        from knowmix.errors import UserError

        names = [r.strip() for r in rules.split(",") if r.strip()]
        if "all" in names:
            return None
        unknown = [r for r in names if r not in cls.RULES]
        if unknown:
            raise UserError(f"--no-link-filters: unknown rule(s) {', '.join(unknown)}; expected all or "
                            f"{','.join(cls.RULES)}")
        return replace(cls(), **{r: False for r in names})

    def short_alias_pairs(self, index, ids_of: dict) -> dict[str, frozenset[str]]:
        """surface -> the entities for which it is a short alias of a low-level administrative unit."""
        out: dict[str, frozenset[str]] = {}
        if not self.short_alias:
            return out
        for s, ids in ids_of.items():
            if len(s) > self.short_alias_max_chars:
                continue
            hit = frozenset(e for e in ids if (ent := index.get(e)).name != s and ent.type in self.short_alias_types)
            if hit:
                out[s] = hit
        return out


def _alternation(words) -> re.Pattern:
    """A regex matching any of ``words`` (longest first), led by a class of their first characters, which ``re``
    scans for fast (a bare alternation of 25 words is tried at every position)."""
    words = sorted(set(words), key=lambda w: (-len(w), w))
    first = "".join(sorted({w[0] for w in words}))
    return re.compile(f"(?=[{re.escape(first)}])(?:{'|'.join(map(re.escape, words))})")


def in_title(sentence: str, start: int, end: int) -> bool:
    """Whether [start, end) lies inside a ``《…》`` of the sentence."""
    opened = sentence.rfind("《", 0, start)
    return opened >= 0 and sentence.rfind("》", opened, start) < 0 and sentence.find("》", end) >= 0


class MentionFilter:
    """Rules 1, 3 and 4 over a sentence's linked mentions, built once per linker (rule 2 is corroboration,
    applied by ``kg.link.Linker``). ``segmenter``: the linker's (None: no word-boundary checks; the demonym rule
    is then off). ``names``: the KG's surface forms (for ``org_name_verbs``)."""

    def __init__(self, filters: LinkFilters, segmenter, names=()):
        self.title = filters.title
        self.demonym = filters.demonym and segmenter is not None
        self.segmenter = segmenter
        self.org = OrgPrefixRule(filters, segmenter, names=names) if filters.org_prefix else None
        triggers = (["《"] if self.title else []) + (["人"] if self.demonym else [])
        triggers += list(self.org.suffixes) if self.org is not None else []
        self._trigger = _alternation(triggers) if triggers else None  # one C call for most sentences

    def is_demonym(self, sentence: str, end: int) -> bool:
        if sentence[end:end + 1] != "人":
            return False
        bounds = self.segmenter.boundaries(sentence[end:end + 4])
        return 1 in bounds

    def apply(self, sentence: str, mentions: list, result) -> list:
        """The mentions no rule rejects; the rejections are counted on ``result`` (a ``kg.link.LinkResult``).
        Cheap for most sentences: each rule first looks for its trigger (《, 人, a suffix) in the whole sentence."""
        if self._trigger is None or self._trigger.search(sentence) is None:
            return mentions
        title = self.title and "《" in sentence
        demonym = self.demonym and "人" in sentence
        suffixes = self.org.suffix_starts(sentence) if self.org is not None else None
        kept = []
        for m in mentions:
            if title and in_title(sentence, m.start, m.end):
                result.title_rejected += 1
            elif demonym and self.is_demonym(sentence, m.end):
                result.demonym_rejected += 1
            elif suffixes and self.org.near(suffixes, m.end) and (org := self.org.starts_org_name(sentence, m.end)):
                result.org_prefix_rejected += 1
                result.org_name_verb_rejected += org == NAME_VERB
            else:
                kept.append(m)
        return kept


NAME_VERB = 2  # OrgPrefixRule.starts_org_name: an organisation's name, through a verb of the KG's organisation names


class OrgPrefixRule:
    """The organisation-name-prefix rule (the stop words come from jieba's dictionary; with ``org_name_verbs``, the
    verbs tolerated come from the organisation names among ``names``, the KG's surface forms)."""

    def __init__(self, filters: LinkFilters, segmenter, dictionary_path: str | None = None, names=()):
        from knowmix.kg.segmenter import jieba_dictionary_path

        self.max_gap = filters.org_max_gap
        self.segmenter = segmenter
        suffixes = sorted(set(LEGAL_FORMS + ORG_KINDS), key=lambda s: (-len(s), s))
        self.suffixes = suffixes
        self._suffix = _alternation(suffixes)
        self._window = self.max_gap + max(map(len, suffixes))
        function, stop, verb = set(FUNCTION_TAGS), set(LONG_WORD_STOP_TAGS), set(VERB_TAGS)
        self.stop_words: set[str] = set()  # words that end a name (see LONG_WORD_STOP_TAGS)
        self.verbs: set[str] = set()  # the stop words that are verbs of two or more characters
        with open(dictionary_path or jieba_dictionary_path(), encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2] in (stop if len(parts[0]) > 1 else function):
                    self.stop_words.add(parts[0])
                    if len(parts[0]) > 1 and parts[2] in verb:
                        self.verbs.add(parts[0])
        # the KG's organisation names, one a line (a name holding a suffix); verbs are looked up in it when met
        org_names = [n for n in names if self._suffix.search(n)] if filters.org_name_verbs else []
        self._org_names = "\n".join(org_names)
        self._name_verb: dict[str, bool] = {}

    def is_name_verb(self, word: str) -> bool:
        """Whether ``word`` is a verb that some organisation name of the KG holds (cached per word)."""
        known = self._name_verb.get(word)
        if known is None:
            known = self._name_verb[word] = word in self.verbs and word in self._org_names
        return known

    def suffix_starts(self, sentence: str) -> list[int]:
        """Where an organisation suffix starts in the sentence (sorted; empty for most sentences)."""
        return [m.start() for m in self._suffix.finditer(sentence)]

    def near(self, starts: list[int], end: int) -> bool:
        """Whether a suffix starts within ``max_gap`` characters after ``end``."""
        i = bisect_left(starts, end)
        return i < len(starts) and starts[i] <= end + self.max_gap

    def starts_org_name(self, sentence: str, end: int) -> int:
        """Whether the text from ``end`` on is the rest of an organisation's name (see the module docstring): 0 (no),
        1 (yes) or ``NAME_VERB`` (yes, with a verb of the KG's organisation names in the gap)."""
        window = sentence[end:end + self._window]
        bounds = None
        for m in self._suffix.finditer(window):
            gap = window[: m.start()]
            if len(gap) > self.max_gap or not _NAME_RUN.fullmatch(gap):
                return 0
            if not gap and m.group() in LEGAL_FORMS:
                return 0  # 中国铝业公司: the longer name of the same entity
            if bounds is None and self.segmenter is not None:
                bounds = self.segmenter.boundaries(window)  # only past the cheap character checks
            if bounds is not None and (m.start() not in bounds or m.end() not in bounds):
                continue  # inside a word (银行业): try a later suffix
            if not gap:
                return 1
            verdict = 1
            if bounds is not None:
                cuts = sorted(b for b in bounds if b <= m.start())
                for a, b in zip(cuts, cuts[1:]):
                    if gap[a:b] in self.stop_words:
                        if not self.is_name_verb(gap[a:b]):
                            return 0
                        verdict = NAME_VERB
            return verdict
        return 0
