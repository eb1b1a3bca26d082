"""No traceback for what a user can cause: one line and exit 2; ``--debug`` shows the traceback; a bug of ours
still ends in its traceback."""

from __future__ import annotations

import json
import os
import shutil

import pyarrow as pa
import pytest

from knowmix import cli
from knowmix.cli import main as knowmix
from knowmix.errors import user_message
from knowmix.manifest import write_shard_dir
from knowmix.schemas import DOCS_SCHEMA


def one_line(capsys, args, *needles) -> str:
    capsys.readouterr()
    assert knowmix(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in captured.err, captured.err
    for needle in needles:
        assert needle in err[0], err
    return err[0]


@pytest.fixture
def docs(tmp_path) -> str:
    rows = [{"id": f"d{i}", "source_kind": "news", "location": f"x:{i}", "url": None, "title": None,
             "text": "中文文本。" * 4, "lang": "zh", "lang_score": 0.9, "n_chars": 20} for i in range(6)]
    out = str(tmp_path / "docs")
    write_shard_dir(out, "docs", [pa.Table.from_pylist(rows, schema=DOCS_SCHEMA)])
    return out


def write_vocab(path) -> None:
    tokens = ["[PAD]", *(f"[unused{i}]" for i in range(4)), "[UNK]", "[CLS]", "[SEP]", "[MASK]", "中", "文", "本", "。"]
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")


def truncate_first_shard(out: str) -> str:
    path = os.path.join(out, "shards", "part-00000-of-00001.arrow")
    with open(path, "r+b") as fh:
        fh.truncate(64)
    return path


def test_stats_on_a_truncated_shard_is_one_line_and_debug_shows_the_traceback(docs, capsys):
    path = truncate_first_shard(docs)
    one_line(capsys, ["stats", docs], path)
    one_line(capsys, ["stats", docs, "--no-verify"], path, "Arrow")
    for args in (["--debug", "stats", docs], ["stats", docs, "--debug"]):
        assert knowmix(args) == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "ContractError" in err
        assert err.strip().splitlines()[-1].startswith("knowmix stats: error: ") and path in err


def test_stats_html_to_a_directory(docs, tmp_path, capsys):
    target = tmp_path / "report"
    target.mkdir()
    one_line(capsys, ["stats", docs, "--html", str(target)], "--html", "is a directory")
    one_line(capsys, ["stats", docs, "--html", str(tmp_path / "nowhere" / "r.html")], "is not a directory")
    assert knowmix(["stats", docs, "--html", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").read_text(encoding="utf-8").startswith("<!doctype html>")


def test_stats_on_a_dead_letter_file_that_is_not_json(docs, capsys):
    os.makedirs(os.path.join(docs, "dead_letter"))
    path = os.path.join(docs, "dead_letter", "part-00000.jsonl")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"source": "a", "location": "1", "reason": "x", "raw": ""}) + "\n{broken\n")
    one_line(capsys, ["stats", docs], f"{path}:2")


def test_a_config_with_a_wrong_type_or_not_utf8(tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("一行。\n", encoding="utf-8")
    job = tmp_path / "job.toml"
    job.write_text(f'[[sources]]\nkind = "news"\npaths = ["{src}"]\n[output]\ndir = 5\n', encoding="utf-8")
    one_line(capsys, ["clean", "--config", str(job)], str(job), "[output] dir must be a string")
    job.write_bytes(b"# \xff\xfe latin-1 comment\n" + f'[[sources]]\nkind = "news"\npaths = ["{src}"]\n'.encode())
    one_line(capsys, ["clean", "--config", str(job)], str(job), "not UTF-8")


def test_an_unknown_runner(tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("一行。\n", encoding="utf-8")
    one_line(capsys, ["clean", "--source", f"news={src}", "--output", str(tmp_path / "o"), "--runner", "Bogus"],
             "--runner Bogus: not a Beam runner")
    assert not os.path.exists(tmp_path / "o" / "manifest.json")


def test_a_manifest_with_a_wrong_type_given_to_the_consumers(docs, tmp_path, capsys):
    path = os.path.join(docs, "manifest.json")
    manifest = json.load(open(path, encoding="utf-8"))
    manifest["counts"]["output"] = "6"
    json.dump(manifest, open(path, "w", encoding="utf-8"))
    vocab = tmp_path / "vocab.txt"
    write_vocab(vocab)
    for args in (["stats", docs],
                 ["tokenize", "--input", docs, "--output", str(tmp_path / "t"), "--tokenizer", f"wordpiece:{vocab}"],
                 ["spm-train", "--docs", docs, "--output", str(tmp_path / "spm" / "m"), "--vocab-size", "300"]):
        one_line(capsys, args, path, "counts.output must be a count")


def test_exceptions_a_user_can_cause_map_to_one_line(tmp_path):
    assert user_message(FileNotFoundError(2, "No such file or directory", "/a/b")) == "/a/b: No such file or directory"
    assert user_message(PermissionError(13, "Permission denied", "/a")) == "/a: Permission denied"
    assert user_message(IsADirectoryError(21, "Is a directory", "/d")) == "/d: Is a directory"
    assert user_message(NotADirectoryError(20, "Not a directory", "/f/x")) == "/f/x: Not a directory"
    try:
        json.loads('{"a": }')
    except json.JSONDecodeError as exc:
        assert user_message(exc) == "not valid JSON: Expecting value (line 1, column 7)"
    try:
        b"\xff".decode("utf-8")
    except UnicodeDecodeError as exc:
        assert user_message(exc) == "not utf-8 text: invalid start byte at byte 0"
    try:
        pa.ipc.open_file(pa.BufferReader(b"not arrow at all"))
    except pa.ArrowInvalid as exc:
        assert user_message(exc).startswith("damaged or not an Arrow file: ")
    assert user_message(ValueError("a bug")) is None
    assert user_message(TypeError("a bug")) is None
    assert user_message(RuntimeError("a bug")) is None


def test_an_oserror_inside_a_beam_step_is_one_line(tmp_path):
    """Beam's local runner re-raises a worker's FileNotFoundError as a RuntimeError: still one line."""
    import apache_beam as beam

    from knowmix.pipelines.beamio import pipeline_options

    missing = str(tmp_path / "gone.arrow")
    with pytest.raises(RuntimeError) as info:
        with beam.Pipeline(options=pipeline_options([])) as p:
            _ = p | beam.Create([missing]) | beam.Reshuffle() | beam.Map(lambda path: open(path, "rb").read())
    message = user_message(info.value)
    assert message is not None and message.startswith(f"{missing}: No such file or directory")
    assert "\n" not in message


def test_a_bug_of_ours_keeps_its_traceback(monkeypatch):
    monkeypatch.setitem(cli.SUBCOMMANDS, "boom", (__name__, "_raise_a_bug", "a subcommand with a bug"))
    with pytest.raises(ZeroDivisionError):
        knowmix(["boom"])


def _raise_a_bug(argv):
    return 1 // 0


def test_an_output_directory_that_is_a_file_for_every_job(docs, tmp_path, capsys):
    blocker = tmp_path / "f"
    blocker.write_text("x", encoding="utf-8")
    vocab = tmp_path / "vocab.txt"
    write_vocab(vocab)
    one_line(capsys, ["tokenize", "--input", docs, "--output", str(blocker), "--tokenizer", f"wordpiece:{vocab}"],
             "exists and is not a directory")
    shutil.rmtree(docs)
    one_line(capsys, ["stats", docs], "no such directory")


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs sysfs, where even root cannot create a folder")
def test_an_output_directory_that_cannot_be_created(docs, tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    write_vocab(vocab)
    out = "/sys/knowmix-test-output"
    one_line(capsys, ["tokenize", "--input", docs, "--output", out, "--tokenizer", f"wordpiece:{vocab}"],
             out, "cannot create the output directory")
