"""Hugging Face in and out: export -> transformers BertForMaskedLM gives the same logits; init_from a tiny
random HF BERT (safetensors and .bin) gives the same logits as the HF model."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import BertConfig, BertForMaskedLM  # noqa: E402

from tests.trainer.helpers import VOCAB, make_shards, tiny_overrides  # noqa: E402
from knowmix.trainer.cli import export_main, train_main  # noqa: E402
from knowmix.trainer.hf import apply_init, load_init, read_run_info  # noqa: E402
from knowmix.trainer.heads import KnowmixForPretraining  # noqa: E402
from knowmix.trainer import checkpoint as ckpt  # noqa: E402
from knowmix.trainer.model import EncoderConfig  # noqa: E402


def sample_inputs(vocab_size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(9, vocab_size, (3, 20), generator=g)
    ids[:, 0] = 2
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 15:] = False  # padding in one row
    ids[1, 15:] = 0
    types = torch.zeros_like(ids)
    types[:, 10:] = 1
    return ids, types, mask


def knowmix_logits(model: KnowmixForPretraining, ids, types, mask):
    model.eval()
    with torch.no_grad():
        h = model.bert(ids, types, mask)
        return model.mlm_logits(h)


def hf_logits(hf: BertForMaskedLM, ids, types, mask):
    hf.eval()
    with torch.no_grad():
        return hf(input_ids=ids, token_type_ids=types, attention_mask=mask.long()).logits


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    pre, ktok = make_shards(str(root / "d"))
    out = root / "run"
    assert train_main(["", *tiny_overrides(pre, ktok, str(out), **{"train.max_steps": 3})]) == 0
    return out


def test_export_matches_transformers(trained_run, tmp_path):
    hf_dir = tmp_path / "hf"
    assert export_main([str(trained_run), "--hf", str(hf_dir)]) == 0
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"):
        assert (hf_dir / name).is_file(), name
    hf = BertForMaskedLM.from_pretrained(str(hf_dir))
    info = read_run_info(str(trained_run))
    ours = KnowmixForPretraining(EncoderConfig(**info["encoder"]), num_relations=info["num_relations"])
    ckpt.load_model_only(ckpt.latest(str(trained_run / "checkpoints")), ours)
    ids, types, mask = sample_inputs(len(VOCAB))
    a, b = knowmix_logits(ours, ids, types, mask), hf_logits(hf, ids, types, mask)
    valid = mask[..., None].expand_as(a)
    assert (a - b)[valid].abs().max().item() <= 1e-5
    # the exported tokenizer loads and tokenizes with the trainer's ids
    tok = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    assert tok.convert_tokens_to_ids(["[CLS]", "[MASK]", "[E1]"]) == [2, 4, 5]


def test_export_without_checkpoint_is_one_line(tmp_path, capsys):
    assert export_main([str(tmp_path), "--hf", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run.json" in err


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_init_from_hf_bert(tmp_path, fmt):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, attn_implementation="sdpa")
    hf = BertForMaskedLM(cfg)
    with torch.no_grad():  # make biases and LayerNorms non-trivial so a mismatched name would show
        for p in hf.parameters():
            p.add_(0.02 * torch.randn_like(p))
    folder = tmp_path / "hf"
    if fmt == "safetensors":
        hf.save_pretrained(str(folder))
    else:
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(cfg.to_dict()))
        torch.save(hf.state_dict(), folder / "pytorch_model.bin")
    enc, state, path = load_init(str(folder))
    ours = KnowmixForPretraining(enc, num_relations=4)
    fresh = apply_init(ours, state, path)
    assert all(k.startswith(("relation.", "substitution.")) for k in fresh), fresh
    ids, types, mask = sample_inputs(len(VOCAB), seed=1)
    a, b = knowmix_logits(ours, ids, types, mask), hf_logits(hf, ids, types, mask)
    valid = mask[..., None].expand_as(a)
    assert (a - b)[valid].abs().max().item() <= 1e-5


def test_train_init_from(tmp_path):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertForMaskedLM(cfg).save_pretrained(str(tmp_path / "hf"))
    pre, ktok = make_shards(str(tmp_path / "d"))
    args = tiny_overrides(pre, ktok, str(tmp_path / "run"), **{"train.max_steps": 2, "model.init_from": f'"{tmp_path / "hf"}"'})
    assert train_main(["", *args]) == 0
    bad = BertConfig(vocab_size=len(VOCAB) + 3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertForMaskedLM(bad).save_pretrained(str(tmp_path / "hf2"))
    args = tiny_overrides(pre, ktok, str(tmp_path / "run2"), **{"model.init_from": f'"{tmp_path / "hf2"}"'})
    assert train_main(["", *args]) == 2
