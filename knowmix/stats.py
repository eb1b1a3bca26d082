"""``knowmix stats DIR``: what a stage's output holds, from its manifest and shards.

One report dict, three renderings: a terminal table (rich), ``--json``, and ``--html FILE`` (self-contained,
inline SVG plots: length histograms per source kind, drop reasons, language scores, cluster sizes, scripts).
"""

from __future__ import annotations

import argparse
import html
import io
import json
import os
import random
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from knowmix.errors import UserError
from knowmix import fileio
from knowmix.manifest import DEAD_LETTER_DIR, confined_path, open_shard_dir, read_shard, read_verified_shard

PERCENTILES = (5, 25, 50, 75, 95, 99)


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    return {f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES} | {"mean": float(values.mean())}


def _histogram(values: np.ndarray, bins: int = 20, log: bool = False) -> dict[str, list]:
    if values.size == 0:
        return {"edges": [], "counts": []}
    data = np.log10(np.maximum(values, 1)) if log else values
    counts, edges = np.histogram(data, bins=bins)
    if log:
        edges = 10**edges
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _column(tables: list[pa.Table], name: str) -> pa.ChunkedArray | None:
    cols = [t.column(name) for t in tables if name in t.column_names]
    return pa.chunked_array([c for col in cols for c in col.chunks], type=cols[0].type) if cols else None


def build_report(out_dir: str, verify: bool = True) -> dict[str, Any]:
    """The report of ``out_dir``; ``verify`` (the default) checks every shard's sha256, rows and schema first."""
    shard_dir = open_shard_dir(out_dir, verify=verify)
    manifest = shard_dir.manifest
    tables = list(shard_dir.iter_tables())
    report: dict[str, Any] = {
        "dir": out_dir,
        "kind": manifest["kind"],
        "tool": manifest.get("tool"),
        "shards": len(manifest["shards"]),
        "rows": sum(s["rows"] for s in manifest["shards"]),
        "bytes": sum(s["bytes"] for s in manifest["shards"]),
        "counts": manifest["counts"],
        "verified": verify,
    }
    kind = manifest["kind"]
    if kind == "docs":
        report["per_source_kind"] = _docs_per_kind(tables)
        report["script"] = _script_distribution(tables)
        scores = _column(tables, "lang_score")
        report["lang_score_histogram"] = _histogram(
            scores.to_numpy().astype(float) if scores is not None else np.array([]), bins=20
        )
        by_kind = manifest["counts"].get("by_source_kind", {})
        report["near_duplicate_rate"] = {
            k: (v["dropped"].get("near_duplicate", 0) / v["input"] if v["input"] else 0.0) for k, v in by_kind.items()
        }
        report.update(_quality_and_dropped(out_dir, manifest, tables, verify))
        if manifest.get("cluster_table"):
            report["cluster_sizes"] = _cluster_histogram(out_dir, manifest["cluster_table"], shard_dir.deferred)
        if manifest["counts"].get("id_collisions"):  # ids renamed to keep output ids unique (the first 100)
            report["id_collisions"] = {
                "count": manifest["counts"]["id_collisions"], "renamed": manifest.get("id_collisions", [])
            }
    elif kind == "knowledge":
        task = _column(tables, "task")
        report["per_task"] = dict(Counter(task.to_pylist())) if task is not None else {}
    elif kind in ("pretrain", "knowledge_tokens"):
        ids = _column(tables, "input_ids")
        if ids is not None:
            lengths = pc.list_value_length(ids).to_numpy().astype(float)
            report["sequence_length"] = _percentiles(lengths)
            report["tokens"] = int(lengths.sum())
        if kind == "knowledge_tokens":
            task = _column(tables, "task")
            report["per_task"] = dict(Counter(task.to_pylist())) if task is not None else {}
    for key in ("tokenizer", "knowledge_stats", "label_distribution", "na_ratio", "per_relation", "per_type"):
        if key in manifest:
            report[key] = manifest[key]
    report["dead_letters"] = _dead_letter_summary(out_dir)
    return report


def _quality_and_dropped(out_dir: str, manifest: dict, tables: list[pa.Table], verify: bool) -> dict[str, Any]:
    """``quality_score`` histograms per kind and a few dropped documents per reason (``knowmix.dropped_report``)."""
    from knowmix.dropped_report import dropped_examples, quality_histograms

    result: dict[str, Any] = {}
    histograms = quality_histograms(tables)
    if histograms:
        result["quality_score_histogram"] = histograms
    examples = dropped_examples(out_dir, manifest, verify=verify)
    if examples:
        result["dropped_examples"] = examples
    return result


def _docs_per_kind(tables: list[pa.Table]) -> dict[str, Any]:
    if not tables:
        return {}
    table = pa.concat_tables([t.select(["source_kind", "n_chars"]) for t in tables])
    kinds = table.column("source_kind").to_numpy(zero_copy_only=False)
    lengths = table.column("n_chars").to_numpy().astype(float)
    result = {}
    for kind in sorted(set(kinds)):
        sel = lengths[kinds == kind]
        result[kind] = {
            "rows": int(sel.size),
            "chars": int(sel.sum()),
            "length": _percentiles(sel),
            "length_histogram": _histogram(sel, bins=20, log=True),
        }
    return result


SCRIPTS = ("simplified", "traditional", "mixed", "none")  # pipelines.normalize.SCRIPTS (knowmix/ imports no pipelines)


def _script_distribution(tables: list[pa.Table]) -> dict[str, dict[str, int]]:
    """Rows per script (the ``script`` column: the text's script as read) per source kind and ``all``; empty
    for shards written before the column existed."""
    tables = [t.select(["source_kind", "script"]) for t in tables if "script" in t.column_names]
    if not tables:
        return {}
    groups = pa.concat_tables(tables).group_by(["source_kind", "script"]).aggregate([([], "count_all")])
    result: dict[str, dict[str, int]] = {"all": dict.fromkeys(SCRIPTS, 0)}
    for row in sorted(groups.to_pylist(), key=lambda r: r["source_kind"]):
        script = row["script"] or "none"
        for group in ("all", row["source_kind"]):
            counts = result.setdefault(group, dict.fromkeys(SCRIPTS, 0))
            counts[script] = counts.get(script, 0) + row["count_all"]
    return result


def _cluster_histogram(out_dir: str, entries: list[dict], verify: bool = False) -> dict[str, int]:
    """Clusters by size (a cluster's rows are spread over shards by doc id: count each cluster once);
    ``verify``: check each file against its entry as it is read (a remote output's deferred verification)."""
    clusters: dict[str, int] = {}
    for entry in entries:
        path = confined_path(out_dir, entry["path"], "cluster_table path")
        table = read_verified_shard(path, entry) if verify else read_shard(path)
        clusters.update(zip(table.column("cluster_id").to_pylist(), table.column("cluster_size").to_pylist()))
    sizes = Counter(clusters.values())
    return {str(k): v for k, v in sorted(sizes.items())}


def _dead_letter_summary(out_dir: str, examples: int = 5) -> dict[str, Any]:
    reasons: Counter = Counter()
    first: list[dict] = []
    directory = fileio.join(out_dir, DEAD_LETTER_DIR)
    for path in [fileio.join(directory, n) for n in fileio.list_names(directory) if n.endswith(".jsonl")]:
        try:
            with io.TextIOWrapper(fileio.open_read(path), encoding="utf-8") as fh:  # local or any Beam filesystem
                for n, line in enumerate(fh, 1):
                    try:
                        row = json.loads(line)
                        reason = row["reason"].split(":")[0][:80]
                        example = {k: row.get(k) for k in ("source", "location", "reason")}
                    except (ValueError, TypeError, KeyError, AttributeError):
                        raise UserError(f"{path}:{n}: not a dead-letter row (a JSON object with a reason)") from None
                    reasons[reason] += 1
                    if len(first) < examples:
                        first.append(example)
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: cannot read the dead letters ({exc})") from None
    return {"total": sum(reasons.values()), "reasons": dict(reasons.most_common()), "examples": first}


# ---------------------------------------------------------------------------------------------- rendering


def render_terminal(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    counts = report["counts"]
    console.print(
        f"[bold]{report['dir']}[/bold]  kind={report['kind']}  shards={report['shards']}  rows={report['rows']:,}"
        f"  bytes={report['bytes']:,}" + ("  (checksums verified)" if report["verified"] else "")
    )
    summary = Table(title="accounting: input = output + dead_letter + dropped")
    for col in ("input", "output", "dead_letter", "dropped"):
        summary.add_column(col, justify="right")
    summary.add_row(
        f"{counts['input']:,}", f"{counts['output']:,}", f"{counts['dead_letter']:,}",
        f"{sum(counts['dropped'].values()):,}",
    )
    console.print(summary)
    if counts["dropped"]:
        drops = Table(title="dropped by reason")
        drops.add_column("reason")
        drops.add_column("count", justify="right")
        drops.add_column("share of input", justify="right")
        for reason, n in sorted(counts["dropped"].items(), key=lambda kv: -kv[1]):
            drops.add_row(reason, f"{n:,}", f"{n / max(counts['input'], 1):.1%}")
        console.print(drops)
    groups = next((counts[k] for k in ("by_source_kind", "by_task") if k in counts), None)
    if groups:
        per = Table(title="per source kind" if "by_source_kind" in counts else "per task")
        for col in ("group", "input", "output", "dead_letter", "dropped"):
            per.add_column(col, justify="right" if col != "group" else "left")
        for name, g in groups.items():
            per.add_row(name, f"{g['input']:,}", f"{g['output']:,}", f"{g['dead_letter']:,}", f"{sum(g['dropped'].values()):,}")
        console.print(per)
    if report.get("per_source_kind"):
        lengths = Table(title="document length (characters)")
        for col in ("source kind", "rows", "chars", "p5", "p50", "p95", "p99", "near-dup rate"):
            lengths.add_column(col, justify="right" if col != "source kind" else "left")
        for kind, v in report["per_source_kind"].items():
            L = v["length"]
            lengths.add_row(
                kind, f"{v['rows']:,}", f"{v['chars']:,}", f"{L['p5']:.0f}", f"{L['p50']:.0f}", f"{L['p95']:.0f}",
                f"{L['p99']:.0f}", f"{report['near_duplicate_rate'].get(kind, 0):.2%}",
            )
        console.print(lengths)
    if report.get("script"):
        scripts = Table(title="script of the text as read (t2s converts traditional ones)")
        names = list(report["script"]["all"])
        for col in ("source kind", *names):
            scripts.add_column(col, justify="right" if col != "source kind" else "left")
        for kind, by_script in report["script"].items():
            scripts.add_row(kind, *(f"{by_script.get(name, 0):,}" for name in names))
        console.print(scripts)
    if report.get("cluster_sizes"):
        console.print("near-duplicate cluster sizes: " + ", ".join(f"{k}: {v}" for k, v in report["cluster_sizes"].items()))
    if report.get("id_collisions"):
        c = report["id_collisions"]
        shown = ", ".join(f"{r['id']} ({r['original_id']} at {r['location']})" for r in c["renamed"][:10])
        more = f", … ({c['count'] - 10} more)" if c["count"] > 10 else ""
        console.print(f"id collisions: {c['count']} renamed: {shown}{more}", markup=False)
    if report.get("per_task"):
        console.print("rows per task: " + ", ".join(f"{k} {v:,}" for k, v in sorted(report["per_task"].items())))
    if report.get("sequence_length"):
        s = report["sequence_length"]
        console.print(f"tokens: {report['tokens']:,}; sequence length p50 {s['p50']:.0f}, p95 {s['p95']:.0f}, mean {s['mean']:.1f}")
    for key in ("na_ratio", "label_distribution", "per_relation", "per_type", "knowledge_stats", "tokenizer"):
        if key in report:
            console.print(f"{key}: {json.dumps(report[key], ensure_ascii=False)[:400]}")
    for kind, hist in report.get("quality_score_histogram", {}).items():
        counts_, edges = np.asarray(hist["counts"]), np.asarray(hist["edges"])
        mids = (edges[:-1] + edges[1:]) / 2
        console.print(f"quality_score {kind}: {counts_.sum():,} scored, mean {float((mids * counts_).sum() / max(counts_.sum(), 1)):.2f}")
    if report.get("dropped_examples"):
        from knowmix.dropped_report import terminal_lines

        for line in terminal_lines(report["dropped_examples"]):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    dl = report["dead_letters"]
    if dl["total"]:
        console.print(f"dead letters: {dl['total']} — " + "; ".join(f"{r} ({n})" for r, n in list(dl["reasons"].items())[:8]))


def _svg_bars(labels: list[str], values: list[float], title: str, width: int = 640) -> str:
    if not values:
        return ""
    bar_h, pad, label_w = 18, 4, 180
    height = len(values) * (bar_h + pad) + 30
    top = max(values) or 1
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" font-size="12">',
             f'<text x="0" y="14" font-weight="bold">{html.escape(title)}</text>']
    for i, (label, value) in enumerate(zip(labels, values)):
        y = 24 + i * (bar_h + pad)
        w = (width - label_w - 70) * value / top
        parts.append(f'<text x="0" y="{y + 13}">{html.escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#4e79a7"/>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 13}">{value:,.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_histogram(hist: dict[str, list], title: str, log: bool = False) -> str:
    if not hist.get("counts"):
        return ""
    edges = hist["edges"]
    fmt = (lambda x: f"{x:,.0f}") if log or edges[-1] > 10 else (lambda x: f"{x:.2f}")
    labels = [f"{fmt(a)}–{fmt(b)}" for a, b in zip(edges[:-1], edges[1:])]
    return _svg_bars(labels, hist["counts"], title)


def render_html(report: dict[str, Any]) -> str:
    counts = report["counts"]
    sections = [
        f"<h1>knowmix stats: {html.escape(report['dir'])}</h1>",
        f"<p>kind <b>{report['kind']}</b>, {report['shards']} shards, {report['rows']:,} rows, {report['bytes']:,} bytes.</p>",
        f"<p>input {counts['input']:,} = output {counts['output']:,} + dead letters {counts['dead_letter']:,}"
        f" + dropped {sum(counts['dropped'].values()):,}</p>",
        _svg_bars(list(counts["dropped"]), list(counts["dropped"].values()), "dropped by reason"),
    ]
    for kind, v in report.get("per_source_kind", {}).items():
        sections.append(_svg_histogram(v["length_histogram"], f"document length (chars, log bins): {kind}", log=True))
    if report.get("script"):
        by_script = report["script"]["all"]
        sections.append(_svg_bars(list(by_script), list(by_script.values()), "documents by script (as read)"))
    if report.get("lang_score_histogram"):
        sections.append(_svg_histogram(report["lang_score_histogram"], "language-id score"))
    for kind, hist in report.get("quality_score_histogram", {}).items():
        sections.append(_svg_histogram(hist, f"quality score: {kind}"))
    if report.get("dropped_pages") or report.get("dropped_examples"):
        from knowmix.dropped_report import html_section

        sections.append(html_section(report.get("dropped_pages") or report["dropped_examples"]))
    if report.get("cluster_sizes"):
        cs = report["cluster_sizes"]
        sections.append(_svg_bars([f"size {k}" for k in cs], list(cs.values()), "near-duplicate cluster sizes"))
    if report.get("per_task"):
        pt = report["per_task"]
        sections.append(_svg_bars(list(pt), list(pt.values()), "rows per task"))
    shown = {k: v for k, v in report.items() if k != "dropped_pages"}
    sections.append("<h2>report</h2><pre>" + html.escape(json.dumps(shown, ensure_ascii=False, indent=2)) + "</pre>")
    body = "\n".join(s for s in sections if s)
    return f'<!doctype html><html><head><meta charset="utf-8"><title>knowmix stats</title></head><body style="font-family:sans-serif">{body}</body></html>\n'


def _check_writable_file(path: str, option: str) -> None:
    """Refuse, before any work, a report path that is a directory or whose directory is missing or a file."""
    if os.path.isdir(path):
        raise UserError(f"{option} {path}: is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UserError(f"{option} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{option} {path}: {parent} is not writable")


# ---------------------------------------------------------------------------------------------- audit view: --samples

TYPE_SOURCES = {"declared": "declared", "role_majority": "inferred: majority type of its relation role",
                "role_signature": "inferred: its relation role itself"}


def _pick(keys: list[tuple[str, int, int]], n: int, seed: int, group: str) -> list[tuple[str, int, int]]:
    """``n`` of ``keys`` (id, shard, row), the same for the same output, seed and group."""
    rng = random.Random(f"{seed}\0{group}")
    keys = sorted(keys)
    return sorted(rng.sample(keys, min(n, len(keys))))


def audit_samples(out_dir: str, n: int, seed: int = 0) -> dict[str, Any]:
    """N random rows per task (knowledge output) or per source kind (docs output), seeded: what a person reads to
    judge a batch. Only the grouping column and ids are read for the draw; then just the drawn rows."""
    shard_dir = open_shard_dir(out_dir)
    kind = shard_dir.manifest["kind"]
    column = {"knowledge": "task", "docs": "source_kind"}.get(kind)
    if column is None:
        return {"kind": kind, "groups": {}, "note": f"no sample view for {kind!r} outputs"}
    tables = list(shard_dir.iter_tables())
    by_group: dict[str, list] = {}
    for t, table in enumerate(tables):
        for r, (rid, g) in enumerate(zip(table.column("id").to_pylist(), table.column(column).to_pylist())):
            by_group.setdefault(str(g), []).append((rid, t, r))
    groups = {}
    for g in sorted(by_group):
        groups[g] = [_audit_row(kind, tables[t].slice(r, 1).to_pylist()[0])
                     for _, t, r in _pick(by_group[g], n, seed, g)]
    return {"kind": kind, "by": column, "seed": seed, "per_group": n, "groups": groups,
            "totals": {g: len(v) for g, v in by_group.items()}}


def _span_info(span: dict, role: str) -> dict:
    return {"role": role, "start": span["start"], "end": span["end"], "name": span["name"],
            "entity_id": span["entity_id"], "type": span.get("type"),
            "type_source": TYPE_SOURCES.get(span.get("type_source") or "", span.get("type_source") or "unknown")}


def _audit_row(kind: str, row: dict) -> dict:
    if kind == "docs":
        return {"id": row["id"], "title": row.get("title"), "location": row.get("location"),
                "n_chars": row.get("n_chars"), "lang": row.get("lang"), "lang_score": row.get("lang_score"),
                "text": row["text"]}
    task = row["task"]
    out: dict[str, Any] = {"id": row["id"], "task": task, "text": row["text"], "spans": []}
    if task == "substitution":
        for m in row["mentions"] or []:
            replaced = m.get("replacement") is not None
            out["spans"].append({
                "role": "replaced" if replaced else "kept", "start": m["start"], "end": m["end"],
                "name": m["replacement"] if replaced else m["original"], "original": m["original"],
                "entity_id": m.get("entity_id"), "type": m.get("type"),
                "type_source": TYPE_SOURCES.get(m.get("type_source") or "", m.get("type_source") or "unknown"),
                "replacement_id": m.get("replacement_id"), "replacement_type": m.get("replacement_type")})
        out["label"] = f"{sum(s['role'] == 'replaced' for s in out['spans'])} of {len(out['spans'])} replaced"
    else:
        out["spans"] = [_span_info(row[k], k) for k in ("head", "tail") if row.get(k)]
        out["label"] = (", ".join(row["relations"] or []) if task == "relation"
                        else "{head} —{relation}→ {tail}".format(**row["triple"]) if row.get("triple") else "")
    return out


_STYLE = {"head": "bold red", "tail": "bold blue", "replaced": "reverse magenta", "kept": "underline"}


def _marked(text: str, spans: list[dict], mark) -> str:
    """``text`` with each span wrapped by ``mark(role, piece)``; the rest passed through ``mark(None, piece)``."""
    out, pos = [], 0
    for s in sorted(spans, key=lambda s: s["start"]):
        if s["start"] < pos:  # overlapping spans (head == tail region): leave the later one unmarked
            continue
        out.append(mark(None, text[pos:s["start"]]))
        out.append(mark(s["role"], text[s["start"]:s["end"]]))
        pos = s["end"]
    out.append(mark(None, text[pos:]))
    return "".join(out)


def _span_line(s: dict) -> str:
    if s["role"] == "replaced":
        return (f"replaced: {s['original']} [{s.get('entity_id')}] -> {s['name']} [{s.get('replacement_id')}], "
                f"type {s.get('type')} / {s.get('replacement_type')} ({s['type_source']})")
    return f"{s['role']}: {s['name']} [{s.get('entity_id')}] type {s.get('type')} ({s['type_source']})"


def render_samples_terminal(view: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    if not view["groups"]:
        console.print(view.get("note", "no samples"))
        return
    console.print(f"[bold]samples[/bold]: {view['per_group']} per {view['by']} (seed {view['seed']}); "
                  "[bold red]head[/] [bold blue]tail[/] [reverse magenta]replaced[/] [underline]kept[/]")
    for g, rows in view["groups"].items():
        console.print(f"\n[bold]{view['by']} {escape(g)}[/bold] ({len(rows)} of {view['totals'][g]:,})")
        for row in rows:
            if view["kind"] == "docs":
                head = f"{row['id']}  {row.get('title') or ''}  {row.get('n_chars')} chars, lang {row.get('lang')} {row.get('lang_score')}"
                console.print(f"• {escape(head)}\n  {escape(row['text'][:400])}{'…' if len(row['text']) > 400 else ''}")
                continue
            text = _marked(row["text"], row["spans"], lambda role, piece: escape(piece) if role is None
                           else f"[{_STYLE[role]}]{escape(piece)}[/]")
            console.print(f"• {escape(row['id'])}  label: {escape(row['label'])}\n  {text}")
            for s in row["spans"]:
                console.print("    " + escape(_span_line(s)), highlight=False)


def samples_html(view: dict[str, Any]) -> str:
    """The sample view as an HTML section (spans highlighted, types and where they came from in a table)."""
    if not view["groups"]:
        return f"<h2>samples</h2><p>{html.escape(view.get('note', 'none'))}</p>"
    colors = {"head": "#f4a6a6", "tail": "#a6c8f4", "replaced": "#e0a6f4", "kept": "#e8e8e8"}
    parts = [f"<h2>samples: {view['per_group']} per {html.escape(view['by'])} (seed {view['seed']})</h2>",
             "<p>" + " ".join(f'<mark style="background:{c}">{r}</mark>' for r, c in colors.items()) + "</p>"]
    for g, rows in view["groups"].items():
        parts.append(f"<h3>{html.escape(view['by'])} {html.escape(g)} ({len(rows)} of {view['totals'][g]:,})</h3>")
        for row in rows:
            if view["kind"] == "docs":
                parts.append(f"<div class=s><b>{html.escape(row['id'])}</b> {html.escape(row.get('title') or '')} "
                             f"({row.get('n_chars')} chars, {html.escape(str(row.get('lang')))} {row.get('lang_score')})"
                             f"<p>{html.escape(row['text'])}</p></div>")
                continue
            text = _marked(row["text"], row["spans"], lambda role, piece: html.escape(piece) if role is None else
                           f'<mark style="background:{colors[role]}" title="{role}">{html.escape(piece)}</mark>')
            cells = "".join(
                f"<tr><td>{s['role']}</td><td>{html.escape(s['name'])}</td><td>{html.escape(str(s.get('entity_id')))}"
                + (f" → {html.escape(str(s.get('replacement_id')))}" if s["role"] == "replaced" else "")
                + f"</td><td>{html.escape(str(s.get('type')))}</td><td>{html.escape(s['type_source'])}</td></tr>"
                for s in row["spans"])
            parts.append(f"<div class=s><b>{html.escape(row['id'])}</b> label: <b>{html.escape(row['label'])}</b>"
                         f"<p style='font-size:1.15em'>{text}</p><table border=1 cellpadding=3 style='border-collapse:collapse'>"
                         "<tr><th>span</th><th>name</th><th>entity</th><th>type</th><th>type from</th></tr>"
                         f"{cells}</table></div>")
    return "\n".join(parts)


def stats_main(argv: list[str]) -> int:
    from knowmix.args import Parser

    parser = Parser("knowmix stats", "Inspect a knowmix output directory.")
    parser.add_argument("dir", help="an output directory of any stage (holds manifest.json)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report with plots")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip checking every shard's sha256, row count and schema (on by default)")
    parser.add_argument("--verify", dest="verify", action="store_true", default=True, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, default=0, metavar="N",
                        help="show N random rows per task (knowledge) or per source kind (docs) to judge by eye")
    parser.add_argument("--seed", type=int, default=0, help="which random rows --samples shows")
    args = parser.parse_args(argv)
    if args.html:
        _check_writable_file(args.html, "--html")
    report = build_report(args.dir, verify=args.verify)
    view = audit_samples(args.dir, args.samples, args.seed) if args.samples > 0 else None
    if view is not None:
        report["samples"] = view
    if args.html:
        from knowmix.fileio import write_text
        from knowmix.manifest import read_manifest

        shown = dict(report)
        if report.get("dropped_examples"):  # the HTML pages through more of them
            from knowmix.dropped_report import dropped_examples

            shown["dropped_pages"] = dropped_examples(args.dir, read_manifest(args.dir), per_reason=100)
        page = render_html(shown)
        if view is not None:
            page = page.replace("<h2>report</h2>", samples_html(view) + "\n<h2>report</h2>", 1)
        write_text(args.html, page)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        render_terminal(report)
        if view is not None:
            render_samples_terminal(view)
        if args.html:
            print(f"HTML report: {args.html}")
    return 0
