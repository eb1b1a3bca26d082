"""The model ``knowmix eval`` starts from: a training run (newest complete checkpoint) or a Hugging Face folder,
loaded with the trainer's own checkpoint and import code; and the fine-tuning heads put on its encoder.

Heads: ``cls``/``pair`` classify the ``[CLS]`` state (dropout + linear); ``re`` classifies the ``[E1]`` and
``[E2]`` marker states concatenated, as the knowledge path's relation head does (:class:`trainer.heads.PairClassifier`).
The probe uses the pretrained MLM head (``cls.predictions``) as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from knowmix.errors import UserError
from knowmix.trainer import checkpoint as ckpt
from knowmix.trainer.eval_text import EvalTokenizer, for_hf, for_run
from knowmix.trainer.hf import apply_init, load_init, read_run_info
from knowmix.trainer.heads import KnowmixForPretraining, PairClassifier
from knowmix.trainer.model import BertEncoder, EncoderConfig


@dataclass
class Pretrained:
    config: EncoderConfig
    state: dict[str, torch.Tensor]  # bert.* and cls.* in knowmix (= Hugging Face) names, on the CPU
    tokenizer: EvalTokenizer
    source: str  # "run" | "hf"
    weights: str  # the checkpoint folder or weights file read
    has_mlm_head: bool


def load_pretrained(path: str) -> Pretrained:
    """A run dir (``run.json``) or a Hugging Face folder (``config.json``); anything else is a UserError."""
    if not os.path.isdir(path):
        raise UserError(f"{path}: no such directory (expected a `knowmix train` output dir or a Hugging Face folder)")
    if os.path.isfile(os.path.join(path, "run.json")):
        info = read_run_info(path)
        tok = for_run(path, info)
        found = ckpt.latest(os.path.join(path, "checkpoints"))
        if not found:
            raise UserError(f"{path}/checkpoints: no complete checkpoint to evaluate")
        cfg = EncoderConfig(**info["encoder"])
        model = KnowmixForPretraining(cfg, num_relations=int(info.get("num_relations", 1)))
        ckpt.load_model_only(found, model)
        state = {k: v for k, v in model.state_dict().items() if k.startswith(("bert.", "cls."))}
        return Pretrained(cfg, state, tok, "run", found, True)
    if os.path.isfile(os.path.join(path, "config.json")):
        tok = for_hf(path)  # before the weights: a folder without a tokenizer fails fast
        cfg, state, weights = load_init(path)
        model = KnowmixForPretraining(cfg)
        missing = apply_init(model, state, weights)
        lacking = [k for k in missing if k.startswith("bert.")]
        if lacking:
            raise UserError(f"{weights}: lacks encoder weights, e.g. {lacking[0]}")
        state = {k: v for k, v in model.state_dict().items() if k.startswith(("bert.", "cls."))}
        has_mlm = not any(k.startswith("cls.predictions.") for k in missing)
        return Pretrained(cfg, state, tok, "hf", weights, has_mlm)
    raise UserError(f"{path}: neither a `knowmix train` output dir (run.json) nor a Hugging Face folder (config.json)")


def check_vocab(pre: Pretrained) -> None:
    if pre.tokenizer.vocab_size > pre.config.vocab_size:
        raise UserError(f"{pre.tokenizer.path}: {pre.tokenizer.vocab_size} tokens, the model knows only"
                        f" {pre.config.vocab_size} (a tokenizer of another model?)")


class FineTuneModel(nn.Module):
    """The pretrained encoder plus one fresh head: ``[CLS]`` (cls, pair) or ``[E1]``/``[E2]`` (re)."""

    def __init__(self, cfg: EncoderConfig, kind: str, n_labels: int):
        super().__init__()
        self.kind = kind
        self.bert = BertEncoder(cfg)
        if kind == "re":
            self.head = PairClassifier(cfg.hidden_size, n_labels, cfg.hidden_dropout_prob)
        else:
            self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
            self.head = nn.Linear(cfg.hidden_size, n_labels)
        nn.init.normal_(self._linear().weight, 0.0, cfg.initializer_range)
        nn.init.zeros_(self._linear().bias)

    def _linear(self) -> nn.Linear:
        return self.head.classifier if self.kind == "re" else self.head

    def load_encoder(self, state: dict[str, torch.Tensor]) -> None:
        own = {k[len("bert."):]: v for k, v in state.items() if k.startswith("bert.")}
        self.bert.load_state_dict(own)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.bert(batch["input_ids"], batch["token_type_ids"], batch.get("attention_mask"))
        if self.kind == "re":
            rows = torch.arange(h.shape[0], device=h.device)
            return self.head(h[rows, batch["e1"]], h[rows, batch["e2"]])
        return self.head(self.dropout(h[:, 0]))


def mlm_model(pre: Pretrained) -> KnowmixForPretraining:
    """The pretrained encoder with its MLM head, for the probe."""
    model = KnowmixForPretraining(pre.config)
    model.load_state_dict(pre.state, strict=False)
    return model
