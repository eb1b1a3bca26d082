"""The training loop: data -> dual-path forward/backward -> (fp16 unscale) -> clip -> AdamW -> schedule,
with metrics, TensorBoard, a progress bar on rank 0, checkpoints (interval, SIGTERM, end) and a summary.

No per-step host syncs: the gradient norm, the skip decision for a non-finite step (fused AdamW's ``found_inf``,
or GradScaler's under fp16) and the skipped-step counters stay on the device; the host reads them only on
a logging step (every ``log_every``). A SIGTERM is seen on the next step in one process; several processes
agree on it (an all-reduce) on logging and checkpoint steps. ``train.host_sync_every_step`` restores the
per-step reads (``float(norm)``, the SIGTERM all-reduce) with the same math: ``bench/train.py`` measures the
difference, and the losses are identical either way.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import time
import warnings

import torch

from knowmix.errors import UserError
from knowmix.outdir import prepare_output_dir
from trainer import checkpoint as ckpt
from trainer import distributed as D
from trainer.config import Config, distill_layers, dump_toml, model_dims
from trainer.data import GeneralPath, KnowledgePath, TokenizerInfo, Vocab, file_sha256, load_relations, open_dir
from trainer.dual_path import DualPathData, Inline, Prefetcher, to_device
from trainer.hf import RUN_INFO, apply_init, load_init, read_run_info
from trainer.flops import batch_flops, peak_flops
from trainer.heads import MAX_ROUNDS, N_STATS, STAT_INDEX, TASKS, KnowmixForPretraining
from trainer.model import EncoderConfig


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


def optimizer_step(optimizer, scaler, norm: torch.Tensor) -> torch.Tensor:
    """Step unless ``norm`` is not finite (every rank sees the same global norm, so all agree); return the
    skipped flag as a 0-dim float tensor on the device. No host sync on the fused path (GradScaler or not)."""
    found = (~torch.isfinite(norm)).float()
    if scaler.is_enabled():
        # every rank must agree on skipping: set the scaler's per-device found_inf from the global norm
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


def _debug_inf_steps() -> set[int]:
    """Test seam: KNOWMIX_DEBUG_INF_STEPS="3,4" puts an inf into a gradient at those steps (fp16 scaler tests)."""
    text = os.environ.get("KNOWMIX_DEBUG_INF_STEPS", "")
    return {int(x) for x in text.split(",") if x.strip()}


class _Sigterm:
    def __init__(self):
        self.flag = False
        self.previous = None

    def install(self):
        try:
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            pass

    def _handle(self, signum, frame):
        self.flag = True

    def restore(self):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def setup_data(cfg: Config, info: D.DistInfo, verify: bool = True):
    pre = open_dir(cfg.data.pretrain, "pretrain", "data.pretrain", verify)
    tok = TokenizerInfo.from_manifest(pre, "data.pretrain")
    vocab = Vocab(tok)
    rounds = cfg.mlm.rounds if cfg.mlm.mode == "multiround" else 1
    general = GeneralPath(pre, vocab, cfg.data.seq_len, cfg.data.mlm_probability, cfg.train.seed, info.rank, info.world,
                          rounds=rounds)
    knowledge, relations = None, ["NA"]
    weights = {"relation": cfg.tasks.relation, "substitution": cfg.tasks.substitution, "triple_mask": cfg.tasks.triple_mask}
    if cfg.data.knowledge and any(weights.values()):
        kdir = open_dir(cfg.data.knowledge, "knowledge_tokens", "data.knowledge", verify)
        ktok = TokenizerInfo.from_manifest(kdir, "data.knowledge")
        tok.check_same(ktok, f"{cfg.data.knowledge}/manifest.json")
        relations = load_relations(kdir)
        knowledge = KnowledgePath(kdir, vocab, len(relations), weights, cfg.data.knowledge_seq_len or cfg.data.seq_len,
                                  cfg.train.seed, info.rank, info.world)
    data = DualPathData(general, knowledge, cfg.train.micro_batch_size,
                        cfg.train.knowledge_micro_batch_size or cfg.train.micro_batch_size, cfg.train.grad_accum, weights,
                        {"rdrop": cfg.distill.rdrop_alpha, "layer_distill": cfg.distill.layer_beta})
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
            if name == os.path.basename(tok.file) and os.path.isfile(p) and file_sha256(p) != tok.sha256:
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


def train(cfg: Config, resume: bool = False, log=print, on_end=None, verify: bool = True, on_step=None) -> dict:
    """Run training as configured; return the summary (also printed on rank 0).

    ``verify=False`` (``--no-verify``) skips hashing the shards at start (their paths and sizes are still
    checked). ``on_end(model, info)``, if given, is called with the (wrapped) model after the last step (tests
    use it to all-gather the parameters); ``on_step(step)`` after every optimizer step (bench/profile_step.py
    drives torch.profiler's schedule with it)."""
    prepare_output_dir(cfg.train.output_dir, f"train.output_dir = {cfg.train.output_dir!r}")
    info = D.init(cfg.train.device)
    try:
        return _train(cfg, resume, info, log, on_end, verify, on_step)
    finally:
        D.shutdown(info)


def _train(cfg: Config, resume: bool, info: D.DistInfo, log, on_end=None, verify: bool = True, on_step=None) -> dict:
    t = cfg.train
    main = info.is_main
    data, tok, relations = setup_data(cfg, info, verify)
    enc, init_state, init_path = encoder_config(cfg, tok)
    if resume:
        check_resume_tokenizer(cfg, tok)

    torch.manual_seed(t.seed)  # identical initial weights on every rank
    model = KnowmixForPretraining(enc, num_relations=len(relations), rdrop=cfg.distill.rdrop_alpha > 0,
                                  distill_layers=distill_layers(cfg, enc.num_hidden_layers))
    if init_state is not None:
        fresh = apply_init(model, init_state, init_path)
        if main:
            log(f"init_from {init_path}: loaded {len(init_state)} tensors; fresh: {', '.join(sorted({k.split('.')[0] for k in fresh})) or 'none'}")
    model.to(info.device)
    core = model
    model = D.wrap(model, t.zero, t.precision, t.activation_checkpointing, info, compile=t.compile)
    optimizer = build_optimizer(model, cfg, info.device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    scaler = torch.amp.GradScaler(info.device.type, enabled=t.precision == "fp16")
    state = ckpt.TrainerState(core, optimizer, scheduler, scaler, step=0)
    torch.manual_seed(t.seed * 1000003 + info.rank)  # dropout streams differ per rank

    ckpt_root = os.path.join(t.output_dir, "checkpoints")
    if not resume and ckpt.latest(ckpt_root):
        raise UserError(f"{ckpt_root}: holds checkpoints of an earlier run; pass --resume to continue it"
                        " or choose another train.output_dir")
    if main:
        write_run_info(cfg, enc, tok, relations, info)
    D.barrier(info)
    if resume:
        path = ckpt.latest(ckpt_root)
        if path:
            own = ckpt.load(path, state, info)
            data.load_state_dict(own["sampler"])
            ckpt.set_rng_state(own["rng"], info.device)
            if main:
                log(f"resumed from {path} (step {state.step})")
        elif main:
            log(f"--resume: no complete checkpoint under {ckpt_root}; starting at step 0")
    start_step = state.step
    metrics_path = os.path.join(t.output_dir, "metrics.jsonl")
    if main:
        trim_metrics(metrics_path, start_step)

    params = [p for p in model.parameters() if p.requires_grad]
    peak = peak_flops(info.device, t.peak_tflops) * info.world
    sigterm = _Sigterm()
    sigterm.install()
    inf_steps = _debug_inf_steps()

    writer = None
    if main and t.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(os.path.join(t.output_dir, "tensorboard"))
        except Exception as exc:  # noqa: BLE001 - TensorBoard is optional
            log(f"tensorboard disabled ({type(exc).__name__}: {exc})")
    bar = None
    if main and t.progress:
        from tqdm import tqdm

        bar = tqdm(total=t.max_steps, initial=start_step, desc="train", dynamic_ncols=True, file=sys.stderr,
                   mininterval=1.0)

    dev = info.device
    window = torch.zeros(N_STATS, dtype=torch.float64, device=dev)
    win_norm = torch.zeros((), dtype=torch.float64, device=dev)  # sum of the window's finite grad norms
    skipped_total_t = torch.zeros((), dtype=torch.float64, device=dev)
    skipped_row_t = torch.zeros((), dtype=torch.float64, device=dev)  # skipped steps in a row, up to now
    win_tokens, win_flops, win_steps, win_start = 0, 0.0, 0, time.perf_counter()
    run_start = time.perf_counter()
    skipped_total, skipped_row, history = 0, 0, []
    last_saved = -1
    step = start_step
    stop_reason = "max_steps"
    dual = data.dual
    copies = 2 if cfg.distill.rdrop_alpha > 0 else 1
    distilled = len(distill_layers(cfg, enc.num_hidden_layers))
    sampler_state = data.state_dict()
    feed = (Prefetcher(data, start_step, t.max_steps, t.prefetch, pin=dev.type == "cuda")
            if t.prefetch > 0 else Inline(data))
    model.train()
    while step < t.max_steps:
        # forward/backward over the step's micro-batches (general and knowledge alternating)
        batches, sampler_state = feed.get(step)
        scales, _ = data.scales(batches, info)
        for i, b in enumerate(batches):
            win_tokens += int(b["n_tokens"])
            win_flops += batch_flops(b, enc, copies, distilled)
            with D.grad_sync(model, t.zero, last=i == len(batches) - 1):
                with D.autocast(model, t.precision, dev):
                    loss, stats = model(to_device(b, dev), scales)
                scaler.scale(loss).backward() if scaler.is_enabled() else loss.backward()
            window += stats.double()
        if step in inf_steps:
            with torch.no_grad():
                g = next(p.grad for p in params if p.grad is not None)
                local = g.to_local() if hasattr(g, "to_local") else g
                if local.numel():
                    local.view(-1)[0] = float("inf")

        # clip, then step unless the global norm is not finite (decided on the device)
        if scaler.is_enabled():
            scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(params, t_clip(cfg))
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        if t.host_sync_every_step:
            float(norm)  # the per-step host read this switch restores (bench/train.py measures its cost)
        skipped = optimizer_step(optimizer, scaler, norm).double()
        optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # a skipped step makes torch warn that the scheduler ran first
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            scheduler.step()
        step += 1
        state.step = step
        skipped_total_t += skipped
        skipped_row_t.add_(1).mul_(skipped)  # back to 0 on a step that was taken
        win_norm += torch.where(skipped > 0, torch.zeros_like(win_norm), norm.detach().double())
        win_steps += 1

        # timing and logging: the host reads the device's counters here, once per log_every steps
        log_now = step % t.log_every == 0 or step == t.max_steps
        if log_now:
            D.all_reduce_(window, info)
            elapsed = max(time.perf_counter() - win_start, 1e-9)
            totals = torch.tensor([float(win_tokens), win_flops], dtype=torch.float64, device=dev)
            D.all_reduce_(totals, info)
            skipped_total, skipped_row = int(skipped_total_t), int(skipped_row_t)
            rec = metrics_record(window, step, dual, cfg, scheduler.get_last_lr()[0], float(win_norm) / max(win_steps, 1),
                                 scaler, float(totals[0]) / elapsed, float(totals[1]) / elapsed, peak)
            rec["skipped_steps"] = skipped_total
            history.append(rec)
            if main:
                with open(metrics_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(rec) + "\n")
                if writer is not None:
                    for k, v in rec.items():
                        if k != "step" and v is not None:
                            writer.add_scalar(k, v, step)
                if bar is not None:
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}")
            window.zero_()
            win_norm.zero_()
            win_tokens, win_flops, win_steps, win_start = 0, 0.0, 0, time.perf_counter()
        if bar is not None:
            bar.update(1)
        if on_step is not None:
            on_step(step)

        # SIGTERM: one process sees its own flag every step; several agree on it (a collective, so a host sync)
        # on logging and checkpoint steps only, unless host_sync_every_step
        interval_due = bool(cfg.checkpoint.interval and step % cfg.checkpoint.interval == 0)
        term = sigterm.flag
        if info.distributed and (log_now or interval_due or t.host_sync_every_step):
            flag = torch.tensor([1.0 if sigterm.flag else 0.0], device=dev)
            D.all_reduce_(flag, info, op=torch.distributed.ReduceOp.MAX)
            term = flag.item() > 0
        elif info.distributed:
            term = False  # acted on at the next agreement step, by every rank together
        elif t.host_sync_every_step:
            term = torch.tensor([1.0 if sigterm.flag else 0.0], device=dev).item() > 0
        if interval_due or term:
            ckpt.save(ckpt_root, state, {"sampler": sampler_state, "rng": ckpt.rng_state(dev)}, info,
                      cfg.checkpoint.keep)
            last_saved = step
        if term:
            stop_reason = "SIGTERM"
            break
        if log_now and skipped_row >= t.max_skipped_steps:
            stop_reason = f"{skipped_row} fp16 steps in a row overflowed"
            break

    skipped_total = int(skipped_total_t)
    if last_saved != step:
        ckpt.save(ckpt_root, state, {"sampler": sampler_state, "rng": ckpt.rng_state(info.device)}, info,
                  cfg.checkpoint.keep)
    feed.close()
    sigterm.restore()
    if on_end is not None:
        on_end(model, info)
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    total = time.perf_counter() - run_start
    summary = {
        "steps": step, "start_step": start_step, "stop": stop_reason, "seconds": round(total, 2),
        "skipped_steps": skipped_total, "final": history[-1] if history else None,
        "checkpoint": ckpt.latest(ckpt_root), "dual_path": dual, "world": info.world,
    }
    if main:
        print_summary(summary, history, log)
    if stop_reason.endswith("overflowed"):
        raise TrainingStopped(f"stopped at step {step}: {stop_reason} (loss scale {scaler.get_scale():g});"
                              f" last checkpoint {summary['checkpoint']}")
    return summary


def trim_metrics(path: str, start_step: int) -> None:
    """Keep only the lines of steps <= start_step (a fresh run starts an empty file; a resumed run drops the
    lines logged after its checkpoint, which it is about to log again)."""
    if not os.path.exists(path):
        return
    keep = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                if json.loads(line)["step"] <= start_step:
                    keep.append(line)
            except (ValueError, KeyError):
                continue
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(keep)


def t_clip(cfg: Config) -> float:
    return cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")


def metrics_record(window, step, dual, cfg, lr, grad_norm, scaler, tokens_per_s, flops_per_s, peak) -> dict:
    """One metrics.jsonl line. ``mfu`` = the FLOPs the steps actually did (trainer/flops.py) / the devices' peak."""
    w = window.tolist()

    def mean(task, k=0):
        i = STAT_INDEX[task]
        return w[i + k] / w[i + 1] if w[i + 1] > 0 else None

    rec = {"step": step}
    losses = {t: mean(t) for t in TASKS}
    weights = {"mlm": 1.0, "relation": cfg.tasks.relation, "substitution": cfg.tasks.substitution,
               "triple_mask": cfg.tasks.triple_mask}
    rec["loss"] = sum(weights[t] * v for t, v in losses.items() if v is not None)
    for t in TASKS:
        rec[f"loss/{t}"] = losses[t]
    # issue 7: each technique's term on its own (None when off), and in the total with its weight
    for name, weight in (("rdrop", cfg.distill.rdrop_alpha), ("layer_distill", cfg.distill.layer_beta)):
        v = mean(name) if weight > 0 else None
        rec[f"loss/{name}"] = v
        if v is not None:
            rec["loss"] += weight * v
    if cfg.mlm.mode == "multiround":
        rec["loss/ar_mlm"] = mean("ar_mlm")
        rec["acc/ar_mlm"] = mean("ar_mlm", 2)
        for k in range(min(cfg.mlm.rounds, MAX_ROUNDS)):
            rec[f"loss/ar_mlm_r{k + 1}"] = mean(f"ar_mlm_r{k + 1}")
    rec["acc/mlm"] = mean("mlm", 2)
    rec["acc/relation"] = mean("relation", 2)
    rec["acc/substitution"] = mean("substitution", 2)
    rec["acc/triple_mask"] = mean("triple_mask", 2)
    rec["lr"] = lr
    rec["grad_norm"] = grad_norm
    rec["loss_scale"] = scaler.get_scale() if scaler.is_enabled() else None
    rec["tokens_per_s"] = tokens_per_s
    rec["mfu"] = flops_per_s / peak if peak else 0.0
    return rec


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
