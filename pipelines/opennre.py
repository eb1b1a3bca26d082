"""``knowmix export-opennre KNOWLEDGE_DIR --output DIR``: relation samples as OpenNRE JSON lines + rel2id.json.

One line per (sample, relation): OpenNRE's sentence-level format takes one relation per line, so a sample whose
pair holds several KG relations gives one line for each (multi-label training should read the shards instead).
``{"text": ..., "h": {"name", "id", "pos": [start, end]}, "t": {...}, "relation": ...}`` with half-open character
spans (``text[pos[0]:pos[1]] == name``), as OpenNRE's character-level Chinese readers expect. ``NA`` is id 0 in
``rel2id.json``, the other relations follow sorted by name. Output files: ``DIR/{split}.txt`` (default split
name ``train``), ``DIR/rel2id.json``.
"""

from __future__ import annotations

import json
import os
import sys

from knowmix.errors import UserError
from knowmix.fileio import write_text
from knowmix.manifest import ContractError, open_shard_dir

NA = "NA"


def opennre_lines(rows) -> list[dict]:
    out = []
    for r in rows:
        if r["task"] != "relation":
            continue
        h, t = r["head"], r["tail"]
        for rel in r["relations"]:
            out.append({
                "text": r["text"],
                "h": {"name": h["name"], "id": h["entity_id"], "pos": [h["start"], h["end"]]},
                "t": {"name": t["name"], "id": t["entity_id"], "pos": [t["start"], t["end"]]},
                "relation": rel,
            })
    return out


def rel2id(relations) -> dict[str, int]:
    names = sorted(set(relations) - {NA})
    return {NA: 0, **{n: i + 1 for i, n in enumerate(names)}}


def export_opennre(knowledge_dir: str, out_dir: str, split: str = "train") -> dict:
    try:
        shard_dir = open_shard_dir(knowledge_dir, kind="knowledge")
    except ContractError as exc:
        raise UserError(str(exc)) from None
    lines: list[str] = []
    relations: set[str] = set()
    for table in shard_dir.iter_tables():
        rel_rows = table.filter(table.column("task").to_numpy(zero_copy_only=False) == "relation")
        for item in opennre_lines(rel_rows.to_pylist()):
            relations.add(item["relation"])
            lines.append(json.dumps(item, ensure_ascii=False))
    mapping = rel2id(relations)
    os.makedirs(out_dir, exist_ok=True)
    write_text(os.path.join(out_dir, f"{split}.txt"), "".join(line + "\n" for line in lines))
    write_text(os.path.join(out_dir, "rel2id.json"), json.dumps(mapping, ensure_ascii=False, indent=1) + "\n")
    return {"lines": len(lines), "relations": len(mapping)}


def export_opennre_main(argv: list[str]) -> int:
    from knowmix.args import Parser

    ap = Parser("knowmix export-opennre", __doc__)
    ap.add_argument("knowledge", help="a knowledge shard directory (knowmix kg-samples output)")
    ap.add_argument("--output", required=True, help="output directory")
    ap.add_argument("--split", default="train", help="name of the JSON-lines file (train -> train.txt)")
    args = ap.parse_args(argv)
    info = export_opennre(args.knowledge, args.output, args.split)
    print(f"export-opennre: {info['lines']} lines, {info['relations']} relations -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # the same as `knowmix export-opennre ...`
    from knowmix.cli import main

    sys.exit(main(["export-opennre", *sys.argv[1:]]))
