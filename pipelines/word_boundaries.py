"""Whole-word boundaries of tokens: which token starts a word, from jieba's segmentation (``kg/segmenter.py``,
computed by ``rjieba``, a Rust port with jieba's dictionary and algorithm; a test keeps it equal to jieba on
fixture text).

A token *starts a word* when its first character starts a jieba word and no earlier token starts at the same
character (byte-fallback pieces of one character share a start); a WordPiece ``##`` piece never does. Spans that
must be one word (knowledge entity mentions) are cut out before segmenting, so a mention is always exactly one
word and its tokens never straddle its edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from knowmix.kg.segmenter import Segmenter
from knowmix.pipelines.subword import BaseTokenizer, Encoding


def word_segmenter(engine: str = "rjieba", user_words: Iterable[str] = ()) -> Segmenter:
    """The tokenize job's segmenter: jieba's default segmentation (HMM on), ``user_words`` added by the engine's
    own ``add_word`` (``kg/segmenter.py`` says how that differs from the linker's)."""
    return Segmenter(engine, user_words, hmm=True, exact_user_freq=False)


def word_start_flags(enc: Encoding, char_starts: np.ndarray | None, continuation: np.ndarray | None = None) -> np.ndarray:
    """Per token: starts a word. Without ``char_starts`` every token is its own word; a WordPiece ``##``
    piece (``continuation[id]``) never starts one, nor does a token starting where the previous one started."""
    if len(enc) == 0:
        return np.zeros(0, dtype=bool)
    first = np.empty(len(enc), dtype=bool)
    first[0] = True
    np.not_equal(enc.starts[1:], enc.starts[:-1], out=first[1:])
    if char_starts is not None:
        first &= char_starts[enc.starts]
    if continuation is not None:
        first &= ~continuation[enc.ids]
    return first


@dataclass
class Words:
    """A text's tokens with their word-start flags and character spans."""

    enc: Encoding
    word_start: np.ndarray = field(default=None)  # bool


def encode_with_words(
    tok: BaseTokenizer,
    seg: Segmenter | None,
    text: str,
    one_word_spans: Sequence[tuple[int, int]] = (),
) -> Words:
    """Tokenise ``text``; with ``one_word_spans``, tokens never cross a span's edges and each span is one word."""
    if one_word_spans:
        enc = tok.encode_pieces(text, [c for span in one_word_spans for c in span])
    else:
        enc = tok.encode(text)
    char_starts = seg.word_starts(text, one_word_spans) if seg is not None else None
    return Words(enc, word_start_flags(enc, char_starts, tok.continuation))


def token_span(enc: Encoding, start: int, end: int) -> tuple[int, int]:
    """Token offsets ``[a, b)`` of the tokens whose character start lies in ``[start, end)``."""
    a = int(np.searchsorted(enc.starts, start, side="left"))
    b = int(np.searchsorted(enc.starts, end, side="left"))
    return a, b
