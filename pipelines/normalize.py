"""Step 1 of the cleaning job: text normalisation, as pure functions.

Each step is switchable per source kind (``DEFAULT_STEPS``); the steps always run in ``STEPS`` order:

- ``html_entities``: ``html.unescape`` (``&amp;`` ``&nbsp;`` ``&#x4e2d;`` ...).
- ``nfkc``: Unicode NFKC (compatibility ideographs, full-width letters/digits -> ASCII, ``①`` -> ``1`` ...),
  **except** the Chinese punctuation in ``KEEP_FULLWIDTH``: plain NFKC would turn ``，：；！？（）`` into
  ASCII ``,:;!?()`` and ``…`` into ``...``; Chinese text keeps them full-width (a deliberate choice: the
  corpus is Chinese, and the quality rules/tokenizer treat ``，`` and ``,`` differently).
- ``fullwidth``: only the full-width ASCII block (U+FF01..U+FF5E) and the ideographic space -> ASCII,
  with the same ``KEEP_FULLWIDTH`` exception; a no-op after ``nfkc``, useful when ``nfkc`` is off.
- ``t2s``: traditional -> simplified Chinese with OpenCC (``t2s``).
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
from typing import Any, Mapping

from knowmix.errors import UserError

STEPS: tuple[str, ...] = ("html_entities", "nfkc", "fullwidth", "t2s", "control_chars", "whitespace")

SOURCE_KINDS: tuple[str, ...] = ("web", "encyclopedia", "news", "qa")

# Every step on for every kind: entities show up in all scraped text (MediaWiki dumps included), the
# encyclopedia fixtures include traditional-script (DRCD, Taiwan) articles, and the later rules assume
# collapsed white space. Each is switchable per kind in the job config.
DEFAULT_STEPS: dict[str, dict[str, bool]] = {
    kind: {step: True for step in STEPS} for kind in SOURCE_KINDS
}

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


def check_steps(steps: Mapping[str, Any], where: str = "config") -> dict[str, bool]:
    """Validate a step -> on/off mapping; unknown step or non-bool value -> UserError naming ``where``."""
    out: dict[str, bool] = {}
    for key, value in steps.items():
        if key not in STEPS:
            raise UserError(f"{where}: unknown normalisation step {key!r} (known: {', '.join(STEPS)})")
        if not isinstance(value, bool):
            raise UserError(f"{where}: normalisation step {key!r} must be true or false, got {value!r}")
        out[key] = value
    return out


def steps_for(kind: str, overrides: Mapping[str, Any] | None = None, where: str = "config") -> dict[str, bool]:
    """The steps for a source kind: ``DEFAULT_STEPS[kind]`` updated with validated ``overrides``."""
    if kind not in DEFAULT_STEPS:
        raise UserError(f"{where}: unknown source kind {kind!r} (known: {', '.join(SOURCE_KINDS)})")
    steps = dict(DEFAULT_STEPS[kind])
    if overrides:
        steps.update(check_steps(overrides, where))
    return steps


class Normalizer:
    """Callable text normaliser for one set of steps; picklable for Beam (the OpenCC converter is
    created lazily in each process and never pickled). Steps missing from ``steps`` are off."""

    def __init__(self, steps: Mapping[str, bool], where: str = "normalisation steps"):
        self.steps = check_steps(steps, where)
        self._converter = None

    def __getstate__(self) -> dict:
        return {"steps": self.steps}

    def __setstate__(self, state: dict) -> None:
        self.steps = state["steps"]
        self._converter = None

    def _t2s(self, text: str) -> str:
        if text.isascii():
            return text
        if self._converter is None:
            import opencc

            self._converter = opencc.OpenCC("t2s")
        return self._converter.convert(text)

    def __call__(self, text: str) -> str:
        on = self.steps.get
        if on("html_entities"):
            text = _html_entities(text)
        if on("nfkc"):
            text = _nfkc(text)
        if on("fullwidth"):
            text = _fullwidth(text)
        if on("t2s"):
            text = self._t2s(text)
        if on("control_chars"):
            text = _control_chars(text)
        if on("whitespace"):
            text = _whitespace(text)
        return text

    def __repr__(self) -> str:
        return f"Normalizer({self.steps!r})"


_CACHE: dict[tuple, Normalizer] = {}


def normalize_text(text: str, steps: Mapping[str, bool]) -> str:
    """Normalise ``text`` with the steps switched on in ``steps`` (run in ``STEPS`` order)."""
    key = tuple(sorted(steps.items()))
    norm = _CACHE.get(key)
    if norm is None:
        norm = _CACHE[key] = Normalizer(steps)
    return norm(text)
