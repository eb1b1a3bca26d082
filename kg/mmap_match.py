"""Every occurrence of a surface form in a sentence, from an Aho-Corasick automaton kept inside the index file.

Why: the Linker's pyahocorasick automaton is built in each process's heap (with a Python tuple per surface form),
so the SDK processes of one machine each held their own copy. The index file (kg/index_file.py) carries the
automaton of its surface forms as one byte array (``sf_ac``: cyac's double-array automaton over UTF-8, built
when the file is written); a worker uses it in place from the memory map, so its pages are shared like the rest
of the file and nothing is built per process.

Measured at 1M names (bench/link_matchers.py, 2 shared cores), every occurrence of every name in the bench
sentences: cyac mapped from the file 86k sentences/s, 93 bytes/name; pyahocorasick in memory 48k/s;
marisa-trie (``prefixes()`` at each start position) 37k/s at 3.5 bytes/name: too slow to keep linking at 20k
sentences/s once the segmenter's cost is added.

The automaton's key ids are the surface forms' positions in the file (``sf_str`` order); the automaton holds
every surface form and the matcher drops those shorter than the Linker's ``min_chars``.

Past ~10M names, several automata: cyac keeps sizes in C ints, so one automaton is at most 2 GiB (93 bytes per
name at 1M names, 167 at 10M with longer names: about 12M names). The sorted surface forms are cut into runs of
at most ``MAX_KEYS_PER_AUTOMATON`` (a run whose automaton still reaches 2 GiB is halved), one automaton each,
stored one after another in ``sf_ac`` with a table ``sf_ac_parts`` (byte offset, length, first key id per part;
written only when there is more than one, so smaller files keep their bytes and content address). The union of
every part's matches is the one automaton's (the surface forms are disjoint); each part is one more pass over a
sentence.
"""

from __future__ import annotations

import numpy as np


MAX_KEYS_PER_AUTOMATON = 10_000_000
_PART_ALIGN = 64  # each part starts aligned, as the index file's arrays do


def automaton_parts(surfaces: list[str], max_keys: int = MAX_KEYS_PER_AUTOMATON) -> tuple[np.ndarray, np.ndarray]:
    """The automata of ``surfaces`` in runs of at most ``max_keys``: (their bytes one after another, the parts
    table: uint64 rows of byte offset, length, first key id). One row for up to ``max_keys`` surface forms."""
    blobs, rows, pos = [], [], 0

    def add(lo: int, hi: int) -> None:
        nonlocal pos
        try:
            buf = automaton_bytes(surfaces[lo:hi])
        except AutomatonTooLarge:
            if hi - lo < 2:
                raise
            mid = (lo + hi) // 2
            add(lo, mid)
            add(mid, hi)
            return
        rows.append((pos, len(buf), lo))
        pad = -len(buf) % _PART_ALIGN
        blobs.append(buf)
        if pad:
            blobs.append(np.zeros(pad, dtype="u1"))
        pos += len(buf) + pad

    for lo in range(0, len(surfaces), max(1, max_keys)):
        add(lo, min(len(surfaces), lo + max(1, max_keys)))
    if len(rows) == 1:  # one automaton: no padding after it (the bytes of files written before parts existed)
        return blobs[0], np.array(rows, dtype="<u8")
    return (np.concatenate(blobs) if blobs else np.zeros(0, dtype="u1")), np.array(rows, dtype="<u8").reshape(-1, 3)


class AutomatonTooLarge(ValueError):
    """One automaton would pass cyac's 2 GiB (``automaton_parts`` splits the run in two)."""


def automaton_bytes(surfaces: list[str]) -> np.ndarray:
    """The automaton of ``surfaces`` (key id = position in the list) as a uint8 array for the index file."""
    from cyac import AC

    if not surfaces:
        return np.zeros(0, dtype="u1")
    ac = AC.build(surfaces)
    buf = np.zeros(ac.buff_size(), dtype="u1")
    try:
        ac.to_buff(buf)
    except OverflowError as exc:  # its arrays, spare capacity included, pass what an int addresses
        raise AutomatonTooLarge(f"{len(surfaces)} surface forms: {exc}") from None
    return _without_spare_capacity(buf)


# cyac's buffer: AC header (magic, version, size: int32), the trie (header of 13 int32: magic, size, key_num,
# key_capacity, 3 free-list heads, array_size, capacity, ordered, ignore_case, max_trial, leaf_size; then
# Node[capacity] (12 bytes), Block[capacity >> 8] (24 bytes), int leafs[key_capacity], int reject[257]), then
# int fails[array_size], uint key_lens[leaf_size]
_AC_HEAD, _TRIE_HEAD, _NODE, _BLOCK, _REJECT = 12, 52, 12, 24, 4 * 257
CACHED_SURFACES = 1 << 16
MAX_AUTOMATON_BYTES = 2**31  # cyac keeps buffer sizes and offsets in C ints


def _without_spare_capacity(buf: np.ndarray) -> np.ndarray:
    """The buffer with capacity = the size in use (cyac grows its arrays by doubling and writes them whole; the
    spare part is copied from uninitialised memory and only ever used to insert more keys). Smaller by up to
    half, and the same surface forms give the same bytes, so the index file keeps its content address."""
    trie = buf[_AC_HEAD:_AC_HEAD + _TRIE_HEAD].view("<i4").copy()
    key_capacity, array_size, capacity, leaf_size = int(trie[3]), int(trie[7]), int(trie[8]), int(trie[12])
    nodes = _AC_HEAD + _TRIE_HEAD
    blocks = nodes + _NODE * capacity
    leafs = blocks + _BLOCK * (capacity >> 8)
    reject = leafs + 4 * key_capacity
    tail = reject + _REJECT  # fails and key_lens: already of the sizes in use
    trie[3], trie[8] = leaf_size, array_size
    trie[1] = _TRIE_HEAD + _NODE * array_size + _BLOCK * (array_size >> 8) + 4 * leaf_size + _REJECT
    head = buf[:_AC_HEAD].view("<i4").copy()
    head[2] = int(trie[1]) + _AC_HEAD + 4 * array_size + 4 * leaf_size
    out = np.concatenate([head.view("u1"), trie.view("u1"), buf[nodes:nodes + _NODE * array_size],
                          buf[blocks:blocks + _BLOCK * (array_size >> 8)], buf[leafs:leafs + 4 * leaf_size],
                          buf[reject:]])
    assert len(out) == head[2] and len(buf) - tail == 4 * array_size + 4 * leaf_size
    if len(out) >= MAX_AUTOMATON_BYTES:
        raise AutomatonTooLarge(f"{leaf_size} surface forms make a {len(out) / 2**30:.1f} GiB automaton; cyac reads "
                                f"at most 2 GiB (int32 sizes)")
    return out


class MappedMatcher:
    """``Linker._matches`` over a MappedIndex's automaton: (start, end, surface, entity ids), character offsets
    (the Linker orders them itself)."""

    def __init__(self, index, parts, min_chars: int):
        """``parts``: (buffer, first key id) per automaton (``MappedIndex.automata``)."""
        from cyac import AC

        # no copy: each automaton is read from the mapped pages
        self._parts = [(AC.from_buff(buffer, copy=False), base) for buffer, base in parts]
        self._ac = self._parts[0][0] if len(self._parts) == 1 and self._parts[0][1] == 0 else None
        self.min_chars = min_chars
        self._read_ids = _ids_of_position(index)
        self._cache: dict[int, tuple[str, ...]] = {}  # position -> entity ids, for the surface forms seen lately

    def matches(self, sentence: str) -> list[tuple[int, int, str, tuple[str, ...]]]:
        get, m = self._cache.get, self.min_chars  # a surface form has at least one entity: never an empty tuple
        if self._ac is not None:  # one automaton (up to MAX_KEYS_PER_AUTOMATON names): the one pass
            return [(s, e, sentence[s:e], get(k) or self._ids(k)) for k, s, e in self._ac.match(sentence) if e - s >= m]
        return [(s, e, sentence[s:e], get(k + base) or self._ids(k + base))
                for ac, base in self._parts for k, s, e in ac.match(sentence) if e - s >= m]

    def _ids(self, k: int) -> tuple[str, ...]:
        if len(self._cache) >= CACHED_SURFACES:  # bounded: the process's private memory stays small
            self._cache.clear()
        ids = self._cache[k] = self._read_ids(k)
        return ids


def _ids_of_position(index):
    """Surface form position -> its entity ids, read through memoryviews of the mapped arrays (a Python int per
    read, several times faster than numpy scalars: this runs for every occurrence the cache has not seen)."""
    a = index._a

    def view(name, fmt):
        return memoryview(a[name]).cast("B").cast(fmt)

    sf_off, sf_ids, e_id, s_off = view("sf_off", "Q"), view("sf_ids", "I"), view("e_id", "I"), view("s_off", "Q")
    blob = index.strings._blob

    def ids(k: int) -> tuple[str, ...]:
        return tuple(str(blob[s_off[p]:s_off[p + 1]], "utf-8")
                     for p in (e_id[n] for n in sf_ids[sf_off[k]:sf_off[k + 1]]))

    return ids


def mapped_matcher(index, min_chars: int) -> MappedMatcher | None:
    """The matcher of an index file that carries an automaton (None: an in-memory index, or an older file)."""
    parts = getattr(index, "automata", None)
    return MappedMatcher(index, parts, min_chars) if parts else None
