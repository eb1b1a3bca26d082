"""The published model's training techniques in one process: R-Drop, layer-wise self-distillation, the cross-layer decaying
attention residual and multi-round MLM (the 2-process ZeRO runs are in dist_check.py / test_distributed.py)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from knowmix.errors import UserError
from knowmix.manifest import open_shard_dir
from tests.trainer.helpers import make_shards, tiny_overrides
from knowmix.trainer.cli import train_main
from knowmix.trainer.config import load_config, distill_layers
from knowmix.trainer.data import GeneralPath, TokenizerInfo, Vocab
from knowmix.trainer.heads import STAT_INDEX, KnowmixForPretraining, symmetric_kl
from knowmix.trainer.loss import weighted_sum
from knowmix.trainer.masking import assign_rounds
from knowmix.trainer.model import EncoderConfig

ALL_ON = {"distill.rdrop_alpha": 1.0, "distill.layer_beta": 0.5, "model.attn_residual_decay": 0.5,
          "mlm.mode": '"multiround"', "model.layers": 3}
SCALES = {"mlm": 1.0, "relation": 1.0, "substitution": 1.0, "triple_mask": 1.0, "rdrop": 1.0, "layer_distill": 1.0}


def loss_and_stats(model, batch, scales):
    """One forward: the loss weighted by ``scales`` (as the trainer does) and the stats vector."""
    terms, stats = model(batch)
    return weighted_sum(terms, scales), stats


def enc_config(dropout=0.1, gamma=0.0, layers=3) -> EncoderConfig:
    return EncoderConfig(vocab_size=40, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=64, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                         max_position_embeddings=32, attn_residual_decay=gamma)


def make_batch(seed=0, heads=True, rounds=False):
    """Two rows (one padded) with general-MLM and triple-mask predictions, a relation pair and two mentions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(9, 40, (2, 16), generator=g)
    ids[:, 0] = 2
    ids[1, 12:] = 0
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[1, 12:] = False
    b = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask,
         "mlm_pos": torch.tensor([3, 5, 6, 16 + 2, 16 + 9]), "mlm_labels": torch.tensor([10, 11, 12, 13, 14]),
         "mlm_task": torch.tensor([0, 0, 0, 1, 1])}
    if rounds:
        b["mlm_round"] = torch.tensor([0, 1, 1, 0, 0])
    if heads:
        b.update(rel_row=torch.tensor([0]), rel_e1=torch.tensor([1]), rel_e2=torch.tensor([7]),
                 rel_target=torch.tensor([[0.0, 0.5, 0.5, 0.0]]), sub_row=torch.tensor([1, 1]),
                 sub_start=torch.tensor([2, 6]), sub_end=torch.tensor([3, 8]), sub_label=torch.tensor([0, 1]))
    return b


def model_for(cfg: EncoderConfig, **kw) -> KnowmixForPretraining:
    torch.manual_seed(0)
    return KnowmixForPretraining(cfg, num_relations=4, **kw)


# ------------------------------------------------------------------------------------------ R-Drop


def test_rdrop_kl_exactly_zero_without_dropout_positive_with():
    b = make_batch()
    off = model_for(enc_config(dropout=0.0), rdrop=True).train()
    loss, stats = loss_and_stats(off, b, SCALES)
    i = STAT_INDEX["rdrop"]
    assert stats[i + 1] == 5 + 1 + 2  # masked tokens + relation pairs + mentions, once each
    assert stats[i].item() == 0.0  # the two copies are the same computation: KL exactly 0
    # and the task losses are those of one plain pass
    plain, pstats = loss_and_stats(model_for(enc_config(dropout=0.0)).train(), b, SCALES)
    for task in ("mlm", "triple_mask", "relation", "substitution"):
        j = STAT_INDEX[task]
        assert stats[j].item() == pytest.approx(pstats[j].item(), rel=1e-6)
        assert stats[j + 1] == pstats[j + 1]

    on = model_for(enc_config(dropout=0.1), rdrop=True).train()
    torch.manual_seed(1)
    loss, stats = loss_and_stats(on, b, SCALES)
    assert stats[i].item() > 0
    loss.backward()
    assert all(p.grad is not None for p in on.parameters())

    # eval mode: one pass, no R-Drop term
    _, stats = loss_and_stats(on.eval(), b, SCALES)
    assert stats[i + 1] == 0


def test_symmetric_kl():
    a = torch.randn(4, 7)
    assert torch.equal(symmetric_kl(a, a.clone()), torch.zeros(4))
    b = torch.randn(4, 7)
    kl = symmetric_kl(a, b)
    ref = 0.5 * (torch.nn.functional.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True, reduction="none").sum(-1)
                 + torch.nn.functional.kl_div(a.log_softmax(-1), b.log_softmax(-1), log_target=True, reduction="none").sum(-1))
    assert torch.allclose(kl, ref, atol=1e-6) and (kl > 0).all()


# ------------------------------------------------------------------------------------------ layer-wise


def test_layer_distill_positive_and_teacher_gets_no_gradient():
    b = make_batch()
    m = model_for(enc_config(dropout=0.0), distill_layers=(1, 2)).train()
    assert m.distill_weights == pytest.approx([1 / 3, 2 / 3])  # rising with depth
    only = {k: 0.0 for k in SCALES} | {"layer_distill": 1.0}
    loss, stats = loss_and_stats(m, b, only)
    i = STAT_INDEX["layer_distill"]
    assert stats[i] > 0 and stats[i + 1] == 5 and loss.item() == pytest.approx(stats[i].item(), rel=1e-6)
    loss.backward()
    norm = {n: (p.grad.abs().sum().item() if p.grad is not None else 0.0) for n, p in m.named_parameters()}
    # stopgrad(P_last): the last block only makes the teacher, so the distillation term gives it no gradient
    assert all(v == 0.0 for n, v in norm.items() if n.startswith("bert.encoder.layer.2."))
    assert norm["bert.encoder.layer.0.attention.self.query.weight"] > 0
    assert norm["bert.encoder.layer.1.output.dense.weight"] > 0
    assert norm["cls.predictions.transform.dense.weight"] > 0  # the shared head learns from the students


def test_distill_layers_resolution():
    cfg = load_config(None, ["distill.layer_beta=1"])
    assert distill_layers(cfg, 4) == (1, 2, 3)  # [] = every block below the last
    cfg = load_config(None, ["distill.layer_beta=1", "distill.layers=[3, 1]"])
    assert distill_layers(cfg, 4) == (1, 3)
    assert distill_layers(load_config(None, ["distill.layers=[9]"]), 4) == ()  # beta 0: off
    with pytest.raises(UserError, match="distill.layers"):
        distill_layers(load_config(None, ["distill.layer_beta=1", "distill.layers=[4]"]), 4)


# ------------------------------------------------------------------------------------------ attention residual


def test_gamma_zero_is_the_plain_encoder_bit_for_bit(monkeypatch):
    b = make_batch()
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting(*a, **k):
        calls.append(1)
        return sdpa(*a, **k)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    plain = model_for(EncoderConfig(**{k: v for k, v in enc_config().__dict__.items() if k != "attn_residual_decay"}))
    zero = model_for(enc_config(gamma=0.0))
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in zero.named_parameters()]
    for mode in ("eval", "train"):
        outs = []
        for m in (plain, zero):
            getattr(m, mode)()
            torch.manual_seed(5)  # same dropout stream
            outs.append(m.bert(b["input_ids"], b["token_type_ids"], b["attention_mask"]))
        assert torch.equal(outs[0], outs[1])
    assert len(calls) == 4 * 3  # the fused path ran in every layer of both models, twice
    calls.clear()
    resid = model_for(enc_config(gamma=0.5)).eval()
    resid.bert(b["input_ids"], b["token_type_ids"], b["attention_mask"])
    assert not calls  # gamma > 0: the explicit path


def sharp(model):
    """Scale Q and K up so attention is far from uniform (BERT's init gives near-uniform attention)."""
    with torch.no_grad():
        for layer in model.layers:
            layer.attention.self.query.weight.mul_(30)
            layer.attention.self.key.weight.mul_(30)
    return model


def plain_encoder_forward(model, ids, types, mask):
    """The plain BERT encoder forward (before the attention residual existed), op for op, on ``model``'s modules."""
    F = torch.nn.functional
    x = model.bert.embeddings(ids, types)
    attn_mask = mask.bool()[:, None, None, :]
    for block in model.layers:
        sa = block.attention.self
        b, s, h = x.shape
        w = torch.cat([sa.query.weight, sa.key.weight, sa.value.weight])
        bias = torch.cat([sa.query.bias, sa.key.bias, sa.value.bias])
        q, k, v = (t.view(b, s, sa.num_heads, sa.head_dim).transpose(1, 2) for t in F.linear(x, w, bias).split(h, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=0.0)
        a = block.attention.output(out.transpose(1, 2).reshape(b, s, h), x)
        x = block.output(block.intermediate(a), a)
    return x


def test_gamma_zero_matches_the_plain_encoder_op_for_op():
    b = make_batch()
    m = model_for(enc_config(gamma=0.0)).eval()
    with torch.no_grad():
        assert torch.equal(m.bert(b["input_ids"], b["token_type_ids"], b["attention_mask"]),
                           plain_encoder_forward(m, b["input_ids"], b["token_type_ids"], b["attention_mask"]))


def test_explicit_path_matches_fused_and_residual_changes_outputs():
    b = make_batch()
    args = (b["input_ids"], b["token_type_ids"], b["attention_mask"])
    fused = sharp(model_for(enc_config(gamma=0.0))).eval()
    explicit = sharp(model_for(enc_config(gamma=0.0))).eval()
    for layer in explicit.layers:
        layer.attention.self.explicit = True  # the explicit path with gamma 0: same math as SDPA
    with torch.no_grad():
        ref = fused.bert(*args)
        assert torch.allclose(explicit.bert(*args), ref, atol=1e-5)
        resid = sharp(model_for(enc_config(gamma=0.5))).eval()
        out = resid.bert(*args)
    assert not torch.allclose(out, ref, atol=1e-3)
    # activation checkpointing recomputes the same thing (scores handed from block to block)
    resid.train()
    torch.manual_seed(3)
    a = resid.bert(*args)
    resid.bert.encoder.activation_checkpointing = True
    torch.manual_seed(3)
    c = resid.bert(*args)
    assert torch.equal(a, c)


# ------------------------------------------------------------------------------------------ all together


@pytest.mark.parametrize("heads", [True, False])
def test_gradients_reach_every_parameter_all_on(heads):
    m = model_for(enc_config(gamma=0.5), rdrop=True, distill_layers=(1, 2)).train()
    loss, stats = loss_and_stats(m, make_batch(heads=heads, rounds=True), SCALES)
    assert torch.isfinite(loss)
    loss.backward()
    for n, p in m.named_parameters():
        assert p.grad is not None, n
        assert torch.isfinite(p.grad).all(), n
        if heads:  # every head has items: every parameter gets a non-zero gradient
            assert p.grad.abs().sum() > 0, n
    i = STAT_INDEX["ar_mlm"]
    assert stats[i + 1] == 3 and stats[STAT_INDEX["ar_mlm_r1"] + 1] == 1 and stats[STAT_INDEX["ar_mlm_r2"] + 1] == 2


# ------------------------------------------------------------------------------------------ multi-round MLM


def test_assign_rounds_whole_words_balanced():
    ws = np.array([1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1], dtype=bool)
    pos = np.array([1, 2, 3, 5, 6, 8, 9, 10])  # words [1,2,3], [5,6], [8,9], [10]
    r = assign_rounds(pos, ws, 2, np.random.default_rng(0))
    assert r[0] == r[1] == r[2] and r[3] == r[4] and r[5] == r[6]
    words = [r[0], r[3], r[5], r[7]]
    assert sorted(words) == [0, 0, 1, 1]
    assert len(assign_rounds(np.zeros(0, np.int64), ws, 3, np.random.default_rng(0))) == 0


def test_multiround_batches(tmp_path):
    pre, _ = make_shards(str(tmp_path), n_pretrain=16, knowledge=False)
    sd = open_shard_dir(pre, kind="pretrain")
    vocab = Vocab(TokenizerInfo.from_manifest(sd, "data.pretrain"))
    std = GeneralPath(sd, vocab, 32, 0.15, seed=0, rank=0, world=1).batch(4, step=3, micro=0)
    mr = GeneralPath(sd, vocab, 32, 0.15, seed=0, rank=0, world=1, rounds=2).batch(4, step=3, micro=0)
    again = GeneralPath(sd, vocab, 32, 0.15, seed=0, rank=0, world=1, rounds=2).batch(4, step=3, micro=0)
    assert all(torch.equal(mr[k], again[k]) for k in mr)  # deterministic from (seed, step, rank)
    n, width = 4, std["input_ids"].shape[1]
    assert mr["input_ids"].shape == (2 * n, width)
    assert torch.equal(mr["input_ids"][:n], std["input_ids"])  # round 0 = the standard masked rows
    assert int(mr["n_tokens"]) == int(std["n_tokens"])  # data tokens, each row once
    if "attention_mask" in std:
        assert torch.equal(mr["attention_mask"][n:], std["attention_mask"])
    # every masked token is predicted exactly once, in its round's copy of the row
    row, col = mr["mlm_pos"] // width, mr["mlm_pos"] % width
    assert torch.equal(row // n, mr["mlm_round"])
    got = sorted(zip((row % n * width + col).tolist(), mr["mlm_labels"].tolist()))
    assert got == sorted(zip(std["mlm_pos"].tolist(), std["mlm_labels"].tolist()))
    assert 0 < int((mr["mlm_round"] == 1).sum()) < len(mr["mlm_pos"])
    # round 1 sees round 0's true tokens; its own predictions are still corrupted as in standard masking
    flat1 = mr["input_ids"][n:].reshape(-1)
    r0 = mr["mlm_round"] == 0
    pos0 = (row[r0] % n) * width + col[r0]
    assert torch.equal(flat1[pos0], mr["mlm_labels"][r0])
    r1 = ~r0
    pos1 = (row[r1] % n) * width + col[r1]
    assert torch.equal(flat1[pos1], std["input_ids"].reshape(-1)[pos1])


def test_multiround_loss_matches_per_row_reference(tmp_path):
    """The multi-round objective and each round's loss, against a reference that runs every predicted token's
    row through the encoder on its own and takes the cross-entropy by hand in float64; and it is not the standard
    MLM loss: the same predictions scored on the standard (fully masked) rows give another value."""
    from tests.trainer.helpers import VOCAB

    pre, _ = make_shards(str(tmp_path), n_pretrain=16, knowledge=False)
    sd = open_shard_dir(pre, kind="pretrain")
    vocab = Vocab(TokenizerInfo.from_manifest(sd, "data.pretrain"))
    mr = GeneralPath(sd, vocab, 32, 0.3, seed=0, rank=0, world=1, rounds=2).batch(4, step=1, micro=0)
    std = GeneralPath(sd, vocab, 32, 0.3, seed=0, rank=0, world=1).batch(4, step=1, micro=0)
    cfg = EncoderConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    m = model_for(cfg).eval()
    with torch.no_grad():
        _, stats = loss_and_stats(m, mr, SCALES)

        def ce(batch, row, col, label) -> float:
            mask = batch.get("attention_mask")
            h = m.bert(batch["input_ids"][row:row + 1], None, mask[row:row + 1] if mask is not None else None)
            logits = m.mlm_logits(h[0, col:col + 1])[0].double()
            return float(torch.logsumexp(logits, 0) - logits[label])

        n, width = 4, mr["input_ids"].shape[1]
        ref, on_std = {0: [], 1: []}, {0: [], 1: []}
        for p, label, k in zip(mr["mlm_pos"].tolist(), mr["mlm_labels"].tolist(), mr["mlm_round"].tolist()):
            row, col = divmod(p, width)
            ref[k].append(ce(mr, row, col, label))
            on_std[k].append(ce(std, row % n, col, label))
    assert ref[0] and ref[1]

    def mean_of(name):
        i = STAT_INDEX[name]
        return float(stats[i] / stats[i + 1])

    every = ref[0] + ref[1]
    assert mean_of("ar_mlm") == pytest.approx(sum(every) / len(every), rel=1e-5)
    assert mean_of("ar_mlm_r1") == pytest.approx(sum(ref[0]) / len(ref[0]), rel=1e-5)
    assert mean_of("ar_mlm_r2") == pytest.approx(sum(ref[1]) / len(ref[1]), rel=1e-5)
    assert ref[0] == pytest.approx(on_std[0], rel=1e-6)  # round 1 is the standard masked rows
    # round 2 sees round 1's true tokens (an untrained model's predictions move little, but well above float noise)
    assert max(abs(a - b) for a, b in zip(ref[1], on_std[1])) > 1e-5


# ------------------------------------------------------------------------------------------ config, run, resume


def test_config_switches_default_off_and_checked():
    cfg = load_config(None)
    assert (cfg.distill.rdrop_alpha, cfg.distill.layer_beta, cfg.distill.layers) == (0.0, 0.0, [])
    assert cfg.model.attn_residual_decay == 0.0 and cfg.mlm.mode == "standard"
    for bad, msg in (("mlm.mode=permuted", "expected one of standard, multiround"),
                     ("distill.layers=x", "not a list of integers"), ("distill.rdrop_alpha=-1", ">= 0"),
                     ("model.attn_residual_decay=2", "[0, 1]"), ("mlm.rounds=9", "2..4")):
        with pytest.raises(UserError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            load_config(None, [bad])
    assert load_config(None, ["distill.layers=2"]).distill.layers == [2]


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def test_all_on_resume_equals_uninterrupted_and_export_note(tmp_path, capsys):
    pre, ktok = make_shards(str(tmp_path / "d"))
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    extra = {**ALL_ON, "train.max_steps": 4, "checkpoint.interval": 2, "checkpoint.keep": 5, "optim.warmup_steps": 2,
             "train.grad_accum": 2}
    assert train_main(["", *tiny_overrides(pre, ktok, str(full), **extra)]) == 0
    os.makedirs(resumed / "checkpoints")
    shutil.copytree(full / "checkpoints" / "step-0000002", resumed / "checkpoints" / "step-0000002")
    assert train_main(["", *tiny_overrides(pre, ktok, str(resumed), **extra), "--resume"]) == 0
    a = {r["step"]: r for r in read_metrics(str(full))}
    b = {r["step"]: r for r in read_metrics(str(resumed))}
    assert sorted(b) == [3, 4]
    keys = ("loss", "loss/mlm", "loss/relation", "loss/substitution", "loss/triple_mask", "loss/rdrop",
            "loss/layer_distill", "loss/ar_mlm", "loss/ar_mlm_r1", "loss/ar_mlm_r2", "grad_norm")
    for step in (3, 4):
        for key in keys:
            assert b[step][key] == pytest.approx(a[step][key], rel=1e-6, abs=1e-9), (step, key)
    for r in a.values():
        assert r["loss/rdrop"] > 0 and r["loss/layer_distill"] > 0
        # the objective is the count-weighted mean of its rounds (pinned against a reference in
        # test_multiround_loss_matches_per_row_reference)
        lo, hi = sorted((r["loss/ar_mlm_r1"], r["loss/ar_mlm_r2"]))
        assert lo - 1e-9 <= r["loss/ar_mlm"] <= hi + 1e-9 and lo < hi

    from knowmix.trainer.hf import export_run

    notes = []
    export_run(str(full), str(tmp_path / "hf"), log=notes.append)
    assert len(notes) == 1 and "attn_residual_decay = 0.5" in notes[0]
    with open(tmp_path / "hf" / "config.json") as fh:
        hf = json.load(fh)
    assert hf["knowmix_attn_residual_decay"] == 0.5 and "attn_residual_decay" not in hf


def test_switches_off_log_no_technique_metrics(tmp_path):
    pre, ktok = make_shards(str(tmp_path / "d"))
    out = tmp_path / "run"
    assert train_main(["", *tiny_overrides(pre, ktok, str(out), **{"train.max_steps": 1})]) == 0
    m = read_metrics(str(out))[-1]
    assert m["loss/rdrop"] is None and m["loss/layer_distill"] is None and "loss/ar_mlm" not in m
