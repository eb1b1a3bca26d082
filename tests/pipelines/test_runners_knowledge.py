"""kg-samples, then tokenize (docs and knowledge), on a real distributed Beam runner (Dask): the same shards,
counts, dead letters and relations.json as the local FnApiRunner.

Beam 2.77's Dask runner mixes tagged outputs, only computes what the pipeline's last step depends on, and
gives a global combine one value per partition; these runs cover each of those paths in both jobs (NA
down-sampling and stats in kg-samples, dead letters and relation names in tokenize).
"""

from __future__ import annotations

import json
import os

import pytest

from knowmix.manifest import check_counts, open_shard_dir
from knowmix.pipelines.kg_samples import kg_samples_main
from knowmix.pipelines.tokenize import tokenize_main
from tests.kg.helpers import ADMIN, WORLD, encyclopedia_docs, finre_docs, write_docs, write_finre_kg
from tests.pipelines.dask_cluster import dask_runner_flags
from tests.pipelines.helpers_tokenize import all_fixture_texts, docs_rows, write_bert_vocab, write_docs_dir



@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("knowledge_runners")
    kg_docs = write_docs(str(d / "kg_docs"), encyclopedia_docs(drcd=False)[:12] + finre_docs()[:120])
    finre = write_finre_kg(str(d / "finre.tsv"))
    rows = docs_rows(6, 8)
    rows.append({**rows[0], "id": "zz-empty", "text": "   \n "})  # no tokens: dropped
    rows.append({**rows[0], "id": None})  # no id: a dead letter
    tok_docs = write_docs_dir(str(d / "tok_docs"), rows, n_shards=2)
    vocab = write_bert_vocab(str(d / "bert" / "vocab.txt"), all_fixture_texts())
    return {"dir": d, "kg_docs": kg_docs, "kgs": [ADMIN, WORLD, finre], "tok_docs": tok_docs, "vocab": vocab}


def run_jobs(inputs, name: str, beam_args: list[str]) -> dict:
    """kg-samples, then tokenize of its output and of the docs; the three output directories."""
    d = inputs["dir"]
    out = {k: str(d / name / k) for k in ("knowledge", "ktok", "pretrain")}
    kg_args = [a for k in inputs["kgs"] for a in ("--kg", k)]
    # --na-ratio 0.2: these documents give 30% NA (kg.link_filters links fewer false mentions), so 0.2 cuts some
    assert kg_samples_main(kg_args + ["--docs", inputs["kg_docs"], "--output", out["knowledge"], "--na-ratio", "0.2",
                                      "--seed", "3", "--num-shards", "3", *beam_args]) == 0
    tok = ["--tokenizer", f"wordpiece:{inputs['vocab']}", "--num-shards", "2"]
    assert tokenize_main(["--input", out["knowledge"], "--output", out["ktok"], "--max-seq-len", "128", *tok,
                          *beam_args]) == 0
    assert tokenize_main(["--input", inputs["tok_docs"], "--output", out["pretrain"], "--max-seq-len", "64",
                          "--pack-groups", "3", *tok, *beam_args]) == 0
    return out


def read(path: str) -> str | None:
    return open(path, encoding="utf-8").read() if os.path.exists(path) else None


@pytest.fixture(scope="module")
def runs(inputs):
    pytest.importorskip("distributed")
    local = run_jobs(inputs, "local", [])
    with dask_runner_flags(npartitions=4) as flags:
        dask = run_jobs(inputs, "dask", flags)
    return local, dask


@pytest.mark.parametrize("step,kind", [("knowledge", "knowledge"), ("ktok", "knowledge_tokens"), ("pretrain", "pretrain")])
def test_dask_runner_writes_the_same_outputs_as_the_local_runner(runs, step, kind):
    local, dask = (open_shard_dir(r[step], kind=kind) for r in runs)  # checksums and row counts verify
    a, b = local.manifest, dask.manifest
    assert a["shards"] and [s["rows"] for s in a["shards"]] != [0] * len(a["shards"])
    assert b["shards"] == a["shards"]  # paths, rows, bytes, sha256: byte-identical shards
    check_counts(a["counts"])
    assert b["counts"] == a["counts"]
    for key in ("knowledge_stats", "na_ratio", "label_distribution", "per_relation", "per_type", "relations", "tokenizer"):
        assert b.get(key) == a.get(key), key
    for extra in ("relations.json", os.path.join("dead_letter", "part-00000.jsonl")):
        assert read(os.path.join(runs[1][step], extra)) == read(os.path.join(runs[0][step], extra)), extra


def test_the_runs_cover_every_branch(runs):
    """NA samples were cut at the quota, tokenize saw dead letters and relation names: the paths the Dask
    runner gets wrong without the workarounds were all taken."""
    local, dask = runs
    k = open_shard_dir(dask["knowledge"], kind="knowledge").manifest
    assert k["counts"]["by_task"]["relation"]["dropped"].get("na_sampled_out", 0) > 0
    assert all(k["counts"]["samples"][t] > 0 for t in ("relation", "substitution", "triple_mask"))
    assert 0 < k["na_ratio"] <= 0.3 and k["knowledge_stats"]["linking"]["sentences"] > 0
    p = open_shard_dir(dask["pretrain"], kind="pretrain").manifest
    assert p["counts"]["dead_letter"] == 1 and p["counts"]["dropped"] == {"no_tokens": 1}
    dead = read(os.path.join(dask["pretrain"], "dead_letter", "part-00000.jsonl"))
    assert dead and json.loads(dead.splitlines()[0])["reason"] == "missing_id_or_text"
    relations = json.loads(read(os.path.join(dask["ktok"], "relations.json")))
    assert relations[0] == "NA" and len(relations) > 1
