"""Hugging Face in and out.

- :func:`load_init` reads a Hugging Face BERT folder (``config.json`` + ``model.safetensors``, or
  ``pytorch_model.bin`` read with ``weights_only=True``) for ``model.init_from``.
- :func:`export_run` writes a ``BertForMaskedLM`` folder from a run's newest checkpoint: ``config.json``,
  ``model.safetensors`` and the Hugging Face tokenizer files (``tokenizer.json``, ``tokenizer_config.json``,
  ``special_tokens_map.json``) for both kinds, beside ``vocab.txt`` (wordpiece) or the SentencePiece ``.model``.
"""

from __future__ import annotations

import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file

from knowmix.errors import UserError
from knowmix.fileio import sha256_of
from knowmix.outdir import prepare_output_dir
from knowmix.trainer.integrity import confined
from knowmix.trainer.model import EncoderConfig, hf_state_dict, normalise_hf_keys

RUN_INFO = "run.json"


def load_init(folder: str) -> tuple[EncoderConfig, dict[str, torch.Tensor], str]:
    """Return (config, state dict in knowmix names, weights file) of a Hugging Face BERT folder."""
    cfg_path = os.path.join(folder, "config.json")
    if not os.path.isdir(folder):
        raise UserError(f"model.init_from = {folder!r}: no such directory")
    if not os.path.isfile(cfg_path):
        raise UserError(f"{cfg_path}: missing (model.init_from must be a Hugging Face model folder)")
    try:
        with open(cfg_path, encoding="utf-8") as fh:
            hf = json.load(fh)
    except (OSError, ValueError) as exc:
        raise UserError(f"{cfg_path}: not readable JSON ({exc})") from None
    if hf.get("model_type", "bert") != "bert":
        raise UserError(f"{cfg_path}: model_type {hf.get('model_type')!r}; only BERT models can be continued")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise UserError(f"{cfg_path}: position_embedding_type {hf['position_embedding_type']!r} is not supported")
    cfg = EncoderConfig.from_hf(hf)
    st = os.path.join(folder, "model.safetensors")
    binf = os.path.join(folder, "pytorch_model.bin")
    if os.path.isfile(st):
        state, path = load_file(st), st
    elif os.path.isfile(binf):
        try:
            state = torch.load(binf, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - anything unsafe or corrupt is a user error here
            raise UserError(f"{binf}: cannot be read with weights_only=True ({type(exc).__name__})") from None
        path = binf
    else:
        raise UserError(f"{folder}: neither model.safetensors nor pytorch_model.bin")
    return cfg, normalise_hf_keys(state), path


def apply_init(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str) -> list[str]:
    """Copy ``state`` into ``model``; unknown names are an error, missing ones (fresh heads) are returned."""
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise UserError(f"{path}: {len(unknown)} weights knowmix does not know, e.g. {unknown[0]}")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise UserError(f"{path}: {k} has shape {tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=False)
    return sorted(k for k in own if k not in state)


def write_tokenizer(out_dir: str, tok: dict, tok_path: str, max_len: int) -> list[str]:
    """Write the tokenizer files for ``tok`` (a manifest ``tokenizer`` entry); return the names written.

    Both kinds get ``tokenizer.json`` + ``tokenizer_config.json`` + ``special_tokens_map.json`` (see
    ``trainer/hf_tokenizer.py``), so ``AutoTokenizer.from_pretrained`` gives knowmix's ids; beside them the
    tokenizer file itself (``vocab.txt``, or the SentencePiece ``.model``) and ``knowmix_tokenizer.json``
    (the manifest entry, for ``model.init_from``)."""
    from knowmix.trainer import hf_tokenizer

    if not tok_path or not os.path.isfile(tok_path):
        with open(os.path.join(out_dir, "knowmix_tokenizer.json"), "w", encoding="utf-8") as fh:
            json.dump(tok, fh, indent=2)
        return ["knowmix_tokenizer.json"]
    name = "vocab.txt" if tok["kind"] == "wordpiece" else os.path.basename(tok.get("file") or tok_path)
    shutil.copyfile(tok_path, os.path.join(out_dir, name))
    written = [name, *hf_tokenizer.write_files(out_dir, tok, tok_path, max_len)]
    if tok["kind"] != "wordpiece":
        with open(os.path.join(out_dir, "knowmix_tokenizer.json"), "w", encoding="utf-8") as fh:
            json.dump({**tok, "file": name}, fh, indent=2)
        written.append("knowmix_tokenizer.json")
    return written


def save_hf(model: torch.nn.Module, cfg: EncoderConfig, out_dir: str, tok: dict | None, tok_path: str) -> list[str]:
    """Write ``model`` (an unwrapped KnowmixForPretraining) as a Hugging Face BertForMaskedLM folder."""
    os.makedirs(out_dir, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in hf_state_dict(model.state_dict()).items()}
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as fh:
        json.dump(cfg.to_hf(), fh, indent=2)
    written = ["config.json", "model.safetensors"]
    if tok:
        written += write_tokenizer(out_dir, tok, tok_path, cfg.max_position_embeddings)
    return written


def read_run_info(run_dir: str) -> dict:
    """``run.json`` of a training run, checked for the keys export and resume read (one-line UserError)."""
    path = os.path.join(run_dir, RUN_INFO)
    if not os.path.isfile(path):
        raise UserError(f"{path}: missing ({run_dir} is not a knowmix training run)")
    try:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError) as exc:  # ValueError covers JSONDecodeError and UnicodeDecodeError
        raise UserError(f"{path}: not a readable run record ({type(exc).__name__}: {exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("encoder"), dict):
        raise UserError(f"{path}: malformed run record (no `encoder` object)")
    for key, kind in (("tokenizer", dict), ("tokenizer_copy", str), ("num_relations", int)):
        if key in info and info[key] is not None and not isinstance(info[key], kind):
            raise UserError(f"{path}: malformed run record (`{key}` is not a {kind.__name__})")
    return info


def encoder_from_run(info: dict, run_dir: str) -> EncoderConfig:
    try:
        return EncoderConfig(**info["encoder"])
    except TypeError as exc:
        raise UserError(f"{os.path.join(run_dir, RUN_INFO)}: malformed `encoder` ({exc})") from None


def export_run(run_dir: str, out_dir: str, checkpoint_path: str | None = None, log=print) -> tuple[str, list[str]]:
    """Export a run's newest complete checkpoint (or ``checkpoint_path``); return (checkpoint, files written).

    A run trained with the attention residual (``model.attn_residual_decay`` > 0) exports its weights, but a
    Hugging Face ``BertForMaskedLM`` computes plain attention: the export says so in one line."""
    from knowmix.trainer import checkpoint as ckpt
    from knowmix.trainer.heads import KnowmixForPretraining

    info = read_run_info(run_dir)
    path = ckpt.resolve(run_dir, checkpoint_path)
    cfg = encoder_from_run(info, run_dir)
    prepare_output_dir(out_dir, f"--hf {out_dir}")  # a writable directory, or one line
    if cfg.attn_residual_decay:
        log(f"note: {run_dir} was trained with model.attn_residual_decay = {cfg.attn_residual_decay:g}; Hugging Face"
            " BertForMaskedLM has no attention residual, so the exported model's outputs differ from knowmix's")
    model = KnowmixForPretraining(cfg, num_relations=int(info.get("num_relations", 1)))
    ckpt.load_model_only(path, model)  # checks the checkpoint's manifest before torch reads it
    tok_path = confined(run_dir, info["tokenizer_copy"], f"{run_dir}/{RUN_INFO}: tokenizer_copy") \
        if info.get("tokenizer_copy") else ""
    tok = info.get("tokenizer")
    if tok and not isinstance(tok.get("kind"), str):
        raise UserError(f"{run_dir}/{RUN_INFO}: malformed `tokenizer` entry (no kind)")
    if tok and tok_path and os.path.isfile(tok_path) and sha256_of(tok_path) != tok.get("sha256"):
        raise UserError(f"{tok_path}: sha256 differs from {RUN_INFO}'s tokenizer.sha256; refusing to export it")
    return path, save_hf(model, cfg, out_dir, tok, tok_path)
