"""Shared builders for the tokenize tests: docs/knowledge shard dirs from the fixtures and a tiny BERT vocab.

(No tests here: a helper module, named as one so pytest does not collect it.)
"""

from __future__ import annotations

import json
import os
import unicodedata

import pyarrow as pa

from knowmix.manifest import write_shard_dir
from knowmix.schemas import KIND_SCHEMAS

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "corpora", "fixtures")


def news_lines(n: int = 400) -> list[str]:
    with open(os.path.join(FIXTURES, "news_peoples_daily_199801_first400.txt"), encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()][:n]


def cmrc_contexts(n: int = 256) -> list[dict]:
    with open(os.path.join(FIXTURES, "encyclopedia_cmrc2018_trial.json"), encoding="utf-8") as fh:
        return json.load(fh)[:n]


def finre_rows(n: int = 200) -> list[tuple[str, str, str, str]]:
    out = []
    with open(os.path.join(FIXTURES, "finre_valid.txt"), encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 4 and all(parts):
                out.append(tuple(parts))
            if len(out) >= n:
                break
    return out


DOCS_SCHEMA = KIND_SCHEMAS["docs"]  # the columns every docs output has (the shard contract's own)


def docs_rows(n_news_docs: int = 40, n_cmrc: int = 40) -> list[dict]:
    """News lines grouped 10 to a document, plus encyclopedia contexts."""
    rows = []
    lines = news_lines()
    for i in range(n_news_docs):
        chunk = lines[i * 10 : (i + 1) * 10]
        if not chunk:
            break
        text = "\n".join(chunk)
        rows.append({"id": f"news-{i:04d}", "source_kind": "news", "location": f"news.txt:{i * 10 + 1}",
                     "url": None, "title": None, "text": text, "lang": "zh", "lang_score": 0.99, "n_chars": len(text)})
    for c in cmrc_contexts(n_cmrc):
        text = c["context_text"]
        rows.append({"id": f"enc-{c['context_id']}", "source_kind": "encyclopedia", "location": f"cmrc.json#{c['context_id']}",
                     "url": None, "title": c.get("title"), "text": text, "lang": "zh", "lang_score": 0.99, "n_chars": len(text)})
    return rows


def write_docs_dir(path: str, rows: list[dict], n_shards: int = 2) -> str:
    rows = sorted(rows, key=lambda r: str(r["id"] or ""))
    tables = [pa.Table.from_pylist(rows[i::n_shards], schema=DOCS_SCHEMA) for i in range(n_shards)]
    write_shard_dir(path, "docs", tables)
    return path


KNOWLEDGE_SCHEMA = KIND_SCHEMAS["knowledge"]


def _ent(name: str, start: int) -> dict:
    return {"name": name, "entity_id": f"Q:{name}", "type": "ORG", "start": start, "end": start + len(name)}


def knowledge_rows(n: int = 60) -> list[dict]:
    """relation / substitution / triple_mask rows from FinRE lines, spans found in the sentence."""
    rows = []
    names = []
    for k, (head, tail, rel, text) in enumerate(finre_rows(n)):
        hs, ts = text.find(head), text.find(tail)
        if hs < 0 or ts < 0 or (hs < ts + len(tail) and ts < hs + len(head)):
            continue
        names.append(head)
        base = {"doc_id": f"finre-{k}", "relations": None, "mentions": None, "triple": None, "head": None, "tail": None}
        rows.append({**base, "id": f"rel-{k:04d}", "task": "relation", "text": text, "head": _ent(head, hs),
                     "tail": _ent(tail, ts), "relations": ["NA" if rel == "unknown" else rel]})
        rows.append({**base, "id": f"tri-{k:04d}", "task": "triple_mask", "text": text, "head": _ent(head, hs),
                     "tail": _ent(tail, ts), "triple": {"head": head, "relation": rel, "tail": tail}})
        # substitution: the head replaced by another row's head, the tail kept
        other = names[-2] if len(names) > 1 else tail
        if other != head and ts > hs:  # keep it simple: head before tail
            new = text[:hs] + other + text[hs + len(head):]
            shift = len(other) - len(head)
            rows.append({**base, "id": f"sub-{k:04d}", "task": "substitution", "text": new, "mentions": [
                {"start": hs, "end": hs + len(other), "original": head, "replacement": other, "type": "ORG"},
                {"start": ts + shift, "end": ts + shift + len(tail), "original": tail, "replacement": None, "type": "ORG"},
            ]})
    return rows


def write_knowledge_dir(path: str, rows: list[dict]) -> str:
    write_shard_dir(path, "knowledge", [pa.Table.from_pylist(sorted(rows, key=lambda r: r["id"]), schema=KNOWLEDGE_SCHEMA)])
    return path


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2FA1F


def write_bert_vocab(path: str, texts: list[str], lowercase: bool = True, n_unused: int = 10) -> str:
    """A BERT-Chinese-like vocab.txt: [PAD], [unused0..], [UNK] [CLS] [SEP] [MASK], the fixture characters
    (CJK as whole tokens; every other character also as a ##piece), a few whole Latin words."""
    chars = set()
    for t in texts:
        t = t.lower() if lowercase else t
        t = "".join(c for c in unicodedata.normalize("NFD", t) if unicodedata.category(c) != "Mn") if lowercase else t
        chars.update(c for c in t if not c.isspace() and unicodedata.category(c)[0] != "C")
    toks = ["[PAD]", *[f"[unused{i}]" for i in range(n_unused)], "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ordered = sorted(chars)
    toks += ordered
    toks += [f"##{c}" for c in ordered if not _is_cjk(c)]
    toks += ["the", "news", "oled", "##ed", "##ing"]
    seen, out = set(), []
    for t in toks:
        if t not in seen:
            seen.add(t)
            out.append(t)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(out) + "\n")
    return path


def all_fixture_texts() -> list[str]:
    return [r["text"] for r in docs_rows(40, 256)] + [r[3] for r in finre_rows(2000)] + [r[2] for r in finre_rows(2000)]
