"""The image that `make docker` builds runs the demo (README's `docker run --rm knowmix`).

Opt-in: needs a Docker daemon and a built image, so it runs only with KNOWMIX_DOCKER_IMAGE set to the image's
tag (`make docker && KNOWMIX_DOCKER_IMAGE=knowmix pytest tests/knowmix/test_docker.py`). The demo runs with two
training steps; the results are read on the host through a bind mount.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess

import pyarrow as pa
import pytest

import knowmix

IMAGE = os.environ.get("KNOWMIX_DOCKER_IMAGE", "")
pytestmark = pytest.mark.skipif(
    not IMAGE or shutil.which("docker") is None, reason="set KNOWMIX_DOCKER_IMAGE to a built image (make docker)"
)


def docker(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def test_image_version_is_this_checkout():
    res = docker("run", "--rm", IMAGE, "-V")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["knowmix", knowmix.__version__]


def test_image_holds_no_wheelhouse_or_pip_cache():
    res = docker("run", "--rm", "--entrypoint", "sh", IMAGE, "-c",
                 "ls -d /tmp/wheelhouse /root/.cache/pip /opt/knowmix/lib/python3.11/site-packages/torch/include"
                 " 2>/dev/null; true")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


def test_demo_runs_in_the_image(tmp_path):
    res = docker("run", "--rm", "-v", f"{tmp_path}:/work/out", IMAGE,
                 "demo", "--output", "/work/out/demo", "--train-steps", "2")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "\nResults:\n" in res.stdout
    demo = tmp_path / "demo"
    # every stage of the flow ran: a stage skipped silently would leave its folder missing
    for name in ("docs", "knowledge", "pretrain", "ktok"):
        manifest = json.loads((demo / name / "manifest.json").read_text(encoding="utf-8"))
        rows = 0
        for shard in glob.glob(str(demo / name / "shards" / "*.arrow")):
            with pa.memory_map(shard) as src:
                rows += pa.ipc.open_file(src).read_all().num_rows
        assert rows > 0 and rows == sum(s["rows"] for s in manifest["shards"]), name
    assert (demo / "tok" / "spm.model").is_file()
    assert (demo / "hf-model" / "tokenizer.json").is_file()
    assert (demo / "hf-model" / "model.safetensors").is_file()
