"""`counts.input` of a real clean run (FnApiRunner) pinned to counts made without the readers.

The expected numbers come from the files themselves: newlines counted in the bytes (`wc -l`), rows counted
by Python's csv module, articles by json, "WARC/1.0" headers by a byte search, or from how a damaged file was
generated. The readers' own raw-record counts (Beam counters, namespace knowmix.read) are checked against the
same numbers.
"""

from __future__ import annotations

import csv
import io
import json
import os

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter

from knowmix.cli import main as knowmix
from knowmix.manifest import read_manifest
from knowmix.pipelines import beamio
from knowmix.pipelines.clean import build, resolve
from knowmix.pipelines.clean_config import load_config
from knowmix.pipelines.spill import delete_spill

from tests.corpora.test_readers_recovery import _warc_records


def clean_with_counters(job_toml: str) -> tuple[dict, dict]:
    """Run the clean job over a TOML on the FnApiRunner; (manifest counts, knowmix.read counters)."""
    config = load_config(job_toml, [], None, {})
    p = beam.Pipeline(options=beamio.pipeline_options(["--runner=FnApiRunner"]))
    build(p, resolve(config, [], ["knowmix", "clean", "--config", job_toml]))
    result = p.run()
    result.wait_until_finish()
    delete_spill(config.output_dir)
    query = result.metrics().query(MetricsFilter().with_namespace("knowmix.read"))
    counters = {m.key.metric.name: m.committed for m in query["counters"]}
    return read_manifest(config.output_dir)["counts"], counters


def wc_l(data: bytes) -> int:
    """Lines the way `wc -l` counts them, plus a last line without a newline."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def test_fixture_counts_match_independent_counts(tmp_path, fixtures_dir):
    from knowmix.demo import demo_job_toml

    job = tmp_path / "job.toml"
    job.write_text(demo_job_toml(str(tmp_path / "docs")), encoding="utf-8")
    news = (fixtures_dir / "news_peoples_daily_199801_first400.txt").read_bytes()
    news_lines = wc_l(news)
    news_blank = sum(1 for ln in news.split(b"\n")[: news_lines] if not ln.strip())
    qa_rows = list(csv.reader(io.StringIO((fixtures_dir / "qa_medical_toyhom_300.gbk.csv").read_bytes().decode("gb18030"), newline="")))
    qa_data = sum(1 for r in qa_rows[1:] if r)
    cmrc = len(json.loads((fixtures_dir / "encyclopedia_cmrc2018_trial.json").read_text(encoding="utf-8")))
    drcd = len(json.loads((fixtures_dir / "encyclopedia_drcd_dev_first40articles.json").read_text(encoding="utf-8"))["data"])
    assert (news_lines, qa_data, cmrc, drcd) == (400, 300, 256, 40)  # the fixtures as documented

    counts, read = clean_with_counters(str(job))
    by_kind = {k: g["input"] for k, g in counts["by_source_kind"].items()}
    assert by_kind == {"news": news_lines - news_blank, "qa": qa_data, "encyclopedia": cmrc + drcd, "web": 1}
    assert counts["input"] == news_lines - news_blank + qa_data + cmrc + drcd + 1
    assert read["raw_lines"] == news_lines and read["raw_csv_rows"] == len(qa_rows)
    assert read["raw_records"] == news_lines + len(qa_rows) + cmrc + drcd + 1
    assert read["unaccounted"] == 0
    assert counts["input"] == read["raw_records"] - read["not_input"] + read["file_rows"]


def _damaged_inputs(d) -> dict[str, tuple[int, int]]:
    """Write damaged files into d; {name: (input records, dead letters)} as generated."""
    import zstandard

    out = {}
    rows = [f"第{i}行：今天天气很好，我们一起去公园散步，看看湖边的风景。" for i in range(50)]
    data = [r.encode("utf-8") + b"\n" for r in rows]
    data[9] = rows[9].encode("gbk") + b"\n"  # one GBK line in a UTF-8 file
    data[19] = b"   \n"  # a blank line: not input
    (d / "a.txt").write_bytes(b"".join(data))
    out["a.txt"] = (49, 1)
    (d / "b.txt").write_bytes("\r".join(rows[:30]).encode())  # CR-only line endings
    out["b.txt"] = (30, 0)
    lines = [json.dumps({"text": r}, ensure_ascii=False) for r in rows[:20]]
    lines[4] = '{"text": "x", "n": ' + "9" * 5000 + "}"
    lines[7] = "[" * 100000 + "]" * 100000
    (d / "c.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out["c.jsonl"] = (20, 2)
    csv_lines = ["id,text"] + [f'{i},"{r}"' for i, r in enumerate(rows[:40])]
    csv_lines[5] = f'4,"{rows[4]}'  # a quote left open
    (d / "d.csv").write_text("\n".join(csv_lines) + "\n", encoding="utf-8")
    out["d.csv"] = (40, 1)
    recs = _warc_records(8)
    head, _, rest = recs[3].partition(b"Content-Length: ")
    n, _, tail = rest.partition(b"\r\n")
    recs[3] = head + b"Content-Length: " + str(int(n) - 40).encode() + b"\r\n" + tail
    (d / "e.warc").write_bytes(b"".join(recs))
    out["e.warc"] = (b"".join(recs).count(b"WARC/1.0\r\n"), 1)
    body = "".join(json.dumps({"text": r}, ensure_ascii=False) + "\n" for r in rows[:20]).encode()
    (d / "f.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body) + b"trailing garbage")
    out["f.jsonl.zst"] = (21, 1)  # 20 lines + the dead letter for the corrupt rest
    (d / "g.md").write_text("# 不知道是什么格式\n", encoding="utf-8")
    out["g.md"] = (1, 1)
    with open(os.path.join(str(d), os.fsdecode(b"h-\xff.txt")), "wb") as f:
        f.write("名字不是UTF-8的文件。\n".encode())
    out["h.txt"] = (1, 1)
    return out


def test_damaged_files_lose_only_their_bad_records(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    expected = _damaged_inputs(src)
    assert expected["e.warc"][0] == 8
    job = tmp_path / "job.toml"
    job.write_text(
        f'[[sources]]\nkind = "news"\npaths = [{json.dumps(str(src / "*"))}]\n\n[output]\ndir = {json.dumps(str(tmp_path / "docs"))}\nnum_shards = 2\n',
        encoding="utf-8",
    )
    counts, read = clean_with_counters(str(job))
    assert counts["input"] == sum(n for n, _ in expected.values())
    assert counts["dead_letter"] == sum(k for _, k in expected.values())
    assert read["unaccounted"] == 0 and read["raw_warc_records"] == 8
    dead = [json.loads(line) for name in os.listdir(tmp_path / "docs" / "dead_letter")
            for line in open(tmp_path / "docs" / "dead_letter" / name, encoding="utf-8")]
    by_file = {}
    for row in dead:
        by_file.setdefault(os.path.basename(row["location"]).split(":")[0].split("#")[0], []).append(row["reason"])
    assert sorted(by_file) == ["a.txt", "c.jsonl", "d.csv", "e.warc", "f.jsonl.zst", "g.md", "h-\\xff.txt"]


def test_cli_run_over_a_glob_with_an_unknown_extension_and_a_bad_name(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("第一条新闻的正文内容，足够长以通过质量规则的检查。\n", encoding="utf-8")
    (src / "b.dat").write_bytes(b"\x00\x01")
    with open(os.path.join(str(src), os.fsdecode(b"c-\xfe.txt")), "wb") as f:
        f.write("文件名有坏字节。\n".encode())
    assert knowmix(["clean", "--source", f"news={src}/*", "--output", str(tmp_path / "docs"), "--num-shards", "1"]) == 0
    counts = read_manifest(str(tmp_path / "docs"))["counts"]
    assert (counts["input"], counts["dead_letter"]) == (3, 2)
