"""knowmix.pipelines.minhash: shingles, signatures (bit-exact datasketch affine32), Jaccard estimates, LSH parameters."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from knowmix.pipelines.minhash import (
    MAX_HASH32,
    MinHasher,
    band_keys,
    estimate_jaccard,
    is_empty_signature,
    jaccard,
    optimal_params,
    shingle_hashes,
    shingle_set,
    text_jaccard,
    word_tokens,
)

FIXTURES = Path(__file__).resolve().parents[2] / "corpora" / "fixtures"


@pytest.fixture(scope="module")
def paragraphs() -> list[str]:
    records = json.loads((FIXTURES / "encyclopedia_cmrc2018_trial.json").read_text(encoding="utf-8"))
    return [r["context_text"] for r in records if len(r["context_text"]) >= 300]


def edit(text: str, rate: float, rng: random.Random) -> str:
    chars = list(text)
    for i in rng.sample(range(len(chars)), int(round(len(chars) * rate))):
        chars[i] = chr(rng.randrange(0x4E00, 0x9FA5))
    return "".join(chars)


def test_shingles_are_position_independent_ngram_hashes():
    text = "中华人民共和国成立了"
    hashes = shingle_hashes(text, 5)
    assert len(hashes) == len(text) - 4 and hashes.dtype == np.uint32
    # the same 5-gram hashes the same wherever it occurs, and differs from its neighbours
    assert shingle_hashes("今天" + text[3:8], 5)[2] == hashes[3]
    assert len(set(hashes.tolist())) == len(hashes)
    assert len(shingle_hashes("短文", 5)) == 1  # shorter than n: one shingle
    assert len(shingle_hashes("", 5)) == 0
    assert shingle_hashes("abcde", 5)[0] != shingle_hashes("abcdf", 5)[0]


def test_signature_is_datasketch_affine32_bit_for_bit(paragraphs):
    hasher = MinHasher(num_perm=128, seed=1)
    for text in paragraphs[:10]:
        hashes = shingle_hashes(text, 5)
        ref = MinHash(num_perm=128, seed=1, hashfunc=int)  # identity: feed our 32-bit shingle hashes
        ref.update_batch(hashes.tolist())
        assert ref.scheme == "affine32"
        assert np.array_equal(hasher.signature(text), ref.hashvalues)
    other = MinHasher(num_perm=64, seed=7)
    ref = MinHash(num_perm=64, seed=7, hashfunc=int)
    ref.update_batch(shingle_hashes(paragraphs[0], 5).tolist())
    assert np.array_equal(other.signature(paragraphs[0]), ref.hashvalues)


def test_long_text_goes_through_several_blocks():
    rng = random.Random(3)
    text = "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(7000))
    ref = MinHash(num_perm=128, seed=1, hashfunc=int)
    ref.update_batch(shingle_hashes(text).tolist())
    assert np.array_equal(MinHasher().signature(text), ref.hashvalues)


def test_empty_text_has_the_empty_signature():
    sig = MinHasher().signature("")
    assert is_empty_signature(sig) and np.all(sig == MAX_HASH32)
    assert not is_empty_signature(MinHasher().signature("一"))


def test_estimate_tracks_exact_jaccard_like_datasketch(paragraphs):
    """Signature-estimated vs exact 5-gram Jaccard over pairs spanning the whole range; and the collision rate
    of our signatures vs datasketch's default (SHA-1 per shingle) on the same pairs."""
    rng = random.Random(11)
    hasher = MinHasher(num_perm=128)
    ours_err, ds_err, diffs, exact_values = [], [], [], []
    for i, text in enumerate(paragraphs[:120]):
        other = edit(text, rng.choice([0.0, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3]), rng)
        exact = text_jaccard(text, other)
        ours = estimate_jaccard(hasher.signature(text), hasher.signature(other))
        ds = []
        for t in (text, other):
            m = MinHash(num_perm=128, seed=1)
            m.update_batch([t[j : j + 5].encode("utf-8") for j in range(len(t) - 4)])
            ds.append(m)
        ds_est = ds[0].jaccard(ds[1])
        ours_err.append(abs(ours - exact))
        ds_err.append(abs(ds_est - exact))
        diffs.append(abs(ours - ds_est))
        exact_values.append(exact)
    assert min(exact_values) < 0.3 and max(exact_values) == 1.0
    assert np.mean(ours_err) < 0.05
    assert np.mean(ours_err) < np.mean(ds_err) + 0.02  # as good as datasketch's estimates
    assert np.mean(diffs) < 0.06 and max(diffs) < 0.2


@pytest.mark.parametrize("threshold,num_perm", [(0.8, 128), (0.5, 128), (0.9, 64), (0.7, 256)])
def test_optimal_params_equal_datasketch(threshold, num_perm):
    assert optimal_params(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_band_keys_collide_as_the_s_curve_says(paragraphs):
    rng = random.Random(5)
    hasher = MinHasher()
    bands, rows = optimal_params(0.8, 128)
    near_hits = far_hits = 0
    near_n = far_n = 0
    for text in paragraphs[:60]:
        a = set(band_keys(hasher.signature(text), bands, rows))
        close = edit(text, 0.005, rng)  # 5-gram Jaccard about 0.95
        far = edit(text, 0.2, rng)  # about 0.2
        assert text_jaccard(text, close) > 0.9 and text_jaccard(text, far) < 0.5
        near_n += 1
        near_hits += bool(a & set(band_keys(hasher.signature(close), bands, rows)))
        far_n += 1
        far_hits += bool(a & set(band_keys(hasher.signature(far), bands, rows)))
    # P(collision) = 1 - (1 - J^rows)^bands: about 0.998 at J = 0.95, about 1e-8 at J = 0.2
    assert near_hits >= near_n - 2
    assert far_hits == 0
    keys = band_keys(hasher.signature(paragraphs[0]), bands, rows)
    assert len(keys) == bands and len(set(keys)) == bands


def test_jaccard_and_word_shingles(paragraphs):
    a, b = shingle_set("一二三四五六七八九十"), shingle_set("一二三四五六七八九")
    assert jaccard(a, b) == pytest.approx(5 / 6)
    assert jaccard(shingle_set(""), shingle_set("")) == 0.0
    import jieba

    jieba.setLogLevel(60)
    text = paragraphs[1]
    words = [w for w in jieba.cut(text) if w.strip()]
    # one hash per jieba word; equal words hash equal
    hashes = word_tokens(text)
    assert len(hashes) == len(words)
    by_word = {}
    for w, h in zip(words, hashes.tolist()):
        assert by_word.setdefault(w, h) == h
    assert len(set(by_word.values())) == len(by_word)
    assert len(shingle_hashes(text, 3, "jieba")) == len(words) - 2
    edited = edit(text, 0.01, random.Random(1))
    assert 0.5 < text_jaccard(text, edited, 3, "jieba") < 1.0


def test_rjieba_gives_jiebas_words_on_chinese_text(paragraphs):
    """The word tokenizer is rjieba (same dictionary, ~50x faster); on CJK text its words are jieba's."""
    import re

    import jieba
    import rjieba

    jieba.setLogLevel(60)
    # ASCII runs are where they differ ("Jean-Pierre" is one rjieba token, three jieba ones): compare the rest
    pieces = [piece for p in paragraphs[:40] for piece in re.split(r"[\x00-\x7f]+", p) if len(piece) >= 20]
    assert len(pieces) >= 40
    for text in pieces:
        assert rjieba.cut(text) == list(jieba.cut(text))
