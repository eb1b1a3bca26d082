"""SIGTERM: the run writes a checkpoint at the end of the current step and exits 0; --resume continues from it.
Also: only the last `keep` checkpoints remain and no temporary checkpoint directory is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.trainer.helpers import make_shards, tiny_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_sigterm_checkpoints_and_resumes(tmp_path):
    pre, ktok = make_shards(str(tmp_path / "d"))
    out = tmp_path / "run"
    args = tiny_overrides(pre, ktok, str(out), **{"train.max_steps": 1000000, "checkpoint.interval": 2,
                                                  "checkpoint.keep": 2})
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "knowmix.trainer.cli", "train", "", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 300  # generous: a wait for progress, not a timing assertion
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert "SIGTERM" in stdout
    names = sorted(os.listdir(out / "checkpoints"))
    assert len(names) == 2 and all(n.startswith("step-") for n in names), names  # keep = 2, no .tmp-*
    last = int(names[-1].split("-")[1])
    assert last >= 3 and (out / "checkpoints" / names[-1] / "COMPLETE").exists()

    args = tiny_overrides(pre, ktok, str(out), **{"train.max_steps": last + 2, "checkpoint.interval": 2,
                                                  "checkpoint.keep": 2})
    done = subprocess.run([sys.executable, "-m", "knowmix.trainer.cli", "train", "", *args, "--resume"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stdout and f"(step {last})" in done.stdout
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps[-2:] == [last + 1, last + 2]
