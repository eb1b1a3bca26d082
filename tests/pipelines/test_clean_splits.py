"""Large line files read as byte ranges: the same shards, byte for byte, for any split size.

Real FnApiRunner runs of the clean job on generated JSON-lines / txt corpora (documents from a small pool of
encyclopedia paragraphs with exact and near copies, shared ids, malformed lines, blank lines, "\\r\\n" and
lone "\\r" line ends, a final line with no line end): an unsplit run (``split_bytes = 0``) against runs whose
files are cut into ranges of a random size. The input count is checked against the lines written here.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from knowmix.corpora.readers import ByteRange, count_line_starts, plan_ranges, read_path, read_range
from knowmix.corpora.sources import SourceSpec
from knowmix.errors import UserError
from tests.pipelines.test_clean_properties import line_of, records

EXAMPLES = max(2, settings.default.max_examples // 5)
ENDS = ("\n", "\r\n", "\r")


def write_file(path: str, lines: list[str], ends: list[int], final_end: bool) -> int:
    data = "".join(line + ENDS[e] for line, e in zip(lines, ends))
    if not final_end:
        data = data.rstrip("\r\n")
    with open(path, "wb") as fh:
        fh.write(data.encode("utf-8"))
    return len(data.encode("utf-8"))


def run_clean(src: str, out: str, split_bytes: int, fmt: str = "jsonl", beam_args=()) -> dict:
    from knowmix.pipelines.clean import resolve, run
    from knowmix.pipelines.clean_config import load_config

    job = os.path.join(src, "job.toml")
    id_field = 'id_field = "id"\n' if fmt == "jsonl" else ""
    with open(job, "w", encoding="utf-8") as fh:
        fh.write(
            f'[[sources]]\nkind = "encyclopedia"\nformat = "{fmt}"\n{id_field}paths = ["in/*.{fmt}"]\n'
            f'[input]\nsplit_bytes = {split_bytes}\n'
            f'[output]\ndir = "{out}"\nnum_shards = 2\n[dedup]\nmax_rounds = 6\n'
        )
    return run(resolve(load_config(job), list(beam_args), ["test"]))


def output_bytes(out: str) -> dict[str, str]:
    """sha1 of every file under the output directory but the manifest (it records the options and argv)."""
    digests = {}
    for root, _, names in os.walk(out):
        for name in names:
            if name != "manifest.json":
                path = os.path.join(root, name)
                digests[os.path.relpath(path, out)] = hashlib.sha1(open(path, "rb").read()).hexdigest()
    return digests


blank = st.sampled_from(("", "   "))
lines_of_file = st.lists(st.one_of(records.map(line_of), records.map(line_of), blank), min_size=1, max_size=14)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    files=st.lists(st.tuples(lines_of_file, st.lists(st.integers(0, 2), min_size=14, max_size=14), st.booleans()), min_size=1, max_size=2),
    fraction=st.floats(0.01, 0.9),
)
def test_split_runs_write_the_same_shards_as_an_unsplit_run(files, fraction):
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "in"))
        sizes, written = [], 0
        for n, (lines, ends, final_end) in enumerate(files):
            sizes.append(write_file(os.path.join(tmp, "in", f"f{n}.jsonl"), lines, ends, final_end))
            records = sum(1 for line in lines if line.strip())  # non-blank lines: the input records
            written += records or 1  # a file of blank lines: one "no records in file" dead letter
        split = max(1, int(max(sizes) * fraction))
        whole = run_clean(tmp, os.path.join(tmp, "whole"), 0)
        pieces = run_clean(tmp, os.path.join(tmp, "split"), split)
        assert whole["counts"]["input"] == written
        assert pieces["counts"] == whole["counts"]
        assert pieces["shards"] == whole["shards"]
        assert output_bytes(os.path.join(tmp, "split")) == output_bytes(os.path.join(tmp, "whole"))


def test_a_split_txt_file_gives_the_same_shards_and_the_job_read_it_as_ranges(tmp_path):
    from knowmix.pipelines.clean import plan_reads
    from knowmix.pipelines.clean_config import load_config

    lines = [line_of(("doc", str(i % 3), i % 6, None if i % 2 else i % 4))[9:-1] for i in range(12)] + ["", "short"]
    os.makedirs(tmp_path / "in")
    size = write_file(str(tmp_path / "in" / "a.txt"), lines, [i % 3 for i in range(len(lines))], False)
    whole = run_clean(str(tmp_path), str(tmp_path / "whole"), 0, fmt="txt")
    pieces = run_clean(str(tmp_path), str(tmp_path / "split"), 97, fmt="txt")
    _, ranges = plan_reads(load_config(str(tmp_path / "job.toml")), [(0, str(tmp_path / "in" / "a.txt"))])
    assert len(ranges) == -(-size // 97) > 1
    assert whole["counts"]["input"] == sum(1 for line in lines if line.strip())
    assert output_bytes(str(tmp_path / "split")) == output_bytes(str(tmp_path / "whole"))


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b"\xe4\xb8\xad", b" ", b"\n", b"\r", b"\r\n", b'{"text": "x"}']), max_size=40),
    split=st.integers(1, 30),
    block=st.integers(1, 8),
)
def test_ranges_read_every_line_once_with_its_whole_file_line_number(data, split, block):
    """Reader level, with tiny read blocks (so lines and "\\r\\n" straddle them): the records of all ranges, in
    order, are the whole-file read's, and the line starts counted per range add up to the file's lines."""
    import knowmix.corpora.readers as readers

    old = readers._READ_BLOCK
    readers._READ_BLOCK = block
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "a.txt")
            raw = b"".join(data)
            with open(path, "wb") as fh:
                fh.write(raw)
            spec = SourceSpec(kind="news", format=None, paths=(os.path.join(tmp, "*.txt"),), max_record_bytes=9)
            if not raw:
                return
            # an over-long line's raw head is its first min(1000, what one read block held) units: with a cap
            # under 1000 bytes and tiny blocks that depends on block alignment even for a whole-file read
            # (never with real 1 MiB blocks), so compare the first `max_record_bytes` of it
            # (with tiny blocks a range read may hold fewer bytes of such a line than the whole-file read: the
            # raw heads are compared as prefixes of each other below)
            key = lambda r: (r.location, getattr(r, "id", None), getattr(r, "text", None), getattr(r, "reason", None))  # noqa: E731
            heads = lambda rs: [getattr(r, "raw", "")[:9] for r in rs]  # noqa: E731
            whole_records = list(read_path(spec, path))
            whole = [key(r) for r in whole_records]
            ranges = plan_ranges(spec, path, len(raw), split) or [(0, len(raw))]
            counted = [count_line_starts(path, s, e) for s, e in ranges]
            got_records, first = [], 1
            empty = not any(c for _, c in counted)
            for (s, e), (n, _) in zip(ranges, counted):
                got_records += list(read_range(spec, path, ByteRange(s, e, first, empty and s == 0)))
                first += n
            assert first - 1 == len(raw.splitlines())  # bytes.splitlines: "\n", "\r\n", "\r" (independent count)
            assert [key(r) for r in got_records] == whole
            for a, b in zip(heads(got_records), heads(whole_records)):
                assert a.startswith(b) or b.startswith(a), (a, b)
    finally:
        readers._READ_BLOCK = old


def test_compressed_csv_block_and_small_files_stay_whole(tmp_path):
    import gzip

    big = b'{"text": "\xe4\xb8\xad\xe6\x96\x87"}\n' * 50
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(big))
    (tmp_path / "a.csv").write_bytes(b"text\n" + b"x\n" * 300)
    (tmp_path / "b.txt").write_bytes(big)
    (tmp_path / "u16.jsonl").write_bytes(big.decode("utf-8").encode("utf-16"))
    spec = SourceSpec(kind="news", format=None, paths=(str(tmp_path / "*"),))
    block = SourceSpec(kind="news", format=None, paths=(str(tmp_path / "*"),), txt_mode="block")
    for name in ("a.jsonl.gz", "a.csv", "u16.jsonl"):
        path = str(tmp_path / name)
        assert plan_ranges(spec, path, os.path.getsize(path), 64) == [], name
    path = str(tmp_path / "b.txt")
    assert plan_ranges(block, path, len(big), 64) == []
    assert plan_ranges(spec, path, len(big), len(big)) == []  # not larger than the split size
    assert plan_ranges(spec, path, len(big), 0) == []  # 0: never split
    assert len(plan_ranges(spec, path, len(big), 64)) == -(-len(big) // 64)
    # no range of a few bytes: up to 10% over the split size a file is read whole; past it, equal ranges
    size = len(big)
    assert size == 950
    assert plan_ranges(spec, path, size, 900) == []  # 1.06x the split size
    ranges = plan_ranges(spec, path, size, 800)  # 1.19x: two ranges of 475 bytes, not 800 + 150
    assert ranges == [(0, 475), (475, 950)]
    ranges = plan_ranges(spec, path, size, 400)  # three of 316-317, not 400 + 400 + 150
    assert ranges == [(0, 316), (316, 633), (633, 950)]
    for split in range(50, 950, 37):  # every byte once, pieces within a byte of each other, none past the split
        ranges = plan_ranges(spec, path, size, split) or [(0, size)]
        assert ranges[0][0] == 0 and ranges[-1][1] == size and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        lengths = [e - s for s, e in ranges]
        assert max(lengths) - min(lengths) <= 1 and (len(ranges) == 1 or max(lengths) <= split)


def test_split_bytes_must_be_a_non_negative_integer(tmp_path):
    from knowmix.pipelines.clean_config import load_config

    job = tmp_path / "job.toml"
    for bad in ('"64MB"', "-1", "true"):
        job.write_text(f'[[sources]]\nkind = "news"\npaths = ["*.txt"]\n[input]\nsplit_bytes = {bad}\n[output]\ndir = "o"\n')
        try:
            load_config(str(job))
        except UserError as e:
            assert "split_bytes" in str(e)
        else:
            raise AssertionError(bad)


def test_one_and_two_worker_processes_write_the_same_shards(tmp_path):
    """``knowmix clean --workers 1`` (in-process) and ``--workers 2`` (the FnApiRunner's multi-processing mode)
    on a file split into ranges: the same output files, byte for byte."""
    from knowmix.cli import main

    os.makedirs(tmp_path / "in")
    lines = [line_of(("doc", str(i % 4), i % 6, None if i % 3 else i % 4)) for i in range(24)]
    write_file(str(tmp_path / "in" / "a.jsonl"), lines, [0] * len(lines), True)
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert main(["clean", "--quiet", "--source", f"encyclopedia:jsonl={tmp_path / 'in' / 'a.jsonl'}", "--output", str(out),
                     "--num-shards", "2", "--split-bytes", "2000", "--workers", str(workers)]) == 0
        outs.append(output_bytes(str(out)))
    assert outs[0] == outs[1] and any(k.startswith("shards") for k in outs[0])


def test_workers_picks_multi_processing_only_for_local_runs():
    from knowmix.pipelines.clean import local_execution

    assert local_execution([], 1) == []
    assert local_execution([], 4) == ["--direct_running_mode=multi_processing", "--direct_num_workers=4"]
    assert local_execution(["--direct_running_mode=in_memory"], 4) == ["--direct_running_mode=in_memory"]
    dataflow = ["--runner=DataflowRunner", "--project=p"]
    assert local_execution(dataflow, 4) == dataflow


def test_default_workers_one_per_core_from_a_size_on_and_ranges_sized_for_them(tmp_path, monkeypatch):
    import knowmix.pipelines.clean as clean
    from knowmix.pipelines.clean_config import load_config

    (tmp_path / "a.jsonl").write_bytes(b'{"text": "x"}\n' * 500)  # 7000 bytes
    monkeypatch.setattr(clean.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(clean, "MIN_AUTO_SPLIT_BYTES", 1)
    source = [f"news={tmp_path / 'a.jsonl'}"]

    monkeypatch.setattr(clean, "AUTO_WORKERS_MIN_BYTES", 10_000)  # a small input: in-process, default ranges
    config = load_config(None, source, str(tmp_path / "o"))
    assert clean.auto_local_run(config, [], None) == [] and config.split_bytes == clean.DEFAULT_SPLIT_BYTES

    monkeypatch.setattr(clean, "AUTO_WORKERS_MIN_BYTES", 1000)  # large enough: one worker per core
    config = load_config(None, source, str(tmp_path / "o"))
    assert clean.auto_local_run(config, [], None) == ["--direct_running_mode=multi_processing", "--direct_num_workers=4"]
    assert config.split_bytes == -(-7000 // 16)  # 4 ranges per worker

    config = load_config(None, source, str(tmp_path / "o"), {"split_bytes": 3000})  # given: kept
    assert clean.auto_local_run(config, [], 2)[-1] == "--direct_num_workers=2" and config.split_bytes == 3000
