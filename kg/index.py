"""The entity index: canonical names, aliases, types (given or inferred), surface forms, triple lookups.

Type inference (``TypeRules``), for an entity no source gives a type: it takes a declared type from the relation
roles it fills (``(relation, "head")`` / ``(relation, "tail")``) only when that type is well supported in the
role: at least ``min_support`` entities declared with it fill the role, and they are more than ``min_share`` of
*all* the role's entities (typed or not). A handful of homonyms (a township 平安 among a hundred companies in
``合作:head``) therefore cannot type the whole role. Otherwise the entity's type is its most frequent role itself,
its *role signature* ``relation:head`` / ``relation:tail`` (e.g. ``合作:head``), which never equals a declared type
(were a source to declare such a string, the signature becomes ``role:合作:head``). ``Entity.type_source`` says
where a type came from: ``declared``, ``role_majority`` or ``role_signature``; ``EntityIndex.inferred_roles``
holds, per inferred type, how many entities got it and from which roles. An entity that takes part in no triple
and has no type stays untyped (``type`` None).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from knowmix.kg.graph import MIN_NAME_CHARS, Problem, RawGraph, Triple, load_raw


@dataclass(frozen=True)
class Entity:
    id: str
    name: str
    aliases: tuple[str, ...]
    type: str | None
    types: tuple[str, ...]
    type_inferred: bool = False
    type_source: str = ""  # declared | role_majority | role_signature | "" (untyped)

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
    # inferred type -> {"rule", "entities", "roles": {role: entities}}
    inferred_roles: dict[str, dict] = field(default_factory=dict)

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
        return EntityIndex(self.entities, self.surface_to_ids, self.neighbours, None, self.inferred, self.inferred_roles)

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.blake2b(digest_size=12)
        for s in sorted(self.surface_to_ids):
            h.update(s.encode())
            h.update(b"\0")
        h.update(str(len(self.entities)).encode())
        return h.hexdigest()


@dataclass(frozen=True)
class TypeRules:
    """When an untyped entity may take a declared type from its relation roles (see the module docstring)."""

    min_support: int = 3  # typed entities with that type in the role, at least
    min_share: float = 0.5  # and more than this share of all the role's entities


def _role_name(role: tuple[str, str]) -> str:
    return f"{role[0]}:{role[1]}"


def infer_types(raw: RawGraph, rules: TypeRules = TypeRules()) -> tuple[dict[str, tuple[str | None, str]], dict, dict]:
    """{entity id: (type, source)}, {how: count}, {inferred type: {"rule", "entities", "roles"}}."""
    role_members: dict[tuple[str, str], set] = defaultdict(set)
    roles_of: dict[str, Counter] = defaultdict(Counter)
    for t in raw.triples:
        for eid, role in ((t.head, (t.relation, "head")), (t.tail, (t.relation, "tail"))):
            roles_of[eid][role] += 1
            role_members[role].add(eid)
    declared = {e.types[0] for e in raw.entities.values() if e.types}
    role_types: dict[tuple[str, str], Counter] = {}
    for role, members in role_members.items():
        c = Counter(raw.entities[m].types[0] for m in members if m in raw.entities and raw.entities[m].types)
        role_types[role] = c
    result: dict[str, tuple[str | None, str]] = {}
    how: Counter = Counter()
    detail: dict[str, dict] = {}
    for eid, e in raw.entities.items():
        if e.types:
            result[eid] = (e.types[0], "declared")
            continue
        roles = roles_of.get(eid)
        if not roles:
            result[eid] = (None, "")
            how["untyped"] += 1
            continue
        votes: Counter = Counter()
        voters: dict[str, list] = defaultdict(list)
        for role, n in roles.items():
            counts = role_types.get(role)
            if not counts:
                continue
            typ, support = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if support >= rules.min_support and support > rules.min_share * len(role_members[role]):
                votes[typ] += n
                voters[typ].append(role)
        if votes:
            typ = min(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0]
            rule, roles_used = "role_majority", voters[typ]
            how["from_role_majority"] += 1
        else:
            role = min(roles.items(), key=lambda kv: (-kv[1], kv[0]))[0]
            typ = _role_name(role)
            if typ in declared:
                typ = "role:" + typ
            rule, roles_used = "role_signature", [role]
            how["from_role_signature"] += 1
        result[eid] = (typ, rule)
        d = detail.setdefault(typ, {"rule": rule, "entities": 0, "roles": Counter()})
        d["entities"] += 1
        for role in roles_used:
            d["roles"][_role_name(role)] += 1
    detail = {t: {"rule": d["rule"], "entities": d["entities"], "roles": dict(d["roles"].most_common())}
              for t, d in sorted(detail.items(), key=lambda kv: (-kv[1]["entities"], kv[0]))}
    return result, dict(sorted(how.items())), detail


def build_index(raw: RawGraph, with_relations: bool = True, rules: TypeRules = TypeRules()) -> EntityIndex:
    types, how, detail = infer_types(raw, rules)
    entities: dict[str, Entity] = {}
    surfaces: dict[str, set[str]] = defaultdict(set)
    for eid in sorted(raw.entities):
        e = raw.entities[eid]
        typ, source = types[eid]
        inferred = source not in ("declared", "")
        ent = Entity(eid, e.name, tuple(sorted(e.aliases - {e.name})), typ, tuple(e.types) or ((typ,) if typ else ()),
                     inferred, source)
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
    return EntityIndex(entities, {s: tuple(sorted(ids)) for s, ids in surfaces.items()}, neighbours, rel, how, detail)


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

    def homonyms(self) -> dict:
        """Names that different sources declare with different types, each kept as its own entity (``{id}@{type}``)."""
        out = {}
        for eid, by_source in sorted(self.raw.declared.items()):
            if len(set(by_source.values())) > 1:
                out[eid] = {"types": dict(by_source),
                            "entities": sorted({self.raw.renames.get((src, eid), eid) for src in by_source})}
        return {"count": len(out), "names": out}


def load_kg(paths: Iterable[str], entities: Iterable[str] = (), min_name_chars: int | None = MIN_NAME_CHARS,
            rules: TypeRules = TypeRules()) -> KnowledgeGraph:
    raw = load_raw(list(paths), list(entities), min_name_chars)
    return KnowledgeGraph(raw, build_index(raw, rules=rules))


def index_from_triples(
    triples: Iterable[tuple[str, str, str]], types: Mapping[str, str] | None = None,
    aliases: Mapping[str, Iterable[str]] | None = None, rules: TypeRules = TypeRules(),
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
    return build_index(raw, rules=rules)
