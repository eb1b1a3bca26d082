"""The clean job's id contract and per-record robustness, end to end on Beam's local runner.

A document is keyed by where it came from, never by its id alone; output ids are unique; a record that
would crash a step is a dead letter; ids and locations do not depend on how a path was spelled.
Expected numbers come from the inputs as written here (lines counted, texts planted), not from the job.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil

import pytest

from knowmix.cli import main as knowmix
from knowmix.demo import fixture
from knowmix.manifest import open_shard_dir, read_manifest

#: distinct encyclopedia paragraphs (266-968 characters of Simplified Chinese; every one passes the rules)
PARAS = sorted({r["context_text"] for r in json.load(open(fixture("encyclopedia_cmrc2018_trial.json"), encoding="utf-8"))})

def norm(text: str) -> str:
    """The text as the job keeps it (encyclopedia normalisation: NFKC width folding, t2s, ...)."""
    from knowmix.pipelines.normalize import Normalizer, steps_for

    return Normalizer(steps_for("encyclopedia"))(text)


A, B, C, D = (norm(PARAS[i]) for i in (10, 20, 30, 40))  # already normal: written and kept the same


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def clean(sources: list[str], out, *extra) -> dict:
    args = ["clean", "--output", str(out), "--num-shards", "3"]
    for s in sources:
        args += ["--source", s]
    assert knowmix([*args, *extra]) == 0
    return open_shard_dir(str(out), kind="docs").manifest


def job(tmp_path, paths, out, name="job.toml", id_field=True, title_field=False, **dedup) -> str:
    """A config with one encyclopedia jsonl source over ``paths`` (written as given)."""
    lines = ['[[sources]]', 'kind = "encyclopedia"', 'format = "jsonl"', f"paths = {json.dumps(paths)}"]
    if id_field:
        lines.append('id_field = "id"')
    if title_field:
        lines.append('title_field = "title"')
    lines += ["[output]", f'dir = "{out}"', "num_shards = 3"]
    if dedup:
        lines.append("[dedup]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in dedup.items()]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def rows_of(out) -> list[dict]:
    return sorted(open_shard_dir(str(out)).read_all().to_pylist(), key=lambda r: r["id"])


def shard_hashes(manifest) -> list[tuple[str, str]]:
    return [(s["path"], s["sha256"]) for s in manifest["shards"]]


# ---------------------------------------------------------------------------------------------- the id contract


def test_a_unique_document_is_never_lost_to_an_id_shared_with_an_exact_duplicate(tmp_path):
    """The issue's reproduction: a.jsonl {1: A, 2: B}, b.jsonl {1: C, 3: D}, d.jsonl {0: A}. C is unique and
    must survive (before: the exact-duplicate decision about id 1 dropped C as well)."""
    write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": A}, {"id": "2", "text": B}])
    write_jsonl(tmp_path / "b.jsonl", [{"id": "1", "text": C}, {"id": "3", "text": D}])
    write_jsonl(tmp_path / "d.jsonl", [{"id": "0", "text": A}])
    assert knowmix(["clean", "--config", job(tmp_path, ["*.jsonl"], tmp_path / "out"), "--no-near-dedup"]) == 0
    manifest = open_shard_dir(str(tmp_path / "out")).manifest
    rows = rows_of(tmp_path / "out")
    assert sorted(r["text"] for r in rows) == sorted([A, B, C, D])
    # A: ids 0 and 1, the smaller id survives; then 1 is C's alone
    assert [(r["id"], r["location"]) for r in rows] == [("0", "d.jsonl:1"), ("1", "b.jsonl:1"), ("2", "a.jsonl:2"), ("3", "b.jsonl:2")]
    counts = manifest["counts"]
    assert (counts["input"], counts["output"], counts["dropped"], counts["id_collisions"]) == (5, 4, {"exact_duplicate": 1}, 0)


def test_same_id_other_text_both_kept_and_the_later_renamed(tmp_path, capsys):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": A}])
    write_jsonl(tmp_path / "b.jsonl", [{"id": "1", "text": C}, {"id": "1~2", "text": D}])
    assert knowmix(["clean", "--config", job(tmp_path, ["*.jsonl"], tmp_path / "out")]) == 0
    rows = rows_of(tmp_path / "out")
    # same kind: the order is by text; A < C here, so C (whatever its file) is the later one; "1~2" is taken
    assert A < C
    assert [(r["id"], r["text"]) for r in rows] == [("1", A), ("1~2", D), ("1~3", C)]
    manifest = open_shard_dir(str(tmp_path / "out")).manifest
    assert manifest["counts"]["id_collisions"] == 1 and manifest["counts"]["output"] == 3
    assert manifest["id_collisions"] == [
        {"id": "1~3", "original_id": "1", "location": "b.jsonl:1", "source_kind": "encyclopedia"}
    ]
    capsys.readouterr()
    assert knowmix(["stats", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "id collisions: 1" in out and "1~3 (1 at b.jsonl:1)" in out


def test_same_records_in_two_files_give_unique_ids_and_the_same_bytes_every_run(tmp_path):
    """A dump ingested twice (a copy, and a .gz copy): before, both copies kept id 1 and which copy's location
    landed in the shard changed from run to run."""
    records = [{"id": str(i), "text": p} for i, p in enumerate(PARAS[:12])]
    write_jsonl(tmp_path / "a.jsonl", records)
    shutil.copy(tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress((tmp_path / "a.jsonl").read_bytes()))
    manifests = []
    for n, paths in enumerate((["a.jsonl", "b.jsonl", "c.jsonl.gz"], ["c.jsonl.gz", "b.jsonl", "a.jsonl"], ["*.jsonl*"])):
        out = tmp_path / f"out{n}"
        assert knowmix(["clean", "--config", job(tmp_path, paths, out, name=f"job{n}.toml")]) == 0
        manifests.append(open_shard_dir(str(out)).manifest)
        rows = rows_of(out)
        assert [r["id"] for r in rows] == sorted(str(i) for i in range(12))
        assert {r["location"].split(":")[0] for r in rows} == {"a.jsonl"}  # the smallest location survives
    assert shard_hashes(manifests[0]) == shard_hashes(manifests[1]) == shard_hashes(manifests[2])
    assert manifests[0]["counts"]["dropped"] == {"exact_duplicate": 24}
    # and on a second run with two worker processes
    out = tmp_path / "again"
    paths = ["a.jsonl", "b.jsonl", "c.jsonl.gz"]
    assert knowmix(["clean", "--config", job(tmp_path, paths, out, name="again.toml"),
                    "--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]) == 0
    assert shard_hashes(open_shard_dir(str(out)).manifest) == shard_hashes(manifests[0])


def test_same_id_same_text_with_exact_dedup_off_is_still_one_document(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": A}, {"id": "2", "text": B}])
    write_jsonl(tmp_path / "b.jsonl", [{"id": "1", "text": A}, {"id": "2", "text": C}])
    config = job(tmp_path, ["*.jsonl"], tmp_path / "out", exact=False, near=False)
    assert knowmix(["clean", "--config", config]) == 0
    rows = rows_of(tmp_path / "out")
    assert [(r["id"], r["text"]) for r in rows] == [("1", A), ("2", B), ("2~2", C)]
    counts = open_shard_dir(str(tmp_path / "out")).manifest["counts"]
    assert counts["dropped"] == {"exact_duplicate": 1} and counts["id_collisions"] == 1


def test_ids_and_locations_do_not_depend_on_how_the_path_was_spelled(tmp_path, monkeypatch):
    """txt ids are derived from the file's name: det/A.txt, ./det/A.txt, an absolute path, another working
    directory and a config-relative cfg/../det/*.txt must give byte-identical shards."""
    det = tmp_path / "det"
    det.mkdir()
    (det / "A.txt").write_text("".join(p + "\n" for p in PARAS[:20]), encoding="utf-8")
    (tmp_path / "cfg").mkdir()
    monkeypatch.chdir(tmp_path)
    hashes = []
    for n, spelling in enumerate(["det/A.txt", "./det/A.txt", str(det / "A.txt"), "det/*.txt"]):
        hashes.append(shard_hashes(clean([f"encyclopedia:txt={spelling}"], tmp_path / f"o{n}", "--no-near-dedup")))
    monkeypatch.chdir(det)
    hashes.append(shard_hashes(clean(["encyclopedia:txt=A.txt"], tmp_path / "o-cwd", "--no-near-dedup")))
    monkeypatch.chdir(tmp_path / "cfg")
    config = job(tmp_path / "cfg", ["../cfg/../det/*.txt"], tmp_path / "o-cfg", id_field=False, near=False)
    config_text = open(config, encoding="utf-8").read().replace('format = "jsonl"', 'format = "txt"')
    open(config, "w", encoding="utf-8").write(config_text)
    assert knowmix(["clean", "--config", "job.toml"]) == 0
    hashes.append(shard_hashes(open_shard_dir(str(tmp_path / "o-cfg")).manifest))
    assert all(h == hashes[0] for h in hashes), hashes
    rows = rows_of(tmp_path / "o0")
    assert len(rows) == 20 and all(r["location"].startswith("A.txt:") for r in rows)
    assert all(r["id"].startswith("encyclopedia:") and r["id"].endswith(r["location"]) for r in rows)


# ---------------------------------------------------------------------------------------------- bad records


def test_text_edge_cases_are_dead_letters_or_clean_documents_never_a_crash(tmp_path):
    """Lone surrogates (before: UnicodeEncodeError in normalisation killed the job), non-characters, NUL,
    numbers/lists/null/objects as text, a BOM, CRLF line ends and a 20 MB line."""
    lines = [
        '{"id": "s1", "text": "\\ud800' + A[:100] + '"}',  # a lone surrogate escape in the text
        json.dumps({"id": "s2", "text": B, "title": "x"})[:-1] + ', "title": "\\udfff"}',  # ... in the title
        '{"id": "\\udc80", "text": ' + json.dumps(C) + "}",  # ... in the id
        json.dumps({"id": "nc", "text": "\ufffe\uffff\ufdd0" + D}),  # non-characters: a document
        json.dumps({"id": "nul", "text": PARAS[50][:200] + "\x00" + PARAS[50][200:]}),  # NUL inside the text
        json.dumps({"id": "num", "text": 1234567}),  # a number: too short to keep
        json.dumps({"id": "list", "text": [PARAS[60], PARAS[61]]}),  # a list of strings: joined, a document
        json.dumps({"id": "null", "text": None}),  # null: missing text
        json.dumps({"id": "obj", "text": {"a": 1}}),  # an object: missing text
        json.dumps({"id": "bool", "text": True}),
        json.dumps({"id": "big", "text": "长" * ((20 << 20) // 3)}, ensure_ascii=False),  # a 20 MB line: too long
    ]
    data = ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8", "surrogatepass")
    assert data.count(b"\n") == 11
    (tmp_path / "edge.jsonl").write_bytes(data)
    write_jsonl(tmp_path / "good.jsonl", [{"id": f"g{i}", "text": p} for i, p in enumerate(PARAS[100:105])])
    assert knowmix(["clean", "--config", job(tmp_path, ["*.jsonl"], tmp_path / "out", title_field=True)]) == 0
    d = open_shard_dir(str(tmp_path / "out"))
    counts = d.manifest["counts"]
    assert counts["input"] == 16  # 11 + 5 lines (wc -l)
    kept = {r["id"] for r in d.read_all().to_pylist()}
    assert kept == {"nc", "nul", "list", "g0", "g1", "g2", "g3", "g4"}
    dead = [json.loads(x) for x in (tmp_path / "out" / "dead_letter" / "part-00000.jsonl").read_text("utf-8").splitlines()]
    by_line = {r["location"]: r["reason"] for r in dead}
    assert set(by_line) == {f"edge.jsonl:{n}" for n in (1, 2, 3, 8, 9, 11)}, by_line
    assert all("surrogate" in by_line[f"edge.jsonl:{n}"] for n in (1, 2, 3))
    assert "title" in by_line["edge.jsonl:2"] and " id " in by_line["edge.jsonl:3"]
    assert counts["dead_letter"] == 6 and sum(counts["dropped"].values()) == 2  # the number and True: too short


def test_a_record_that_raises_in_a_step_is_one_dead_letter_and_the_chunk_goes_on():
    """The per-record guard of steps 1-3, driven directly with a row no reader produces any more (a lone
    surrogate in the text reaches a step that cannot encode it: fastText's predict raises on it)."""
    from knowmix.pipelines.clean import ReadAndClean
    from knowmix.pipelines.clean_config import load_config, steps_for
    from knowmix.pipelines.quality import rules_for

    config = load_config(None, ["encyclopedia=x.jsonl"], "out")
    fn = ReadAndClean(config.sources, {"encyclopedia": steps_for(config, "encyclopedia")},
                      {"encyclopedia": rules_for("encyclopedia")})
    fn.setup()
    row = {"source_kind": "encyclopedia", "url": None, "title": None}
    rows = [{**row, "id": "a", "location": "x:1", "text": A}, {**row, "id": "b", "location": "x:2", "text": "\ud800" + B},
            {**row, "id": "c", "location": "x:3", "text": C}]
    out = list(fn.clean(rows))
    assert [(tag, v["id"] if tag == "kept" else v["location"]) for tag, v in out] == [
        ("kept", "a"), ("dead_letter", "x:2"), ("kept", "c")
    ]
    dead = out[1][1]
    assert re.match(r"cleaning failed: \w+Error: ", dead["reason"]) and "\n" not in dead["reason"], dead["reason"]
    json.dumps(dead, ensure_ascii=False).encode("utf-8")  # writable: the surrogate is escaped
    assert rows[0]["text"] == A  # the chunk attempt changed no input row


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "section, line, words",
    [
        ("dedup", 'exact = "false"', ["exact", "'false'", "true or false"]),
        ("output", 'cluster_table = "no"', ["cluster_table", "'no'"]),
        ("output", "cluster_table = 1", ["cluster_table", "1"]),
        ("dedup", 'near = "false"', ["near", "'false'"]),
        ("output", "dir = 5", ["dir", "5"]),
    ],
)
def test_a_string_is_never_read_as_a_boolean(tmp_path, capsys, section, line, words):
    path = tmp_path / "job.toml"
    path.write_text(
        f'[[sources]]\nkind = "news"\npaths = ["{fixture("news_peoples_daily_199801_first400.txt")}"]\n'
        + ("" if section == "output" else '[output]\ndir = "o"\n') + f"[{section}]\n{line}\n"
        + ('dir = "o"\n' if section == "output" and "dir" not in line else ""),
        encoding="utf-8",
    )
    assert knowmix(["clean", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for w in words:
        assert w in err[0], err[0]


def test_a_file_of_unknown_format_in_a_glob_is_one_dead_letter_and_the_run_goes_on(tmp_path):
    """Before: a Beam traceback mid-pipeline, after the previous output had been cleared."""
    write_jsonl(tmp_path / "a.jsonl", [{"text": A}])
    (tmp_path / "notes.xyz").write_text("?", encoding="utf-8")
    out = tmp_path / "out"
    assert knowmix(["clean", "--source", f"encyclopedia={tmp_path}/*", "--output", str(out)]) == 0
    manifest = read_manifest(str(out))
    assert (manifest["counts"]["input"], manifest["counts"]["output"], manifest["counts"]["dead_letter"]) == (2, 1, 1)
    dead = [json.loads(line) for name in os.listdir(out / "dead_letter")
            for line in open(out / "dead_letter" / name, encoding="utf-8")]
    assert len(dead) == 1 and dead[0]["location"].startswith("notes.xyz") and "format" in dead[0]["reason"]
