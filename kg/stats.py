"""Graph statistics for ``knowmix kg-stats`` (networkx view of the KG)."""

from __future__ import annotations

from collections import Counter

import networkx as nx

from knowmix.kg.index import KnowledgeGraph


def to_networkx(kg: KnowledgeGraph) -> nx.MultiDiGraph:
    g = nx.MultiDiGraph()
    for eid, e in kg.index.entities.items():
        g.add_node(eid, name=e.name, type=e.type, type_inferred=e.type_inferred)
    for t in kg.triples:
        g.add_edge(t.head, t.tail, key=t.relation, relation=t.relation)
    return g


def graph_stats(kg: KnowledgeGraph, top: int = 20) -> dict:
    g = to_networkx(kg)
    ents = kg.index.entities
    degrees = [d for _, d in g.degree()]
    degree_hist = Counter(degrees)
    buckets: Counter = Counter()
    for d, n in degree_hist.items():
        label = str(d) if d <= 4 else ("5-9" if d < 10 else "10-99" if d < 100 else "100+")
        buckets[label] += n
    order = ["0", "1", "2", "3", "4", "5-9", "10-99", "100+"]
    components = sorted((len(c) for c in nx.weakly_connected_components(g)), reverse=True)
    relations = Counter(t.relation for t in kg.triples)
    types = Counter(e.type for e in ents.values() if e.type is not None)
    inferred_types = Counter(e.type for e in ents.values() if e.type_inferred)
    return {
        "sources": list(kg.raw.sources),
        "lines_read": kg.raw.lines_read,
        "entities": len(ents),
        "aliases": sum(len(e.aliases) for e in ents.values()),
        "ambiguous_surfaces": sum(1 for ids in kg.index.surface_to_ids.values() if len(ids) > 1),
        "triples": len(kg.triples),
        "relations": dict(relations.most_common()),
        "types": dict(types.most_common()),
        "untyped_entities": sum(1 for e in ents.values() if e.type is None),
        "inferred": {"entities": sum(1 for e in ents.values() if e.type_inferred), "how": kg.index.inferred,
                     "types": dict(inferred_types.most_common(top)),
                     "roles": dict(list(kg.index.inferred_roles.items())[:top])},
        "homonyms": kg.homonyms(),
        "degree": {
            "distribution": {k: buckets[k] for k in order if buckets.get(k)},
            "max": max(degrees) if degrees else 0,
            "mean": round(sum(degrees) / len(degrees), 3) if degrees else 0.0,
            "top": [{"name": ents[n].name, "degree": d} for n, d in
                    sorted(g.degree(), key=lambda x: (-x[1], x[0]))[:top]],
        },
        "components": {"count": len(components), "largest": components[:5],
                       "singletons": sum(1 for c in components if c == 1)},
        "bad_lines": kg.problem_counts(),
        "bad_line_examples": [str(p) for p in kg.problems[:top]],
    }

