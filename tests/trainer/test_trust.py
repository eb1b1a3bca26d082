"""The trainer trusts nothing it is handed, each case through the real CLI entry
(``knowmix.cli.main``): shard checksums (``--no-verify``), the tokenizer file against both manifests, manifest
paths confined to their directory, checkpoints checked against their manifest before torch reads them, and user
errors as one line + exit 2."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil

import pytest
import torch

from knowmix.cli import main as knowmix_main
from tests.trainer.helpers import make_shards, tiny_overrides


def run_cli(argv, capsys) -> tuple[int, str]:
    """``knowmix ...`` in-process; return (exit status, stderr). A traceback would escape as an exception."""
    try:
        rc = knowmix_main(argv)
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    return rc, capsys.readouterr().err.strip()


def one_line(err: str) -> str:
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(str(tmp_path_factory.mktemp("trust") / "d"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, shards):
    """A finished 2-step run with a checkpoint at steps 1 and 2."""
    pre, ktok = shards
    out = tmp_path_factory.mktemp("trust-run") / "run"
    args = tiny_overrides(pre, ktok, str(out), **{"train.max_steps": 2, "checkpoint.interval": 1, "checkpoint.keep": 5})
    assert knowmix_main(["train", "", *args]) == 0
    return out


def train_args(pre, ktok, out, **extra):
    return ["train", "", *tiny_overrides(str(pre), str(ktok), str(out), **{"train.max_steps": 1, **extra})]


# ------------------------------------------------------------------------------------------ shard checksums


def test_checksums_always_on_and_no_verify_flag(tmp_path, shards, capsys):
    pre, ktok = shards
    bad = tmp_path / "pre"
    shutil.copytree(pre, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = "0" * 64  # the shard is fine; its recorded checksum is not
    (bad / "manifest.json").write_text(json.dumps(manifest))
    rc, err = run_cli(train_args(bad, ktok, tmp_path / "r1"), capsys)
    assert rc == 2 and "sha256" in one_line(err) and "data.pretrain" in err
    # the old config switch is gone, and says what replaced it
    rc, err = run_cli(train_args(bad, ktok, tmp_path / "r2", **{"data.verify": "false"}), capsys)
    assert rc == 2 and "--no-verify" in one_line(err)
    # --no-verify skips the hashing (sizes still checked) ...
    rc, err = run_cli([*train_args(bad, ktok, tmp_path / "r3"), "--no-verify"], capsys)
    assert rc == 0, err
    # ... but not the size check: a truncated shard is refused even then
    shard = bad / manifest["shards"][0]["path"]
    shard.write_bytes(shard.read_bytes()[:-10])
    rc, err = run_cli([*train_args(bad, ktok, tmp_path / "r4"), "--no-verify"], capsys)
    assert rc == 2 and "bytes" in one_line(err) and shard.name in err


# ------------------------------------------------------------------------------------------ tokenizer file


@pytest.mark.parametrize("which", ["pretrain", "ktok"])
def test_tokenizer_file_hashed_against_its_manifest(tmp_path, shards, which, capsys):
    """The file the run would copy (and export ship) must be the one the manifest's sha256 names."""
    pre, ktok = shards
    dirs = {"pretrain": tmp_path / "pretrain", "ktok": tmp_path / "ktok"}
    shutil.copytree(pre, dirs["pretrain"])
    shutil.copytree(ktok, dirs["ktok"])
    vocab = dirs[which] / "vocab.txt"
    vocab.write_text(vocab.read_text(encoding="utf-8").replace("[MASK]", "[MSK]"), encoding="utf-8")
    out = tmp_path / "run"
    rc, err = run_cli(train_args(dirs["pretrain"], dirs["ktok"], out), capsys)
    assert rc == 2, err
    assert "vocab.txt" in one_line(err) and "tokenizer.sha256" in err
    assert ("data.pretrain" if which == "pretrain" else "data.knowledge") in err
    assert not (out / "tokenizer").exists()  # nothing copied


def test_shards_of_two_tokenizers_refused(tmp_path, shards, capsys):
    """Knowledge shards made with another tokenizer than the pretrain shards (each consistent with its own
    manifest) are refused: the path production takes, not a helper only tests call."""
    pre, ktok = shards
    other = tmp_path / "ktok"
    shutil.copytree(ktok, other)
    vocab = other / "vocab.txt"
    vocab.write_text(vocab.read_text(encoding="utf-8") + "新\n", encoding="utf-8")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["tokenizer"].update(sha256=sha(vocab), vocab_size=manifest["tokenizer"]["vocab_size"] + 1)
    (other / "manifest.json").write_text(json.dumps(manifest))
    rc, err = run_cli(train_args(pre, other, tmp_path / "run"), capsys)
    assert rc == 2 and "tokenizer differs" in one_line(err) and "ktok" in err


def test_tokenizer_copy_matches_manifest(run_dir, shards):
    pre, _ = shards
    manifest = json.loads(open(os.path.join(pre, "manifest.json")).read())
    assert sha(run_dir / "tokenizer" / "vocab.txt") == manifest["tokenizer"]["sha256"]


# ------------------------------------------------------------------------------------------ confinement


def escape_shard(root, how: str):
    """Move shard 0 out of ``root`` and point the manifest at it by ``how`` (dotdot | absolute)."""
    manifest = json.loads((root / "manifest.json").read_text())
    src = root / manifest["shards"][0]["path"]
    outside = root.parent / "outside.arrow"
    shutil.move(src, outside)
    manifest["shards"][0]["path"] = "../outside.arrow" if how == "dotdot" else str(outside)
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_manifest_shard_paths_confined(tmp_path, shards, how, capsys):
    pre, ktok = shards
    bad = tmp_path / "box" / "pre"
    shutil.copytree(pre, bad)
    escape_shard(bad, how)  # the shard itself is intact and its checksum right: only its path escapes
    rc, err = run_cli(train_args(bad, ktok, tmp_path / "run"), capsys)
    assert rc == 2 and "outside.arrow" in one_line(err)
    assert ("leaves the directory" if how == "dotdot" else "not a relative path") in err


def test_manifest_tokenizer_path_confined(tmp_path, shards, capsys):
    """A manifest naming ``../secret.txt`` as its tokenizer must not get that file copied into the run."""
    pre, ktok = shards
    bad = tmp_path / "box" / "pre"
    shutil.copytree(pre, bad)
    secret = tmp_path / "box" / "secret.txt"
    secret.write_text("not a vocabulary\n")
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["tokenizer"].update(file="../secret.txt", sha256=sha(secret))
    (bad / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "run"
    rc, err = run_cli(train_args(bad, ktok, out), capsys)
    assert rc == 2 and "../secret.txt" in one_line(err)
    assert not any(p.name == "secret.txt" for p in out.rglob("*"))


# ------------------------------------------------------------------------------------------ checkpoints


class _Planted:
    """Unpickling this creates a directory: proof that a file was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def copy_run(run_dir, dest):
    shutil.copytree(run_dir, dest)
    return dest


def resume_args(run, shards):
    pre, ktok = shards
    return train_args(pre, ktok, run, **{"train.max_steps": 3, "checkpoint.interval": 1, "checkpoint.keep": 5}) + \
        ["--resume"]


def flip_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_checkpoint_manifest_lists_every_file(run_dir):
    step = run_dir / "checkpoints" / "step-0000002"
    m = json.loads((step / "manifest.json").read_text())
    assert m["kind"] == "checkpoint" and m["step"] == 2 and m["world"] == 1
    on_disk = sorted(p.name for p in step.iterdir() if p.name != "manifest.json")
    assert sorted(f["path"] for f in m["files"]) == on_disk
    for f in m["files"]:
        assert f["sha256"] == sha(step / f["path"]) and f["bytes"] == (step / f["path"]).stat().st_size


@pytest.mark.parametrize("target", [".metadata", "__0_0.distcp", "rank-00000.pt"])
def test_flipped_byte_refused_by_resume_and_export(tmp_path, run_dir, shards, target, capsys):
    run = copy_run(run_dir, tmp_path / "run")
    flip_byte(run / "checkpoints" / "step-0000002" / target)
    rc, err = run_cli(resume_args(run, shards), capsys)
    assert rc == 2 and target in one_line(err) and "sha256" in err
    rc, err = run_cli(["export", str(run), "--hf", str(tmp_path / "hf")], capsys)
    assert rc == 2 and target in one_line(err) and "sha256" in err
    assert not (tmp_path / "hf" / "model.safetensors").exists()


def test_foreign_file_in_checkpoint_refused(tmp_path, run_dir, shards, capsys):
    run = copy_run(run_dir, tmp_path / "run")
    (run / "checkpoints" / "step-0000002" / "__1_0.distcp").write_bytes(b"\0" * 64)
    rc, err = run_cli(resume_args(run, shards), capsys)
    assert rc == 2 and "__1_0.distcp" in one_line(err) and "not listed" in err
    rc, err = run_cli(["export", str(run), "--hf", str(tmp_path / "hf")], capsys)
    assert rc == 2 and "not listed" in one_line(err)


@pytest.mark.parametrize("keep_manifest", [True, False])
def test_planted_pickle_never_unpickled(tmp_path, run_dir, shards, keep_manifest, capsys):
    """DCP's .metadata is read with pickle: a foreign checkpoint (no manifest) or a tampered one (a .metadata
    the manifest does not describe) is refused before torch reads it, so the planted object never runs."""
    run = copy_run(run_dir, tmp_path / "run")
    step = run / "checkpoints" / "step-0000002"
    marker = tmp_path / "unpickled"
    (step / ".metadata").write_bytes(pickle.dumps(_Planted(str(marker))))
    if not keep_manifest:
        (step / "manifest.json").unlink()
    for argv in (resume_args(run, shards), ["export", str(run), "--hf", str(tmp_path / "hf")]):
        rc, err = run_cli(argv, capsys)
        assert rc == 2, err
        assert (".metadata" if keep_manifest else "no manifest.json") in one_line(err)
        assert not marker.exists()


def test_resume_and_export_of_a_verified_checkpoint(tmp_path, run_dir, shards, capsys):
    run = copy_run(run_dir, tmp_path / "run")
    rc, err = run_cli(resume_args(run, shards), capsys)
    assert rc == 0, err
    rc, err = run_cli(["export", str(run), "--checkpoint", "1", "--hf", str(tmp_path / "hf")], capsys)
    assert rc == 0, err
    assert (tmp_path / "hf" / "model.safetensors").is_file()


# ------------------------------------------------------------------------------------------ one line, exit 2


def test_export_missing_step_is_one_line(run_dir, tmp_path, capsys):
    for which in ("7", "step-0000009", str(tmp_path / "nowhere")):
        rc, err = run_cli(["export", str(run_dir), "--checkpoint", which, "--hf", str(tmp_path / "hf")], capsys)
        assert rc == 2 and "no such checkpoint" in one_line(err)
        assert "1, 2" in err or "nowhere" in err  # the steps there are


@pytest.mark.parametrize("text", ["{not json", '["a list"]', '{"encoder": {"hidden_size": 4, "bogus": 1}}',
                                  "\udcff".encode("utf-8", "surrogateescape").decode("latin-1")])
def test_malformed_run_json_is_one_line(tmp_path, run_dir, shards, text, capsys):
    run = copy_run(run_dir, tmp_path / "run")
    (run / "run.json").write_text(text, encoding="latin-1")
    rc, err = run_cli(["export", str(run), "--hf", str(tmp_path / "hf")], capsys)
    assert rc == 2 and "run.json" in one_line(err)
    if "encoder" not in text:  # unreadable: resume refuses too (it would rewrite a readable one)
        rc, err = run_cli(resume_args(run, shards), capsys)
        assert rc == 2 and "run.json" in one_line(err)


def test_export_onto_a_file_is_one_line(tmp_path, run_dir, capsys):
    target = tmp_path / "model.bin"
    target.write_text("x")
    rc, err = run_cli(["export", str(run_dir), "--hf", str(target)], capsys)
    assert rc == 2 and "not a directory" in one_line(err)
    assert target.read_text() == "x"


@pytest.mark.parametrize("override, words", [
    ({"optim.lr": -1}, "optim.lr"), ({"optim.lr": "nan"}, "optim.lr"), ({"model.dropout": 2}, "model.dropout"),
    ({"optim.beta2": 1.5}, "optim.beta2"), ({"train.prefetch": -1}, "train.prefetch"),
    ({"train.tensorboard": '"false"'}, "not a boolean"),
])
def test_bad_config_values_are_one_line(tmp_path, shards, override, words, capsys):
    pre, ktok = shards
    rc, err = run_cli(train_args(pre, ktok, tmp_path / "run", **override), capsys)
    assert rc == 2 and words in one_line(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line(tmp_path, shards, capsys):
    pre, ktok = shards
    rc, err = run_cli(train_args(pre, ktok, tmp_path / "run", **{"train.device": '"cuda"'}), capsys)
    assert rc == 2 and "train.device" in one_line(err) and "no CUDA device" in err


def test_output_dir_is_a_file_is_one_line(tmp_path, shards, capsys):
    pre, ktok = shards
    target = tmp_path / "run"
    target.write_text("x")
    rc, err = run_cli(train_args(pre, ktok, target), capsys)
    assert rc == 2 and "train.output_dir" in one_line(err) and "not a directory" in err


def test_non_utf8_config_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(b"[train]\nseed = 1 # \xff\xfe\n")
    rc, err = run_cli(["train", str(cfg)], capsys)
    assert rc == 2 and "UTF-8" in one_line(err)
