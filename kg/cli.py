"""``knowmix kg-stats --kg FILE [--kg FILE ...] [--entities FILE] [--json]``, or ``--kg-index FILE``."""

from __future__ import annotations

import json
import sys

from knowmix.kg.graph import MIN_NAME_CHARS
from knowmix.kg.index import TypeRules, load_kg
from knowmix.kg.stats import graph_stats
from knowmix.errors import UserError


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


def index_figures(path: str, as_json: bool) -> int:
    """``kg-stats --kg-index FILE``: the KG figures in an index file's header (entities, triples, relations,
    inferred types, homonyms, bad lines), read without parsing the KG (no degree or component figures: those
    need the whole graph in memory)."""
    from knowmix.kg.index_file import read_header

    try:
        header = read_header(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"--kg-index: {path}: {exc}") from None
    figures = {"index": path, "params": header["meta"].get("params", {}), **header["meta"]["knowledge_graph"]}
    if as_json:
        print(json.dumps(figures, ensure_ascii=False, indent=2))
        return 0
    from rich.console import Console

    console = Console()
    console.print(f"[bold]{figures['entities']}[/] entities, [bold]{figures['triples']}[/] triples, "
                  f"{figures['relations']} relations (from {', '.join(figures['sources'])})", highlight=False)
    console.print(f"types inferred: {figures['types_inferred']}", highlight=False)
    hom = figures["homonyms"]
    console.print(f"homonyms across sources: {hom.get('count', 0)}", highlight=False)
    bad = figures["bad_lines"]
    console.print(f"bad lines: {sum(bad.values())} {json.dumps(bad, ensure_ascii=False)}" if bad else "bad lines: none",
                  highlight=False)
    for line in figures["bad_line_examples"][:20]:
        console.print(f"  {line}", markup=False, highlight=False)
    return 0


def kg_stats_main(argv: list[str]) -> int:
    from knowmix.args import Parser

    ap = Parser("knowmix kg-stats", "Statistics of a knowledge graph.")
    ap.add_argument("--kg", action="append", default=[], help="KG file (.tsv, .jsonl, .nt, .nt.gz); repeatable")
    ap.add_argument("--kg-index", metavar="FILE",
                    help="print the figures stored in an index file's header instead (knowmix kg-index computed them "
                         "on a worker; nothing is parsed here: for KGs too large for this machine's memory)")
    ap.add_argument("--entities", action="append", default=[], help="entities TSV (name, type, aliases)")
    ap.add_argument("--json", action="store_true", help="print the statistics as JSON")
    ap.add_argument("--min-name-chars", type=int, default=MIN_NAME_CHARS, help="shorter names are junk_name bad lines")
    ap.add_argument("--type-min-support", type=int, default=TypeRules.min_support,
                    help="typed entities a relation role needs before an untyped entity in it takes their type")
    ap.add_argument("--type-min-share", type=float, default=TypeRules.min_share,
                    help="... and the share of all the role's entities they must exceed")
    args = ap.parse_args(argv)
    if args.kg_index:
        return index_figures(args.kg_index, args.json)
    if not args.kg:
        raise UserError("give --kg FILE (repeatable) or --kg-index FILE")
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
