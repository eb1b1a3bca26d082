"""The training loop: data -> dual-path forward/backward -> (fp16 unscale) -> clip -> AdamW -> schedule.

:class:`Trainer` builds a run's parts in one ordered place and runs a short loop over named steps:
:meth:`Trainer.forward_backward` (the loss: ``trainer/loss.py``), :meth:`Trainer.optimizer_step`, the logging
window (:class:`trainer.metrics.MetricsWindow`: running sums, metrics.jsonl, TensorBoard, tqdm) and the checkpoint
policy (:class:`trainer.checkpoint.CheckpointPolicy`: interval, SIGTERM, end, keep).

No per-step host syncs: the gradient norm, the skip decision for a non-finite step (fused AdamW's ``found_inf``,
or GradScaler's under fp16) and the skipped-step counters stay on the device; the host reads them only on
a logging step (every ``log_every``). A SIGTERM is seen on the next step in one process; several processes
agree on it (an all-reduce) on logging and checkpoint steps, so they stop within ``log_every`` steps of it.
``train.host_sync_every_step`` restores the per-step reads (``float(norm)``, the SIGTERM all-reduce) with the
same math: ``bench/train.py`` measures the difference, and the losses are identical either way.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings

import torch

from knowmix.errors import UserError
from knowmix.outdir import prepare_output_dir
from knowmix.schemas import KNOWLEDGE_TASKS
from knowmix.trainer import checkpoint as ckpt
from knowmix.trainer import distributed as D
from knowmix.trainer.config import Config, distill_layers, dump_toml, model_dims
from knowmix.fileio import sha256_of
from knowmix.tokenizer_entry import TokenizerInfo
from knowmix.trainer.data import GeneralPath, KnowledgePath, Vocab, load_relations, open_dir
from knowmix.trainer.dual_path import DualPathData, Inline, Prefetcher, to_device
from knowmix.trainer.hf import RUN_INFO, apply_init, load_init, read_run_info
from knowmix.trainer.flops import batch_flops, peak_flops
from knowmix.trainer.heads import KnowmixForPretraining
from knowmix.trainer.loss import loss_scales, step_item_counts, task_weights, weighted_sum
from knowmix.trainer.metrics import MetricsWindow
from knowmix.trainer.model import EncoderConfig


class TrainingStopped(Exception):
    """The run cannot go on (e.g. fp16 overflowing step after step); the message says why."""


def lr_lambda(cfg: Config):
    warm, total, kind, floor = cfg.optim.warmup_steps, cfg.train.max_steps, cfg.optim.schedule, cfg.optim.min_lr_ratio

    def f(step: int) -> float:  # step = optimizer steps taken so far
        if warm and step < warm:
            return (step + 1) / warm
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total - warm))
        decay = 1.0 - progress if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return floor + (1.0 - floor) * decay

    return f


def build_optimizer(model: torch.nn.Module, cfg: Config, device: torch.device | None = None) -> torch.optim.Optimizer:
    """AdamW; fused (one kernel, and it skips a step on the device when told ``found_inf``) on CPU and CUDA."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = device is not None and device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2), eps=cfg.optim.eps,
                             fused=fused or None)


def step_unless_nonfinite(optimizer, scaler, norm: torch.Tensor) -> torch.Tensor:
    """Step unless ``norm`` is not finite; return the skipped flag as a 0-dim float tensor on the device. No host
    sync on the fused path (GradScaler or not).

    Every rank sees the same global norm (clipping all-reduces it), so deciding from it makes every rank skip the
    same steps. Under fp16, GradScaler decides from its own per-rank found-inf instead, which differs between
    ranks under FSDP (each rank checks only its shard of the gradients), so the scaler's found-inf is set from the
    global norm before ``scaler.step``: every rank skips, and backs off its scale, together. That is the one place
    the trainer writes a GradScaler private attribute; torch (2.13) offers no public way that keeps the numbers:
    ``scaler.step`` does not re-check the gradients once ``unscale_`` ran, ``update(new_scale)`` bypasses the
    growth tracker, and ``ShardedGradScaler`` all-reduces found-inf with SUM, so when two ranks both overflow it
    hands fused AdamW ``found_inf = 2``, and fused AdamW skips only on exactly 1 (checked on CPU)."""
    found = (~torch.isfinite(norm)).float()
    if scaler.is_enabled():
        for v in scaler._per_optimizer_states[id(optimizer)]["found_inf_per_device"].values():
            v.copy_(found.to(v.device))
        scaler.step(optimizer)
        scaler.update()
    elif getattr(optimizer, "_step_supports_amp_scaling", False):  # fused: the kernel skips when found_inf is 1
        optimizer.found_inf = found
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not found.item():  # a non-fused optimizer can only skip from the host
        optimizer.step()
    return found


def setup_data(cfg: Config, info: D.DistInfo, weights: dict[str, float], verify: bool = True):
    """The step's micro-batch source (dual-path when a knowledge task has weight), the tokenizer, the relations."""
    pre = open_dir(cfg.data.pretrain, "pretrain", "data.pretrain", verify)
    tok = TokenizerInfo.from_manifest(pre, "data.pretrain")
    vocab = Vocab(tok)
    rounds = cfg.mlm.rounds if cfg.mlm.mode == "multiround" else 1
    general = GeneralPath(pre, vocab, cfg.data.seq_len, cfg.data.mlm_probability, cfg.train.seed, info.rank, info.world,
                          rounds=rounds)
    knowledge, relations = None, ["NA"]
    if cfg.data.knowledge and any(weights[t] for t in KNOWLEDGE_TASKS):
        kdir = open_dir(cfg.data.knowledge, "knowledge_tokens", "data.knowledge", verify)
        ktok = TokenizerInfo.from_manifest(kdir, "data.knowledge")
        tok.check_same(ktok, f"{cfg.data.knowledge}/manifest.json")
        relations = load_relations(kdir)
        knowledge = KnowledgePath(kdir, vocab, len(relations), weights, cfg.data.knowledge_seq_len or cfg.data.seq_len,
                                  cfg.train.seed, info.rank, info.world)
    data = DualPathData(general, knowledge, cfg.train.micro_batch_size,
                        cfg.train.knowledge_micro_batch_size or cfg.train.micro_batch_size, cfg.train.grad_accum)
    return data, tok, relations


def encoder_config(cfg: Config, tok: TokenizerInfo):
    """The encoder's config (from init_from or model.size) and the init weights, if any."""
    init_state, init_path = None, ""
    if cfg.model.init_from:
        enc, init_state, init_path = load_init(cfg.model.init_from)
        enc.hidden_dropout_prob, enc.attention_probs_dropout_prob = cfg.model.dropout, cfg.model.attention_dropout
        if enc.vocab_size != tok.vocab_size:
            raise UserError(f"{cfg.model.init_from}/config.json: vocab_size {enc.vocab_size} differs from the shards'"
                            f" tokenizer ({tok.vocab_size})")
        for name in ("vocab.txt", tok.file):
            p = os.path.join(cfg.model.init_from, name)
            if name == os.path.basename(tok.file) and os.path.isfile(p) and sha256_of(p) != tok.sha256:
                raise UserError(f"{p}: differs from the tokenizer the shards were made with (sha256)")
    else:
        h, L, a, i = model_dims(cfg)
        enc = EncoderConfig(vocab_size=tok.vocab_size, hidden_size=h, num_hidden_layers=L, num_attention_heads=a,
                            intermediate_size=i, hidden_dropout_prob=cfg.model.dropout,
                            attention_probs_dropout_prob=cfg.model.attention_dropout,
                            max_position_embeddings=cfg.model.max_position_embeddings,
                            type_vocab_size=cfg.model.type_vocab_size, pad_token_id=tok.special_ids["pad"])
    enc.attn_residual_decay = cfg.model.attn_residual_decay
    longest = max(cfg.data.seq_len, cfg.data.knowledge_seq_len)
    if longest > enc.max_position_embeddings:
        raise UserError(f"data.seq_len {longest} exceeds the model's max_position_embeddings {enc.max_position_embeddings}")
    return enc, init_state, init_path


def write_run_info(cfg: Config, enc: EncoderConfig, tok: TokenizerInfo, relations: list[str], info: D.DistInfo) -> None:
    out = cfg.train.output_dir
    os.makedirs(out, exist_ok=True)
    tok_copy = ""
    src = tok.path
    if not src and cfg.model.init_from:
        cand = os.path.join(cfg.model.init_from, os.path.basename(tok.file))
        src = cand if os.path.isfile(cand) else ""
    if src:
        os.makedirs(os.path.join(out, "tokenizer"), exist_ok=True)
        tok_copy = os.path.join("tokenizer", os.path.basename(tok.file))
        shutil.copyfile(src, os.path.join(out, tok_copy))
    run = {"encoder": enc.__dict__, "tokenizer": tok.to_dict(), "tokenizer_copy": tok_copy,
           "num_relations": len(relations), "relations": relations, "world": info.world, "config": cfg.to_dict()}
    with open(os.path.join(out, RUN_INFO), "w", encoding="utf-8") as fh:
        json.dump(run, fh, ensure_ascii=False, indent=2)
    with open(os.path.join(out, "config.toml"), "w", encoding="utf-8") as fh:
        fh.write(dump_toml(cfg))


def check_resume_tokenizer(cfg: Config, tok: TokenizerInfo) -> None:
    path = os.path.join(cfg.train.output_dir, RUN_INFO)
    if os.path.isfile(path):
        old = read_run_info(cfg.train.output_dir).get("tokenizer") or {}
        if old and (old.get("sha256"), old.get("vocab_size")) != (tok.sha256, tok.vocab_size):
            raise UserError(f"{path}: the run was trained with another tokenizer than the shards' (sha256/vocab_size)")


def train(cfg: Config, resume: bool = False, log=print, on_end=None, verify: bool = True, on_step=None,
          after_backward=None) -> dict:
    """Run training as configured; return the summary (also printed on rank 0).

    ``verify=False`` (``--no-verify``) skips hashing the shards at start (their paths and sizes are still
    checked). ``on_end(model, info)``, if given, is called with the (wrapped) model after the last step (tests
    use it to all-gather the parameters); ``on_step(step)`` after every optimizer step (bench/profile_step.py
    drives torch.profiler's schedule with it); ``after_backward(step, params)`` between the backward and the
    optimizer step (tests put an inf into a gradient with it: ``tests/trainer/helpers.py``)."""
    prepare_output_dir(cfg.train.output_dir, f"train.output_dir = {cfg.train.output_dir!r}")
    info = D.init(cfg.train.device)
    try:
        return Trainer(cfg, resume, info, log, verify).train(on_step, on_end, after_backward)
    finally:
        D.shutdown(info)


class Trainer:
    """One run's parts, built in order (data, model, optimizer, schedule, loss scaler, resume point, metrics
    window, checkpoint policy), and the named steps of the loop: :meth:`forward_backward`,
    :meth:`optimizer_step`, :meth:`train`."""

    def __init__(self, cfg: Config, resume: bool, info: D.DistInfo, log=print, verify: bool = True):
        t = cfg.train
        self.cfg, self.info, self.log = cfg, info, log
        main = info.is_main
        self.weights = task_weights(cfg)  # the loss's weight table, built once
        self.data, tok, relations = setup_data(cfg, info, self.weights, verify)
        self.enc, init_state, init_path = encoder_config(cfg, tok)
        if resume:
            check_resume_tokenizer(cfg, tok)

        # the model: identical initial weights on every rank, then sharded or replicated
        torch.manual_seed(t.seed)
        model = KnowmixForPretraining(self.enc, num_relations=len(relations), rdrop=cfg.distill.rdrop_alpha > 0,
                                      distill_layers=distill_layers(cfg, self.enc.num_hidden_layers))
        if init_state is not None:
            fresh = apply_init(model, init_state, init_path)
            if main:
                log(f"init_from {init_path}: loaded {len(init_state)} tensors; fresh: {', '.join(sorted({k.split('.')[0] for k in fresh})) or 'none'}")
        model.to(info.device)
        self.model = D.wrap(model, t.zero, t.precision, t.activation_checkpointing, info, compile=t.compile)
        self.params = [p for p in self.model.parameters() if p.requires_grad]

        # optimizer, learning-rate schedule, fp16 loss scaler, and what a checkpoint holds of them
        self.optimizer = build_optimizer(self.model, cfg, info.device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=t.precision == "fp16")
        self.state = ckpt.TrainerState(model, self.optimizer, self.scheduler, self.scaler, step=0)
        torch.manual_seed(t.seed * 1000003 + info.rank)  # dropout streams differ per rank

        # resume point
        ckpt_root = os.path.join(t.output_dir, "checkpoints")
        if not resume and ckpt.latest(ckpt_root):
            raise UserError(f"{ckpt_root}: holds checkpoints of an earlier run; pass --resume to continue it"
                            " or choose another train.output_dir")
        if main:
            write_run_info(cfg, self.enc, tok, relations, info)
        D.barrier(info)
        if resume:
            path = ckpt.latest(ckpt_root)
            if path:
                own = ckpt.load(path, self.state, info)
                self.data.load_state_dict(own["sampler"])
                ckpt.set_rng_state(own["rng"], info.device)
                if main:
                    log(f"resumed from {path} (step {self.state.step})")
            elif main:
                log(f"--resume: no complete checkpoint under {ckpt_root}; starting at step 0")
        self.start_step = self.state.step

        # the logging window, the checkpoint policy
        peak = peak_flops(info.device, t.peak_tflops) * info.world
        self.metrics = MetricsWindow(cfg, info, self.weights, peak, self.start_step, log)
        self.checkpoints = ckpt.CheckpointPolicy(ckpt_root, cfg.checkpoint.interval, cfg.checkpoint.keep, info,
                                                 agree_every_step=t.host_sync_every_step)
        self.copies = 2 if cfg.distill.rdrop_alpha > 0 else 1
        self.distilled = len(distill_layers(cfg, self.enc.num_hidden_layers))

    def forward_backward(self, batches: list[dict[str, torch.Tensor]]) -> None:
        """Forward and backward over one step's micro-batches (general and knowledge alternating), the gradients
        accumulating; gradient sync only on the last micro-batch."""
        t, dev, scaler = self.cfg.train, self.info.device, self.scaler
        scales = loss_scales(step_item_counts(batches, self.info), self.weights, self.info.world)
        for i, b in enumerate(batches):
            with D.grad_sync(self.model, t.zero, last=i == len(batches) - 1):
                with D.autocast(self.model, t.precision, dev):
                    terms, stats = self.model(to_device(b, dev))
                    loss = weighted_sum(terms, scales)
                scaler.scale(loss).backward() if scaler.is_enabled() else loss.backward()
            self.metrics.add_micro_batch(stats, int(b["n_tokens"]),
                                         batch_flops(b, self.enc, self.copies, self.distilled))

    def optimizer_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip, then step unless the global gradient norm is not finite (decided on the device), advance the
        schedule; return ``(norm, skipped)``, both still on the device."""
        optimizer, scaler = self.optimizer, self.scaler
        if scaler.is_enabled():
            scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.params, t_clip(self.cfg))
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        if self.cfg.train.host_sync_every_step:
            float(norm)  # the per-step host read this switch restores (bench/train.py measures its cost)
        skipped = step_unless_nonfinite(optimizer, scaler, norm).double()
        optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # a skipped step makes torch warn that the scheduler ran first
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            self.scheduler.step()
        return norm, skipped

    def train(self, on_step=None, on_end=None, after_backward=None) -> dict:
        t, info, metrics, checkpoints = self.cfg.train, self.info, self.metrics, self.checkpoints
        data, dev = self.data, info.device
        step, stop_reason = self.start_step, "max_steps"
        sampler_state = data.state_dict()
        feed = (Prefetcher(data, step, t.max_steps, t.prefetch, pin=dev.type == "cuda")
                if t.prefetch > 0 else Inline(data))
        checkpoints.install_sigterm()
        run_start = time.perf_counter()
        self.model.train()
        while step < t.max_steps:
            batches, sampler_state = feed.get(step)
            self.forward_backward(batches)
            if after_backward is not None:
                after_backward(step, self.params)
            norm, skipped = self.optimizer_step()
            step += 1
            self.state.step = step
            metrics.add_step(norm, skipped)

            # logging: the host reads the device's sums here, once per log_every steps
            log_now = metrics.due(step)
            if log_now:
                metrics.log(step, self.scheduler.get_last_lr()[0], self.scaler)
            metrics.advance()
            if on_step is not None:
                on_step(step)

            # checkpoint on the interval or a SIGTERM (agreed by every process on logging/checkpoint steps)
            if checkpoints.after_step(step, self.state, lambda: self.rank_state(sampler_state), log_now):
                stop_reason = "SIGTERM"
                break
            if log_now and metrics.skipped_row >= t.max_skipped_steps:
                stop_reason = f"{metrics.skipped_row} fp16 steps in a row overflowed"
                break

        skipped_total = metrics.skipped_total
        checkpoints.at_end(step, self.state, lambda: self.rank_state(sampler_state))
        feed.close()
        checkpoints.restore_sigterm()
        if on_end is not None:
            on_end(self.model, info)
        metrics.close()
        history = metrics.history
        summary = {
            "steps": step, "start_step": self.start_step, "stop": stop_reason,
            "seconds": round(time.perf_counter() - run_start, 2), "skipped_steps": skipped_total,
            "final": history[-1] if history else None, "checkpoint": ckpt.latest(checkpoints.root),
            "dual_path": data.dual, "world": info.world,
        }
        if info.is_main:
            print_summary(summary, history, self.log)
        if stop_reason.endswith("overflowed"):
            raise TrainingStopped(f"stopped at step {step}: {stop_reason} (loss scale {self.scaler.get_scale():g});"
                                  f" last checkpoint {summary['checkpoint']}")
        return summary

    def rank_state(self, sampler_state: dict) -> dict:
        """This rank's part of a checkpoint: the sampler position after the last step's batches, the RNG states."""
        return {"sampler": sampler_state, "rng": ckpt.rng_state(self.info.device)}


def t_clip(cfg: Config) -> float:
    return cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")


def print_summary(summary: dict, history: list[dict], log) -> None:
    log(f"done: {summary['steps']} steps ({summary['stop']}) in {summary['seconds']:.1f}s on {summary['world']}"
        f" process(es), {'dual' if summary['dual_path'] else 'single'}-path; skipped steps {summary['skipped_steps']}")
    if history:
        pts = history if len(history) <= 12 else [history[round(i * (len(history) - 1) / 11)] for i in range(12)]
        log("loss curve: " + "  ".join(f"{r['step']}:{r['loss']:.3f}" for r in pts))
        f = history[-1]
        parts = [f"{k}={f[k]:.4f}" for k in ("loss/mlm", "loss/relation", "loss/substitution", "loss/triple_mask",
                                                "loss/rdrop", "loss/layer_distill", "loss/ar_mlm", "acc/mlm")
                 if f.get(k) is not None]
        log("final: " + ", ".join(parts) + f", {f['tokens_per_s']:.0f} tokens/s")
    log(f"checkpoint: {summary['checkpoint']}")
