"""The kg-samples Beam job end to end on the FnApiRunner, over the fixture KGs and the encyclopedia + FinRE docs."""

import csv
import json
import os
import random
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from knowmix.kg.index import load_kg  # noqa: E402
from knowmix.kg.samples import NA  # noqa: E402
from knowmix.errors import UserError  # noqa: E402
from knowmix.manifest import check_counts, open_shard_dir  # noqa: E402
from knowmix.pipelines.kg_samples import kg_samples_main  # noqa: E402
from knowmix.pipelines.opennre import export_opennre, export_opennre_main  # noqa: E402
from tests.kg.helpers import ADMIN, WORLD, encyclopedia_docs, finre_docs, write_docs, write_finre_kg  # noqa: E402

NA_RATIO = 0.3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("kgs")
    docs = write_docs(str(d / "docs"), encyclopedia_docs(drcd=False)[:150] + finre_docs()[:600])
    finre = write_finre_kg(str(d / "finre.tsv"))
    bad = d / "bad.tsv"
    bad.write_text("head\trelation\ttail\n北京\tcapital_of\n上海\tcity_of\t上海\n", encoding="utf-8")
    kgs = [ADMIN, WORLD, finre, str(bad)]
    args = [a for k in kgs for a in ("--kg", k)] + ["--docs", docs, "--na-ratio", str(NA_RATIO), "--seed", "7",
                                                   "--num-shards", "3"]
    outs = []
    # run b: Beam's multi-processing mode with 2 workers; the shards must not change
    for run, beam_flags in (("a", []), ("b", ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"])):
        out = str(d / f"out_{run}")
        assert kg_samples_main(args + ["--output", out] + beam_flags) == 0
        outs.append(out)
    return {"dir": d, "docs": docs, "kgs": kgs, "outs": outs, "args": args}


@pytest.fixture(scope="module")
def result(setup):
    sd = open_shard_dir(setup["outs"][0], kind="knowledge")
    return sd.manifest, sd.read_all().to_pylist()


def test_every_row_keeps_its_invariants(setup, result):
    manifest, rows = result
    kg = load_kg(setup["kgs"])
    by_task = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
        for key in ("head", "tail"):
            if r[key] is not None:
                assert r["text"][r[key]["start"]:r[key]["end"]] == r[key]["name"]
                assert r[key]["name"] in kg.index.get(r[key]["entity_id"]).surfaces
        if r["task"] == "relation":
            rels = sorted(kg.index.relations_between(r["head"]["entity_id"], r["tail"]["entity_id"])) or [NA]
            assert r["relations"] == rels
        elif r["task"] == "substitution":
            for m in r["mentions"]:
                word = m["original"] if m["replacement"] is None else m["replacement"]
                assert r["text"][m["start"]:m["end"]] == word
                if m["replacement"] is not None:
                    cands = kg.index.candidates(m["replacement"])
                    rep = [c for c in cands if kg.index.get(c).name == m["replacement"]]
                    assert rep and kg.index.get(rep[0]).type == m["type"]
                    assert m["replacement"] != m["original"]
        else:
            t = r["triple"]
            assert t["relation"] in kg.index.relations_between(r["head"]["entity_id"], r["tail"]["entity_id"])
    assert set(by_task) == {"relation", "substitution", "triple_mask"}
    rel = by_task["relation"]
    na = sum(1 for r in rel if r["relations"] == [NA])
    assert 0 < na <= NA_RATIO * len(rel)
    assert manifest["knowledge_stats"]["tasks"]["relation"]["na_ratio"] <= NA_RATIO
    assert manifest["knowledge_stats"]["tasks"]["relation"]["na_sampled_out"] > 0
    assert len({r["id"] for r in rows}) == len(rows)


def test_counts_invariant_overall_and_per_task(setup, result):
    manifest, rows = result
    c = manifest["counts"]
    check_counts(c)
    assert c["input"] == c["output"] + sum(c["dropped"].values())
    assert "no_entity" in c["dropped"]
    assert {"no_entity", "one_entity", "na_sampled_out"} <= set(c["by_task"]["relation"]["dropped"])
    assert "no_triple" in c["by_task"]["triple_mask"]["dropped"]
    for task, tc in c["by_task"].items():
        check_counts(tc)
        assert tc["input"] == c["input"]
    assert "na_sampled_out" in c["by_task"]["relation"]["dropped"]
    assert c["samples"]["total"] == len(rows) == sum(s["rows"] for s in manifest["shards"])
    for task in ("relation", "substitution", "triple_mask"):
        assert c["samples"][task] == sum(1 for r in rows if r["task"] == task)
        assert manifest["knowledge_stats"]["tasks"][task]["samples"] == c["samples"][task]
    assert manifest["na_ratio"] <= NA_RATIO and manifest["label_distribution"]["relation"][NA] > 0
    assert manifest["per_relation"]["triple_mask"] and manifest["per_type"]["substitution"]
    k = manifest["knowledge_stats"]
    assert k["tasks"]["relation"]["per_relation"] and k["tasks"]["triple_mask"]["per_relation"]
    assert k["tasks"]["substitution"]["labels"]["replaced"] > 0
    assert k["linking"]["sentences"] + c["dropped"].get("too_long", 0) == c["input"]
    # junk names in the FinRE KG: the number placeholder <N> and F&amp (an HTML reference left of "F&amp;..."),
    # found by reading FinRE's names that have no Han character; counted here with the csv module
    with open(setup["kgs"][2], encoding="utf-8", newline="") as fh:
        junk = sum(1 for r in csv.DictReader(fh, delimiter="\t") if {r["head"], r["tail"]} & {"<N>", "F&amp"})
    assert junk > 0
    assert manifest["knowledge_graph"]["bad_lines"] == {"duplicate_triple": 1, "self_loop": 9, "wrong_column_count": 1,
                                                        "junk_name": junk}
    assert any("bad.tsv:2: wrong_column_count" in x for x in manifest["knowledge_graph"]["bad_line_examples"])


def test_two_runs_give_identical_shards(setup):
    """In-process and multi-processing runs write byte-identical shards and the same counts."""
    a, b = (open_shard_dir(o, kind="knowledge").manifest for o in setup["outs"])
    assert [(s["path"], s["sha256"]) for s in a["shards"]] == [(s["path"], s["sha256"]) for s in b["shards"]]
    assert a["counts"] == b["counts"] and a["knowledge_stats"] == b["knowledge_stats"]


def test_opennre_export(setup, result, tmp_path):
    manifest, rows = result
    assert export_opennre_main([setup["outs"][0], "--output", str(tmp_path)]) == 0
    rel2id = json.load(open(tmp_path / "rel2id.json", encoding="utf-8"))
    assert rel2id[NA] == 0 and sorted(rel2id.values()) == list(range(len(rel2id)))
    n = 0
    for line in open(tmp_path / "train.txt", encoding="utf-8"):
        item = json.loads(line)
        assert set(item) == {"text", "h", "t", "relation"}
        assert item["relation"] in rel2id
        for e in (item["h"], item["t"]):
            assert set(e) == {"name", "id", "pos"}
            s, t = e["pos"]
            assert item["text"][s:t] == e["name"]
        n += 1
    assert n == sum(len(r["relations"]) for r in rows if r["task"] == "relation")


def test_user_errors(setup, tmp_path):
    base = ["--kg", ADMIN, "--docs", setup["docs"], "--output", str(tmp_path / "o")]
    with pytest.raises(UserError, match="--tasks"):
        kg_samples_main(base + ["--tasks", "relation,bogus"])
    with pytest.raises(UserError, match="--na-ratio"):
        kg_samples_main(base + ["--na-ratio", "1.5"])
    with pytest.raises(UserError, match="--no-link-filters: unknown rule"):
        kg_samples_main(base + ["--no-link-filters", "org_prefix,bogus"])
    with pytest.raises(UserError, match="no such file"):
        kg_samples_main(["--kg", str(tmp_path / "missing.tsv")] + base[2:])
    with pytest.raises(UserError, match="manifest"):
        kg_samples_main(["--kg", ADMIN, "--docs", str(tmp_path), "--output", str(tmp_path / "o")])
    with pytest.raises(UserError):
        export_opennre(str(tmp_path), str(tmp_path / "x"))


def test_relation_only_with_short_sentence_limit(setup, tmp_path):
    """Only the relation task: a sentence whose samples were all NA and all sampled out is dropped as
    na_sampled_out at the top level too; sentences over --max-sentence-chars are dropped as too_long."""
    out = str(tmp_path / "rel")
    args = ["--kg", ADMIN, "--kg", WORLD, "--docs", setup["docs"], "--output", out, "--tasks", "relation",
            "--na-ratio", "0.1", "--max-sentence-chars", "60"]
    assert kg_samples_main(args) == 0
    sd = open_shard_dir(out, kind="knowledge")
    c = sd.manifest["counts"]
    check_counts(c)
    assert {"too_long", "na_sampled_out", "one_entity", "no_entity"} <= set(c["dropped"])
    assert c["by_task"]["relation"]["dropped"] == c["dropped"] and list(c["by_task"]) == ["relation"]
    rows = sd.read_all().to_pylist()
    assert rows and {r["task"] for r in rows} == {"relation"}
    assert all(len(r["text"]) <= 60 for r in rows)
    na = sum(1 for r in rows if r["relations"] == [NA])
    assert na <= 0.1 * len(rows)
    assert c["output"] == len({r["id"].rsplit(":", 2)[0] for r in rows})


def _kg_names(path):
    """{entity id: declared type or None} of a fixture KG file, read with the csv module."""
    out = {}
    with open(path, encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            for side in ("head", "tail"):
                if r.get(side):
                    out.setdefault(r[side], r.get(f"{side}_type") or None)
    return out


def test_merged_typed_and_untyped_kgs_stay_apart(setup, result):
    """The issue's merge (typed admin KG + untyped world KG + untyped FinRE company KG), through the Beam job:
    no sample links a junk name, no company carries an administrative type, no substitution crosses KGs."""
    manifest, rows = result
    admin, world, finre = (_kg_names(p) for p in setup["kgs"][:3])
    admin_types = {t for t in admin.values() if t}
    assert admin_types == {"province", "prefecture", "county"}
    companies = set(finre) - set(admin) - set(world)
    han_or_letter = re.compile(r"[\u4e00-\u9fffA-Za-z]")
    spans = [r[k] for r in rows for k in ("head", "tail") if r[k] is not None]
    mentions = [m for r in rows if r["task"] == "substitution" for m in r["mentions"]]
    for name in [s["name"] for s in spans] + [m["original"] for m in mentions]:
        # a placeholder inside a name is fine (奇虎<N>公司 is 奇虎360公司 in FinRE's text); a name of nothing else is not
        rest = name.replace("<N>", "").replace("&amp", "")
        assert len(rest) >= 2 and han_or_letter.search(rest), name
    typed = [(s["entity_id"], s["type"]) for s in spans] + [(m["entity_id"], m["type"]) for m in mentions]
    typed += [(m["replacement_id"], m["replacement_type"]) for m in mentions if m["replacement_id"]]
    company_types = {t for eid, t in typed if eid in companies}
    assert company_types and not company_types & admin_types
    replaced = [m for m in mentions if m["replacement_id"]]
    assert len(replaced) > 20

    def kgs_of(eid):
        return {name for name, ids in (("admin", admin), ("world", world), ("finre", finre)) if eid in ids}

    for m in replaced:
        assert kgs_of(m["entity_id"]) & kgs_of(m["replacement_id"]), m
        assert m["type"] == m["replacement_type"]
    linking = manifest["knowledge_stats"]["linking"]
    assert linking["common_word_rejected"] > 0 and linking["common_word_corroborated"] > 0
    assert linking["org_prefix_rejected"] > 0 and linking["short_alias_rejected"] > 0  # kg.link_filters, counted
    assert manifest["knowledge_graph"]["inferred_types"]


def test_audit_view_of_knowledge_and_docs_outputs(setup, result, tmp_path, capsys):
    """`knowmix stats OUT --samples N --html`: N seeded random rows per task with the spans marked, types and
    where they came from; the same view of a docs output per source kind."""
    from knowmix.stats import audit_samples, stats_main

    manifest, rows = result
    out = setup["outs"][0]
    by_id = {r["id"]: r for r in rows}
    view = audit_samples(out, 3, seed=1)
    assert set(view["groups"]) == {"relation", "substitution", "triple_mask"}
    for task, picked in view["groups"].items():
        assert len(picked) == 3 and view["totals"][task] == sum(1 for r in rows if r["task"] == task)
        for p in picked:
            row = by_id[p["id"]]
            assert row["task"] == task
            for s in p["spans"]:
                assert row["text"][s["start"]:s["end"]] == s["name"]
                assert s["type_source"].startswith(("declared", "inferred"))
    assert audit_samples(out, 3, seed=1) == view
    assert [p["id"] for p in audit_samples(out, 3, seed=2)["groups"]["relation"]] != [
        p["id"] for p in view["groups"]["relation"]]
    page = tmp_path / "report.html"
    assert stats_main([out, "--samples", "2", "--html", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.count("<div class=s>") == 6 and 'title="head"' in text and 'title="replaced"' in text
    terminal = capsys.readouterr().out
    assert "samples" in terminal and "type from" not in terminal
    shown = [s["type_source"] for p in audit_samples(out, 2)["groups"].values() for r in p for s in r["spans"]]
    assert shown and all(src.split(":")[0] in terminal for src in shown)  # e.g. declared / inferred
    docs_view = audit_samples(setup["docs"], 2)
    assert set(docs_view["groups"]) == {"encyclopedia", "news"}
    assert all(len(v) == 2 and v[0]["text"] for v in docs_view["groups"].values())


# ---------------------------------------------------------------------------------------------- the index file


def in_memory_rows(setup, na_ratio: float, seed: int) -> list[dict]:
    """The samples computed without Beam and without the index file: the in-memory KG (load_kg), the linker,
    kg.samples' functions and its in-memory NA selection (select_na), the way the job composes them."""
    from knowmix.kg.link import Linker
    from knowmix.kg.samples import SubstitutionSampler, TASKS, select_na, sentence_samples
    from knowmix.pipelines.kg_samples import doc_sentences

    kg = load_kg(setup["kgs"])
    linker = Linker(kg.index, "rjieba")
    linked = []
    for table in open_shard_dir(setup["docs"], kind="docs").read_all().to_pylist():
        sents = [s for s in doc_sentences(table, 512) if len(s["text"]) <= 512]
        for sent, res in zip(sents, linker.link_document([s["text"] for s in sents])):
            if res.mentions:
                linked.append((sent, res.mentions))
    freq = {}
    for _, mentions in linked:
        for m in mentions:
            freq[m.entity_id] = freq.get(m.entity_id, 0) + 1
    sampler = SubstitutionSampler(kg.index, freq, probability=0.5)
    rows = []
    for sent, mentions in linked:
        rows += sentence_samples(sent["doc_id"], sent["sid"], sent["text"], mentions, kg.index,
                                 kg.index.relations_between, TASKS, sampler, seed)
    return select_na(rows, na_ratio, seed)[0]


def test_rows_equal_the_in_memory_path(setup, result):
    """The job (index file mapped by the workers) gives exactly the rows of the in-memory computation."""
    _, rows = result
    expected = in_memory_rows(setup, NA_RATIO, 7)
    assert len(rows) == len(expected) > 1000
    assert sorted(rows, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])


def test_a_prebuilt_index_gives_the_same_shards(setup, tmp_path, monkeypatch):
    """`knowmix kg-index` once, then kg-samples --kg-index: the same shards as the run that built its own index
    (which leaves no index behind in its output), and that run never parses the whole KG."""
    import knowmix.kg.graph
    import knowmix.kg.index
    from knowmix import kg
    from knowmix.pipelines.kg_index import kg_index_main

    (tmp_path / "idx").mkdir()
    kg_args = [a for k in setup["kgs"] for a in ("--kg", k)]
    assert kg_index_main(kg_args + ["--output", str(tmp_path / "idx")]) == 0
    (index,) = [str(p) for p in (tmp_path / "idx").iterdir()]
    out = str(tmp_path / "out")

    def no_parsing(*args, **kwargs):
        raise AssertionError("the whole KG was parsed")

    monkeypatch.setattr(kg.graph, "load_raw", no_parsing)
    monkeypatch.setattr(kg.index, "load_raw", no_parsing)
    assert kg_samples_main(setup["args"] + ["--output", out, "--kg-index", index]) == 0
    a, b = (open_shard_dir(o, kind="knowledge").manifest for o in (setup["outs"][0], out))
    assert [(s["path"], s["sha256"]) for s in a["shards"]] == [(s["path"], s["sha256"]) for s in b["shards"]]
    assert a["counts"] == b["counts"] and a["knowledge_graph"] == b["knowledge_graph"]
    assert sorted(os.listdir(setup["outs"][0])) == ["manifest.json", "shards"]
    # an index of other KG files is refused, in one line
    with pytest.raises(UserError, match="other KG options"):
        kg_samples_main(["--kg", ADMIN, "--docs", setup["docs"], "--output", str(tmp_path / "o2"), "--kg-index", index])


def test_the_launcher_never_parses_the_kg(setup, tmp_path, monkeypatch):
    """kg-samples without --kg-index on worker processes: the index is built by the kg-index job's worker, so
    the launching process never parses the KG (parsing here is made to fail) and the shards are the same as
    the in-process run's. Failed before: the launcher built the index itself."""
    import knowmix.kg.graph
    import knowmix.kg.index
    from knowmix import kg

    def no_parsing(*args, **kwargs):
        raise AssertionError("the launcher parsed the KG")

    monkeypatch.setattr(kg.graph, "load_raw", no_parsing)
    monkeypatch.setattr(kg.index, "load_raw", no_parsing)
    out = str(tmp_path / "out")
    assert kg_samples_main(setup["args"] + ["--output", out, "--direct_running_mode=multi_processing",
                                            "--direct_num_workers=1"]) == 0
    a, b = (open_shard_dir(o, kind="knowledge").manifest for o in (setup["outs"][0], out))
    assert [(s["path"], s["sha256"]) for s in a["shards"]] == [(s["path"], s["sha256"]) for s in b["shards"]]
    assert a["knowledge_graph"] == b["knowledge_graph"] and a["knowledge_graph"]["bad_lines"]
    assert sorted(os.listdir(out)) == ["manifest.json", "shards"]  # no index, no receipt left behind


def _generated_kg(path: str, n_triples: int, seed: int = 0) -> str:
    """A KG of ``n_triples`` distinct triples between synthetic names (≈0.8 entities per triple)."""
    rng = random.Random(seed)
    chars = "东南西北中华新安平和康泰丰盛永昌兴隆宏远金银山河湖海江天明光"
    names = sorted({"".join(rng.choice(chars) for _ in range(rng.randint(3, 6))) + rng.choice("市县镇村公司集团")
                    for _ in range(int(n_triples * 0.9))})
    seen = set()
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("head\trelation\ttail\n")
        while len(seen) < n_triples:
            h, t = rng.choice(names), rng.choice(names)
            r = rng.choice(("located_in", "partner", "owner", "founder"))
            if h != t and (h, r, t) not in seen:
                seen.add((h, r, t))
                fh.write(f"{h}\t{r}\t{t}\n")
    return path


def test_the_job_graph_does_not_grow_with_the_kg(setup, tmp_path):
    """The serialized pipeline (what a runner such as Dataflow receives) for the 495-line world KG and for a
    generated 50k-triple KG differ by a few KB at most: the index travels as a file path, not in the graph."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from knowmix.pipelines.kg_samples import KgSamplesJob, build

    big = _generated_kg(str(tmp_path / "big.tsv"), 50_000)
    sizes = {}
    for name, kg in (("small", WORLD), ("big", big)):
        out = tmp_path / f"out_{name}"
        out.mkdir()
        p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
        build(p, KgSamplesJob(docs_dir=setup["docs"], kg_paths=[kg], entity_paths=[], out_dir=str(out)))
        sizes[name] = len(p.to_runner_api().SerializeToString())
    entities = len(load_kg([big]).index.entities)
    assert entities > 40_000  # the shipped index grew ~85 bytes per entity: 3.4 MB more here
    assert abs(sizes["big"] - sizes["small"]) < 4096, sizes
