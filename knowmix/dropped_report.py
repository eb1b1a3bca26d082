"""What ``knowmix stats`` shows of a docs output's dropped documents and quality scores.

A ``keep_dropped`` clean run lists its ``OUT/dropped/`` shards in the manifest (``dropped_shards``); this module
samples a few of them per reason (seeded, so the same report twice shows the same documents) and renders an
HTML section a person can page through, one document at a time per reason. Also the ``quality_score``
histogram per source kind, where the docs carry that column.
"""

from __future__ import annotations

import html
import json
import os
from typing import Any

import numpy as np
import pyarrow as pa

from knowmix.manifest import read_arrow, verify_shard

MANIFEST_KEY = "dropped_shards"  # pipelines.dropped.MANIFEST_KEY
TEXT_CHARS = 600
FIELDS = ("id", "source_kind", "location", "reason", "survivor_id", "quality_score", "lang", "lang_score", "text")


def dropped_examples(out_dir: str, manifest: dict, per_reason: int = 5, seed: int = 0, verify: bool = False) -> dict:
    """reason -> {"rows": n, "examples": [row, ...]} (at most ``per_reason``, a seeded sample in id order)."""
    entries = manifest.get(MANIFEST_KEY)
    if not entries:
        return {}
    tables = []
    for entry in entries:
        path = os.path.join(out_dir, entry["path"])
        if verify:
            verify_shard(path, entry)
        tables.append(read_arrow(path))
    table = pa.concat_tables(tables)
    reasons = np.asarray(table.column("reason").to_pylist(), dtype=object)
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {}
    for reason in sorted(set(reasons.tolist())):
        rows = np.flatnonzero(reasons == reason)
        pick = np.sort(rng.choice(rows, size=min(per_reason, rows.size), replace=False))
        examples = []
        for row in table.take(pa.array(pick)).to_pylist():
            row = {k: row.get(k) for k in FIELDS}
            if row["text"] and len(row["text"]) > TEXT_CHARS:
                row["text"] = row["text"][:TEXT_CHARS] + "…"
            examples.append(row)
        result[reason] = {"rows": int(rows.size), "examples": examples}
    return result


def quality_histograms(tables: list[pa.Table], bins: int = 20) -> dict[str, dict[str, list]]:
    """source kind -> histogram of its non-null ``quality_score`` values over [0, 1]."""
    tables = [t.select(["source_kind", "quality_score"]) for t in tables if "quality_score" in t.column_names]
    if not tables:
        return {}
    table = pa.concat_tables(tables)
    kinds = np.asarray(table.column("source_kind").to_pylist(), dtype=object)
    scores = np.asarray([np.nan if s is None else s for s in table.column("quality_score").to_pylist()], dtype=float)
    result = {}
    for kind in sorted(set(kinds.tolist())):
        values = scores[(kinds == kind) & ~np.isnan(scores)]
        if values.size:
            counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
            result[kind] = {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
    return result


def terminal_lines(examples: dict, shown: int = 3, width: int = 90) -> list[str]:
    lines = []
    for reason, v in examples.items():
        lines.append(f"dropped: {reason} ({v['rows']:,} rows), e.g.:")
        for row in v["examples"][:shown]:
            text = " ".join((row["text"] or "").split())
            extra = f" (survivor {row['survivor_id']})" if row.get("survivor_id") else ""
            lines.append(f"  {row['id']}{extra}: {text[:width]}")
    return lines


def html_section(examples: dict) -> str:
    """One pager per reason: prev/next buttons over its sampled documents (data inline, a few lines of JS)."""
    if not examples:
        return ""
    data = json.dumps(examples, ensure_ascii=False).replace("</", "<\\/")
    parts = ['<h2>dropped documents (a seeded sample per reason)</h2><div id="dropped-examples">']
    for i, (reason, v) in enumerate(examples.items()):
        parts.append(
            f'<div class="pager" data-reason="{html.escape(reason)}" style="border:1px solid #ccc;margin:8px 0;padding:8px">'
            f"<b>{html.escape(reason)}</b> ({v['rows']:,} rows) "
            f'<button onclick="page({i},-1)">&lt; prev</button> <span id="pos{i}"></span> '
            f'<button onclick="page({i},1)">next &gt;</button><div id="doc{i}" style="white-space:pre-wrap"></div></div>'
        )
    parts.append("</div>")
    parts.append(
        "<script>const DROPPED=" + data + ";const REASONS=Object.keys(DROPPED);const AT=REASONS.map(()=>0);"
        "function esc(s){return String(s??'').replace(/[&<>]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]));}"
        "function show(i){const ex=DROPPED[REASONS[i]].examples;const r=ex[AT[i]];"
        "document.getElementById('pos'+i).textContent=(AT[i]+1)+' / '+ex.length;"
        "document.getElementById('doc'+i).innerHTML='<p><code>'+esc(r.id)+'</code> '+esc(r.source_kind)+' '"
        "+esc(r.location)+(r.survivor_id?' — survivor <code>'+esc(r.survivor_id)+'</code>':'')"
        "+(r.quality_score!=null?' — quality '+r.quality_score.toFixed(3):'')+'</p>'+esc(r.text);}"
        "function page(i,d){const n=DROPPED[REASONS[i]].examples.length;AT[i]=(AT[i]+d+n)%n;show(i);}"
        "REASONS.forEach((_,i)=>show(i));</script>"
    )
    return "".join(parts)
