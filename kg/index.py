"""The entity index: canonical names, aliases, types (given or inferred), surface forms, triple lookups.

Type inference: an entity with no type takes the majority type of the *typed* entities that fill the same
relation role (``(relation, "head")`` or ``(relation, "tail")``) as it does, summed over its roles (ties: the
lexicographically smallest type). Where no typed entity shares a role (a graph with no types at all), the type is
the entity's most frequent role itself, written ``relation:head`` / ``relation:tail`` (e.g. ``capital:tail``,
the capitals). Both are marked ``type_inferred``; an entity that takes part in no triple and has no type stays
untyped (``type`` None).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from kg.graph import Problem, RawGraph, Triple, load_raw


@dataclass(frozen=True)
class Entity:
    id: str
    name: str
    aliases: tuple[str, ...]
    type: str | None
    types: tuple[str, ...]
    type_inferred: bool = False

    @property
    def surfaces(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def pair_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


@dataclass
class EntityIndex:
    entities: dict[str, Entity]
    surface_to_ids: dict[str, tuple[str, ...]]
    neighbours: set[tuple[str, str]]  # unordered pairs that share at least one triple
    relations: dict[tuple[str, str], tuple[str, ...]] | None = None  # (head, tail) -> relations; None when joined
    inferred: dict[str, int] = field(default_factory=dict)  # how: count

    # -- lookups
    def get(self, entity_id: str) -> Entity:
        return self.entities[entity_id]

    def candidates(self, surface: str) -> tuple[str, ...]:
        return self.surface_to_ids.get(surface, ())

    def connected(self, a: str, b: str) -> bool:
        return pair_key(a, b) in self.neighbours

    def relations_between(self, head: str, tail: str) -> tuple[str, ...]:
        if self.relations is None:
            raise RuntimeError("this index was built without relations (they are joined in the pipeline)")
        return self.relations.get((head, tail), ())

    def is_alias_of(self, a: str, b: str) -> bool:
        """True when entities a and b share any surface form (a name of one is a name or alias of the other)."""
        return bool(set(self.entities[a].surfaces) & set(self.entities[b].surfaces))

    def without_relations(self) -> "EntityIndex":
        """A copy for a side input: relation labels are joined by (head, tail) in the pipeline instead."""
        return EntityIndex(self.entities, self.surface_to_ids, self.neighbours, None, self.inferred)

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.blake2b(digest_size=12)
        for s in sorted(self.surface_to_ids):
            h.update(s.encode())
            h.update(b"\0")
        h.update(str(len(self.entities)).encode())
        return h.hexdigest()


def infer_types(raw: RawGraph) -> tuple[dict[str, tuple[str | None, bool]], dict[str, int]]:
    role_types: dict[tuple[str, str], Counter] = defaultdict(Counter)
    roles_of: dict[str, Counter] = defaultdict(Counter)
    for t in raw.triples:
        roles_of[t.head][(t.relation, "head")] += 1
        roles_of[t.tail][(t.relation, "tail")] += 1
    for t in raw.triples:
        for eid, role in ((t.head, (t.relation, "head")), (t.tail, (t.relation, "tail"))):
            e = raw.entities.get(eid)
            if e is not None and e.types:
                role_types[role][e.types[0]] += 1
    result: dict[str, tuple[str | None, bool]] = {}
    how: Counter = Counter()
    for eid, e in raw.entities.items():
        if e.types:
            result[eid] = (e.types[0], False)
            continue
        roles = roles_of.get(eid)
        if not roles:
            result[eid] = (None, False)
            how["untyped"] += 1
            continue
        votes: Counter = Counter()
        for role, n in roles.items():
            for typ, m in role_types.get(role, {}).items():
                votes[typ] += n * m
        if votes:
            best = min(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0]
            result[eid] = (best, True)
            how["from_role_majority"] += 1
        else:
            role = min(roles.items(), key=lambda kv: (-kv[1], kv[0]))[0]
            result[eid] = (f"{role[0]}:{role[1]}", True)
            how["from_role_name"] += 1
    return result, dict(sorted(how.items()))


def build_index(raw: RawGraph, with_relations: bool = True) -> EntityIndex:
    types, how = infer_types(raw)
    entities: dict[str, Entity] = {}
    surfaces: dict[str, set[str]] = defaultdict(set)
    for eid in sorted(raw.entities):
        e = raw.entities[eid]
        typ, inferred = types[eid]
        ent = Entity(eid, e.name, tuple(sorted(e.aliases - {e.name})), typ, tuple(e.types) or ((typ,) if typ else ()), inferred)
        entities[eid] = ent
        for s in ent.surfaces:
            if s:
                surfaces[s].add(eid)
    neighbours: set[tuple[str, str]] = set()
    relations: dict[tuple[str, str], list[str]] = defaultdict(list)
    for t in raw.triples:
        neighbours.add(pair_key(t.head, t.tail))
        if with_relations:
            relations[(t.head, t.tail)].append(t.relation)
    rel = {k: tuple(sorted(set(v))) for k, v in relations.items()} if with_relations else None
    return EntityIndex(entities, {s: tuple(sorted(ids)) for s, ids in surfaces.items()}, neighbours, rel, how)


@dataclass
class KnowledgeGraph:
    raw: RawGraph
    index: EntityIndex

    @property
    def problems(self) -> list[Problem]:
        return self.raw.problems

    @property
    def triples(self) -> list[Triple]:
        return self.raw.triples

    def problem_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p.reason for p in self.raw.problems).items()))


def load_kg(paths: Iterable[str], entities: Iterable[str] = ()) -> KnowledgeGraph:
    raw = load_raw(list(paths), list(entities))
    return KnowledgeGraph(raw, build_index(raw))


def index_from_triples(
    triples: Iterable[tuple[str, str, str]], types: Mapping[str, str] | None = None,
    aliases: Mapping[str, Iterable[str]] | None = None,
) -> EntityIndex:
    """A small index from plain (head, relation, tail) names (tests, benchmarks)."""
    raw = RawGraph()
    for h, r, t in triples:
        raw.entity(h)
        raw.entity(t)
        raw.triples.append(Triple(h, r, t))
    for name, typ in (types or {}).items():
        raw.entity(name).add_type(typ)
    for name, al in (aliases or {}).items():
        raw.entity(name).add_aliases(al)
    return build_index(raw)
