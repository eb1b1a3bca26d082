"""The trainer's configuration: a TOML file plus ``section.key=value`` overrides.

Every section and key is declared here with its default; an unknown section or key, a value of the wrong type or
a value outside its allowed set is a :class:`~knowmix.errors.UserError` whose one-line message names the file (or
the override) and the key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from knowmix.errors import UserError


@dataclass
class ModelConfig:
    size: str = "base"  # tiny | base | large | custom (then hidden_size, layers, heads, intermediate_size)
    hidden_size: int = 0  # 0 = from size
    layers: int = 0
    heads: int = 0
    intermediate_size: int = 0
    init_from: str = ""  # a Hugging Face BERT folder (config.json + model.safetensors or pytorch_model.bin)
    dropout: float = 0.1
    attention_dropout: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    # cross-layer decaying attention residual: layer l's pre-softmax scores QK^T/sqrt(d) + gamma*S_{l-1};
    # 0 = off (the fused SDPA path, the plain encoder bit-for-bit); > 0 needs the explicit attention path
    attn_residual_decay: float = 0.0


@dataclass
class DataConfig:
    pretrain: str = "out/pretrain"  # a `pretrain` shard directory (knowmix tokenize)
    knowledge: str = "out/ktok"  # a `knowledge_tokens` shard directory; "" = single-path (general MLM only)
    seq_len: int = 512  # general path; longer rows are truncated
    knowledge_seq_len: int = 0  # 0 = seq_len
    mlm_probability: float = 0.15
    # (every shard's sha256 is checked at start; `knowmix train --no-verify` skips it: no config key)


@dataclass
class TasksConfig:
    relation: float = 1.0
    substitution: float = 1.0
    triple_mask: float = 1.0


@dataclass
class OptimConfig:
    lr: float = 1e-4
    warmup_steps: int = 1000
    schedule: str = "linear"  # linear | cosine | constant
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # 0 = no clipping
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-6


@dataclass
class TrainConfig:
    output_dir: str = "runs/base"
    max_steps: int = 100000
    micro_batch_size: int = 32
    knowledge_micro_batch_size: int = 0  # 0 = micro_batch_size
    grad_accum: int = 1
    precision: str = "bf16"  # bf16 | fp16 | fp32
    zero: int = 3  # 3 = FSDP2 reshard after forward, 2 = keep params unsharded, 0 = plain DDP / single process
    activation_checkpointing: bool = False
    compile: bool = False  # torch.compile each encoder block (GPU runs)
    prefetch: int = 2  # micro-batch sets prepared ahead by a background thread (0 = on the training thread)
    seed: int = 0
    log_every: int = 10
    device: str = "auto"  # auto | cpu | cuda
    peak_tflops: float = 0.0  # 0 = look up the device's peak for MFU (unknown devices report mfu 0)
    max_skipped_steps: int = 100  # stop after this many skipped (non-finite) steps in a row (checked when logging)
    host_sync_every_step: bool = False  # read the grad norm / agree on SIGTERM every step (bench: the cost)
    tensorboard: bool = True
    progress: bool = True


@dataclass
class DistillConfig:
    """Self-distillation; each term is off at 0."""

    rdrop_alpha: float = 0.0  # R-Drop: alpha * symmetric KL of two dropout passes (MLM + classification heads)
    layer_beta: float = 0.0  # layer-wise: beta * sum_l w_l KL(stopgrad(P_last) || P_l) at the predicted positions
    layers: list = field(default_factory=list)  # 1-based blocks below the last; [] = every block below the last


@dataclass
class MLMConfig:
    """The general path's MLM formulation."""

    mode: str = "standard"  # standard | multiround (round k sees the true tokens of rounds < k; README)
    rounds: int = 2  # multiround: the masked words are split into this many rounds (2..4)


@dataclass
class CheckpointConfig:
    interval: int = 1000  # 0 = only at the end and on SIGTERM
    keep: int = 3


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    mlm: MLMConfig = field(default_factory=MLMConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    source: str = "<defaults>"

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {s.name: dataclasses.asdict(getattr(self, s.name)) for s in dataclasses.fields(self) if s.name != "source"}


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "source"}
CHOICES = {
    ("model", "size"): ("tiny", "mini", "base", "large", "custom"),
    ("optim", "schedule"): ("linear", "cosine", "constant"),
    ("train", "precision"): ("bf16", "fp16", "fp32"),
    ("train", "zero"): (0, 2, 3),
    ("train", "device"): ("auto", "cpu", "cuda"),
    ("mlm", "mode"): ("standard", "multiround"),
}
SIZES = {  # hidden, layers, heads, intermediate
    "tiny": (128, 2, 2, 512),
    "mini": (256, 4, 4, 1024),
    "base": (768, 12, 12, 3072),
    "large": (1024, 24, 16, 4096),
}


RETIRED = {  # keys that once existed: a message saying what replaced them, instead of "unknown key"
    ("data", "verify"): "the shard check is always on; pass --no-verify to `knowmix train` to skip hashing",
}


def _section_obj(cfg: Config, name: str):
    return getattr(cfg, name)


def _coerce(where: str, key: str, default: Any, value: Any) -> Any:
    """Coerce ``value`` to the type of ``default``; raise UserError naming ``where`` and ``key`` if impossible."""
    want = type(default)
    if want is bool:  # TOML's true/false only: a string ("false", "no") is never read as a boolean
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: {key} = {value!r} is not a boolean (write true or false, unquoted)")
    elif want is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else int(value)
            except ValueError:
                pass
    elif want is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif want is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif want is list:  # a list of ints (distill.layers); one int is a list of one
        if isinstance(value, int) and not isinstance(value, bool):
            return [value]
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
        raise UserError(f"{where}: {key} = {value!r} is not a list of integers")
    raise UserError(f"{where}: {key} = {value!r} is not a {want.__name__}")


def _set(cfg: Config, where: str, section: str, key: str, value: Any) -> None:
    if section not in SECTIONS:
        raise UserError(f"{where}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
    obj = _section_obj(cfg, section)
    names = [f.name for f in dataclasses.fields(obj)]
    if (section, key) in RETIRED:
        raise UserError(f"{where}: {section}.{key} is no longer a config key: {RETIRED[(section, key)]}")
    if key not in names:
        raise UserError(f"{where}: unknown key {section}.{key} (known in [{section}]: {', '.join(names)})")
    value = _coerce(where, f"{section}.{key}", getattr(obj, key), value)
    choices = CHOICES.get((section, key))
    if choices is not None and value not in choices:
        raise UserError(f"{where}: {section}.{key} = {value!r}; expected one of {', '.join(map(str, choices))}")
    setattr(obj, key, value)


def _parse_override_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string such as out/pretrain


BUNDLED_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def bundled_configs() -> list[str]:
    """Names of the configs shipped inside the package (``trainer/configs/NAME.toml``; ``configs/`` in a checkout)."""
    if not os.path.isdir(BUNDLED_CONFIGS):
        return []
    return sorted(n[: -len(".toml")] for n in os.listdir(BUNDLED_CONFIGS) if n.endswith(".toml"))


def resolve_config_path(path: str) -> str:
    """A config given as a bare name (``base``, ``tiny``) is the bundled one, so an installed knowmix (no
    checkout, no ``configs/`` folder) trains with ``knowmix train base``; anything else is a path."""
    if path and os.sep not in path and "/" not in path and not path.endswith(".toml") and not os.path.exists(path):
        bundled = os.path.join(BUNDLED_CONFIGS, f"{path}.toml")
        if os.path.isfile(bundled):
            return bundled
        raise UserError(f"{path}: no such config file, and no bundled config of that name"
                        f" (bundled: {', '.join(bundled_configs()) or 'none'})")
    return path


def load_config(path: str | None, overrides: list[str] = ()) -> Config:
    """Read ``path`` (TOML; or a bundled config's name, see ``resolve_config_path``) over the defaults, then
    apply ``section.key=value`` overrides in order."""
    cfg = Config()
    if path:
        path = resolve_config_path(path)
        if not os.path.exists(path):
            raise UserError(f"{path}: no such config file")
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{path}: not valid TOML ({exc})") from None
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); a config is a UTF-8 TOML file") from None
        except OSError as exc:
            raise UserError(f"{path}: cannot read ({exc.strerror})") from None
        cfg.source = path
        for section, body in doc.items():
            if not isinstance(body, dict):
                raise UserError(f"{path}: top-level key {section!r} must be a [section]")
            for key, value in body.items():
                _set(cfg, path, section, key, value)
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise UserError(f"override {item!r}: expected section.key=value")
        dotted, text = item.split("=", 1)
        section, key = dotted.strip().split(".", 1)
        _set(cfg, f"override {item!r}", section, key.strip(), _parse_override_value(text.strip()))
    validate(cfg)
    return cfg


# (section, key) -> (low, high, low inclusive, high inclusive); None = unbounded on that side
RANGES = {
    ("train", "max_steps"): (0, None, False, False),
    ("train", "micro_batch_size"): (0, None, False, False),
    ("train", "grad_accum"): (0, None, False, False),
    ("train", "log_every"): (0, None, False, False),
    ("train", "knowledge_micro_batch_size"): (0, None, True, False),
    ("train", "prefetch"): (0, None, True, False),
    ("train", "peak_tflops"): (0, None, True, False),
    ("train", "max_skipped_steps"): (0, None, False, False),
    ("data", "seq_len"): (0, None, False, False),
    ("data", "knowledge_seq_len"): (0, None, True, False),
    ("checkpoint", "keep"): (0, None, False, False),
    ("checkpoint", "interval"): (0, None, True, False),
    ("model", "dropout"): (0, 1, True, False),
    ("model", "attention_dropout"): (0, 1, True, False),
    ("model", "hidden_size"): (0, None, True, False),
    ("model", "layers"): (0, None, True, False),
    ("model", "heads"): (0, None, True, False),
    ("model", "intermediate_size"): (0, None, True, False),
    ("model", "max_position_embeddings"): (0, None, False, False),
    ("model", "type_vocab_size"): (0, None, False, False),
    ("optim", "lr"): (0, None, False, False),
    ("optim", "warmup_steps"): (0, None, True, False),
    ("optim", "min_lr_ratio"): (0, 1, True, True),
    ("optim", "weight_decay"): (0, None, True, False),
    ("optim", "grad_clip"): (0, None, True, False),
    ("optim", "beta1"): (0, 1, True, False),
    ("optim", "beta2"): (0, 1, True, False),
    ("optim", "eps"): (0, None, False, False),
    ("tasks", "relation"): (0, None, True, False),
    ("tasks", "substitution"): (0, None, True, False),
    ("tasks", "triple_mask"): (0, None, True, False),
    ("distill", "rdrop_alpha"): (0, None, True, False),
    ("distill", "layer_beta"): (0, None, True, False),
}


def _range_text(low, high, low_in, high_in) -> str:
    if high is None:
        return f"{'>=' if low_in else '>'} {low}"
    return f"in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


def validate(cfg: Config) -> None:
    where = cfg.source
    for (section, key), (low, high, low_in, high_in) in RANGES.items():
        v = getattr(_section_obj(cfg, section), key)
        ok = v == v and (v >= low if low_in else v > low)  # v == v: NaN is never in range
        if ok and high is not None:
            ok = v <= high if high_in else v < high
        if not ok or v in (float("inf"), float("-inf")):
            raise UserError(f"{where}: {section}.{key} = {v!r} must be {_range_text(low, high, low_in, high_in)}")
    if not 0 < cfg.data.mlm_probability < 1:
        raise UserError(f"{where}: data.mlm_probability must be in (0, 1)")
    if not 0 <= cfg.model.attn_residual_decay <= 1:
        raise UserError(f"{where}: model.attn_residual_decay must be in [0, 1] (0 = off, 1 = RealFormer)")
    if not 2 <= cfg.mlm.rounds <= 4:
        raise UserError(f"{where}: mlm.rounds must be in 2..4")
    if any(x < 1 for x in cfg.distill.layers):
        raise UserError(f"{where}: distill.layers are 1-based block indices (>= 1)")
    if not cfg.data.pretrain:
        raise UserError(f"{where}: data.pretrain is empty; it must name a `pretrain` shard directory")
    if cfg.model.size == "custom" or cfg.model.hidden_size:
        m = cfg.model
        if not (m.hidden_size and m.layers and m.heads and m.intermediate_size):
            raise UserError(f"{where}: model.size = custom needs hidden_size, layers, heads and intermediate_size")
        if m.hidden_size % m.heads:
            raise UserError(f"{where}: model.hidden_size {m.hidden_size} is not a multiple of model.heads {m.heads}")


def model_dims(cfg: Config) -> tuple[int, int, int, int]:
    """(hidden_size, layers, heads, intermediate_size) from ``model.size`` or the explicit keys."""
    m = cfg.model
    if m.hidden_size:
        return m.hidden_size, m.layers, m.heads, m.intermediate_size
    return SIZES[m.size]


def distill_layers(cfg: Config, num_layers: int, where: str = "distill.layers") -> tuple[int, ...]:
    """The blocks layer-wise distillation reads (sorted, 1-based), or () when ``distill.layer_beta`` is 0."""
    if cfg.distill.layer_beta <= 0:
        return ()
    if num_layers < 2:
        raise UserError(f"{where}: layer-wise distillation needs at least 2 layers (the model has {num_layers})")
    layers = sorted(set(cfg.distill.layers)) or list(range(1, num_layers))
    bad = [x for x in layers if not 1 <= x < num_layers]
    if bad:
        raise UserError(f"{where} = {cfg.distill.layers}: {bad[0]} is not a block below the last (1..{num_layers - 1})")
    return tuple(layers)


def dump_toml(cfg: Config) -> str:
    """The resolved configuration as TOML (written beside the run for the record)."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(v)

    lines = []
    for section, body in cfg.to_dict().items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {fmt(v)}" for k, v in body.items()]
        lines.append("")
    return "\n".join(lines)
