"""The one jieba/rjieba segmenter, as the linker and the tokenize job use it."""

from __future__ import annotations

import jieba
import pytest

from knowmix.kg.index import index_from_triples
from knowmix.kg.link import Linker
from knowmix.kg.segmenter import Segmenter
from knowmix.errors import UserError
from knowmix.pipelines.word_boundaries import word_segmenter


def test_linker_and_tokenize_share_one_segmenter_class():
    linker = Linker(index_from_triples([("北京", "capital_of", "中国")]), segmenter="rjieba")
    assert type(linker.segmenter) is Segmenter and type(word_segmenter("rjieba")) is Segmenter


@pytest.mark.parametrize("hmm", [False, True])
def test_words_are_pythons_jiebas(hmm):
    """Both engines, both HMM settings, no user words: jieba.cut's words (the module-level jieba is the reference)."""
    jieba.setLogLevel(60)
    text = "我来到北京清华大学，他来到了网易杭研大厦。小明硕士毕业于中国科学院计算所"
    want = list(jieba.cut(text, HMM=hmm))
    for kind in ("jieba", "rjieba"):
        seg = Segmenter(kind, hmm=hmm)
        assert seg.cut(text) == want, kind
        bounds = {0}
        for w in want:
            bounds.add(max(bounds) + len(w))
        assert seg.boundaries(text) == bounds


def test_none_segments_nothing_and_a_bad_kind_is_a_user_error():
    seg = Segmenter("none")
    assert seg.boundaries("北京") is None and seg.inner_positions("北京", [(0, 2)]) == set()
    assert seg.word_starts("北京").tolist() == [True, True, True]
    with pytest.raises(UserError, match="unknown word segmenter 'thulac'"):
        Segmenter("thulac")


def test_a_dictionary_rjieba_cannot_hold_is_a_user_error_not_a_panic():
    """rjieba's dictionary holds about 2**24 distinct word prefixes; past that it panics (a Rust panic surfaces
    as pyo3's PanicException, a BaseException that ``except Exception`` in a worker never catches: measured at
    4.6M KG names). The segmenter turns it into one line naming the way out. 540k random 32-character words
    have ~16.7M distinct prefixes: enough to reach the limit in a few seconds."""
    import random

    rng = random.Random(0)
    words = ["".join(chr(0x4E00 + rng.randrange(20000)) for _ in range(32)) for _ in range(600_000)]
    with pytest.raises(UserError, match="rjieba segmenter cannot hold 600,000 user words.*jieba segmenter"):
        Segmenter("rjieba", words, exact_user_freq=False)
