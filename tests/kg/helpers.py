"""Fixture helpers for the KG tests: a docs shard directory from the encyclopedia + FinRE fixtures, a FinRE KG."""

from __future__ import annotations

import hashlib
import json
import os

import pyarrow as pa

from knowmix.manifest import write_shard_dir
from knowmix.schemas import KIND_SCHEMAS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "corpora", "fixtures")
ADMIN = os.path.join(FIXTURES, "admin_triples_county_up.tsv")
WORLD = os.path.join(FIXTURES, "world_triples.tsv")
COOC = os.path.join(FIXTURES, "kg_text_cooccurrence_wiki.tsv")

# the columns every docs output has (what an older clean wrote): kg-samples must read such docs too
DOCS_SCHEMA = KIND_SCHEMAS["docs"]


def fixture(name: str) -> str:
    return os.path.join(FIXTURES, name)


def _doc(source_kind, location, title, text):
    doc_id = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    return {"id": doc_id, "source_kind": source_kind, "location": location, "url": None, "title": title,
            "text": text, "lang": "zh", "lang_score": 0.99, "n_chars": len(text)}


def encyclopedia_docs(drcd: bool = True) -> list[dict]:
    rows = []
    path = fixture("encyclopedia_cmrc2018_trial.json")
    for i, d in enumerate(json.load(open(path, encoding="utf-8"))):
        rows.append(_doc("encyclopedia", f"{path}#{i}", d["title"], d["context_text"]))
    if drcd:
        import opencc

        cc = opencc.OpenCC("t2s")
        path = fixture("encyclopedia_drcd_dev_first40articles.json")
        for i, a in enumerate(json.load(open(path, encoding="utf-8"))["data"]):
            text = "\n".join(cc.convert(p["context"]) for p in a["paragraphs"])
            rows.append(_doc("encyclopedia", f"{path}#{i}", cc.convert(a["title"]), text))
    return rows


def finre_rows() -> list[tuple[str, str, str, str]]:
    out = []
    for line in open(fixture("finre_valid.txt"), encoding="utf-8"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 4:
            out.append(tuple(p.strip() for p in parts))
    return out


def finre_docs() -> list[dict]:
    seen = {}
    for i, (h, t, r, s) in enumerate(finre_rows()):
        seen.setdefault(s, i)
    return [_doc("news", f"{fixture('finre_valid.txt')}:{i + 1}", None, s) for s, i in seen.items()]


def write_finre_kg(path: str) -> str:
    """FinRE's labelled pairs as a KG TSV (relation 'unknown' = no relation, left out)."""
    seen = set()
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("head\trelation\ttail\n")
        for h, t, r, _ in finre_rows():
            if r != "unknown" and h != t and (h, r, t) not in seen:
                seen.add((h, r, t))
                fh.write(f"{h}\t{r}\t{t}\n")
    return path


def write_docs(out_dir: str, rows: list[dict], shards: int = 2) -> str:
    rows = sorted({r["id"]: r for r in rows}.values(), key=lambda r: r["id"])
    tables = [pa.Table.from_pylist(rows[i::shards], schema=DOCS_SCHEMA) for i in range(shards)]
    write_shard_dir(out_dir, "docs", tables)
    return out_dir
