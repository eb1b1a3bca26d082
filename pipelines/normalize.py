"""Step 1 of the cleaning job: text normalisation, as pure functions.

Each step is switchable per source kind (``DEFAULT_STEPS``); the steps always run in ``STEPS`` order:

- ``html_entities``: ``html.unescape`` (``&amp;`` ``&nbsp;`` ``&#x4e2d;`` ...).
- ``nfkc``: Unicode NFKC (compatibility ideographs, full-width letters/digits -> ASCII, ``①`` -> ``1`` ...),
  **except** the Chinese punctuation in ``KEEP_FULLWIDTH``: plain NFKC would turn ``，：；！？（）`` into
  ASCII ``,:;!?()`` and ``…`` into ``...``; Chinese text keeps them full-width (a deliberate choice: the
  corpus is Chinese, and the quality rules/tokenizer treat ``，`` and ``,`` differently).
- ``fullwidth``: only the full-width ASCII block (U+FF01..U+FF5E) and the ideographic space -> ASCII,
  with the same ``KEEP_FULLWIDTH`` exception; a no-op after ``nfkc``, useful when ``nfkc`` is off.
- ``t2s``: traditional -> simplified Chinese with OpenCC (``t2s``), only where the document is traditional.
  ``"auto"`` (the default): every document's script is detected (``detect_script``: the counts of
  traditional-only and simplified-only characters, ``pipelines.script_chars``) and only ``traditional``
  documents, and ``mixed`` ones whose traditional share reaches ``t2s_threshold``, are converted; simplified
  text is never rewritten (OpenCC would turn the names 萧乾, 昇辉电子, 二噁英 into 萧干, 升辉电子, 二𫫇英).
  ``true``: every document (the old behaviour); ``false``: none. Inside a converted document the spans that
  are ``keep_words`` (a user word list: names) or names and aliases of the ``keep_kg`` KG files are left as
  written.
- ``control_chars``: removes C0/C1 control characters (keeps ``\\n``, ``\\t``; ``\\r\\n``/``\\r`` become ``\\n``),
  zero-width and bidi-format characters (ZWSP, ZWNJ, ZWJ, BOM, soft hyphen, LRM/RLM, ...).
- ``whitespace``: line breaks normalised (``\\r\\n``, ``\\r``, U+2028 -> ``\\n``; U+2029 -> blank line),
  runs of horizontal white space -> one space, each line stripped at both ends (Chinese paragraphs'
  ``　　`` indentation goes too), 3+ newlines -> 2 (paragraph breaks kept), the text stripped.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from knowmix.errors import UserError

STEPS: tuple[str, ...] = ("html_entities", "nfkc", "fullwidth", "t2s", "control_chars", "whitespace")

SOURCE_KINDS: tuple[str, ...] = ("web", "encyclopedia", "news", "qa")

# Every step on for every kind: entities show up in all scraped text (MediaWiki dumps included), the
# encyclopedia fixtures include traditional-script (DRCD, Taiwan) articles, and the later rules assume
# collapsed white space. Each is switchable per kind in the job config; t2s converts only what is
# traditional ("auto").
DEFAULT_STEPS: dict[str, dict[str, bool | str]] = {
    kind: {step: "auto" if step == "t2s" else True for step in STEPS} for kind in SOURCE_KINDS
}

# Script detection: share = traditional-only / (traditional-only + simplified-only characters).
SCRIPTS: tuple[str, ...] = ("simplified", "traditional", "mixed", "none")
SIMPLIFIED_MAX_SHARE = 0.1  # at most this share: "simplified" (a few quoted traditional characters are common)
TRADITIONAL_MIN_SHARE = 0.9  # at least this share: "traditional"; in between: "mixed"
DEFAULT_T2S_THRESHOLD = 0.5  # a mixed document is converted when its traditional share reaches this

# Chinese punctuation that stays full-width (GB/T 15834 forms); NFKC would map them to ASCII.
KEEP_FULLWIDTH = "！，：；？（）…"

# U+FDD0..U+FDEF are Unicode noncharacters: NFKC leaves them alone and real text never holds them, so
# they serve as placeholders while NFKC runs (any that do occur in the input are dropped first).
_PLACEHOLDERS = tuple((ch, chr(0xFDD0 + i)) for i, ch in enumerate(KEEP_FULLWIDTH))
_NONCHAR_RE = re.compile("[\ufdd0-\ufdef]")

_KEEP_CPS = {ord(ch) for ch in KEEP_FULLWIDTH}
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F) if cp not in _KEEP_CPS}
_FULLWIDTH[0x3000] = 0x20
_FULLWIDTH_RE = re.compile("[" + "".join(re.escape(chr(cp)) for cp in sorted(_FULLWIDTH)) + "]")

_CONTROL_RE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"  # C0 (minus \t \n \r) and C1 controls
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180e"  # soft hyphen, invisible fillers, Mongolian FVS
    "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"  # zero-width, LRM/RLM, bidi, word joiner
    "\ufeff\ufff9-\ufffb]"  # BOM / ZWNBSP, interlinear annotation
)

_SURROGATE_RE = re.compile("([\ud800-\udfff]+)")
_HSPACE_RUN = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NL = re.compile(r" ?\n ?")
_MANY_NL = re.compile(r"\n{3,}")


def _html_entities(text: str) -> str:
    return html.unescape(text) if "&" in text else text


def _nfkc(text: str) -> str:
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
        return text
    if _NONCHAR_RE.search(text):
        text = _NONCHAR_RE.sub("", text)
    protected = []
    for ch, placeholder in _PLACEHOLDERS:
        if ch in text:
            text = text.replace(ch, placeholder)
            protected.append((placeholder, ch))
    # Chinese text is often NFKC-normal but for the protected punctuation: the quick check skips the work
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    for placeholder, ch in protected:
        text = text.replace(placeholder, ch)
    return text


def _fullwidth(text: str) -> str:
    return text.translate(_FULLWIDTH) if _FULLWIDTH_RE.search(text) else text


def _control_chars(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL_RE.sub("", text) if _CONTROL_RE.search(text) else text


def _whitespace(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\n").replace("\u2029", "\n\n")
    text = _HSPACE_RUN.sub(" ", text)
    if " \n" in text or "\n " in text:
        text = _SPACE_AROUND_NL.sub("\n", text)
    if "\n\n\n" in text:
        text = _MANY_NL.sub("\n\n", text)
    return text.strip()


class _ScriptTable:
    """Code point -> 0 (neither), 1 (traditional-only), 2 (simplified-only), a numpy lookup table built on
    first use: counting a text is a gather over its UTF-32 code units (hundreds of M characters/s, far faster
    than OpenCC's conversion)."""

    classes: np.ndarray | None = None

    @classmethod
    def get(cls) -> np.ndarray:
        if cls.classes is None:
            from knowmix.pipelines.script_chars import SIMPLIFIED_ONLY, TRADITIONAL_ONLY

            # the last entry stays 0: code points above the table are clipped onto it
            classes = np.zeros(max(map(ord, TRADITIONAL_ONLY + SIMPLIFIED_ONLY)) + 2, np.uint8)
            classes[[ord(c) for c in TRADITIONAL_ONLY]] = 1
            classes[[ord(c) for c in SIMPLIFIED_ONLY]] = 2
            cls.classes = classes
        return cls.classes


def _utf32(text: str) -> np.ndarray:
    # surrogatepass: a lone surrogate is one code unit too, so positions stay those of the str
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def script_counts(text: str) -> tuple[int, int]:
    """(traditional-only, simplified-only) character counts of ``text`` (``pipelines.script_chars``)."""
    if text.isascii():
        return 0, 0
    counts = np.bincount(_ScriptTable.get().take(_utf32(text), mode="clip"), minlength=3)
    return int(counts[1]), int(counts[2])


def script_counts_many(texts: Sequence[str]) -> list[tuple[int, int]]:
    """``script_counts`` of each text, in one numpy pass over them all (for short documents, numpy's
    per-call overhead would cost more than the counting)."""
    joined = "".join(texts)
    if joined.isascii():
        return [(0, 0)] * len(texts)
    classes = _ScriptTable.get().take(_utf32(joined), mode="clip")
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    nonempty = lengths > 0  # reduceat sums from each start to the next; an empty text has no segment
    starts = (np.cumsum(lengths) - lengths)[nonempty]
    trad, simp = np.zeros(len(texts), np.int64), np.zeros(len(texts), np.int64)
    trad[nonempty] = np.add.reduceat((classes == 1).view(np.uint8), starts, dtype=np.int64)
    simp[nonempty] = np.add.reduceat((classes == 2).view(np.uint8), starts, dtype=np.int64)
    return list(zip(trad.tolist(), simp.tolist()))


def traditional_share(trad: int, simp: int) -> float:
    """The traditional-only share of the script-specific characters (0.0 when there are none)."""
    return trad / (trad + simp) if trad + simp else 0.0


def script_of(trad: int, simp: int) -> str:
    """``none`` (no script-specific character), ``simplified`` (traditional share <= 0.1), ``traditional``
    (>= 0.9) or ``mixed``."""
    if trad + simp == 0:
        return "none"
    share = trad / (trad + simp)
    if share <= SIMPLIFIED_MAX_SHARE:
        return "simplified"
    return "traditional" if share >= TRADITIONAL_MIN_SHARE else "mixed"


def detect_script(text: str) -> str:
    """The script of ``text``: ``simplified``, ``traditional``, ``mixed`` or ``none`` (see ``script_of``)."""
    return script_of(*script_counts(text))


def _check_t2s(value: Any, where: str) -> bool | str:
    if isinstance(value, bool) or value == "auto":
        return value
    raise UserError(f'{where}: normalisation step \'t2s\' must be true, false or "auto", got {value!r}')


def check_steps(steps: Mapping[str, Any], where: str = "config") -> dict[str, bool | str]:
    """Validate a step -> on/off mapping (``t2s`` may also be ``"auto"``); unknown step or bad value ->
    UserError naming ``where``."""
    out: dict[str, bool | str] = {}
    for key, value in steps.items():
        if key not in STEPS:
            raise UserError(f"{where}: unknown normalisation step {key!r} (known: {', '.join(STEPS)})")
        if key == "t2s":
            value = _check_t2s(value, where)
        elif not isinstance(value, bool):
            raise UserError(f"{where}: normalisation step {key!r} must be true or false, got {value!r}")
        out[key] = value
    return out


def check_t2s_threshold(value: Any, where: str = "config") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise UserError(f"{where}: t2s_threshold must be a number between 0 and 1, got {value!r}")
    return float(value)


def steps_for(kind: str, overrides: Mapping[str, Any] | None = None, where: str = "config") -> dict[str, bool | str]:
    """The steps for a source kind: ``DEFAULT_STEPS[kind]`` updated with validated ``overrides``."""
    if kind not in DEFAULT_STEPS:
        raise UserError(f"{where}: unknown source kind {kind!r} (known: {', '.join(SOURCE_KINDS)})")
    steps = dict(DEFAULT_STEPS[kind])
    if overrides:
        steps.update(check_steps(overrides, where))
    return steps


class Normalized(NamedTuple):
    text: str
    script: str  # the document's script as read (before t2s): one of SCRIPTS
    converted: bool  # whether t2s rewrote it


class Normalizer:
    """Callable text normaliser for one set of steps; picklable for Beam (the OpenCC converter is
    created lazily in each process and never pickled). Steps missing from ``steps`` are off.

    ``steps`` may also hold the options ``keep_words`` (words left as written inside converted documents)
    and ``t2s_threshold`` (the traditional share from which a mixed document is converted)."""

    def __init__(self, steps: Mapping[str, Any], where: str = "normalisation steps"):
        settings = dict(steps)
        keep_words = settings.pop("keep_words", ())
        if isinstance(keep_words, str) or not all(isinstance(w, str) for w in keep_words):
            raise UserError(f"{where}: keep_words must be a list of words, got {keep_words!r:.80}")
        self.t2s_threshold = check_t2s_threshold(settings.pop("t2s_threshold", DEFAULT_T2S_THRESHOLD), where)
        self.steps = check_steps(settings, where)
        self.keep_words = tuple(keep_words)
        self._converter = None
        self._keep_re = None

    def __getstate__(self) -> dict:
        return {"steps": self.steps, "keep_words": self.keep_words, "t2s_threshold": self.t2s_threshold}

    def __setstate__(self, state: dict) -> None:
        self.steps = state["steps"]
        self.keep_words = state.get("keep_words", ())
        self.t2s_threshold = state.get("t2s_threshold", DEFAULT_T2S_THRESHOLD)
        self._converter = None
        self._keep_re = None

    def _convert(self, text: str) -> str:
        if self._converter is None:
            import opencc

            self._converter = opencc.OpenCC("t2s")
        try:
            return self._converter.convert(text)
        except UnicodeEncodeError:  # lone surrogates (JSON can hold them): OpenCC takes UTF-8 only
            parts = _SURROGATE_RE.split(text)  # odd positions: the surrogates, kept as they are
            return "".join(p if i % 2 else self._converter.convert(p) for i, p in enumerate(parts))

    def _t2s(self, text: str) -> str:
        """t2s around the keep_words spans (each stretch between them converted on its own)."""
        if text.isascii():
            return text
        if not self.keep_words:
            return self._convert(text)
        if self._keep_re is None:
            words = {self._before_t2s(w) for w in self.keep_words}
            self._keep_re = re.compile(trie_regex(w for w in words if w))
        parts, last = [], 0
        for match in self._keep_re.finditer(text):
            parts += (self._convert(text[last : match.start()]), match.group())
            last = match.end()
        parts.append(self._convert(text[last:]))
        return "".join(parts)

    def _before_t2s(self, text: str) -> str:
        on = self.steps.get
        if on("html_entities"):
            text = _html_entities(text)
        if on("nfkc"):
            text = _nfkc(text)
        if on("fullwidth") and not on("nfkc"):  # NFKC maps every character _fullwidth maps: skip the scan
            text = _fullwidth(text)
        return text

    def _should_convert(self, script: str, share: float) -> bool:
        mode = self.steps.get("t2s", False)
        if mode != "auto":
            return bool(mode)
        return script == "traditional" or (script == "mixed" and share >= self.t2s_threshold)

    def normalize(self, text: str, t2s: bool | None = None) -> Normalized:
        """The normalised text, the document's script and whether it was converted; ``t2s`` overrides the
        conversion decision (a title follows its document's)."""
        text = self._before_t2s(text)
        return self._after_detection(text, *script_counts(text), t2s)

    def normalize_many(self, texts: Sequence[str]) -> list[Normalized]:
        """``normalize`` of each text, the script detection done for all of them at once."""
        texts = [self._before_t2s(text) for text in texts]
        return [self._after_detection(text, *counts, None) for text, counts in zip(texts, script_counts_many(texts))]

    def _after_detection(self, text: str, trad: int, simp: int, t2s: bool | None) -> Normalized:
        script = script_of(trad, simp)
        converted = self._should_convert(script, traditional_share(trad, simp)) if t2s is None else t2s
        if converted:
            text = self._t2s(text)
        on = self.steps.get
        if on("control_chars"):
            text = _control_chars(text)
        if on("whitespace"):
            text = _whitespace(text)
        return Normalized(text, script, converted)

    def __call__(self, text: str, t2s: bool | None = None) -> str:
        return self.normalize(text, t2s).text

    def __repr__(self) -> str:
        return f"Normalizer({self.steps!r}, keep_words={len(self.keep_words)}, t2s_threshold={self.t2s_threshold})"


def trie_regex(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, longest first at each position, as a character trie
    (``蕭乾|蕭紅`` -> ``蕭(?:乾|紅)``): fast for long word lists, where a plain alternation tries each word."""
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        end = "" in node
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        if end:
            return "(?:" + "|".join(branches) + ")?"
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return build(trie) or "(?!)"


def load_keep_words(path: str, where: str = "config") -> tuple[str, ...]:
    """The words of a keep-words file: one a line, UTF-8; blank lines and ``#`` comments skipped."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        raise UserError(f"{where}: keep_words file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: keep_words file {path} unreadable ({exc})") from None
    return tuple(w for w in (line.strip() for line in lines) if w and not w.startswith("#"))


def normalize_rows(normalizers: Mapping[str, Normalizer], rows: Sequence[Mapping[str, Any]]) -> list[Normalized]:
    """Each row's ``text`` through its ``source_kind``'s normaliser, a kind's rows in one ``normalize_many``."""
    out: list[Normalized | None] = [None] * len(rows)
    by_kind: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_kind.setdefault(row["source_kind"], []).append(i)
    for kind, indices in by_kind.items():
        for i, result in zip(indices, normalizers[kind].normalize_many([rows[i]["text"] for i in indices])):
            out[i] = result
    return out  # type: ignore[return-value]


_CACHE: dict[tuple, Normalizer] = {}


def normalize_text(text: str, steps: Mapping[str, Any]) -> str:
    """Normalise ``text`` with the steps switched on in ``steps`` (run in ``STEPS`` order)."""
    key = tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in steps.items()))
    norm = _CACHE.get(key)
    if norm is None:
        norm = _CACHE[key] = Normalizer(steps)
    return norm(text)
