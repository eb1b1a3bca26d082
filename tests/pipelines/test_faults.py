"""Fault injection: ``kill -9`` of real ``knowmix clean``, ``kg-samples`` and ``tokenize`` processes mid-run,
two runs into one output directory at once, and outputs and inputs a run must not destroy.

Each job runs first uninterrupted (the reference: every file's bytes). Then it is killed at named points
(``fault_harness.py`` freezes the process there; SIGKILL ends it): with the previous output in place, that
output must be untouched and still verify; killed inside the swap or with no previous output, no manifest is
left that a consumer accepts (and the next run finishes an interrupted swap). A rerun into the same directory then takes over the dead run's lock, removes its
leftovers (staging, ``_spill/``, temporary shards) and writes files equal, byte for byte, to the reference.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from knowmix.cli import main as knowmix
from knowmix.manifest import ContractError, open_shard_dir
from knowmix.outdir import LOCK_NAME, OutputLock, finish_swaps

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault_harness.py")
NEWS = os.path.join(os.path.dirname(__file__), "..", "..", "corpora", "fixtures", "news_peoples_daily_199801_first400.txt")
KILLS = []  # (job, point) of every kill -9 landed, for the count in README


def files_of(out: str) -> dict[str, bytes]:
    """Every file under ``out`` by relative path (the lock, staging and swap folders included, if any)."""
    found = {}
    for root, _, names in os.walk(out):
        for name in names:
            path = os.path.join(root, name)
            found[os.path.relpath(path, out)] = open(path, "rb").read()
    return found


def differing(a: dict[str, bytes], b: dict[str, bytes]) -> list[str]:
    """The paths whose bytes differ (or that one side lacks): the message of a failed comparison."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def start(tmp_path, point: str, args: list[str]) -> tuple[subprocess.Popen, str]:
    marker = str(tmp_path / f"marker-{point}-{time.monotonic_ns()}")
    proc = subprocess.Popen([sys.executable, HARNESS, marker, point, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, marker


def wait_for(proc: subprocess.Popen, marker: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(marker):
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (rc {proc.returncode}) before reaching the fault point:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run did not reach the fault point in time")
        time.sleep(0.05)


def kill_at(tmp_path, job: str, point: str, args: list[str]) -> None:
    proc, marker = start(tmp_path, point, args)
    wait_for(proc, marker)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    KILLS.append((job, point))


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "knowmix.cli", *args], capture_output=True, text=True, timeout=600)


def output_files(out: str) -> dict[str, bytes]:
    """The output proper: without the lock file and a dead run's leftovers."""
    return {k: v for k, v in files_of(out).items() if k != LOCK_NAME and not k.startswith((".staging-", ".old-"))}


def check_job(tmp_path, job: str, args: list[str], out: str, points_kept: list[str], point_fresh: str) -> None:
    first = run(args)
    assert first.returncode == 0, first.stderr
    reference = files_of(out)
    assert "manifest.json" in reference and not any(k.startswith((".", "_spill")) for k in reference), sorted(reference)
    open_shard_dir(out)

    # killed with the previous output in place: it is untouched (and still verifies), or, killed inside the
    # swap, no manifest is left to accept
    for point in points_kept:
        kill_at(tmp_path, job, point, args)
        leftovers = set(files_of(out)) - set(reference)
        assert LOCK_NAME in leftovers  # the dead run's lock, which the rerun takes over
        if point == "swap":
            assert not os.path.exists(os.path.join(out, "manifest.json"))
            with pytest.raises(ContractError, match="missing"):
                open_shard_dir(out)
            # the killed run's output was complete: whoever takes the lock next finishes its swap
            lock, said = OutputLock(out, "test"), []
            lock.acquire()
            assert len(finish_swaps(out, said.append)) == 1 and "finishing the swap" in said[0]
            lock.release()
            assert output_files(out) == reference, differing(output_files(out), reference)
            open_shard_dir(out)
        else:
            assert output_files(out) == reference, (point, differing(output_files(out), reference))
            open_shard_dir(out)

    # killed with no previous output: nothing a consumer accepts
    shutil.rmtree(out)
    kill_at(tmp_path, job, point_fresh, args)
    assert not os.path.exists(os.path.join(out, "manifest.json"))
    with pytest.raises(ContractError):
        open_shard_dir(out)
    if point_fresh in ("spill", "shard", "manifest"):  # the dead run's partial output is there, staged
        assert any(k.startswith(".staging-") for k in files_of(out))

    # the rerun takes over the stale lock, clears the leftovers, and equals the uninterrupted run
    again = run(args)
    assert again.returncode == 0, again.stderr
    assert "taking over a stale lock" in again.stderr, again.stderr
    assert files_of(out) == reference, differing(files_of(out), reference)
    open_shard_dir(out)


# ---------------------------------------------------------------------------------------------- the jobs


def clean_args(out: str) -> list[str]:
    return ["clean", "--source", f"news={NEWS}", "--output", out, "--num-shards", "2"]


def test_kill_9_of_clean(tmp_path):
    out = str(tmp_path / "docs")
    check_job(tmp_path, "clean", clean_args(out), out, points_kept=["spill", "manifest", "swap"], point_fresh="spill")


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory):
    from tests.kg.helpers import encyclopedia_docs, write_docs

    return write_docs(str(tmp_path_factory.mktemp("faultdocs") / "docs"), encyclopedia_docs(drcd=False)[:60])


def test_kill_9_of_kg_samples(tmp_path, docs_dir):
    from tests.kg.helpers import ADMIN, WORLD

    out = str(tmp_path / "knowledge")
    args = ["kg-samples", "--kg", ADMIN, "--kg", WORLD, "--docs", docs_dir, "--output", out, "--num-shards", "2"]
    check_job(tmp_path, "kg-samples", args, out, points_kept=["shard", "staged"], point_fresh="manifest")


def test_kill_9_of_tokenize(tmp_path, docs_dir):
    from tests.pipelines.helpers_tokenize import all_fixture_texts, write_bert_vocab

    vocab = write_bert_vocab(str(tmp_path / "bert" / "vocab.txt"), all_fixture_texts())
    out = str(tmp_path / "pretrain")
    args = ["tokenize", "--input", docs_dir, "--output", out, "--tokenizer", f"wordpiece:{vocab}", "--num-shards", "2"]
    check_job(tmp_path, "tokenize", args, out, points_kept=["shard", "swap"], point_fresh="shard")


# ---------------------------------------------------------------------------------------------- one run at a time


def test_a_second_run_into_the_same_directory_refuses_with_one_line(tmp_path):
    out = str(tmp_path / "docs")
    first, marker = start(tmp_path, "spill", clean_args(out))
    try:
        wait_for(first, marker)
        second = run(clean_args(out))
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert "another knowmix run is writing this directory" in lines[0] and f"pid {first.pid} " in lines[0]
        assert not os.path.exists(os.path.join(out, "manifest.json"))
    finally:
        first.kill()
        first.communicate()
    KILLS.append(("clean", "lock"))


def test_the_lock_refuses_in_process_and_is_released(tmp_path):
    """Two OutputRuns in one process (flock is per open file): the second refuses; after the first, one works."""
    from knowmix.errors import UserError
    from knowmix.outdir import OutputRun

    out = str(tmp_path / "o")
    with OutputRun(out, command="first") as run_a:
        with pytest.raises(UserError, match="another knowmix run .*: first"):
            OutputRun(out, command="second").__enter__()
        assert os.path.isdir(run_a.staging)
    assert not os.path.exists(os.path.join(out, LOCK_NAME)) and os.listdir(out) == []
    with OutputRun(out, command="third"):
        pass


# ---------------------------------------------------------------------------------------------- refused up front


def one_line_refusal(capsys, args: list[str], *needles: str) -> None:
    capsys.readouterr()
    assert knowmix(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(n in err[0] for n in needles), err


def test_input_equal_to_output_is_refused_and_kept(tmp_path, docs_dir, capsys):
    from tests.kg.helpers import ADMIN
    from tests.pipelines.helpers_tokenize import all_fixture_texts, write_bert_vocab

    docs = str(tmp_path / "docs")
    shutil.copytree(docs_dir, docs)
    before = files_of(docs)
    vocab = write_bert_vocab(str(tmp_path / "vocab.txt"), all_fixture_texts())
    one_line_refusal(capsys, ["tokenize", "--input", docs, "--output", docs, "--tokenizer", f"wordpiece:{vocab}"],
                     "is the output directory itself")
    one_line_refusal(capsys, ["kg-samples", "--kg", ADMIN, "--docs", docs, "--output", docs, "--num-shards", "1"],
                     "is the output directory itself")
    # an input inside the output directory is refused too
    one_line_refusal(capsys, ["kg-samples", "--kg", ADMIN, "--docs", docs, "--output", str(tmp_path)], "lies inside")
    assert files_of(docs) == before
    open_shard_dir(docs)


def test_clean_inputs_inside_the_output_are_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    shutil.copy(NEWS, out / "shards" / "news.txt")
    one_line_refusal(capsys, ["clean", "--source", f"news={out}/shards/*.txt", "--output", str(out)],
                     "news.txt", "lies inside the output directory")
    assert (out / "shards" / "news.txt").read_bytes() == open(NEWS, "rb").read()


def test_an_output_that_is_a_file_or_under_one(tmp_path, docs_dir, capsys):
    from tests.kg.helpers import ADMIN

    blocker = tmp_path / "file"
    blocker.write_text("keep me", encoding="utf-8")
    for out, needle in ((str(blocker), "exists and is not a directory"), (str(blocker / "sub"), "is a file")):
        one_line_refusal(capsys, clean_args(out), needle)
        one_line_refusal(capsys, ["kg-samples", "--kg", ADMIN, "--docs", docs_dir, "--output", out, "--num-shards", "1"],
                         needle)
    one_line_refusal(capsys, ["spm-train", "--docs", docs_dir, "--output", str(tmp_path)], "is a directory")
    one_line_refusal(capsys, ["spm-train", "--docs", docs_dir, "--output", str(blocker / "spm")], "not a directory")
    assert blocker.read_text(encoding="utf-8") == "keep me"


def test_a_failed_run_leaves_the_previous_output(tmp_path, capsys):
    """A glob that matches nothing, an unknown runner: refused before anything is written; the output stays."""
    out = str(tmp_path / "docs")
    assert knowmix(clean_args(out)) == 0
    before = files_of(out)
    one_line_refusal(capsys, ["clean", "--source", f"news={tmp_path}/none/*.txt", "--output", out], "matches no file")
    one_line_refusal(capsys, [*clean_args(out), "--runner", "Bogus"], "--runner Bogus")
    assert files_of(out) == before
    open_shard_dir(out)
