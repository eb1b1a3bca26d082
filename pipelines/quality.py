"""Step 3 of the cleaning job: Chinese quality rules, as pure functions.

Each rule is a small pure function ``(doc, rules) -> reason | None`` in the style of datatrove's filters
(gopher_quality, gopher_repetition, c4, fineweb_quality), adapted to Chinese after FineWeb-2 (``cmn_Hani``),
ChineseWebText and MAP-NEO:

- Chinese has no spaces, so the "word" statistics become **character** statistics: n-grams are taken over
  the text's word characters (``\\w``: Han, letters, digits; punctuation and white space removed), top
  n-gram shares for n = 2, 3, 4 and duplicate n-gram shares for n = 5..10 (Gopher's thresholds for words
  are recalibrated for characters on the fixture corpora).
- Line rules (terminal punctuation, short lines) count Chinese terminal punctuation (``。！？…`` and closing
  quotes/brackets after them) and use a short-line length in characters, not words.
- Ratios are over non-white-space characters (space, tab, newline: what the normaliser leaves); character
  entropy is over the word characters.
- Short texts: the n-gram rules only apply from ``min_ngram_chars`` word characters on (below that one
  repeated name already makes a large share).

``check_quality`` returns the reason of the first failing rule, in ``REASONS`` order (cheap rules first);
``quality_signals`` returns every measured value. Thresholds live in ``DEFAULT_RULES`` per source kind
(encyclopedia lenient, news and qa moderate, web strict) and every one is overridable via ``rules_for``.
A ``max_*`` threshold of 1 (or more) or a ``min_*`` threshold of 0 switches that rule off.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, Mapping

import numpy as np

from knowmix.errors import UserError

# --------------------------------------------------------------------------------------------- defaults

# Calibrated on the fixture corpora (People's Daily paragraphs, CMRC 2018 and DRCD Wikipedia paragraphs,
# medical Q&A): a kind's defaults keep that kind's real text (bar headlines/bylines in news, which are
# too short), and the strict web defaults drop at most a few percent of the encyclopedia paragraphs.
_STRICT: dict[str, Any] = {
    "langs": ["zh"],
    "min_lang_score": 0.65,
    "min_chars": 200,  # characters of the normalised text
    "max_chars": 500_000,
    "min_cjk_ratio": 0.4,  # Han characters / non-space characters
    "min_terminal_punct_lines": 0.12,  # FineWeb line_punct_thr
    "short_line_chars": 10,  # FineWeb counts lines under 30 characters of Latin text; 10 Han characters
    "max_short_lines": 0.67,  # FineWeb short_line_thr
    "max_dup_line_frac": 0.3,  # Gopher
    "max_dup_line_char_frac": 0.2,
    "max_dup_para_frac": 0.3,
    "max_dup_para_char_frac": 0.2,
    "min_ngram_chars": 100,  # the n-gram rules need this many word characters (shorter: too noisy)
    "max_top_2gram": 0.16,  # share of characters in the most frequent character n-gram
    "max_top_3gram": 0.15,
    "max_top_4gram": 0.14,
    "max_dup_5gram": 0.35,  # share of characters in repeated character n-grams
    "max_dup_6gram": 0.30,
    "max_dup_7gram": 0.27,
    "max_dup_8gram": 0.24,
    "max_dup_9gram": 0.22,
    "max_dup_10gram": 0.20,
    "min_entropy": 5.5,  # bits per character; real paragraphs of 250+ characters measure 5.8-7.9
    "max_symbol_ratio": 0.05,  # non-punctuation symbols (#, |, ★, emoji, ...) / non-space characters
    "max_digit_ratio": 0.25,
    "max_url_ratio": 0.10,  # characters inside URLs / non-space characters
    "max_flagged_ratio": 0.01,  # characters inside flagged words / non-space characters
    "max_repetition": 0.10,  # characters in runs of a 1-4 character unit repeated 5+ times
}

_MODERATE: dict[str, Any] = {
    **_STRICT,
    "min_lang_score": 0.5,
    "min_terminal_punct_lines": 0.1,
    "max_short_lines": 0.8,
    "max_top_2gram": 0.2,
    "max_top_3gram": 0.18,
    "max_top_4gram": 0.16,
    "max_dup_5gram": 0.45,
    "max_dup_6gram": 0.40,
    "max_dup_7gram": 0.36,
    "max_dup_8gram": 0.33,
    "max_dup_9gram": 0.30,
    "max_dup_10gram": 0.28,
    "max_symbol_ratio": 0.08,
    "max_digit_ratio": 0.3,
    "max_flagged_ratio": 0.02,
    "max_repetition": 0.15,
}

DEFAULT_RULES: dict[str, dict[str, Any]] = {
    # web: strict everywhere (the Gopher/FineWeb-2 style web filter).
    "web": dict(_STRICT),
    # news: edited text, one paragraph can be a document; moderate.
    "news": {**_MODERATE, "min_chars": 50, "min_entropy": 4.5},
    # qa: community answers are short (title + question + answer) and often unpunctuated.
    "qa": {**_MODERATE, "min_chars": 20, "min_terminal_punct_lines": 0.0, "max_short_lines": 0.9, "min_entropy": 3.5},
    # encyclopedia: curated text full of dates, numbers, lists and terms; lenient.
    "encyclopedia": {
        **_MODERATE,
        "min_lang_score": 0.3,
        "min_chars": 30,
        "max_chars": 2_000_000,
        "min_cjk_ratio": 0.25,
        "min_terminal_punct_lines": 0.0,
        "max_short_lines": 1.0,
        "max_dup_line_frac": 0.5,
        "max_dup_line_char_frac": 0.4,
        "max_dup_para_frac": 0.5,
        "max_dup_para_char_frac": 0.4,
        "max_top_2gram": 0.25,
        "max_top_3gram": 0.22,
        "max_top_4gram": 0.2,
        "max_dup_5gram": 0.6,
        "max_dup_6gram": 0.55,
        "max_dup_7gram": 0.5,
        "max_dup_8gram": 0.45,
        "max_dup_9gram": 0.42,
        "max_dup_10gram": 0.4,
        "min_entropy": 3.5,
        "max_symbol_ratio": 0.15,
        "max_digit_ratio": 0.5,
        "max_url_ratio": 0.3,
        "max_flagged_ratio": 0.05,
        "max_repetition": 0.3,
    },
}

REASONS: tuple[str, ...] = (
    "too_short",
    "too_long",
    "cjk_ratio",
    "symbol_ratio",
    "digit_ratio",
    "url_ratio",
    "flagged_words",
    "terminal_punct",
    "short_lines",
    "dup_lines",
    "dup_paragraphs",
    "repetition",
    "top_ngram",
    "dup_ngram",
    "entropy",
)

TOP_NGRAM_NS = (2, 3, 4)
DUP_NGRAM_NS = (5, 6, 7, 8, 9, 10)


def rules_for(kind: str, overrides: Mapping[str, Any] | None = None, where: str = "config") -> dict:
    """The rules for a source kind: ``DEFAULT_RULES[kind]`` updated with ``overrides``.

    An unknown kind or key, or a value of the wrong type, raises ``UserError`` naming ``where``.
    """
    if kind not in DEFAULT_RULES:
        raise UserError(f"{where}: unknown source kind {kind!r} (known: {', '.join(DEFAULT_RULES)})")
    rules = dict(DEFAULT_RULES[kind])
    for key, value in (overrides or {}).items():
        if key not in rules:
            raise UserError(f"{where}: unknown quality rule {key!r} for kind {kind!r}")
        default = rules[key]
        if isinstance(default, list):
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise UserError(f"{where}: rule {key!r} must be a list of language codes, got {value!r}")
            value = list(value)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: rule {key!r} must be a number, got {value!r}")
        elif isinstance(default, int) and not isinstance(value, int):
            raise UserError(f"{where}: rule {key!r} must be an integer, got {value!r}")
        rules[key] = value
    return rules


def check_language(lang: str, score: float, rules: Mapping) -> str | None:
    """None (keep) when ``lang`` is one of ``rules['langs']`` with score >= ``min_lang_score``, else "lang"."""
    if lang in rules["langs"] and score >= rules["min_lang_score"]:
        return None
    return "lang"


# ------------------------------------------------------------------------------------------ measurement

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_HAN_RUN_RE = re.compile(f"[{_HAN}]+")
_NON_WORD_RE = re.compile(r"[\W_]+")
_DIGIT_RE = re.compile(r"\d")
# ordinary sentence punctuation, Chinese and ASCII: not "symbols"
_PUNCT = "，。、；：？！“”‘’（）《》〈〉【】「」『』〔〕—…·～,.;:?!'\"()\\[\\]\\-%/"
_SYMBOL_RE = re.compile(f"[^\\w\\s{_PUNCT}]")
_URL_RE = re.compile(
    r"(?:https?://|ftp://|www\.)[^\s<>\"'\u3000-\u303f\uff00-\uffef\u3400-\u9fff]+", re.IGNORECASE
)
# a 1-4 character unit (starting with a non-space) repeated 5+ times in a row; the lookahead (the unit's
# first character recurs within 4) is a cheap gate that halves the cost on ordinary text
_REPEAT_RE = re.compile(r"(?=(\S).{0,3}?\1)(\S.{0,3}?)\2{4,}")
# terminal punctuation, optionally followed by closing quotes/brackets
_TERMINAL = frozenset("。！？!?….;；")
_CLOSERS = "”’\"'」』）)》〉】]"
_TRAILING_PAREN_RE = re.compile(r"[（(][^（()）]*[）)]$")
_PARA_SPLIT_RE = re.compile(r"\n\s*\n")

_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd, with well-spread bits: the low bits of the hash stay random


# Terms typical of Chinese web spam (online gambling, porn ads, fake invoice/certificate ads), not topics:
# a news report that mentions gambling once stays far below the thresholds. Kept in code (not a data file)
# so that a plain `pip install .` carries it.
FLAGGED_WORDS_ZH: tuple[str, ...] = (
    "澳门赌场", "网上赌场", "在线赌场", "网络赌博", "在线赌博", "赌博网站", "百家乐", "时时彩", "六合彩", "真人娱乐", "娱乐城", "博彩",
    "老虎机", "赌球", "彩金", "开户送", "注册送", "特码", "买码", "一夜情", "约炮", "裸聊", "援交", "色情网站", "黄色网站", "成人视频",
    "成人电影", "激情视频", "三级片", "毛片", "女优", "无码", "代开发票", "办证", "信用卡套现", "私服",
)
FLAGGED_WORDS: tuple[str, ...] = tuple(sorted(set(FLAGGED_WORDS_ZH), key=len, reverse=True))
_FLAGGED_RE = re.compile("|".join(map(re.escape, FLAGGED_WORDS))) if FLAGGED_WORDS else None


# Per-character classes of the Basic Multilingual Plane, for the rules that count characters of one
# class: each bit is the verdict of that rule's own regex (a one-character class) on that character, so
# counting with the table equals counting with the regex. Texts with a character beyond the BMP use the
# regexes. Built on first use (about 0.03 s).
_WORD, _HAN_CHAR, _DIGIT, _SYMBOL = 1, 2, 4, 8
_BMP = 0x10000
_CLASS_TABLE: np.ndarray | None = None


def _class_table() -> np.ndarray:
    global _CLASS_TABLE
    if _CLASS_TABLE is None:
        points = np.arange(_BMP, dtype=np.uint32)
        chars = points.tobytes().decode("utf-32-le", "surrogatepass")
        table = np.zeros(_BMP, dtype=np.uint8)
        for bit, pattern, invert in (
            (_WORD, _NON_WORD_RE, True),
            (_HAN_CHAR, _HAN_RUN_RE, False),
            (_DIGIT, _DIGIT_RE, False),
            (_SYMBOL, _SYMBOL_RE, False),
        ):
            one = re.compile(pattern.pattern.removesuffix("+"), pattern.flags)  # one character of the class
            marked = one.sub("\x01", chars)
            assert len(marked) == _BMP
            hit = np.frombuffer(marked.encode("utf-32-le", "surrogatepass"), dtype=np.uint32) != points
            hit[1] = one.fullmatch("\x01") is not None
            table[hit != invert] |= bit
        _CLASS_TABLE = table
    return _CLASS_TABLE


def _bit_counts(counts: list[int], bit: int) -> int:
    return sum(c for cls, c in enumerate(counts) if cls & bit)


class Doc:
    """The text plus lazily computed pieces shared by several rules."""

    __slots__ = ("text", "_nonspace", "_lines", "_codes", "_points", "_classes", "_class_counts", "_cache")

    def __init__(self, text: str):
        self.text = text
        self._nonspace = None
        self._lines = None
        self._codes = None
        self._points = None
        self._classes = None
        self._class_counts = None
        self._cache: dict[str, float] = {}

    @property
    def nonspace(self) -> int:
        if self._nonspace is None:
            t = self.text
            self._nonspace = len(t) - t.count(" ") - t.count("\n") - t.count("\t")
        return self._nonspace

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = [ln for ln in (x.strip() for x in self.text.split("\n")) if ln]
        return self._lines

    @property
    def points(self) -> np.ndarray:
        """Code points of the whole text, as uint32 (lone surrogates included)."""
        if self._points is None:
            self._points = np.frombuffer(self.text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return self._points

    @property
    def classes(self) -> np.ndarray | None:
        """Each character's class bits (``_class_table``), or None when the text leaves the BMP."""
        if self._classes is None:
            points = self.points
            if len(points) and int(points.max()) >= _BMP:
                self._classes = False
            else:
                self._classes = _class_table()[points]
        return None if self._classes is False else self._classes

    def class_count(self, bit: int) -> int | None:
        """How many characters have class ``bit``; None when the text leaves the BMP."""
        if self._class_counts is None:
            classes = self.classes
            self._class_counts = False if classes is None else np.bincount(classes, minlength=16).tolist()
        return None if self._class_counts is False else _bit_counts(self._class_counts, bit)

    @property
    def codes(self) -> np.ndarray:
        """Code points of the word characters (punctuation and white space removed), as uint32."""
        if self._codes is None:
            classes = self.classes
            if classes is None:
                word = _NON_WORD_RE.sub("", self.text)
                self._codes = np.frombuffer(word.encode("utf-32-le"), dtype=np.uint32)
            else:
                self._codes = self.points[(classes & _WORD) != 0]
        return self._codes


def _ratio(n: float, d: float) -> float:
    return n / d if d else 0.0


def _sig_n_chars(doc: Doc) -> float:
    return float(len(doc.text))


def _sig_cjk_ratio(doc: Doc) -> float:
    n = doc.class_count(_HAN_CHAR)
    if n is None:
        text = doc.text
        n = len(text) - len(_HAN_RUN_RE.sub("", text))
    return _ratio(n, doc.nonspace)


def _sig_symbol_ratio(doc: Doc) -> float:
    n = doc.class_count(_SYMBOL)
    if n is None:
        _, n = _SYMBOL_RE.subn("", doc.text)
    return _ratio(n, doc.nonspace)


def _sig_digit_ratio(doc: Doc) -> float:
    n = doc.class_count(_DIGIT)
    if n is None:
        _, n = _DIGIT_RE.subn("", doc.text)
    return _ratio(n, doc.nonspace)


def _sig_url_ratio(doc: Doc) -> float:
    text = doc.text
    if "://" not in text and "www." not in text and "WWW." not in text:
        return 0.0
    return _ratio(sum(m.end() - m.start() for m in _URL_RE.finditer(text)), doc.nonspace)


def _sig_flagged_ratio(doc: Doc) -> float:
    if _FLAGGED_RE is None:
        return 0.0
    return _ratio(sum(m.end() - m.start() for m in _FLAGGED_RE.finditer(doc.text)), doc.nonspace)


def _is_terminal(line: str) -> bool:
    """Ends in terminal punctuation (closing quotes/brackets after it allowed), or is a sentence followed
    by a parenthetical credit such as ``……。（新华社记者兰红光摄）``."""
    end = line.rstrip(_CLOSERS)
    if end and end[-1] in _TERMINAL:
        return True
    if line[-1] in "）)":
        m = _TRAILING_PAREN_RE.search(line)
        if m is not None:
            end = line[: m.start()].rstrip(_CLOSERS)
            return bool(end) and end[-1] in _TERMINAL
    return False


def _sig_terminal_punct(doc: Doc) -> float:
    lines = doc.lines
    return _ratio(sum(map(_is_terminal, lines)), len(lines))


def _sig_short_lines(doc: Doc, limit: int) -> float:
    lines = doc.lines
    return _ratio(sum(1 for ln in lines if len(ln) < limit), len(lines))


def _dup_fracs(items: list[str]) -> tuple[float, float]:
    """(fraction of items that repeat an earlier one, their share of all item characters): Gopher's
    find_duplicates, with Counter instead of a Python loop."""
    if len(items) < 2:
        return 0.0, 0.0
    counts = Counter(items)
    if len(counts) == len(items):
        return 0.0, 0.0
    dup_chars = sum(len(k) * (c - 1) for k, c in counts.items() if c > 1)
    return (len(items) - len(counts)) / len(items), _ratio(dup_chars, sum(map(len, items)))


def _sig_dup_lines(doc: Doc) -> tuple[float, float]:
    if "dup_lines" not in doc._cache:
        doc._cache["dup_lines"] = _dup_fracs(doc.lines)
    return doc._cache["dup_lines"]


def _sig_dup_paras(doc: Doc) -> tuple[float, float]:
    if "dup_paras" not in doc._cache:
        text = doc.text
        if "\n\n" not in text and "\n \n" not in text:
            doc._cache["dup_paras"] = (0.0, 0.0)
        else:
            paras = [p for p in (x.strip() for x in _PARA_SPLIT_RE.split(text)) if p]
            doc._cache["dup_paras"] = _dup_fracs(paras)
    return doc._cache["dup_paras"]


def _may_repeat(c: np.ndarray) -> bool:
    """False when ``_REPEAT_RE`` cannot match the text of code points ``c``: a unit of L characters
    repeated 5 times needs 4 * L consecutive positions j with ``c[j] == c[j + L]``. A vectorised pre-check
    that spares most texts the regex scan (which then decides exactly as before)."""
    for lag in (1, 2, 3, 4):
        run = c[lag:] == c[:-lag]  # run[j]: position j starts a run of equalities of length >= 1
        have, need = 1, 4 * lag
        while have < need and len(run):
            step = min(have, need - have)  # runs of `have` starting at j and j + step: length have + step
            run = run[:-step] & run[step:]
            have += step
        if run.any():
            return True
    return False


def _sig_repetition(doc: Doc) -> float:
    text = doc.text
    if len(text) < 5 or not _may_repeat(doc.points):
        return 0.0
    return _ratio(sum(m.end() - m.start() for m in _REPEAT_RE.finditer(text)), doc.nonspace)


_ALL_NS = (1,) + TOP_NGRAM_NS + DUP_NGRAM_NS  # the old single-sort layout; only its key count matters now
_MAX_PACKED_RANK = (1 << (64 // 5)) - 1  # 5 ranks of 12 bits (1..4095) fit one int64 key


def _max_run(sorted_keys: np.ndarray) -> int:
    """Length of the longest run of equal values in a sorted array (non-empty)."""
    bounds = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1])  # the last index of each run but the last
    if not len(bounds):
        return len(sorted_keys)
    inner = int((bounds[1:] - bounds[:-1]).max()) if len(bounds) > 1 else 0
    return max(inner, int(bounds[0]) + 1, len(sorted_keys) - 1 - int(bounds[-1]))


def _dup_coverage(pos: np.ndarray, gid: np.ndarray, rp: np.ndarray, total: int, stats: dict) -> None:
    """``dup_{n}gram`` for n = 5..10 from the repeated 5-grams only: ``pos`` (ascending) are the start
    positions of every occurrence of a repeated 5-gram, ``gid`` the same id for equal 5-grams. A repeated
    n-gram's (n-1)-prefix repeats too, so level n+1 refines the groups of size > 1 of level n by the next
    character (``rp``: character ranks). A stable sort keeps each group in position order, so its first
    member is the first occurrence; the others are the repeats, whose n-character spans are unioned."""
    key = gid
    for n in DUP_NGRAM_NS:
        order = np.argsort(key, kind="stable")
        key = key[order]
        pos = pos[order]
        first = np.empty(len(key), dtype=bool)
        first[0] = True
        np.not_equal(key[1:], key[:-1], out=first[1:])
        repeat = ~first
        starts = np.sort(pos[repeat])
        if not len(starts):
            break  # no repeated n-gram: none for larger n either
        # equal-length spans sorted by start: their union is n plus each gap, capped at n
        covered = n + int(np.minimum(starts[1:] - starts[:-1], n).sum())
        stats[f"dup_{n}gram"] = covered / total
        if n == DUP_NGRAM_NS[-1]:
            break
        keep = repeat.copy()
        keep[:-1] |= repeat[1:]  # the first member of a group of size > 1
        keep &= pos <= total - n - 1  # an (n+1)-gram starts there
        gid = np.cumsum(first)[keep]
        pos = pos[keep]
        if not len(pos):
            break
        key = gid * (len(rp) + 1) + rp[pos + n]


def _ngram_stats(doc: Doc) -> dict[str, float]:
    """Character n-gram statistics over the word characters:

    - ``top_{n}gram`` (n=2..4): share of characters in the most frequent n-gram (count * n / chars);
    - ``dup_{n}gram`` (n=5..10): share of characters covered by the repeated occurrences (all but the
      first) of n-grams: the union of their characters, which is what Gopher's greedy
      find_all_duplicate approximates with its skip-ahead loop;
    - ``entropy``: Shannon entropy (bits) of the character (n=1) distribution.

    Exact (no hashing). The characters become dense ranks 1..K (one sort of the code points, which also
    gives the character counts). With K < 4096 each position's 5-gram packs into one int64 key (at most
    12 bits a rank, rank 0 padding past the end), most significant character first, so after one sort every
    n-gram (n <= 5) is a run of equal ``key >> bits * (5 - n)``: the top 2/3/4-gram counts are the longest
    runs (a prefix with padding occurs once, so it never wins). Larger alphabets refine dense n-gram
    ranks level by level instead. The duplicate n-grams (n = 5..10) then only look at the positions of
    repeated 5-grams (``_dup_coverage``).
    """
    cached = doc._cache.get("ngrams")
    if cached is not None:
        return cached
    codes = doc.codes
    total = len(codes)
    stats = {f"top_{n}gram": 0.0 for n in TOP_NGRAM_NS}
    stats.update({f"dup_{n}gram": 0.0 for n in DUP_NGRAM_NS})
    stats["entropy"] = 0.0
    if total == 0:
        doc._cache["ngrams"] = stats
        return stats
    # characters: sorted code points -> distinct values and their counts; ranks by binary search
    sc = np.sort(codes)
    new = np.empty(total, dtype=bool)
    new[0] = True
    np.not_equal(sc[1:], sc[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    uniq = sc[starts]
    counts = np.empty(len(starts), dtype=np.int64)
    counts[:-1] = starts[1:] - starts[:-1]
    counts[-1] = total - starts[-1]
    n_chars = len(uniq)
    # entropy, summed in the order the former single-sort implementation met the characters (its
    # hashed, index-shifted keys), so that the float result stays bit-identical
    n_keys = sum(total - n + 1 for n in _ALL_NS if total - n + 1 > 0)
    order = np.argsort((uniq.astype(np.uint64) * _HASH_MUL) << np.uint64(int(n_keys).bit_length()))
    p = counts[order] / total
    stats["entropy"] = max(0.0, float(-(p * np.log2(p)).sum()))
    if total < 2:
        doc._cache["ngrams"] = stats
        return stats
    rp = np.zeros(total + 4, dtype=np.int64)  # ranks 1..K, then 0 padding
    rp[:total] = np.searchsorted(uniq, codes)
    rp[:total] += 1
    gid5 = None
    if n_chars <= _MAX_PACKED_RANK:
        bits = n_chars.bit_length()
        key = rp[:total].copy()
        for j in range(1, 5):
            key <<= bits
            key |= rp[j : j + total]
        sk = np.sort(key)
        for n in TOP_NGRAM_NS:
            if total >= n:
                run = _max_run(sk >> (bits * (5 - n)))
                stats[f"top_{n}gram"] = min(1.0, run * n / total)  # overlaps can pass 1
        if total >= 5:
            same = sk[1:] == sk[:-1]
            if same.any():
                rep = sk[1:][same]  # sorted, every repeated 5-gram (a padded one never repeats)
                where = np.searchsorted(rep, key)
                np.minimum(where, len(rep) - 1, out=where)
                pos = np.flatnonzero(rep[where] == key)
                gid5 = where[pos]
    else:
        ranks = rp[:total]
        for n in range(2, 6):
            grams = ranks[:-1] * (n_chars + 1) + rp[n - 1 : total]  # (n-1)-gram rank, last character
            ranks, gcounts = np.unique(grams, return_inverse=True, return_counts=True)[1:]
            if n in TOP_NGRAM_NS:
                stats[f"top_{n}gram"] = min(1.0, int(gcounts.max()) * n / total)
        pos = np.flatnonzero(gcounts[ranks] > 1)  # this path has K >= 4096 characters, so 5-grams exist
        if len(pos):
            gid5 = ranks[pos]
    if gid5 is not None:
        _dup_coverage(pos, gid5.astype(np.int64), rp, total, stats)
    doc._cache["ngrams"] = stats
    return stats


def _sig_entropy(doc: Doc) -> float:
    """Shannon entropy (bits per character) of the word-character distribution."""
    return _ngram_stats(doc)["entropy"]


# ---------------------------------------------------------------------------------------------- rules
# Each rule: (doc, rules) -> reason | None.


def rule_length(doc: Doc, rules: Mapping) -> str | None:
    n = len(doc.text)
    if n < rules["min_chars"]:
        return "too_short"
    if n > rules["max_chars"]:
        return "too_long"
    return None


def rule_cjk_ratio(doc: Doc, rules: Mapping) -> str | None:
    lim = rules["min_cjk_ratio"]
    return "cjk_ratio" if lim > 0 and _sig_cjk_ratio(doc) < lim else None


def _max_rule(reason: str, key: str, signal: Callable[[Doc], float]) -> Callable[[Doc, Mapping], str | None]:
    def rule(doc: Doc, rules: Mapping) -> str | None:
        lim = rules[key]
        return reason if lim < 1 and signal(doc) > lim else None

    rule.__name__ = f"rule_{reason}"
    rule.__doc__ = f"{reason!r} when the {signal.__name__[5:]} signal exceeds rules[{key!r}]."
    return rule


rule_symbol_ratio = _max_rule("symbol_ratio", "max_symbol_ratio", _sig_symbol_ratio)
rule_digit_ratio = _max_rule("digit_ratio", "max_digit_ratio", _sig_digit_ratio)
rule_url_ratio = _max_rule("url_ratio", "max_url_ratio", _sig_url_ratio)
rule_flagged_words = _max_rule("flagged_words", "max_flagged_ratio", _sig_flagged_ratio)
rule_repetition = _max_rule("repetition", "max_repetition", _sig_repetition)


def rule_terminal_punct(doc: Doc, rules: Mapping) -> str | None:
    lim = rules["min_terminal_punct_lines"]
    return "terminal_punct" if lim > 0 and _sig_terminal_punct(doc) < lim else None


def rule_short_lines(doc: Doc, rules: Mapping) -> str | None:
    lim = rules["max_short_lines"]
    return "short_lines" if lim < 1 and _sig_short_lines(doc, rules["short_line_chars"]) > lim else None


def rule_dup_lines(doc: Doc, rules: Mapping) -> str | None:
    frac, char_frac = _sig_dup_lines(doc)
    if frac > rules["max_dup_line_frac"] or char_frac > rules["max_dup_line_char_frac"]:
        return "dup_lines"
    return None


def rule_dup_paragraphs(doc: Doc, rules: Mapping) -> str | None:
    frac, char_frac = _sig_dup_paras(doc)
    if frac > rules["max_dup_para_frac"] or char_frac > rules["max_dup_para_char_frac"]:
        return "dup_paragraphs"
    return None


def rule_top_ngram(doc: Doc, rules: Mapping) -> str | None:
    if len(doc.codes) < rules["min_ngram_chars"]:
        return None
    stats = _ngram_stats(doc)
    for n in TOP_NGRAM_NS:
        if stats[f"top_{n}gram"] > rules[f"max_top_{n}gram"]:
            return "top_ngram"
    return None


def rule_dup_ngram(doc: Doc, rules: Mapping) -> str | None:
    if len(doc.codes) < rules["min_ngram_chars"]:
        return None
    stats = _ngram_stats(doc)
    for n in DUP_NGRAM_NS:
        if stats[f"dup_{n}gram"] > rules[f"max_dup_{n}gram"]:
            return "dup_ngram"
    return None


def rule_entropy(doc: Doc, rules: Mapping) -> str | None:
    lim = rules["min_entropy"]
    return "entropy" if lim > 0 and _sig_entropy(doc) < lim else None


RULES: tuple[Callable[[Doc, Mapping], str | None], ...] = (
    rule_length,
    rule_cjk_ratio,
    rule_symbol_ratio,
    rule_digit_ratio,
    rule_url_ratio,
    rule_flagged_words,
    rule_terminal_punct,
    rule_short_lines,
    rule_dup_lines,
    rule_dup_paragraphs,
    rule_repetition,
    rule_top_ngram,
    rule_dup_ngram,
    rule_entropy,
)


def check_quality(text: str, rules: Mapping) -> str | None:
    """None (keep) or the reason of the first failing rule (in ``REASONS`` order)."""
    doc = Doc(text)
    for rule in RULES:
        reason = rule(doc, rules)
        if reason is not None:
            return reason
    return None


def quality_signals(text: str, short_line_chars: int = _STRICT["short_line_chars"]) -> dict[str, float]:
    """Every measured value the rules compare against (for stats and debugging)."""
    doc = Doc(text)
    dup_l, dup_lc = _sig_dup_lines(doc)
    dup_p, dup_pc = _sig_dup_paras(doc)
    out = {
        "n_chars": _sig_n_chars(doc),
        "cjk_ratio": _sig_cjk_ratio(doc),
        "symbol_ratio": _sig_symbol_ratio(doc),
        "digit_ratio": _sig_digit_ratio(doc),
        "url_ratio": _sig_url_ratio(doc),
        "flagged_ratio": _sig_flagged_ratio(doc),
        "terminal_punct_lines": _sig_terminal_punct(doc),
        "short_lines": _sig_short_lines(doc, short_line_chars),
        "dup_line_frac": dup_l,
        "dup_line_char_frac": dup_lc,
        "dup_para_frac": dup_p,
        "dup_para_char_frac": dup_pc,
        "repetition": _sig_repetition(doc),
    }
    out.update(_ngram_stats(doc))
    return out
