"""jieba's word segmentation, computed by jieba or rjieba: the one segmenter of the entity linker
(``kg/link.py``: a mention must not cut through a word) and the tokenize job (``pipelines/word_boundaries.py``:
whole-word masking needs the words).

``rjieba`` is jieba's algorithm and dictionary in Rust, many times faster; ``jieba`` is the Python original;
``none`` segments nothing (no word-boundary check). The two uses differ in two settings:

- ``hmm``: the linker cuts with ``HMM=False`` (unknown words fall apart into characters and never swallow a
  name); the tokenize job keeps jieba's default, HMM on. With HMM on, jieba splits a non-dictionary run of
  Latin letters, digits and ``+#&._%-`` at the symbols ("Jean-Pierre" -> "Jean" "-" "Pierre") and rjieba keeps
  it whole: :meth:`Segmenter.word_starts` undoes that one difference.
- ``exact_user_freq``: how the user words (KG names, a ``--user-dict``) enter the dictionary. True (the linker):
  each word gets jieba's suggested frequency, computed once in Python, and the dictionary's total is kept exact,
  so jieba and rjieba hold the same dictionary (jieba's own ``add_word`` counts a re-added word's frequency twice
  in its total and rjieba's does not, which made them differ on ~0.2% of sentences). False (the tokenize job,
  whose shard bytes depend on it): each engine's own ``add_word``.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Iterable

import numpy as np

from knowmix.errors import UserError

SEGMENTERS = ("jieba", "rjieba", "none")
_BLOCK = re.compile("[\u4E00-\u9FD5a-zA-Z0-9+#&\\._%\\-]+")  # jieba's re_han_default: the runs it segments
_JOINERS = re.compile(r"[+#&._%\-]")
_ASCII_RUN = re.compile(r"[a-zA-Z0-9+#&._%\-]+")
_SKIP = re.compile(r"([a-zA-Z0-9]+(?:\.\d+)?%?)")  # jieba.finalseg.re_skip

_BASE_JIEBA = None


def base_jieba():
    """jieba's default dictionary, loaded once per process (a Segmenter with user words copies it)."""
    global _BASE_JIEBA
    if _BASE_JIEBA is None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        tk = jieba.Tokenizer()
        tk.initialize()
        _BASE_JIEBA = tk
    return _BASE_JIEBA


def _private_jieba():
    """A ``jieba.Tokenizer`` holding its own copy of the default dictionary (user words go into the copy)."""
    import jieba

    base = base_jieba()
    tk = jieba.Tokenizer()
    tk.FREQ, tk.total = dict(base.FREQ), base.total
    tk.initialized = True
    return tk


class Segmenter:
    """Word boundaries of a text from jieba or rjieba, with ``words`` added to the dictionary (see the module)."""

    def __init__(self, kind: str = "rjieba", words: Iterable[str] = (), *, hmm: bool = False,
                 exact_user_freq: bool = True):
        if kind not in SEGMENTERS:
            raise UserError(f"unknown word segmenter {kind!r}; expected one of {', '.join(SEGMENTERS)}")
        self.kind, self.hmm = kind, hmm
        self._cut = self._cut_block = self._rj = None
        if kind == "none":
            return
        words = [w for w in words if w]
        tk = rj = None
        if kind == "jieba" or (words and exact_user_freq):
            tk = _private_jieba() if words else base_jieba()  # the Python dictionary: jieba's, or the mirror of rjieba's
        if kind == "rjieba":
            import rjieba

            rj = rjieba.Jieba() if words else rjieba._DEFAULT_JIEBA
        try:
            if words and exact_user_freq:
                _add_exact(words, tk, rj)
            elif words:
                for w in words:
                    if rj is not None:
                        rj.add_word(w, None, None)
                    else:
                        tk.add_word(w)
        except (Exception, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a Rust panic in rjieba (pyo3's PanicException is no Exception)
            raise UserError(
                f"the rjieba segmenter cannot hold {len(words):,} user words (KG names and aliases): "
                f"{str(exc).strip() or type(exc).__name__} (its dictionary holds about 16.7M distinct word "
                f"prefixes); use the jieba segmenter (no such limit, slower) or none"
            ) from None
        if rj is not None:
            rcut = rj.cut
            self._cut = self._cut_block = lambda s: rcut(s, hmm)
            self._rj = rj
        else:
            self._cut = lambda s: tk.cut(s, HMM=hmm)
            block = "_Tokenizer__cut_DAG" if hmm else "_Tokenizer__cut_DAG_NO_HMM"  # what cut() does inside a block
            self._cut_block = getattr(tk, block, self._cut)

    # ------------------------------------------------------------------------------------------ the linker's view

    def boundaries(self, sentence: str) -> set[int] | None:
        """Every word boundary of the sentence (None for the ``none`` segmenter)."""
        if self._cut is None:
            return None
        pos = 0
        bounds = {0}
        for w in self._cut(sentence):
            pos += len(w)
            bounds.add(pos)
        return bounds

    def word_bounds(self, sentence: str) -> set[int]:
        """The word boundaries of the sentence (0 included); one call into the segmenter."""
        bounds = set(accumulate(map(len, self._cut(sentence))))
        bounds.add(0)
        return bounds

    def inner_positions(self, sentence: str, spans) -> set[int]:
        """Positions strictly inside a word, for the parts of ``sentence`` that ``spans`` touch.

        jieba cuts a sentence block by block (runs of ``_BLOCK`` characters; every other character is a word of
        its own), so cutting only the blocks that overlap a span gives exactly the boundaries a cut of the whole
        sentence gives there, at a fraction of the cost.
        """
        inner: set[int] = set()
        if self._cut is None:
            return inner
        if self.kind == "rjieba":  # one call into Rust beats several block calls
            inner = set(range(1, len(sentence)))
            inner.difference_update(accumulate(map(len, self._cut(sentence))))
            return inner
        for m in _BLOCK.finditer(sentence):
            bs, be = m.span()
            if be - bs < 2 or not any(s < be and e > bs for s, e in spans):
                continue
            pos = bs
            for w in self._cut_block(m.group()):
                if len(w) > 1:
                    inner.update(range(pos + 1, pos + len(w)))
                pos += len(w)
        return inner

    # ------------------------------------------------------------------------------------------ the tokenizer's view

    def cut(self, text: str) -> list[str]:
        """The words of ``text`` (as :meth:`word_starts` sees them)."""
        starts = np.flatnonzero(self.word_starts(text)).tolist()
        return [text[a:b] for a, b in zip(starts, starts[1:])]

    def word_starts(self, text: str, one_word_spans: Iterable[tuple[int, int]] = ()) -> np.ndarray:
        """bool array of length ``len(text) + 1``: True where a word starts (and at the end); with the ``none``
        segmenter every character starts one.

        Each span in ``one_word_spans`` is one word: it is cut out before segmenting the text around it.
        """
        if self._cut is None:
            return np.ones(len(text) + 1, dtype=bool)
        flags = np.zeros(len(text) + 1, dtype=bool)
        flags[len(text)] = True
        spans = sorted((int(a), int(b)) for a, b in one_word_spans if b > a)
        pos = 0
        pieces: list[tuple[int, int, bool]] = []
        for a, b in spans:
            if a >= pos:
                pieces.append((pos, a, False))
                pieces.append((a, b, True))
                pos = b
        pieces.append((pos, len(text), False))
        for a, b, whole in pieces:
            if b <= a:
                continue
            if whole:
                flags[a] = True
                continue
            flags[self._starts(text[a:b] if (a, b) != (0, len(text)) else text) + a] = True
        return flags

    def _starts(self, text: str) -> np.ndarray:
        """Start offsets of the words of ``text``; with HMM on, rjieba's are mended to jieba's (the module)."""
        words = self._cut(text)
        if not isinstance(words, list):
            words = list(words)
        lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        starts = np.cumsum(lens) - lens
        if self._rj is None or not self.hmm or not _JOINERS.search(text):
            return starts
        hits = [m.start() for m in _JOINERS.finditer(text)]
        extra = []
        for k in np.unique(np.searchsorted(starts, hits, side="right") - 1).tolist():
            w = words[k]
            if len(w) > 1 and _ASCII_RUN.fullmatch(w) and not self._rj.has_word(w):
                a = int(starts[k])
                for piece in _SKIP.split(w):
                    if piece:
                        extra.append(a)
                        a += len(piece)
        return np.concatenate([starts, np.asarray(extra, dtype=np.int64)]) if extra else starts


def _add_exact(words: list[str], tk, rj) -> None:
    """Add ``words`` with jieba's suggested frequency (``suggest_freq(w, tune=False)``), keeping the total exact.

    Python jieba's dictionary (``tk``) is the authority; the word is cut by the segmenter being built (rjieba
    mirrors jieba's dictionary state word for word, and is many times faster at it)."""
    freq = tk.FREQ
    cut_word = (lambda w: rj.cut(w, False)) if rj is not None else (lambda w: tk.cut(w, HMM=False))
    for w in words:
        old = freq.get(w) or 0
        total = tk.total
        p = 1.0
        for seg in cut_word(w):
            p *= freq.get(seg, 1) / total
        f = max(int(p * total) + 1, freq.get(w, 1))
        if f <= old:
            continue
        freq[w] = f
        tk.total += f - old
        for i in range(1, len(w)):
            freq.setdefault(w[:i], 0)
        if rj is not None:
            rj.add_word(w, f, None)  # rjieba replaces an existing word's frequency in its total


def jieba_dictionary_path() -> str:
    """jieba's bundled dictionary (word, frequency, part of speech per line), read from the installed package."""
    import os

    import jieba

    return os.path.join(os.path.dirname(jieba.__file__), "dict.txt")
