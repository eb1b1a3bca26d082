"""knowmix as a user installs it, not as the checkout runs it.

Before: the wheel installed the repository's folders as top-level packages ``corpora``, ``kg``, ``pipelines`` and
``trainer``; another distribution's ``trainer`` (a dependency of a popular TTS toolkit) replaced ours and
``knowmix train`` failed on an import. Now they install as ``knowmix.corpora`` … ``knowmix.trainer``.

``test_the_installed_wheel_runs_the_demo`` builds a wheel from this repository, installs it with pip into a fresh
venv (no Makefile, no editable install; the third-party packages of the test's own environment are reached
through a ``.pth`` line, so nothing is downloaded), puts a foreign top-level ``trainer`` package beside it, and
runs ``knowmix demo`` from an empty directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUBPACKAGES = ("corpora", "kg", "pipelines", "trainer")


def _modules(pkg: str) -> list[str]:
    folder = os.path.join(ROOT, pkg)
    return sorted(f"knowmix.{pkg}.{n[:-3]}" for n in os.listdir(folder) if n.endswith(".py") and n != "__init__.py")


def test_every_module_imports_under_the_knowmix_namespace_only():
    """Importing every module of the four subpackages binds no top-level corpora/kg/pipelines/trainer: a leftover
    ``from pipelines.x import`` would load a second copy of a module under another name."""
    mods = [m for pkg in SUBPACKAGES for m in _modules(pkg)]
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {SUBPACKAGES!r})\n"
        "print('TOP-LEVEL', bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TOP-LEVEL []" in proc.stdout, proc.stdout


@pytest.fixture(scope="module")
def wheel_path(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), ROOT],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (name,) = [p for p in os.listdir(out) if p.endswith(".whl")]
    return os.path.join(out, name)


def test_the_wheel_has_one_top_level_package(wheel_path):
    names = zipfile.ZipFile(wheel_path).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"knowmix"}, tops
    for name in ("knowmix/trainer/configs/tiny.toml", "knowmix/pipelines/resources/lid.176.ftz",
                 "knowmix/corpora/fixtures/world_triples.tsv", "knowmix/trainer/loop.py"):
        assert name in names


def test_the_installed_wheel_runs_the_demo(wheel_path, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index",
                           wheel_path], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the test environment's third-party packages, as a plain path line: its own .pth files (the editable
    # install of this checkout among them) are not processed, so the checkout stays out of reach
    with open(os.path.join(site, "zz_test_deps.pth"), "w") as fh:
        fh.write(sysconfig.get_paths()["purelib"] + "\n")
    foreign = os.path.join(site, "trainer")
    os.makedirs(foreign)
    with open(os.path.join(foreign, "__init__.py"), "w") as fh:
        fh.write("raise ImportError('this is another distribution\\'s trainer package')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KNOWMIX_CONFIGS")}
    work = tmp_path / "user"
    work.mkdir()
    where = subprocess.run([py, "-c", "import knowmix.trainer.loop as m; print(m.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr[-2000:]
    assert where.stdout.strip().startswith(site), where.stdout  # the installed copy, not the checkout
    demo = subprocess.run([str(venv / "bin" / "knowmix"), "demo", "--output", "out", "--train-steps", "3"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert demo.returncode == 0, (demo.stdout[-3000:], demo.stderr[-3000:])
    for stage in ("quality-train", "clean", "kg-samples", "spm-train", "tokenize", "train", "export"):
        assert f"== {stage}" in demo.stdout, stage
    hf = work / "out" / "hf-model"
    assert (hf / "tokenizer.json").is_file() and (hf / "config.json").is_file()
