"""The entity index file (kg.index_file): the same lookups and the same links as the in-memory EntityIndex."""

import itertools
import os
import random
import subprocess
import sys

import pytest

from knowmix.kg.index import TypeRules, load_kg
from knowmix.kg.index_file import MappedIndex, build_index_file, read_header
from knowmix.kg.link import Linker, split_sentences
from tests.kg.helpers import ADMIN, WORLD, encyclopedia_docs, finre_docs, write_finre_kg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def kgs(tmp_path_factory):
    d = tmp_path_factory.mktemp("kgi")
    paths = [ADMIN, WORLD, write_finre_kg(str(d / "finre.tsv"))]
    kg = load_kg(paths)
    path = build_index_file(paths, [], str(d), 2, TypeRules())
    return {"dir": d, "paths": paths, "kg": kg, "index": kg.index.without_relations(), "file": path}


def test_every_lookup_matches_the_in_memory_index(kgs):
    ix, mapped = kgs["index"], MappedIndex(kgs["file"])
    assert len(mapped.entities) == len(ix.entities) and list(mapped.entities) == list(ix.entities)
    for eid, e in ix.entities.items():
        assert mapped.get(eid) == e and eid in mapped.entities
    assert dict(mapped.surface_to_ids.items()) == ix.surface_to_ids
    assert all(mapped.candidates(s) == ix.candidates(s) for s in ix.surface_to_ids)
    assert mapped.candidates("不是实体的词") == () and "不是实体的词" not in mapped.entities
    assert len(mapped.neighbours) == len(ix.neighbours)
    rng = random.Random(0)
    ids = sorted(ix.entities)
    pairs = list(ix.neighbours) + [tuple(rng.sample(ids, 2)) for _ in range(3000)]
    for a, b in pairs:
        assert mapped.connected(a, b) == ix.connected(a, b) == mapped.connected(b, a)
    for a, b in itertools.islice(pairs, 500):
        assert mapped.is_alias_of(a, b) == ix.is_alias_of(a, b)
    assert mapped.inferred == ix.inferred and mapped.inferred_roles == ix.inferred_roles
    assert mapped.renames() == kgs["kg"].raw.renames


def test_header_figures_and_content_address(kgs, tmp_path):
    kg = kgs["kg"]
    meta = read_header(kgs["file"])["meta"]
    fig = meta["knowledge_graph"]
    assert fig["entities"] == len(kg.index.entities) and fig["triples"] == len(kg.triples)
    assert fig["bad_lines"] == kg.problem_counts() and fig["homonyms"] == kg.homonyms()
    assert meta["params"]["kg"] == kgs["paths"]
    # the same KG gives the same file, named by its content; another KG another name
    again = build_index_file(kgs["paths"], [], str(tmp_path), 2, TypeRules())
    assert os.path.basename(again) == os.path.basename(kgs["file"])
    assert open(again, "rb").read() == open(kgs["file"], "rb").read()
    other = build_index_file(kgs["paths"][:2], [], str(tmp_path), 2, TypeRules())
    assert other != again
    # compact: well under the 300 bytes per surface form (strings included)
    assert os.path.getsize(kgs["file"]) < 300 * len(kg.index.surface_to_ids)


@pytest.mark.parametrize("segmenter", ["rjieba", "jieba"])
def test_linking_through_the_file_gives_the_same_mentions(kgs, segmenter):
    sents = []
    for d in encyclopedia_docs(drcd=False)[:40] + finre_docs()[:300]:
        sents.append([d["text"][s:e] for s, e in split_sentences(d["text"])])
    a = Linker(kgs["index"], segmenter)
    b = Linker(MappedIndex(kgs["file"]), segmenter)
    n = 0
    for doc in sents:
        ra, rb = a.link_document(doc), b.link_document(doc)
        assert [r.__dict__ for r in ra] == [r.__dict__ for r in rb]
        n += sum(len(r.mentions) for r in ra)
    assert n > 500


def test_kg_index_command(kgs, tmp_path):
    out = tmp_path / "idx"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": ROOT}
    args = [sys.executable, "-m", "knowmix.cli", "kg-index", *(a for p in kgs["paths"] for a in ("--kg", p)),
            "--output", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    path = done.stdout.strip()
    assert os.path.dirname(path) == str(out) and os.path.basename(path) == os.path.basename(kgs["file"])
    bad = subprocess.run(args[:5] + [str(tmp_path / "missing.tsv"), "--output", str(out)], capture_output=True,
                         text=True, env=env, cwd=ROOT)
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_kg_stats_reads_an_index_header_without_parsing(kgs, tmp_path, monkeypatch, capsys):
    """`kg-stats --kg-index FILE`: the figures the kg-index step stored agree with kg-stats' own count over the
    parsed graph (networkx, another code path); the KG is not parsed (parsing is made to fail)."""
    import json

    from knowmix import kg
    import knowmix.kg.cli
    from knowmix.errors import UserError
    from knowmix.kg.cli import kg_stats_main

    bad = tmp_path / "bad.tsv"  # two bad lines: a missing column, a self-loop
    bad.write_text("head\trelation\ttail\n北京\tcapital_of\n上海\tcity_of\t上海\n", encoding="utf-8")
    paths = kgs["paths"] + [str(bad)]
    assert kg_stats_main([a for p in paths for a in ("--kg", p)] + ["--json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    index = build_index_file(paths, [], str(tmp_path), 2, TypeRules())

    def no_parsing(*args, **kwargs):
        raise AssertionError("the KG was parsed")

    monkeypatch.setattr(kg.index, "load_raw", no_parsing)
    monkeypatch.setattr(kg.cli, "load_kg", no_parsing)
    assert kg_stats_main(["--kg-index", index, "--json"]) == 0
    stored = json.loads(capsys.readouterr().out)
    assert parsed["bad_lines"]["wrong_column_count"] == 1  # the planted line (the fixtures hold other bad lines)
    for key in ("entities", "triples", "bad_lines", "homonyms", "sources"):
        assert stored[key] == parsed[key], key
    assert stored["relations"] == len(parsed["relations"])
    assert kg_stats_main(["--kg-index", index]) == 0
    assert f"bad lines: {sum(parsed['bad_lines'].values())} " in capsys.readouterr().out
    with pytest.raises(UserError, match="not a knowmix KG index"):
        kg_stats_main(["--kg-index", str(bad)])


def test_a_user_error_in_a_worker_process_is_one_line(kgs, tmp_path):
    """An entities file without its name column is found by the kg-index worker; on worker processes only the
    text of the worker's traceback comes back: still a one-line error and exit 2 from the launcher (failed
    before: the launcher's RuntimeError traceback, exit 1). Beam's SDK worker itself prints the failed bundle's
    traceback to its stderr (sdk_worker._execute, unconditionally): that text comes first. An unknown KG format
    is found by the launcher, from the name."""
    entities = tmp_path / "entities.tsv"
    entities.write_text("title\ttype\n北京\tcity\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": ROOT}
    args = [sys.executable, "-m", "knowmix.cli", "kg-index", "--kg", kgs["paths"][0], "--entities", str(entities),
            "--output", str(tmp_path), "--direct_running_mode=multi_processing", "--direct_num_workers=1"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("knowmix kg-index: error: ") and "lacks required column name" in last, last
    assert "RuntimeError" not in done.stderr  # the launcher's own exception is not shown
    csv = tmp_path / "kg.csv"
    csv.write_text("a,b,c\n", encoding="utf-8")
    done = subprocess.run(args[:5] + [str(csv), "--output", str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    assert done.returncode == 2 and "unknown knowledge-graph format" in done.stderr and "Traceback" not in done.stderr
