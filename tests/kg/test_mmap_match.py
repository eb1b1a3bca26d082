"""The Linker on an index file's mapped automaton (kg.mmap_match) finds what the in-memory pyahocorasick one finds."""

import tempfile

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from knowmix.kg.index import Entity, EntityIndex, pair_key
from knowmix.kg.index_file import MappedIndex, index_arrays, write_arrays, write_index_file
from knowmix.kg.link import Linker
from knowmix.kg.mmap_match import automaton_bytes

# few characters, so names overlap and nest; one beyond the BMP (two UTF-16 units, four UTF-8 bytes)
ALPHABET = "南京市长江大桥ab😀·"
surface = st.text(ALPHABET, min_size=1, max_size=5)


@st.composite
def kgs(draw):
    n = draw(st.integers(1, 12))
    ids = [f"Q{i}" for i in range(n)]
    entities, surfaces = {}, {}
    for eid in ids:
        names = draw(st.lists(surface, min_size=1, max_size=3, unique=True))
        entities[eid] = Entity(eid, names[0], tuple(names[1:]), "T", ("T",))
        for s in names:
            surfaces.setdefault(s, []).append(eid)  # a surface of several entities: ambiguous
    pairs = draw(st.lists(st.tuples(st.sampled_from(ids), st.sampled_from(ids)), max_size=6))
    neighbours = {pair_key(a, b) for a, b in pairs if a != b}
    return EntityIndex(entities, {s: tuple(v) for s, v in surfaces.items()}, neighbours)


@settings(max_examples=40, deadline=None)
@given(index=kgs(), sentences=st.lists(st.text(ALPHABET + "，", max_size=30), min_size=1, max_size=5),
       min_chars=st.integers(1, 3), segmenter=st.sampled_from(["none", "rjieba"]))
def test_mapped_automaton_links_like_the_in_memory_one(index, sentences, min_chars, segmenter):
    with tempfile.TemporaryDirectory() as d:
        mapped = MappedIndex(write_index_file(index, {}, d))
        a = Linker(index, segmenter, min_chars, common_words=None)
        b = Linker(mapped, segmenter, min_chars, common_words=None)
        assert b._mapped is not None and a._mapped is None and (a._auto is None) == (b._auto is None)
        for s in sentences:
            if a._auto is not None:  # None: no surface form of min_chars
                assert sorted(b._matches(s)) == sorted(a._matches(s))
            assert b.link(s).__dict__ == a.link(s).__dict__
        assert [r.__dict__ for r in b.link_document(sentences)] == [r.__dict__ for r in a.link_document(sentences)]


def test_same_surfaces_same_bytes():
    """cyac writes its arrays' spare capacity, copied from uninitialised memory; it is cut off, so the index file's
    content address holds (failed before: two builds of one list differed in ~15% of their bytes)."""
    words = sorted({f"{a}{b}{c}" for a in "南京市长江大桥中华人民" for b in "共和国家公司集团大学医院" for c in "甲乙丙丁戊己"})
    first, second = automaton_bytes(words), automaton_bytes(list(words))
    assert len(first) > 10_000 and np.array_equal(first, second)


def test_a_file_without_an_automaton_falls_back_to_the_in_memory_one(tmp_path):
    index = EntityIndex({"Q1": Entity("Q1", "南京", (), "T", ("T",))}, {"南京": ("Q1",)}, set())
    arrays = index_arrays(index)
    del arrays["sf_ac"]  # an index file written before the automaton was added
    mapped = MappedIndex(write_arrays(arrays, {}, str(tmp_path)))
    linker = Linker(mapped, "none")
    assert linker._mapped is None and [m.entity_id for m in linker.link("我在南京。").mentions] == ["Q1"]


@settings(max_examples=30, deadline=None)
@given(index=kgs(), sentences=st.lists(st.text(ALPHABET + "，", max_size=30), min_size=1, max_size=4),
       min_chars=st.integers(1, 3), max_keys=st.integers(1, 4))
def test_several_automata_link_like_one(index, sentences, min_chars, max_keys):
    """Past MAX_KEYS_PER_AUTOMATON surface forms the file holds several automata (here: runs of 1-4 surface forms);
    the linker finds what the in-memory automaton finds."""
    with tempfile.TemporaryDirectory() as d:
        arrays = index_arrays(index, max_keys_per_automaton=max_keys)
        n_surfaces = len(index.surface_to_ids)
        assert ("sf_ac_parts" in arrays) == (n_surfaces > max_keys)
        mapped = MappedIndex(write_arrays(arrays, {}, d))
        assert len(mapped.automata) == -(-n_surfaces // max_keys)
        a = Linker(index, "none", min_chars, common_words=None)
        b = Linker(mapped, "none", min_chars, common_words=None)
        for s in sentences:
            if a._auto is not None:
                assert sorted(b._matches(s)) == sorted(a._matches(s))
            assert b.link(s).__dict__ == a.link(s).__dict__


def test_a_run_too_large_for_one_automaton_is_halved(monkeypatch):
    """A run of surface forms whose automaton passes cyac's 2 GiB is split in two (here the limit is lowered to
    a few KB, so the 792 forms need several parts); every key id still maps to its own surface form."""
    from cyac import AC

    from knowmix.kg import mmap_match

    words = sorted({f"{a}{b}{c}" for a in "南京市长江大桥中华人民" for b in "共和国家公司集团大学医院" for c in "甲乙丙丁戊己"})
    whole = len(mmap_match.automaton_bytes(words))
    monkeypatch.setattr(mmap_match, "MAX_AUTOMATON_BYTES", whole // 3)
    blob, parts = mmap_match.automaton_parts(words)
    assert len(parts) >= 3 and sum(int(r[1]) for r in parts) <= len(blob)
    found = set()
    for off, size, base in parts:
        ac = AC.from_buff(blob[int(off):int(off) + int(size)], copy=False)
        for w in words:
            for k, s, e in ac.match(w):
                if (s, e) == (0, len(w)):
                    found.add((words[k + int(base)], w))
    assert found == {(w, w) for w in words}
