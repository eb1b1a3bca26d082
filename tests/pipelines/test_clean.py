"""The clean job end to end on the bundled fixture corpora, on Beam's local runner."""

from __future__ import annotations

import gzip
import json
import os
import shutil

import pyarrow as pa
import pytest

from knowmix.cli import main as knowmix
from knowmix.demo import demo_job_toml, fixture
from knowmix.manifest import ContractError, open_shard_dir, read_arrow
from knowmix.schemas import DOCS_SCHEMA
from knowmix.pipelines.doc_keys import shard_of
from knowmix.pipelines.minhash import text_jaccard


def run_clean(tmp_path, *args) -> int:
    return knowmix(["clean", *args])


@pytest.fixture(scope="module")
def demo_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    job = root / "job.toml"
    job.write_text(demo_job_toml(str(root / "docs")), encoding="utf-8")
    assert knowmix(["clean", "--config", str(job)]) == 0
    return root


def fixture_record_counts() -> dict[str, int]:
    """Input records per source kind of the demo job, counted without the readers: JSON articles/records,
    non-blank lines, CSV rows (the csv module), one HTML page."""
    import csv

    cmrc = json.load(open(fixture("encyclopedia_cmrc2018_trial.json"), encoding="utf-8"))
    drcd = json.load(open(fixture("encyclopedia_drcd_dev_first40articles.json"), encoding="utf-8"))["data"]
    with open(fixture("news_peoples_daily_199801_first400.txt"), encoding="utf-8") as fh:
        news = sum(1 for line in fh if line.strip())
    with open(fixture("qa_medical_toyhom_300.gbk.csv"), encoding="gb18030", newline="") as fh:
        qa = sum(1 for _ in csv.reader(fh)) - 1  # less the header
    return {"encyclopedia": len(cmrc) + len(drcd), "news": news, "qa": qa, "web": 1}


def test_manifest_accounts_for_every_record(demo_job):
    d = open_shard_dir(str(demo_job / "docs"), kind="docs")
    counts = d.manifest["counts"]
    expected = fixture_record_counts()
    assert expected == {"encyclopedia": 296, "news": 400, "qa": 300, "web": 1}
    assert counts["input"] == sum(expected.values())
    by_kind = counts["by_source_kind"]
    assert {kind: g["input"] for kind, g in by_kind.items()} == expected
    # output: the rows actually in the shards; dead letters: the lines actually in the dead-letter file
    rows = d.read_all().to_pylist()
    assert counts["output"] == len(rows) == len({r["id"] for r in rows})
    for kind, g in by_kind.items():
        assert g["output"] == sum(1 for r in rows if r["source_kind"] == kind) > 0, kind
    dead_file = demo_job / "docs" / "dead_letter" / "part-00000.jsonl"
    dead = dead_file.read_text(encoding="utf-8").splitlines() if dead_file.exists() else []
    assert counts["dead_letter"] == len(dead)
    assert counts["id_collisions"] == 0
    assert [(f["name"], f["type"]) for f in d.manifest["schema"]] == [(f.name, str(f.type)) for f in DOCS_SCHEMA]
    assert d.manifest["tool"]["name"] == "knowmix" and "clean" in d.manifest["command"]


def test_shards_are_hash_partitioned_and_sorted_by_id(demo_job):
    d = open_shard_dir(str(demo_job / "docs"), kind="docs")
    n = len(d.manifest["shards"])
    seen = set()
    for i, path in enumerate(d.shard_paths):
        ids = read_arrow(path).column("id").to_pylist()
        assert ids == sorted(ids)
        index = int(os.path.basename(path).split("-")[1])
        assert all(shard_of(x, int(os.path.basename(path).split("-of-")[1][:5])) == index for x in ids)
        seen.update(ids)
    assert len(seen) == d.manifest["counts"]["output"]
    assert n >= 1


def test_documents_are_normalised_and_chinese(demo_job):
    table = open_shard_dir(str(demo_job / "docs")).read_all()
    rows = table.to_pylist()
    assert all(r["lang"] == "zh" and r["lang_score"] > 0.5 for r in rows)
    assert all(r["n_chars"] == len(r["text"]) for r in rows)
    texts = "\n".join(r["text"] for r in rows if r["source_kind"] == "encyclopedia")
    # DRCD is Traditional Chinese: OpenCC t2s turned it Simplified
    assert "欧洲" in texts and "歐洲" not in texts
    news = [r for r in rows if r["source_kind"] == "news"]
    assert not any("１９９８" in r["text"] for r in news)  # full-width digits -> ASCII
    assert any("1998" in r["text"] for r in news)
    qa = [r for r in rows if r["source_kind"] == "qa"]
    assert any("高血压" in r["text"] for r in qa)  # the GBK csv decoded right


def test_rerun_multiprocessing_gives_identical_shards(demo_job, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(demo_job_toml(str(tmp_path / "docs")), encoding="utf-8")
    args = ["clean", "--config", str(job), "--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]
    assert knowmix(args) == 0
    first = open_shard_dir(str(demo_job / "docs")).manifest
    second = open_shard_dir(str(tmp_path / "docs")).manifest
    assert first["shards"] == second["shards"]
    assert first["counts"] == second["counts"]


def test_a_shard_whose_checksum_differs_is_refused(demo_job, tmp_path, capsys):
    copy = tmp_path / "docs"
    shutil.copytree(demo_job / "docs", copy)
    d = open_shard_dir(str(copy))
    path = d.shard_paths[0]
    table = read_arrow(path)
    from knowmix.manifest import write_table

    write_table(path, table.slice(1))  # a valid Arrow file, one row short, different bytes
    with pytest.raises(ContractError, match="sha256"):
        open_shard_dir(str(copy))
    assert knowmix(["stats", str(copy), "--verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256" in err[0] and path in err[0]


def test_stats_table_json_and_html(demo_job, tmp_path, capsys):
    report_file = tmp_path / "report.html"
    assert knowmix(["stats", str(demo_job / "docs"), "--json", "--html", str(report_file)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "docs"
    assert set(report["per_source_kind"]) == {"encyclopedia", "news", "qa", "web"}
    assert report["per_source_kind"]["encyclopedia"]["length"]["p50"] > 100
    html = report_file.read_text(encoding="utf-8")
    assert html.count("<svg") >= 4 and "dropped by reason" in html
    assert knowmix(["stats", str(demo_job / "docs")]) == 0
    out = capsys.readouterr().out
    assert "accounting" in out and "encyclopedia" in out


def test_exact_duplicates_keep_one_survivor_by_source_priority(tmp_path):
    text = json.load(open(fixture("encyclopedia_cmrc2018_trial.json"), encoding="utf-8"))[0]["context_text"]
    (tmp_path / "web.jsonl").write_text(
        json.dumps({"id": "w1", "text": text}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (tmp_path / "enc.jsonl").write_text(
        json.dumps({"id": "e9", "text": text}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (tmp_path / "news.jsonl").write_text(
        "".join(json.dumps({"id": f"n{i}", "text": text}, ensure_ascii=False) + "\n" for i in range(2)),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    rc = knowmix(
        ["clean", "--source", f"web:jsonl={tmp_path / 'web.jsonl'}", "--source", f"encyclopedia={tmp_path / 'enc.jsonl'}",
         "--source", f"news={tmp_path / 'news.jsonl'}", "--output", str(out), "--no-near-dedup"]
    )
    assert rc == 0
    d = open_shard_dir(str(out))
    rows = d.read_all().to_pylist()
    assert len(rows) == 1 and rows[0]["source_kind"] == "encyclopedia" and "enc.jsonl" in rows[0]["location"]
    assert d.manifest["counts"]["dropped"] == {"exact_duplicate": 3}


BAD_INPUTS = {
    # file name -> (bytes, expected substring of a dead-letter reason)
    "bad_utf8.jsonl": (
        '{"text": "这是一段正常的中文文本，用来检查坏字节不会影响其他记录。"}\n'.encode() + b'{"text": "\xff\xfe\xfa bad"}\n',
        "utf",
    ),
    "malformed.jsonl": (b'{"text": "ok"\n', "json"),
    "missing_field.jsonl": (b'{"title": "no text here"}\n', "text"),
    "empty.txt": (b"", "empty"),
    "junk.txt": (bytes(range(256)) * 64, "binary"),
}


def test_bad_input_becomes_dead_letters_and_the_rest_goes_on(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, (data, _) in BAD_INPUTS.items():
        (src / name).write_bytes(data)
    good = "".join(
        json.dumps({"text": f"第{i}条：人民日报社论指出，改革开放以来我国经济持续快速发展，人民生活水平显著提高。"
                    "各地区各部门认真贯彻落实中央的决策部署，推动经济结构调整，城乡居民收入稳步增长。"
                    "社会各项事业全面进步，民主法制建设不断加强，精神文明建设取得新的成就。"}, ensure_ascii=False) + "\n"
        for i in range(5)
    )
    gz = gzip.compress(good.encode("utf-8"))
    (src / "truncated.jsonl.gz").write_bytes(gz[: len(gz) * 2 // 3])
    (src / "good.jsonl").write_text(good, encoding="utf-8")
    (src / "wrong_fields.csv").write_text(
        "id,text\n1,这是一行正确的数据，包含足够多的中文字符用来通过检查。\n2,多,了,字段\n", encoding="utf-8"
    )
    (src / "nobody.html").write_text("<html><head><title>x</title></head></html>", encoding="utf-8")
    out = tmp_path / "out"
    rc = knowmix(
        ["clean", "--source", f"news:jsonl={src}/*.jsonl*", "--source", f"news:txt={src}/*.txt",
         "--source", f"qa:csv={src}/*.csv", "--source", f"web:html={src}/*.html", "--output", str(out),
         "--no-near-dedup"]
    )
    assert rc == 0
    d = open_shard_dir(str(out))
    counts = d.manifest["counts"]
    # one csv data row per line after the header; one html page
    assert counts["by_source_kind"]["qa"]["input"] == 2 and counts["by_source_kind"]["web"]["input"] == 1
    dead = [json.loads(line) for line in (out / "dead_letter" / "part-00000.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(dead) == counts["dead_letter"]
    by_file = {}
    for row in dead:
        by_file.setdefault(os.path.basename(row["location"].split(":")[0].split("#")[0]), []).append(row["reason"])
    for name, (_, expected) in BAD_INPUTS.items():
        assert name in by_file, (name, by_file)
        assert any(expected.lower() in r.lower() for r in by_file[name]), (name, by_file[name])
    for name in ("truncated.jsonl.gz", "wrong_fields.csv", "nobody.html"):
        assert name in by_file, (name, by_file)
    kept = d.read_all().to_pylist()
    # the good file's 5 rows survive exact dedup as distinct texts; the csv's good row too
    assert sum(1 for r in kept if "good.jsonl" in r["location"]) == 5
    assert any("wrong_fields.csv" in r["location"] for r in kept)


def test_a_missing_path_or_config_typo_is_one_line_and_status_2(tmp_path, capsys):
    assert knowmix(["clean", "--source", f"web={tmp_path}/nothing/*.html", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing" in err[0]
    job = tmp_path / "job.toml"
    job.write_text(f'[[sources]]\nkind = "news"\npaths = ["{fixture("news_peoples_daily_199801_first400.txt")}"]\n'
                   f'[output]\ndir = "o"\n[rules.news]\nmin_charz = 3\n', encoding="utf-8")
    assert knowmix(["clean", "--config", str(job)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "min_charz" in err[0]
    assert knowmix(["clean", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_near_duplicates_are_removed_and_the_cluster_table_is_written(tmp_path, capsys):
    contexts = json.load(open(fixture("encyclopedia_cmrc2018_trial.json"), encoding="utf-8"))
    original = contexts[1]["context_text"]
    edited = original[:100] + "某" + original[101:]  # one character changed: Jaccard of 5-grams ~0.98
    other = contexts[2]["context_text"]
    lines = [
        {"id": "a", "text": original},
        {"id": "b", "text": edited},
        {"id": "c", "text": other},
    ]
    src = tmp_path / "enc.jsonl"
    src.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    out = tmp_path / "out"
    assert knowmix(["clean", "--source", f"encyclopedia={src}", "--output", str(out), "--cluster-table"]) == 0
    d = open_shard_dir(str(out))
    assert d.manifest["counts"]["dropped"] == {"near_duplicate": 1}
    assert d.read_all().num_rows == 2
    clusters = [read_arrow(os.path.join(str(out), e["path"])) for e in d.manifest["cluster_table"]]
    rows = pa.concat_tables(clusters).to_pylist()
    assert len(rows) == 2 and {r["cluster_size"] for r in rows} == {2}
    assert len({r["cluster_id"] for r in rows}) == 1
    capsys.readouterr()
    assert knowmix(["stats", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cluster_sizes"] == {"2": 1}
    assert report["near_duplicate_rate"]["encyclopedia"] == pytest.approx(1 / 3)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _near_dup_sources(tmp_path, copy_key_smaller: bool):
    """encyclopedia: the original; web: its exact copy, a one-character edit of it, an unrelated text.
    The copy's id is chosen so its doc key is smaller (or larger) than the original's: near dedup sees a group
    of exact duplicates as its smallest doc key, which must work whether or not that is the exact survivor."""
    from knowmix.pipelines.doc_keys import doc_key

    contexts = json.load(open(fixture("encyclopedia_cmrc2018_trial.json"), encoding="utf-8"))
    original, other = contexts[1]["context_text"], contexts[2]["context_text"]
    edited = original[:100] + "某" + original[101:]
    _write_jsonl(tmp_path / "enc.jsonl", [{"id": "orig", "text": original}])
    copy_id = next(f"copy{i}" for i in range(100) if (doc_key(f"copy{i}") < doc_key("orig")) == copy_key_smaller)
    _write_jsonl(tmp_path / "web.jsonl", [{"id": copy_id, "text": original}, {"id": "edit", "text": edited},
                                          {"id": "other", "text": other}])
    return original, edited, other


@pytest.mark.parametrize("verify,copy_key_smaller", [(False, True), (False, False), (True, True)])
def test_exact_and_near_duplicates_together(tmp_path, verify, copy_key_smaller):
    """The exact copy goes as exact_duplicate, the edit as near_duplicate; the cluster table holds the exact
    survivors only (the original and the edit). With verify, the candidates' texts are read back from the spill."""
    original, edited, other = _near_dup_sources(tmp_path, copy_key_smaller)
    job = tmp_path / "job.toml"
    job.write_text(
        f'[[sources]]\nkind = "encyclopedia"\nformat = "jsonl"\nid_field = "id"\npaths = ["{tmp_path / "enc.jsonl"}"]\n'
        f'[[sources]]\nkind = "web"\nformat = "jsonl"\nid_field = "id"\npaths = ["{tmp_path / "web.jsonl"}"]\n'
        f'[output]\ndir = "{tmp_path / "out"}"\nnum_shards = 3\ncluster_table = true\n'
        f'[dedup]\nverify = {str(verify).lower()}\n',
        encoding="utf-8",
    )
    assert knowmix(["clean", "--config", str(job)]) == 0
    d = open_shard_dir(str(tmp_path / "out"))
    counts = d.manifest["counts"]
    assert counts["dropped"] == {"exact_duplicate": 1, "near_duplicate": 1}
    assert counts["input"] == 4 and counts["output"] == 2
    rows = d.read_all().to_pylist()
    assert sorted(r["source_kind"] for r in rows) == ["encyclopedia", "web"]
    web_text = next(r["text"] for r in rows if r["source_kind"] == "web")  # normalised: compare by Jaccard
    assert text_jaccard(web_text, other) > 0.8 and text_jaccard(web_text, edited) < 0.2
    clusters = pa.concat_tables(
        [read_arrow(os.path.join(str(tmp_path / "out"), e["path"])) for e in d.manifest["cluster_table"]]
    ).to_pylist()
    assert len(clusters) == 2 and {c["cluster_size"] for c in clusters} == {2}
    assert {c["doc_id"] for c in clusters} == {"orig", "edit"} and {c["cluster_id"] for c in clusters} == {"edit"}
    assert not (tmp_path / "out" / "_spill").exists()  # the spill is removed when the job ends


def test_auto_num_shards_grows_with_the_input(tmp_path):
    from knowmix.sharding import SHARD_TARGET_BYTES
    from knowmix.pipelines.clean import resolve_num_shards
    from knowmix.pipelines.clean_config import load_config

    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    small.write_text("x\n", encoding="utf-8")
    with open(big, "wb") as fh:
        fh.truncate(SHARD_TARGET_BYTES * 9 + 1)  # a sparse file: 9 shards' worth and a byte
    config = load_config(None, [f"web:jsonl={small}"], str(tmp_path / "out"))
    assert config.num_shards == "auto"
    assert resolve_num_shards(config, [(0, str(small))]) == 4
    assert resolve_num_shards(config, [(0, str(small)), (0, str(big))]) == 10
    config.num_shards = 3
    assert resolve_num_shards(config, [(0, str(big))]) == 3
