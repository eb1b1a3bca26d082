"""The command line is honest: typos are errors (one line, exit 2) while Beam's flags pass through, a bad
--runner is one line, -V works, every subcommand's --help is complete with defaults, and logging is quiet by
default (no Beam/apitools chatter) with --log-level to turn it up."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from knowmix import __version__
from knowmix.cli import SUBCOMMANDS, main
from knowmix.manifest import open_shard_dir
from tests.pipelines.helpers_tokenize import all_fixture_texts, docs_rows, write_bert_vocab, write_docs_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# the required arguments of each subcommand, so that the unknown option is what the parser meets
REQUIRED = {
    "clean": ["--source", "news=x.txt", "--output", "o"],
    "stats": ["d"],
    "kg-stats": ["--kg", "k.tsv"],
    "kg-index": ["--kg", "k.tsv", "--output", "o"],
    "kg-samples": ["--kg", "k.tsv", "--docs", "d", "--output", "o"],
    "export-opennre": ["k", "--output", "o"],
    "spm-train": ["--docs", "d", "--output", "o"],
    "tokenize": ["--input", "d", "--output", "o", "--tokenizer", "spm:x.model"],
    "train": ["configs/base.toml"],
    "export": ["run", "--hf", "o"],
    "export-parquet": ["d", "--output", "o"],
    "eval": ["run", "--task", "cls:a.json,b.json", "--output", "o"],
    "quality-train": ["--output", "m.bin"],
    "quality-eval": ["m.bin", "--positive", "p.txt", "--negative", "n.txt"],
    "demo": [],
}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    write_docs_dir(str(d / "docs"), docs_rows(20, 20))
    vocab = write_bert_vocab(str(d / "bert" / "vocab.txt"), all_fixture_texts()[:300])
    return d, f"wordpiece:{vocab}"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_every_subcommand_is_covered():
    assert set(REQUIRED) == set(SUBCOMMANDS)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_unknown_option_is_one_line_and_exit_2(name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([name, *REQUIRED[name], "--no-such-option", "1"]) == 2
    err = one_line_error(capsys)
    assert "--no-such-option" in err and err.startswith(f"knowmix {name}: error:")
    assert not (tmp_path / "o").exists()


def test_tokenize_typo_rejected_before_any_work(small, capsys):
    d, spec = small
    out = d / "typo"
    assert main(["tokenize", "--input", str(d / "docs"), "--output", str(out), "--tokenizer", spec,
                 "--max-seq-lne", "128"]) == 2
    assert "--max-seq-lne" in one_line_error(capsys)
    assert not out.exists()


def test_tokenize_beam_flags_pass_through(small, capsys):
    d, spec = small
    out = d / "ok"
    assert main(["tokenize", "--input", str(d / "docs"), "--output", str(out), "--tokenizer", spec,
                 "--max-seq-len", "128", "--direct_num_workers", "1", "--runner=DirectRunner"]) == 0
    manifest = open_shard_dir(str(out), "pretrain").manifest
    assert manifest["options"]["max_seq_len"] == 128


def test_kg_samples_typo_rejected(small, capsys, fixtures_dir):
    d, _ = small
    assert main(["kg-samples", "--kg", str(fixtures_dir / "world_triples.tsv"), "--docs", str(d / "docs"),
                 "--output", str(d / "kn"), "--sed", "1"]) == 2
    assert "--sed" in one_line_error(capsys)
    assert not (d / "kn").exists()


def test_abbreviations_are_not_guessed(small, capsys):
    d, spec = small
    assert main(["tokenize", "--input", str(d / "docs"), "--output", str(d / "ab"), "--tokenizer", spec,
                 "--max-seq", "128"]) == 2
    assert "--max-seq" in one_line_error(capsys)


@pytest.mark.parametrize("name", ["tokenize", "clean"])
def test_bad_runner_is_one_line(small, capsys, name, fixtures_dir):
    d, spec = small
    args = {"tokenize": ["--input", str(d / "docs"), "--tokenizer", spec],
            "clean": ["--source", f"news={fixtures_dir / 'news_peoples_daily_199801_first400.txt'}"]}[name]
    assert main([name, *args, "--output", str(d / f"runner-{name}"), "--runner", "NoSuchRunner"]) == 2
    assert "--runner NoSuchRunner" in one_line_error(capsys)


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag, capsys):
    assert main([flag]) == 0
    assert capsys.readouterr().out.strip() == f"knowmix {__version__}"


def _entries(help_text: str) -> list[tuple[str, str]]:
    """(signature, help) of every argument listed under the 'options:' / 'positional arguments:' headings."""
    out, section = [], False
    lines = help_text.splitlines()
    for i, line in enumerate(lines):
        if line in ("options:", "positional arguments:"):
            section = True
        elif line.strip() and not line.startswith(" "):
            section = False  # the next heading or the epilog
        elif section and re.match(r"^  \S", line):
            sig, _, text = line.strip().partition("  ")
            if not text.strip() and i + 1 < len(lines) and re.match(r"^ {20,}\S", lines[i + 1]):
                text = lines[i + 1]
            out.append((sig, text.strip()))
    return out


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help_is_complete(name, capsys):
    assert main([name, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: knowmix {name}")
    description = text.split("\n\n")[1]
    assert "``" not in description and ":func:" not in description and not description.startswith("knowmix")
    entries = _entries(text)
    assert len(entries) >= 2
    missing = [sig for sig, help_ in entries if not help_]
    assert missing == [], f"options without help: {missing}"
    assert any(sig.startswith("--log-level") for sig, _ in entries)


@pytest.mark.parametrize("name, shown", [
    ("tokenize", ["(default: 512)"]),
    ("kg-samples", ["(default: 0.5)", "(default: rjieba)", "(default: 2)"]),
    ("spm-train", ["(default: 32000)", "(default: unigram)", "(default: 0.9995)"]),
    ("demo", ["(default: out/demo)", "(default: 200)"]),
    ("export-parquet", ["(default: zstd)"]),
])
def test_help_shows_defaults(name, shown, capsys):
    assert main([name, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for s in shown:
        assert s in text, s
    assert "(default: True)" not in text and "(default: False)" not in text and "(default: None)" not in text


def _run(args: list[str], block_apitools: bool = True) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter; ``block_apitools`` makes ``import apitools`` fail, as in an install
    without Beam's gcp extra."""
    code = ("import sys\n" + ("sys.modules['apitools'] = None\n" if block_apitools else "")
            + "from knowmix.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("KNOWMIX_BEAM_LOG", None)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_quiet_by_default_and_log_level_turns_it_up(small):
    d, spec = small
    base = ["tokenize", "--input", str(d / "docs"), "--tokenizer", spec]
    quiet = _run([*base, "--output", str(d / "q")])
    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stderr.strip().splitlines()
    # the summary and the job's Beam counters, nothing else (no progress line: stderr is not a terminal)
    assert len(lines) == 2 and lines[0].startswith("knowmix tokenize: pretrain:"), quiet.stderr
    assert lines[1].startswith("  Beam counters: ") and "tokens" in lines[1], quiet.stderr
    assert "apitools" not in quiet.stderr
    loud = _run([*base, "--output", str(d / "l"), "--log-level", "info"])
    assert loud.returncode == 0, loud.stderr
    assert "apache_beam" in loud.stderr and "INFO" in loud.stderr


def test_quiet_default_still_shows_the_dataflow_job_url():
    code = (
        "import logging\n"
        "from knowmix.args import configure_logging\n"
        "configure_logging(None)\n"
        "log = logging.getLogger('apache_beam.runners.dataflow.internal.apiclient')\n"
        "log.info('Create job: <a long proto>')\n"
        "log.info('To access the Dataflow monitoring console, please navigate to https://console.cloud.google.com/"
        "dataflow/jobs/r/j?project=p')\n"
        "logging.getLogger('apache_beam.runners.worker').warning('worker chatter')\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("KNOWMIX_BEAM_LOG", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "dataflow/jobs/r/j?project=p" in lines[0], proc.stderr
