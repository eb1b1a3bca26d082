"""``knowmix kg-stats --kg FILE [--kg FILE ...] [--entities FILE] [--json]``."""

from __future__ import annotations

import json
import sys

from knowmix.kg.graph import MIN_NAME_CHARS
from knowmix.kg.index import TypeRules, load_kg
from knowmix.kg.stats import graph_stats


def render(stats: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{stats['entities']}[/] entities ({stats['aliases']} aliases, "
                  f"{stats['ambiguous_surfaces']} ambiguous surface forms), [bold]{stats['triples']}[/] triples, "
                  f"{len(stats['relations'])} relations, {len(stats['types'])} types; lines read {stats['lines_read']}")

    def table(title, mapping, cols=("name", "count"), limit=30):
        t = Table(title=title)
        for c in cols:
            t.add_column(c)
        for i, (k, v) in enumerate(mapping.items()):
            if i >= limit:
                t.add_row(f"… {len(mapping) - limit} more", "")
                break
            t.add_row(str(k), str(v))
        console.print(t)

    table("relations", stats["relations"], ("relation", "triples"))
    table("types", stats["types"], ("type", "entities"))
    table("degree distribution", stats["degree"]["distribution"], ("degree", "entities"))
    c = stats["components"]
    console.print(f"connected components (weak): {c['count']}, largest {c['largest']}, singletons {c['singletons']}")
    inf = stats["inferred"]
    console.print(f"types inferred for {inf['entities']} entities {inf['how']}; untyped {stats['untyped_entities']}")
    if inf["roles"]:
        t = Table(title="inferred types: entities and the roles they came from")
        for c in ("type", "rule", "entities", "from roles"):
            t.add_column(c)
        for typ, d in inf["roles"].items():
            roles = ", ".join(f"{r} ({n})" for r, n in list(d["roles"].items())[:4])
            t.add_row(typ, d["rule"], str(d["entities"]), roles + (" …" if len(d["roles"]) > 4 else ""))
        console.print(t)
    hom = stats["homonyms"]
    if hom["count"]:
        console.print(f"[yellow]homonyms across sources[/] (different declared types, kept as distinct entities): {hom['count']}")
        for name, d in list(hom["names"].items())[:20]:
            console.print(f"  {name}: " + ", ".join(f"{t} ({src})" for src, t in d["types"].items()), markup=False,
                          highlight=False)
    if stats["bad_lines"]:
        console.print(f"[yellow]bad lines[/]: {stats['bad_lines']}")
        for line in stats["bad_line_examples"]:
            console.print(f"  {line}", markup=False, highlight=False)
    else:
        console.print("bad lines: none")


def kg_stats_main(argv: list[str]) -> int:
    from knowmix.args import Parser

    ap = Parser("knowmix kg-stats", "Statistics of a knowledge graph.")
    ap.add_argument("--kg", action="append", required=True, help="KG file (.tsv, .jsonl, .nt, .nt.gz); repeatable")
    ap.add_argument("--entities", action="append", default=[], help="entities TSV (name, type, aliases)")
    ap.add_argument("--json", action="store_true", help="print the statistics as JSON")
    ap.add_argument("--min-name-chars", type=int, default=MIN_NAME_CHARS, help="shorter names are junk_name bad lines")
    ap.add_argument("--type-min-support", type=int, default=TypeRules.min_support,
                    help="typed entities a relation role needs before an untyped entity in it takes their type")
    ap.add_argument("--type-min-share", type=float, default=TypeRules.min_share,
                    help="... and the share of all the role's entities they must exceed")
    args = ap.parse_args(argv)
    stats = graph_stats(load_kg(args.kg, args.entities, args.min_name_chars,
                                TypeRules(args.type_min_support, args.type_min_share)))
    if args.json:
        print(json.dumps(stats, ensure_ascii=False, indent=2))
    else:
        render(stats)
    return 0


if __name__ == "__main__":  # the same as `knowmix kg-stats ...`
    from knowmix.cli import main

    sys.exit(main(["kg-stats", *sys.argv[1:]]))
