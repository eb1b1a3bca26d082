"""Every occurrence of a surface form in a sentence, from an Aho-Corasick automaton kept inside the index file.

Why: the Linker's pyahocorasick automaton is built in each process's heap (with a Python tuple per surface form),
so the SDK processes of one machine each held their own copy. The index file (kg/index_file.py) carries the
automaton of its surface forms as one byte array (``sf_ac``: cyac's double-array automaton over UTF-8, built
when the file is written); a worker uses it in place from the memory map, so its pages are shared like the rest
of the file and nothing is built per process.

Measured at 1M names (bench/link_matchers.py, 2 shared cores), every occurrence of every name in the bench
sentences: cyac mapped from the file ~89k sentences/s, 131 bytes/name, built in 1.7 s; pyahocorasick in memory
~72k/s; marisa-trie (``prefixes()`` at each start position) ~40k/s at 3.5 bytes/name: too slow to keep linking
at 20k sentences/s once the segmenter's cost is added.

The automaton's key ids are the surface forms' positions in the file (``sf_str`` order); the automaton holds
every surface form and the matcher drops those shorter than the Linker's ``min_chars``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def automaton_bytes(surfaces: list[str]) -> np.ndarray:
    """The automaton of ``surfaces`` (key id = position in the list) as a uint8 array for the index file."""
    from cyac import AC

    if not surfaces:
        return np.zeros(0, dtype="u1")
    ac = AC.build(surfaces)
    buf = np.zeros(ac.buff_size(), dtype="u1")
    ac.to_buff(buf)
    _zero_spare_capacity(buf)
    return buf


# cyac's buffer: AC header (magic, version, size: 3 int32), the trie (header of 13 int32, then Node[capacity],
# Block[capacity >> 8], int leafs[key_capacity], int reject[257]), then int fails[array_size], key_lens[leaf_size]
_AC_HEAD, _TRIE_HEAD, _NODE, _BLOCK = 12, 52, 12, 24


def _zero_spare_capacity(buf: np.ndarray) -> None:
    """Zero what cyac copies from allocated-but-unused memory (nodes past ``array_size``, blocks past
    ``array_size >> 8``, leaves past ``leaf_size``: never read when matching), so the same surface forms give the
    same bytes and the index file keeps its content address."""
    head = buf[_AC_HEAD:_AC_HEAD + _TRIE_HEAD].view("<i4").tolist()
    array_size, capacity, leaf_size, key_capacity = head[7], head[8], head[12], head[3]
    nodes = _AC_HEAD + _TRIE_HEAD
    blocks = nodes + _NODE * capacity
    leafs = blocks + _BLOCK * (capacity >> 8)
    buf[nodes + _NODE * array_size:blocks] = 0
    buf[blocks + _BLOCK * (array_size >> 8):leafs] = 0
    buf[leafs + 4 * leaf_size:leafs + 4 * key_capacity] = 0


class MappedMatcher:
    """``Linker._matches`` over a MappedIndex's automaton: (start, end, surface, entity ids), character offsets
    (the Linker orders them itself)."""

    def __init__(self, index, buffer, min_chars: int):
        from cyac import AC

        self._ac = AC.from_buff(buffer, copy=False)  # no copy: the automaton is read from the mapped pages
        self.min_chars = min_chars
        self._ids = lru_cache(maxsize=1 << 16)(index.surface_to_ids._ids)  # position -> entity ids

    def matches(self, sentence: str) -> list[tuple[int, int, str, tuple[str, ...]]]:
        ids, m = self._ids, self.min_chars
        return [(s, e, sentence[s:e], ids(k)) for k, s, e in self._ac.match(sentence) if e - s >= m]


def mapped_matcher(index, min_chars: int) -> MappedMatcher | None:
    """The matcher of an index file that carries an automaton (None: an in-memory index, or an older file)."""
    buffer = getattr(index, "automaton", None)
    return None if buffer is None else MappedMatcher(index, buffer, min_chars)
