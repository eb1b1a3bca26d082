"""The entity index as one memory-mapped file: what kg-samples' workers load in ``DoFn.setup``, by path.

Why: shipping the index inside the job graph (``beam.Create([index])``) made the graph grow with the KG (about
85 bytes per entity) and gave every SDK process its own copy of Python dicts and sets (~1.2 KB per name).
Here the index is built once (``knowmix kg-index``, or by kg-samples before the job starts) into a file of
sorted numpy arrays; a worker maps it read-only, so the processes of one machine share its pages, and the
job graph carries only the file's path.

Layout (little-endian)::

    b"KMXKGI1\\n" | uint64 header length | header (JSON, utf-8) | zero padding to 64 | arrays, each 64-aligned

The header holds ``arrays`` ({name: [dtype, offset, count]}), ``key`` (the blake2b digest of the arrays and
meta: the file's content address) and ``meta``: the build parameters, the KG's ``knowledge_graph`` figures for
the manifest (sources, counts, inferred types, homonyms, bad lines: computed when the index is built, so the
kg-samples launcher need not parse the KG) and ``renames`` (homonyms split by source, for the workers that
re-read the triples).

Arrays. One string pool ``s_off``/``s_blob`` holds every entity id, name, alias and type, sorted by code point
(UTF-8 keeps that order), so a string's pool index is found by binary search. Entities are in id order
(entity number = rank of its id): ``e_id``, ``e_name``, ``e_type`` (-1: untyped), ``e_src`` (type source code),
``e_inf``, CSR lists ``e_types_off``/``e_types`` and ``e_alias_off``/``e_alias``. Surface forms:
``sf_str`` (pool indices, sorted) with CSR ``sf_off``/``sf_ids`` (entity numbers, in id order). Connected
pairs: ``pairs``, sorted uint64 ``lo << 32 | hi`` of entity numbers (lo < hi: the same order as ``pair_key``).
``sf_ac``: the Aho-Corasick automaton of the surface forms (key id = position in ``sf_str``) that the Linker
matches with in place (kg/mmap_match.py); past ~10M surface forms several, one after another, located by
``sf_ac_parts`` (offset, length, first key id per part); files without it get an automaton built in memory.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import mmap
import os
import struct
import tempfile
from functools import lru_cache
from typing import Iterator, Mapping

import numpy as np

from knowmix.kg.index import Entity, EntityIndex, KnowledgeGraph
from knowmix.kg.mmap_match import MAX_KEYS_PER_AUTOMATON, automaton_parts
from knowmix import fileio

MAGIC = b"KMXKGI1\n"
SUFFIX = ".kgi"
ALIGN = 64
SOURCES = ("", "declared", "role_majority", "role_signature")
MAX_PROBLEMS_LISTED = 50
CHUNK = 1 << 16  # surface forms read per bulk step when iterating a mapped index


def knowledge_graph_figures(kg: KnowledgeGraph, index: EntityIndex) -> dict:
    """The manifest's ``knowledge_graph`` entry (what kg-samples reported from the in-memory KG)."""
    return {
        "sources": list(kg.raw.sources),
        "entities": len(index.entities),
        "triples": len(kg.triples),
        "relations": len({t.relation for t in kg.triples}),
        "types_inferred": index.inferred,
        "inferred_types": index.inferred_roles,
        "homonyms": kg.homonyms(),
        "bad_lines": kg.problem_counts(),
        "bad_line_examples": [str(p) for p in kg.problems[:MAX_PROBLEMS_LISTED]],
    }


# ---------------------------------------------------------------------------------------------- writing


def _csr(lists) -> tuple[np.ndarray, np.ndarray]:
    off = np.zeros(len(lists) + 1, dtype="<u8")
    np.cumsum([len(x) for x in lists], out=off[1:])
    flat = np.fromiter((v for x in lists for v in x), dtype="<u4", count=int(off[-1]))
    return off, flat


def index_arrays(index: EntityIndex, max_keys_per_automaton: int = MAX_KEYS_PER_AUTOMATON) -> dict[str, np.ndarray]:
    """The index's arrays (see the module docstring). The cyclic GC is paused meanwhile: the many small lists
    made here would otherwise trigger collections that walk every object of a large in-memory index."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        return _index_arrays(index, max_keys_per_automaton)
    finally:
        if enabled:
            gc.enable()


def _index_arrays(index: EntityIndex, max_keys_per_automaton: int) -> dict[str, np.ndarray]:
    ids = sorted(index.entities)
    num = {eid: i for i, eid in enumerate(ids)}
    pool_set = set(ids)
    for e in index.entities.values():
        pool_set.add(e.name)
        pool_set.update(e.aliases)
        pool_set.update(e.types)
        if e.type is not None:
            pool_set.add(e.type)
    pool_set.update(index.surface_to_ids)
    pool = sorted(pool_set)
    sidx = {s: i for i, s in enumerate(pool)}
    encoded = [s.encode("utf-8") for s in pool]
    s_off = np.zeros(len(pool) + 1, dtype="<u8")
    np.cumsum([len(b) for b in encoded], out=s_off[1:])
    s_blob = np.frombuffer(b"".join(encoded), dtype="u1")
    ents = [index.entities[eid] for eid in ids]
    e_types_off, e_types = _csr([[sidx[t] for t in e.types] for e in ents])
    e_alias_off, e_alias = _csr([[sidx[a] for a in e.aliases] for e in ents])
    surfaces = sorted(index.surface_to_ids)
    sf_off, sf_ids = _csr([[num[eid] for eid in index.surface_to_ids[s]] for s in surfaces])
    sf_ac, sf_ac_parts = automaton_parts(surfaces, max_keys_per_automaton)
    pairs = np.array(sorted((min(num[a], num[b]) << 32) | max(num[a], num[b]) for a, b in index.neighbours),
                     dtype="<u8")
    return {
        "s_off": s_off, "s_blob": s_blob,
        "e_id": np.array([sidx[eid] for eid in ids], dtype="<u4"),
        "e_name": np.array([sidx[e.name] for e in ents], dtype="<u4"),
        "e_type": np.array([-1 if e.type is None else sidx[e.type] for e in ents], dtype="<i4"),
        "e_src": np.array([SOURCES.index(e.type_source) for e in ents], dtype="u1"),
        "e_inf": np.array([1 if e.type_inferred else 0 for e in ents], dtype="u1"),
        "e_types_off": e_types_off, "e_types": e_types, "e_alias_off": e_alias_off, "e_alias": e_alias,
        "sf_str": np.array([sidx[s] for s in surfaces], dtype="<u4"), "sf_off": sf_off, "sf_ids": sf_ids,
        "pairs": pairs, "sf_ac": sf_ac,
        **({"sf_ac_parts": sf_ac_parts.reshape(-1)} if len(sf_ac_parts) > 1 else {}),
    }


def write_index_file(index: EntityIndex, meta: dict, output: str) -> str:
    """Write the index file; ``output`` is a file path, or an existing directory where the file is named by its
    content (``kgindex-<key>.kgi``). Written to a temporary name and renamed. Returns the path written."""
    return write_arrays(index_arrays(index), meta, output)


def write_arrays(arrays: dict[str, np.ndarray], meta: dict, output: str) -> str:
    """``write_index_file`` for arrays made elsewhere (``index_arrays``' names and layout)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(meta, ensure_ascii=False, sort_keys=True).encode())
    layout, pos = {}, 0
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        arrays[name] = arr
        layout[name] = [arr.dtype.str, pos, int(arr.size)]
        h.update(name.encode() + b"\0" + arr.dtype.str.encode() + b"\0")
        h.update(memoryview(arr).cast("B"))
        pos += -(-arr.nbytes // ALIGN) * ALIGN
    key = h.hexdigest()
    header = json.dumps({"version": 1, "key": key, "arrays": layout, "meta": meta}, ensure_ascii=False).encode()
    data_start = -(-(len(MAGIC) + 8 + len(header)) // ALIGN) * ALIGN
    for item in layout.values():
        item[1] += data_start
    header = json.dumps({"version": 1, "key": key, "arrays": layout, "meta": meta}, ensure_ascii=False).encode()
    data_start2 = -(-(len(MAGIC) + 8 + len(header)) // ALIGN) * ALIGN
    if data_start2 != data_start:  # the offsets' digits changed the header's length: shift once more
        for item in layout.values():
            item[1] += data_start2 - data_start
        header = json.dumps({"version": 1, "key": key, "arrays": layout, "meta": meta}, ensure_ascii=False).encode()
        data_start = data_start2
        assert -(-(len(MAGIC) + 8 + len(header)) // ALIGN) * ALIGN == data_start
    path = os.path.join(output, f"kgindex-{key}{SUFFIX}") if os.path.isdir(output) else output

    def write(fh) -> None:
        fh.write(MAGIC + struct.pack("<Q", len(header)) + header)
        fh.write(b"\0" * (data_start - fh.tell()))
        for arr in arrays.values():
            fh.write(memoryview(arr).cast("B"))
            fh.write(b"\0" * (-fh.tell() % ALIGN))

    fileio.atomic_write(path, write)
    return path


def build_index_file(kg_paths, entity_paths, output: str, min_name_chars: int, rules) -> str:
    """Parse the KG (``load_kg``), write its index file; the meta holds what kg-samples reports about the KG."""
    from knowmix.kg.index import load_kg

    kg = load_kg(kg_paths, entity_paths, min_name_chars, rules)
    index = kg.index.without_relations()
    meta = {
        "params": {"kg": list(kg_paths), "entities": list(entity_paths), "min_name_chars": min_name_chars,
                   "type_min_support": rules.min_support, "type_min_share": rules.min_share},
        "knowledge_graph": knowledge_graph_figures(kg, index),
        "renames": [[src, eid, new] for (src, eid), new in sorted(kg.raw.renames.items())],
    }
    return write_index_file(index, meta, output)


# ---------------------------------------------------------------------------------------------- reading


def read_header(path: str) -> dict:
    """The index file's header (its layout and ``meta``): only the first bytes are read, from a local path or
    any Beam filesystem (a launcher checks a remote index without fetching gigabytes)."""
    with fileio.open_read(path) as fh:
        head = fh.read(len(MAGIC) + 8)
        if len(head) < len(MAGIC) + 8 or head[: len(MAGIC)] != MAGIC:
            raise ValueError(f"{path}: not a knowmix KG index file")
        (n,) = struct.unpack("<Q", head[len(MAGIC):])
        return json.loads(fh.read(n).decode("utf-8"))


def local_copy(path: str) -> str:
    """A local path for ``path``: remote files (gs://, s3://) are copied once per process into the temp dir."""
    if "://" not in path:
        return path
    local = os.path.join(tempfile.gettempdir(), "knowmix-" + os.path.basename(path))
    if not os.path.exists(local):
        fileio.copy_file(path, local)
    return local


class _Strings:
    """The string pool as a read-only sequence (for bisect)."""

    def __init__(self, off: np.ndarray, blob: memoryview):
        self._off, self._blob = off, blob

    def __len__(self):
        return len(self._off) - 1

    def __getitem__(self, i: int) -> str:
        return str(self._blob[int(self._off[i]):int(self._off[i + 1])], "utf-8")

    def find(self, s: str) -> int:
        i = bisect.bisect_left(self, s)
        return i if i < len(self) and self[i] == s else -1


class _Entities(Mapping):
    def __init__(self, ix: "MappedIndex"):
        self._ix = ix

    def __len__(self):
        return len(self._ix._a["e_id"])

    def __iter__(self) -> Iterator[str]:
        strings, e_id = self._ix.strings, self._ix._a["e_id"]
        for i in range(len(e_id)):
            eid = strings[e_id[i]]
            self._ix._hint = (eid, i)  # get(eid) right after iterating (substitution pools) skips the search
            yield eid

    def __contains__(self, eid) -> bool:
        return self._ix.number(eid) >= 0

    def __getitem__(self, eid: str) -> Entity:
        hint = self._ix._hint
        n = hint[1] if hint is not None and hint[0] == eid else self._ix.number(eid)
        if n < 0:
            raise KeyError(eid)
        return self._ix.entity(n)


class _Surfaces(Mapping):
    def __init__(self, ix: "MappedIndex"):
        self._ix = ix

    def __len__(self):
        return len(self._ix._a["sf_str"])

    def __iter__(self) -> Iterator[str]:
        a = self._ix._a
        blob, sf, s_off = self._ix.strings._blob, a["sf_str"], a["s_off"]
        # offsets in bulk per chunk (no numpy scalar per surface form, no list of all of them: 10M+ surface forms
        # stay in the mapped pages), the strings decoded from the mapped pages
        for lo in range(0, len(sf), CHUNK):
            part = sf[lo:lo + CHUNK]
            for b, e in zip(s_off[part].tolist(), s_off[part + 1].tolist()):
                yield str(blob[b:e], "utf-8")

    def _ids(self, i: int) -> tuple[str, ...]:
        a = self._ix._a
        return tuple(self._ix.entity_id(int(n)) for n in a["sf_ids"][int(a["sf_off"][i]):int(a["sf_off"][i + 1])])

    def items(self):
        """Every (surface, entity ids), in order; one pass over the arrays, a chunk of surface forms at a time
        (bulk reads without holding every offset and string of a 10M+ index as Python objects at once)."""
        a = self._ix._a
        blob, s_off, e_id, sf_off, sf_ids, sf = (self._ix.strings._blob, a["s_off"], a["e_id"], a["sf_off"],
                                                 a["sf_ids"], a["sf_str"])
        for lo in range(0, len(sf), CHUNK):
            hi = min(len(sf), lo + CHUNK)
            part = sf[lo:hi]
            starts, ends = s_off[part].tolist(), s_off[part + 1].tolist()
            first, last = int(sf_off[lo]), int(sf_off[hi])
            ids = e_id[sf_ids[first:last]]
            id_starts, id_ends = s_off[ids].tolist(), s_off[ids + 1].tolist()
            bounds = (sf_off[lo:hi + 1] - first).tolist()
            for i in range(hi - lo):
                yield (str(blob[starts[i]:ends[i]], "utf-8"),
                       tuple(str(blob[id_starts[j]:id_ends[j]], "utf-8") for j in range(bounds[i], bounds[i + 1])))

    def _pos(self, s: str) -> int:
        sf = self._ix._a["sf_str"]
        k = self._ix.strings.find(s)
        if k < 0:
            return -1
        i = int(sf.searchsorted(np.uint32(k)))  # same dtype: no copy of the array
        return i if i < len(sf) and sf[i] == k else -1

    def __contains__(self, s) -> bool:
        return self._pos(s) >= 0

    def __getitem__(self, s: str) -> tuple[str, ...]:
        i = self._pos(s)
        if i < 0:
            raise KeyError(s)
        return self._ids(i)

    def get(self, s, default=None):
        i = self._pos(s)
        return default if i < 0 else self._ids(i)


class _Pairs:
    def __init__(self, ix: "MappedIndex"):
        self._ix = ix

    def __len__(self):
        return len(self._ix._a["pairs"])

    def __contains__(self, pair) -> bool:
        return self._ix.connected(*pair)


class MappedIndex(EntityIndex):
    """An EntityIndex read from an index file by memory-mapping (read-only pages shared between processes).

    The same lookups as EntityIndex (``get``, ``candidates``, ``connected``, ``is_alias_of``, and ``entities``,
    ``surface_to_ids``, ``neighbours`` as read-only mappings/sets); no relation labels (kg-samples joins them).
    Not meant to be pickled: DoFns hold the path and open it in ``setup``."""

    def __init__(self, path: str):  # noqa: super().__init__ is not called: the fields are views of the file
        self.path = path
        local = local_copy(path)
        header = read_header(local)
        self.key = header["key"]
        self.meta = header["meta"]
        with open(local, "rb") as fh:
            self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self._a = {name: np.frombuffer(self._mm, dtype=np.dtype(dt), count=count, offset=off)
                   for name, (dt, off, count) in header["arrays"].items()}
        _, blob_off, blob_len = header["arrays"]["s_blob"]
        self.strings = _Strings(self._a["s_off"], memoryview(self._mm)[blob_off:blob_off + blob_len])
        self._hint: tuple[str, int] | None = None
        self.entities = _Entities(self)
        self.surface_to_ids = _Surfaces(self)
        self.neighbours = _Pairs(self)
        self.relations = None
        kg = self.meta.get("knowledge_graph", {})
        self.inferred = kg.get("types_inferred", {})
        self.inferred_roles = kg.get("inferred_types", {})
        self.entity = lru_cache(maxsize=1 << 16)(self._entity)
        # the entity number of an id (-1: none); linking asks about the same few entities again and again
        self.number = lru_cache(maxsize=1 << 18)(self._search_number)
        self._pairs = self._a["pairs"]
        self._npairs = len(self._pairs)
        # the surface forms' automata as views of the mapped pages, (buffer, first key id) each; [] for a file
        # written without one (kg/mmap_match.py: one automaton unless the KG passes ~10M surface forms)
        ac = header["arrays"].get("sf_ac")
        self.automata = []
        if ac and ac[2]:
            whole = memoryview(self._mm)[ac[1]:ac[1] + ac[2]]
            parts = self._a["sf_ac_parts"].reshape(-1, 3) if "sf_ac_parts" in self._a else [(0, ac[2], 0)]
            self.automata = [(whole[int(off):int(off) + int(size)], int(base)) for off, size, base in parts]

    def __reduce__(self):
        return (MappedIndex, (self.path,))

    # -- numbers <-> ids
    def _search_number(self, eid: str) -> int:
        k = self.strings.find(eid)
        if k < 0:
            return -1
        e_id = self._a["e_id"]
        i = int(e_id.searchsorted(np.uint32(k)))
        return i if i < len(e_id) and e_id[i] == k else -1

    def entity_id(self, n: int) -> str:
        return self.strings[self._a["e_id"][n]]

    def _entity(self, n: int) -> Entity:
        a, s = self._a, self.strings
        typ = int(a["e_type"][n])
        types = tuple(s[int(t)] for t in a["e_types"][int(a["e_types_off"][n]):int(a["e_types_off"][n + 1])])
        aliases = tuple(s[int(x)] for x in a["e_alias"][int(a["e_alias_off"][n]):int(a["e_alias_off"][n + 1])])
        return Entity(s[a["e_id"][n]], s[a["e_name"][n]], aliases, None if typ < 0 else s[typ], types,
                      bool(a["e_inf"][n]), SOURCES[int(a["e_src"][n])])

    # -- EntityIndex's lookups
    def get(self, entity_id: str) -> Entity:
        return self.entities[entity_id]

    def candidates(self, surface: str) -> tuple[str, ...]:
        return self.surface_to_ids.get(surface, ())

    def connected(self, a: str, b: str) -> bool:
        if not self._npairs:
            return False
        x, y = self.number(a), self.number(b)
        if x < 0 or y < 0:
            return False
        key = np.uint64((x << 32) | y if x < y else (y << 32) | x)
        pairs = self._pairs
        i = pairs.searchsorted(key)
        return i < self._npairs and pairs[i] == key

    def without_relations(self) -> "MappedIndex":
        return self

    def fingerprint(self) -> str:
        return self.key

    def renames(self) -> dict[tuple[str, str], str]:
        return {(src, eid): new for src, eid, new in self.meta.get("renames", [])}

    def nbytes(self) -> int:
        return len(self._mm)


_OPEN: dict[str, MappedIndex] = {}


def open_index(path: str) -> MappedIndex:
    """The index at ``path``, mapped once per process (every DoFn of the process shares it)."""
    ix = _OPEN.get(path)
    if ix is None:
        ix = _OPEN[path] = MappedIndex(path)
    return ix

