"""A BERT-compatible encoder (post-LN, learned positions, token types) whose parameter names map one to one to
Hugging Face's ``BertForMaskedLM`` (``bert.embeddings.*``, ``bert.encoder.layer.N.*``, ``cls.predictions.*``).

Attention goes through :func:`torch.nn.functional.scaled_dot_product_attention`; without padding no mask is passed,
so the flash kernel can run. The MLM decoder is the word-embedding matrix (tied) and is applied only at the
masked positions the caller hands in.

Cross-layer decaying attention residual (RealFormer's residual attention with a decay): with
``attn_residual_decay`` gamma > 0, layer l's pre-softmax scores are ``QK^T/sqrt(d) + gamma * S_{l-1}`` where
``S_{l-1}`` is layer l-1's pre-softmax scores (padding is masked at the softmax only, never carried in S). That
needs the explicit attention path (scores materialised, no fused kernel); with gamma = 0 the fused SDPA path
runs exactly as in the plain encoder (same code, same kernels: bit-for-bit the same outputs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass
class EncoderConfig:
    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    attn_residual_decay: float = 0.0  # gamma of the cross-layer attention residual; 0 = plain BERT attention

    def to_hf(self) -> dict:
        """A Hugging Face ``config.json`` body for ``BertForMaskedLM``. The attention residual has no Hugging Face
        equivalent: a non-zero gamma is recorded as ``knowmix_attn_residual_decay`` (BERT ignores it)."""
        body = asdict(self)
        gamma = body.pop("attn_residual_decay")
        extra = {"knowmix_attn_residual_decay": gamma} if gamma else {}
        return {
            "architectures": ["BertForMaskedLM"],
            "model_type": "bert",
            **body,
            **extra,
            "position_embedding_type": "absolute",
            "classifier_dropout": None,
            "use_cache": True,
            "tie_word_embeddings": True,
        }

    @classmethod
    def from_hf(cls, d: dict) -> "EncoderConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward = 3x forward) of the encoder stack, embeddings excluded."""
        h, L, i = self.hidden_size, self.num_hidden_layers, self.intermediate_size
        per_layer = 2 * (4 * h * h + 2 * h * i)  # projections + FFN, multiply-add = 2 FLOPs
        attn = 2 * 2 * seq_len * h  # QK^T and AV
        return 3.0 * L * (per_layer + attn)


class Embeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        seq = input_ids.shape[1]
        pos = torch.arange(seq, device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos)[None]
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout_p = cfg.attention_probs_dropout_prob
        self.residual_decay = float(cfg.attn_residual_decay)
        # the explicit path (scores materialised) is needed only for the attention residual
        self.explicit = self.residual_decay > 0

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, prev_scores: torch.Tensor | None = None):
        """Return the attention output, or ``(output, scores)`` on the explicit path (``scores`` = this layer's
        pre-softmax scores including the decayed residual, handed to the next layer)."""
        b, s, h = x.shape

        def split(t):
            return t.view(b, s, self.num_heads, self.head_dim).transpose(1, 2)

        # one GEMM for Q, K and V (the three HF-named Linear modules keep their own parameters)
        w = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
        q, k, v = F.linear(x, w, bias).split(h, dim=-1)
        q, k, v = split(q), split(k), split(v)
        if not self.explicit:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout_p if self.training else 0.0
            )
            return out.transpose(1, 2).reshape(b, s, h)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (self.head_dim ** -0.5)
        if prev_scores is not None and self.residual_decay:
            scores = scores + self.residual_decay * prev_scores
        logits = scores.float()
        if attn_mask is not None:  # boolean (B, 1, 1, S), True = attend
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        probs = torch.softmax(logits, dim=-1).to(v.dtype)
        if self.training and self.dropout_p:
            probs = F.dropout(probs, self.dropout_p)
        out = torch.matmul(probs, v)
        return out.transpose(1, 2).reshape(b, s, h), scores


class SelfOutput(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.self = SelfAttention(cfg)
        self.output = SelfOutput(cfg)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, prev_scores: torch.Tensor | None = None):
        if not self.self.explicit:
            return self.output(self.self(x, attn_mask), x)
        out, scores = self.self(x, attn_mask, prev_scores)
        return self.output(out, x), scores


class Intermediate(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class Output(SelfOutput):
    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)


class Layer(nn.Module):
    """One post-LN transformer block (the unit FSDP shards and activation checkpointing wraps)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = Output(cfg)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, prev_scores: torch.Tensor | None = None):
        """The block's output; on the explicit attention path ``(output, scores)`` (see SelfAttention)."""
        if not self.attention.self.explicit:
            a = self.attention(x, attn_mask)
            return self.output(self.intermediate(a), a)
        a, scores = self.attention(x, attn_mask, prev_scores)
        return self.output(self.intermediate(a), a), scores


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))
        self.activation_checkpointing = False

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, output_layers: tuple[int, ...] = ()):
        """The last hidden states; with ``output_layers`` (1-based block indices) also the list of those blocks'
        outputs: ``(last, [h_l for l in output_layers])``."""
        scores = None
        kept: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.layer):
            explicit = block.attention.self.explicit
            args = (x, attn_mask, scores) if explicit else (x, attn_mask)
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                out = checkpoint(block, *args, use_reentrant=False)
            else:
                out = block(*args)
            x, scores = out if explicit else (out, None)
            if i + 1 in output_layers:
                kept[i + 1] = x
        if output_layers:
            return x, [kept[layer] for layer in output_layers]
        return x


class BertEncoder(nn.Module):
    """``bert.*`` of BertForMaskedLM (no pooler)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, output_layers: tuple[int, ...] = ()):
        """The last hidden states, or ``(last, [intermediate blocks' outputs])`` with ``output_layers``."""
        x = self.embeddings(input_ids, token_type_ids)
        attn_mask = None
        if attention_mask is not None:
            # boolean (B, 1, 1, S): True = attend; padded keys are excluded. Callers leave the mask out when
            # nothing is padded (the data path does), so SDPA may use its flash kernel; no device sync here.
            attn_mask = attention_mask.bool()[:, None, None, :]
        return self.encoder(x, attn_mask, output_layers)


class PredictionHeadTransform(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(F.gelu(self.dense(x)))


class LMPredictionHead(nn.Module):
    """``cls.predictions``: transform, then the tied decoder (word embeddings) plus ``cls.predictions.bias``."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.transform = PredictionHeadTransform(cfg)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(hidden), word_embeddings, self.bias)


class MLMHeadWrapper(nn.Module):
    """``cls``: holds ``predictions`` so names read ``cls.predictions.*`` as in Hugging Face."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.predictions = LMPredictionHead(cfg)


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's initialisation: normal(0, std) for linear and embedding weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, LMPredictionHead):
            nn.init.zeros_(m.bias)


# names in a Hugging Face checkpoint that knowmix does not hold (tied or unused): skipped on import
HF_IGNORED_SUFFIXES = ("position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
HF_IGNORED_PREFIXES = ("bert.pooler.", "cls.seq_relationship.", "pooler.")


def hf_state_dict(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``BertForMaskedLM`` subset of a knowmix state dict (names are already Hugging Face's)."""
    return {k: v for k, v in model_state.items() if k.startswith(("bert.", "cls."))}


def normalise_hf_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a Hugging Face BERT state dict (BertForMaskedLM, BertForPreTraining or a bare BertModel) to our names."""
    out = {}
    for k, v in state.items():
        if k.endswith(HF_IGNORED_SUFFIXES) or k.startswith(HF_IGNORED_PREFIXES):
            continue
        if k.startswith(("embeddings.", "encoder.")):
            k = "bert." + k
        # very old checkpoints name LayerNorm parameters gamma/beta
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[k] = v
    return out


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

