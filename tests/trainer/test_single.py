"""Single-process trainer tests: config errors, masking, overfitting, resume equivalence, fp16 skipping."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from tests.trainer.helpers import SPECIAL_IDS, inf_gradient_at, make_shards, tiny_overrides, train_tiny
from knowmix.trainer.cli import train_main
from knowmix.trainer.config import load_config
from knowmix.trainer.masking import rng_for, triple_mask, whole_word_mask


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return make_shards(str(root))


# ------------------------------------------------------------------------------------------ config errors


def test_config_typo_is_one_line(tmp_path, shards, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[train]\nmax_step = 3\n')
    assert train_main([str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "c.toml" in err and "unknown key train.max_step" in err

    assert train_main([str(cfg).replace("c.toml", "missing.toml")]) == 2
    assert "no such config file" in capsys.readouterr().err

    cfg.write_text('[trian]\nseed = 1\n')
    assert train_main([str(cfg)]) == 2
    assert "unknown section [trian]" in capsys.readouterr().err

    cfg.write_text("")
    assert train_main([str(cfg), "optim.lr=fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "optim.lr" in err

    assert train_main([str(cfg), "train.precision=fp8"]) == 2
    assert "expected one of bf16, fp16, fp32" in capsys.readouterr().err


def test_missing_shard_dir_is_one_line(tmp_path, shards, capsys):
    pre, ktok = shards
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    args = tiny_overrides(str(tmp_path / "nope"), ktok, str(tmp_path / "run"))
    assert train_main([str(cfg), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "data.pretrain" in err and "nope" in err and "no such shard directory" in err


def test_bad_checksum_refused(tmp_path, shards, capsys):
    pre, ktok = shards
    bad = tmp_path / "pre"
    shutil.copytree(pre, bad)
    shard = next((bad / "shards").iterdir())
    shard.write_bytes(shard.read_bytes()[:-8] + b"\0" * 8)
    assert train_main(["", *tiny_overrides(str(bad), ktok, str(tmp_path / "run"))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sha256" in err


def test_overrides_parse():
    cfg = load_config(None, ["train.max_steps=7", "optim.lr=3e-4", "data.pretrain=out/x", "train.zero=2",
                             "train.activation_checkpointing=true", "tasks.relation=0"])
    assert (cfg.train.max_steps, cfg.optim.lr, cfg.data.pretrain, cfg.train.zero) == (7, 3e-4, "out/x", 2)
    assert cfg.train.activation_checkpointing is True and cfg.tasks.relation == 0.0


def test_repo_configs_load():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for name in ("base.toml", "tiny.toml"):
        load_config(os.path.join(root, "configs", name))


# ------------------------------------------------------------------------------------------ masking


def test_whole_word_mask_is_deterministic_and_whole():
    rng_ids = np.random.default_rng(0)
    ids = np.concatenate([[2], rng_ids.integers(9, 50, 200), [3]])
    ws = rng_ids.random(202) < 0.5
    ws[0] = ws[1] = ws[-1] = True
    special = np.array(sorted(set(SPECIAL_IDS.values())))
    rand_ids = np.arange(9, 50)
    a = whole_word_mask(ids, ws, rng_for(1, 5, 0, 0, 0), 0.15, 4, special, rand_ids)
    b = whole_word_mask(ids, ws, rng_for(1, 5, 0, 0, 0), 0.15, 4, special, rand_ids)
    c = whole_word_mask(ids, ws, rng_for(1, 6, 0, 0, 0), 0.15, 4, special, rand_ids)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    out, pos, labels = a
    assert 0 not in pos and 201 not in pos  # specials never predicted
    assert np.array_equal(labels, ids[pos])
    assert 20 <= len(pos) <= 40  # about 15% of 200
    chosen = set(pos.tolist())
    # whole words: a chosen token's whole word is chosen
    starts = [i for i in range(1, 201) if ws[i]] + [201]
    for s, e in zip(starts[:-1], starts[1:]):
        inside = [i in chosen for i in range(s, e)]
        assert all(inside) or not any(inside)
    assert (out[pos] == 4).mean() > 0.6


def test_triple_mask_relation_or_entities():
    ids = np.arange(20)
    seen = set()
    for step in range(20):
        out, pos, labels = triple_mask(ids, (3, 5), [(10, 12), (15, 16)], rng_for(0, step, 0, 1, 0), 4)
        seen.add(tuple(pos))
        assert (out[pos] == 4).all() and np.array_equal(labels, ids[pos])
    assert seen == {(3, 4), (10, 11, 15)}


# ------------------------------------------------------------------------------------------ training


def test_tiny_set_overfits(tmp_path):
    pre, ktok = make_shards(str(tmp_path / "d"), n_pretrain=8, n_knowledge=12, n_shards=1)
    out = tmp_path / "run"
    args = tiny_overrides(pre, ktok, str(out), **{
        "train.max_steps": 80, "train.micro_batch_size": 8, "optim.lr": 3e-3, "optim.warmup_steps": 5,
        "optim.schedule": '"constant"', "model.dropout": 0.0, "model.attention_dropout": 0.0,
        "model.hidden_size": 64, "model.intermediate_size": 128, "train.log_every": 5,
    })
    assert train_main(["", *args]) == 0
    m = read_metrics(str(out))
    first, last = m[0], m[-1]
    for key in ("loss/mlm", "loss/relation", "loss/substitution", "loss/triple_mask"):
        assert first[key] is not None and last[key] is not None
    assert last["loss"] < 0.35 * first["loss"], (first["loss"], last["loss"])
    assert last["loss/mlm"] < 0.75 * first["loss/mlm"]  # fresh masks every step: slower than the heads
    for key in ("step", "loss", "acc/mlm", "acc/relation", "lr", "grad_norm", "loss_scale", "tokens_per_s", "mfu"):
        assert key in last
    assert os.path.isdir(out / "tensorboard") is False  # disabled by the overrides
    assert os.path.exists(out / "checkpoints" / "step-0000080" / "COMPLETE")


def test_resume_equals_uninterrupted(tmp_path, shards):
    pre, ktok = shards
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    extra = {"train.max_steps": 6, "checkpoint.interval": 3, "checkpoint.keep": 5, "optim.warmup_steps": 2,
             "train.grad_accum": 2, "train.tensorboard": "true"}
    assert train_main(["", *tiny_overrides(pre, ktok, str(full), **extra)]) == 0
    assert (full / "tensorboard").is_dir()
    # the run "stopped" at step 3: a fresh output dir holding only the step-3 checkpoint, then --resume
    os.makedirs(resumed / "checkpoints")
    shutil.copytree(full / "checkpoints" / "step-0000003", resumed / "checkpoints" / "step-0000003")
    assert train_main(["", *tiny_overrides(pre, ktok, str(resumed), **extra), "--resume"]) == 0
    a = {r["step"]: r for r in read_metrics(str(full))}
    b = {r["step"]: r for r in read_metrics(str(resumed))}
    assert sorted(b) == [4, 5, 6]
    for step in (4, 5, 6):
        for key in ("loss", "loss/mlm", "loss/relation", "loss/substitution", "loss/triple_mask", "grad_norm", "lr"):
            assert b[step][key] == pytest.approx(a[step][key], rel=1e-6, abs=1e-7), (step, key)


def test_resume_without_checkpoint_starts_fresh(tmp_path, shards, capsys):
    pre, ktok = shards
    assert train_main(["", *tiny_overrides(pre, ktok, str(tmp_path / "r"), **{"train.max_steps": 1}), "--resume"]) == 0
    assert "no complete checkpoint" in capsys.readouterr().out


def test_single_path_when_knowledge_empty(tmp_path, shards):
    pre, _ = shards
    out = tmp_path / "run"
    assert train_main(["", *tiny_overrides(pre, "", str(out), **{"train.max_steps": 2})]) == 0
    m = read_metrics(str(out))
    assert m[-1]["loss/mlm"] is not None and m[-1]["loss/relation"] is None


def test_fp16_scaler_skips_injected_inf(tmp_path, shards):
    """CPU autocast(float16) + torch.amp.GradScaler("cpu"); an inf is put into a gradient at step index 7."""
    pre, ktok = shards
    out = tmp_path / "run"
    args = tiny_overrides(pre, ktok, str(out), **{"train.precision": '"fp16"', "train.max_steps": 9})
    train_tiny(args, after_backward=inf_gradient_at(7))
    m = {r["step"]: r for r in read_metrics(str(out))}
    assert all(r["loss_scale"] is not None for r in m.values())
    # the first steps may overflow on their own (initial scale 65536); the injected one must be skipped
    assert m[8]["skipped_steps"] == m[7]["skipped_steps"] + 1
    assert m[8]["loss_scale"] == m[7]["loss_scale"] / 2
    assert m[9]["skipped_steps"] == m[8]["skipped_steps"]  # and training goes on
    assert all(np.isfinite(r["loss"]) for r in m.values())


def test_fp16_stops_after_many_skipped(tmp_path, shards):
    from knowmix.trainer.loop import TrainingStopped

    pre, ktok = shards
    args = tiny_overrides(pre, ktok, str(tmp_path / "run"), **{"train.precision": '"fp16"', "train.max_steps": 10,
                                                               "train.max_skipped_steps": 3})
    with pytest.raises(TrainingStopped, match="3 fp16 steps in a row overflowed"):
        train_tiny(args, after_backward=inf_gradient_at(0, 1, 2, 3, 4))


# ------------------------------------------------------------------------------------------ data, export bits


@pytest.mark.parametrize("n_shards", [4, 1])
def test_ranks_read_disjoint_rows(tmp_path, n_shards):
    from knowmix.manifest import open_shard_dir
    from knowmix.trainer.data import ShardSet, Stream

    pre, _ = make_shards(str(tmp_path), n_pretrain=40, n_shards=n_shards, knowledge=False)
    sd = open_shard_dir(pre, kind="pretrain")
    seen = []
    for rank in (0, 1):
        s = ShardSet(sd, rank, 2)
        stream = Stream(s, s.local, seed=0, stream_id=0, rank=rank)
        seen.append(set(stream.take(len(stream))))
        assert stream.epoch == 1 and stream.cursor == 0
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 40


def test_stream_state_round_trip(tmp_path):
    from knowmix.manifest import open_shard_dir
    from knowmix.trainer.data import ShardSet, Stream

    pre, _ = make_shards(str(tmp_path), n_pretrain=20, knowledge=False)
    s = ShardSet(open_shard_dir(pre, kind="pretrain"), 0, 1)
    a = Stream(s, s.local, 3, 0, 0)
    a.take(17)
    state = a.state_dict()
    expected = a.take(9)  # crosses into epoch 1
    b = Stream(s, s.local, 3, 0, 0)
    b.load_state_dict(state)
    assert b.take(9) == expected


def test_task_weight_zero_leaves_task_out(tmp_path, shards):
    pre, ktok = shards
    out = tmp_path / "run"
    assert train_main(["", *tiny_overrides(pre, ktok, str(out), **{"train.max_steps": 2, "tasks.relation": 0})]) == 0
    for m in read_metrics(str(out)):
        assert m["loss/relation"] is None and m["loss/substitution"] is not None


def test_spm_tokenizer_export_refuses_a_broken_model(tmp_path):
    """A working SentencePiece export (tokenizer.json beside the model) is tested in test_hf_tokenizer.py; a
    model file that is not one is a one-line error, not an export that Hugging Face cannot load."""
    from knowmix.errors import UserError
    from knowmix.trainer.hf import write_tokenizer

    model = tmp_path / "zh.model"
    model.write_bytes(b"\x0a\x03spm")
    tok = {"kind": "spm", "file": "zh.model", "sha256": "x", "vocab_size": 9, "special_ids": dict(SPECIAL_IDS),
           "lowercase": False}
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError, match="zh.model: not a readable SentencePiece model"):
        write_tokenizer(str(out), tok, str(model), 512)


def test_fresh_run_refuses_existing_checkpoints(tmp_path, shards, capsys):
    pre, ktok = shards
    args = tiny_overrides(pre, ktok, str(tmp_path / "run"), **{"train.max_steps": 1})
    assert train_main(["", *args]) == 0
    assert train_main(["", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_host_sync_switch_changes_no_number(tmp_path, shards, precision):
    """The loop keeps the grad norm and the skip decision on the device (fused AdamW's found_inf, or GradScaler's)
    and reads them when logging; train.host_sync_every_step reads them every step. Same numbers either way,
    including a step with an inf gradient (index 2), which is skipped in both."""
    pre, ktok = shards
    runs = {}
    for sync in ("false", "true"):
        out = tmp_path / f"sync-{sync}"
        args = tiny_overrides(pre, ktok, str(out), **{"train.max_steps": 5, "train.log_every": 1,
                                                      "train.precision": f'"{precision}"',
                                                      "train.host_sync_every_step": sync})
        train_tiny(args, after_backward=inf_gradient_at(2))
        runs[sync] = read_metrics(str(out))
    assert len(runs["false"]) == len(runs["true"]) == 5
    for a, b in zip(runs["false"], runs["true"]):
        for key in a:
            if key not in ("tokens_per_s", "mfu"):
                assert a[key] == b[key], (key, a[key], b[key])
    m = {r["step"]: r for r in runs["false"]}
    skipped_before = m[2]["skipped_steps"]
    assert m[3]["skipped_steps"] == skipped_before + 1 and m[4]["skipped_steps"] == m[3]["skipped_steps"]
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["grad_norm"]) for r in runs["false"])
    if precision == "fp32":
        assert skipped_before == 0 and m[3]["grad_norm"] == 0.0  # the skipped step's norm is left out


def test_skipped_step_leaves_weights_unchanged(tmp_path, shards):
    """fp32: an inf gradient at the last step (index 2 of 3) is skipped on the device: the final weights equal
    those of a 2-step run (the skipped step changed nothing, optimizer state included)."""
    import torch

    from knowmix.trainer import checkpoint as ckpt
    from knowmix.trainer.hf import read_run_info
    from knowmix.trainer.heads import KnowmixForPretraining
    from knowmix.trainer.model import EncoderConfig

    pre, ktok = shards
    constant = {"optim.schedule": '"constant"'}  # the same learning rates whatever max_steps

    def weights(run):
        info = read_run_info(str(run))
        model = KnowmixForPretraining(EncoderConfig(**info["encoder"]), num_relations=info["num_relations"])
        ckpt.load_model_only(ckpt.latest(str(run / "checkpoints")), model)
        return model.state_dict()

    assert train_main(["", *tiny_overrides(pre, ktok, str(tmp_path / "two"), **{"train.max_steps": 2, **constant})]) == 0
    train_tiny(tiny_overrides(pre, ktok, str(tmp_path / "three"), **{"train.max_steps": 3, **constant}),
               after_backward=inf_gradient_at(2))
    a, b = weights(tmp_path / "two"), weights(tmp_path / "three")
    assert all(torch.equal(a[k], b[k]) for k in a)
