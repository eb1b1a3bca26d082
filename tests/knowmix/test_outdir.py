"""``knowmix.outdir``: the swap is interrupted at every one of its renames, and the lock's edge cases.

A run's failure at rename k (the filesystem refuses it; the process then ends) must leave either the previous
output or no manifest; the next run into the directory must finish the swap so the output is the complete new
one, and nothing of the dead run may stay behind. The real ``kill -9`` cases are in
``tests/pipelines/test_faults.py``.
"""

from __future__ import annotations

import json
import os

import pytest

from knowmix import outdir
from knowmix.errors import UserError
from knowmix.outdir import LOCK_NAME, OutputRun


def write_output(root: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)


def tree(root: str) -> dict[str, str]:
    found = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = open(path, encoding="utf-8").read()
    return found


OLD = {"manifest.json": "old manifest", "shards/part-0.arrow": "old 0", "shards/part-1.arrow": "old 1",
       "dead_letter/part-00000.jsonl": "old dead", "clusters/c.arrow": "old clusters", "notes.txt": "the user's"}
NEW = {"manifest.json": "new manifest", "shards/part-0.arrow": "new 0", "relations.json": "new relations"}
# notes.txt is not ours: it stays; clusters/ and dead_letter/ are knowmix entries the new output lacks: they go
AFTER = {**{k: v for k, v in NEW.items()}, "notes.txt": "the user's"}


def test_a_swap_interrupted_at_every_rename_is_finished_by_the_next_run(tmp_path, monkeypatch):
    real_replace = os.replace
    step = 0
    while True:
        step += 1
        out = str(tmp_path / f"out{step}")
        write_output(out, OLD)
        calls = []

        def failing_replace(src, dst, _step=step):
            calls.append(src)
            if len(calls) == _step:
                raise OSError(5, "Input/output error (injected)", src)
            return real_replace(src, dst)

        failed = False
        with OutputRun(out, command="interrupted", say=lambda m: None) as run:
            write_output(run.staging, NEW)
            monkeypatch.setattr(outdir.os, "replace", failing_replace)
            try:
                run.commit()
            except OSError:
                failed = True
            finally:
                monkeypatch.setattr(outdir.os, "replace", real_replace)
        if not failed:  # every rename has been interrupted once
            assert tree(out) == AFTER
            break
        # right after the failure: the previous output as it was, or no manifest at all
        visible = {k: v for k, v in tree(out).items() if not k.startswith(".")}
        assert visible.get("manifest.json") in (None, "old manifest"), (step, visible)
        if "manifest.json" in visible:
            assert visible == OLD
        # the next run takes the lock, finishes the swap, and leaves nothing of the dead run
        messages = []
        with OutputRun(out, command="next", say=messages.append):
            pass
        assert tree(out) == AFTER, (step, tree(out))
        assert any("finishing the swap" in m for m in messages), messages
    # the old manifest, 3 old entries (shards, dead_letter, clusters), 2 new entries (shards, relations.json)
    # and the new manifest: 7 renames, each interrupted once
    assert step == 8


def test_a_run_that_fails_before_the_swap_leaves_everything(tmp_path):
    out = str(tmp_path / "out")
    write_output(out, OLD)
    with pytest.raises(RuntimeError, match="boom"):
        with OutputRun(out) as run:
            write_output(run.staging, NEW)
            raise RuntimeError("boom")
    assert tree(out) == OLD


def test_a_stale_lock_is_taken_over_with_a_message(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 999999999, "host": "gone", "since": 0, "command": "knowmix clean"}))
    messages = []
    with OutputRun(str(out), say=messages.append):
        holder = json.loads((out / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid()
    assert len(messages) == 1 and "taking over a stale lock" in messages[0] and "pid 999999999 on host gone" in messages[0]
    assert not (out / LOCK_NAME).exists()


def test_leftovers_of_a_dead_run_are_removed(tmp_path):
    out = tmp_path / "out"
    write_output(str(out), {**OLD, ".staging-1-ab/shards/x.arrow": "partial", ".old-1-ab/y": "aside",
                            "_spill/a.arrow": "spill", "shards/part-2.arrow.tmp-0123": "temp shard",
                            "manifest.json.tmp-99": "temp manifest"})
    with OutputRun(str(out)):
        pass
    assert tree(str(out)) == OLD


def test_inputs_and_outputs_refused(tmp_path):
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    with pytest.raises(UserError, match="is the output directory itself"):
        OutputRun(str(out), [("--input", str(out) + "/")]).__enter__()
    with pytest.raises(UserError, match="lies inside the output directory"):
        OutputRun(str(out), [("--input", str(out / "shards" / "a.csv"))]).__enter__()
    os.symlink(out / "shards", tmp_path / "link")  # the same place under another name
    with pytest.raises(UserError, match="lies inside"):
        OutputRun(str(out), [("--input", str(tmp_path / "link" / "a.csv"))]).__enter__()
    with OutputRun(str(out), [("--input", str(tmp_path / "outside.csv"))]):
        pass
