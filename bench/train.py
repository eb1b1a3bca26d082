"""GPU benchmark of the trainer (issues 6 and 17). One script, start to end in < 10 minutes on one H100/H200:

1. ``encoder``: tokens/s and MFU of knowmix's encoder+MLM head vs Hugging Face ``BertForMaskedLM`` (same config,
   bf16 autocast, seq 512, BERT-base and BERT-large; HF eager and ``torch.compile``d; knowmix eager and with its
   per-block ``train.compile``), one AdamW step per measured step. MFU counts the FLOPs each model does
   (``trainer/flops.py``): knowmix scores the MLM head at the masked positions only, HF at every position;
2. ``paths``: the real trainer (``trainer.loop.train``, synthetic shards in a temp dir): single-path vs dual-path
   at *equal sequence length* (knowledge rows as long as the general rows, no padding): the knowledge path's
   cost per token. The mixed case (knowledge rows 64-127 tokens beside 512-token general rows, cheaper attention
   per token) is reported separately and is not a cost;
3. ``zero``: FSDP2 ZeRO-3 vs ZeRO-2, (a) on one rank (a one-rank process group: nothing is sharded, this is
   FSDP2's wrapping cost only), (b) two processes (``torchrun``; NCCL over two GPUs where there are two, else
   both on one GPU over gloo, whose collectives go through host memory; gloo on CPU with ``--smoke``), so the
   collectives are real;
4. ``techniques``: the self-distillation and MLM techniques in the real trainer (dual-path, same shards, same card, same run): all
   off, then each switch alone (R-Drop, layer-wise self-distillation over every block below the last, the
   cross-layer attention residual on the explicit attention path, multi-round MLM with 2 rounds): tokens/s
   (data tokens, each once) and peak GPU memory against all-off;
5. ``syncs``: the trainer with and without the per-step host syncs (``train.host_sync_every_step``: the grad
   norm read with ``float(norm)`` and the SIGTERM all-reduce every step); the losses must be identical.

Prints ratios against the named baselines; no pass/fail.

    python bench/train.py                 # GPU, all sections
    python bench/train.py --smoke         # CPU, tiny sizes, seconds: checks the script runs end to end
    python bench/train.py --sections techniques   # only section 4
"""

from __future__ import annotations

import os
import sys

import _repo_path  # noqa: E402,F401  (first: the repository root on sys.path, bench/ off it)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import torch  # noqa: E402

from knowmix.manifest import write_shard_dir  # noqa: E402
from knowmix.schemas import KNOWLEDGE_TOKENS_SCHEMA, PRETRAIN_SCHEMA  # noqa: E402
from knowmix.trainer.config import SIZES, load_config  # noqa: E402
from knowmix.trainer.flops import mlm_head_flops, peak_flops  # noqa: E402
from knowmix.trainer.heads import KnowmixForPretraining  # noqa: E402
from knowmix.trainer.loss import weighted_sum  # noqa: E402
from knowmix.trainer.masking import rng_for, whole_word_mask  # noqa: E402
from knowmix.trainer.model import EncoderConfig  # noqa: E402

VOCAB = 21128  # bert-base-chinese
N_SPECIAL = 9  # pad unk cls sep mask e1 /e1 e2 /e2 at ids 0..8 in the synthetic vocab
SPECIAL_IDS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4, "e1": 5, "e1_end": 6, "e2": 7, "e2_end": 8}


def peak_tflops(device: torch.device, given: float) -> float:
    """The device's dense bf16 peak by its exact name (trainer/flops.py), or ``given``; 0 = unknown."""
    return peak_flops(device, given) / 1e12


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- section 1


def masked_batch(batch: int, seq: int, vocab: int, seed: int = 0):
    """Random ids with whole-word masking (15%, 80/10/10) as the trainer's general path makes them."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(N_SPECIAL, vocab, size=(batch, seq))
    ids[:, 0], ids[:, -1] = 2, 3
    ws = rng.random((batch, seq)) < 0.6
    special = np.arange(N_SPECIAL)
    rand_ids = np.arange(N_SPECIAL, vocab)
    out, pos, labels = [], [], []
    for i in range(batch):
        m, p, lab = whole_word_mask(ids[i], ws[i], rng_for(0, 0, 0, 0, i), 0.15, 4, special, rand_ids)
        out.append(m)
        pos.append(p + i * seq)
        labels.append(lab)
    input_ids = torch.from_numpy(np.stack(out))
    mlm_pos = torch.from_numpy(np.concatenate(pos))
    mlm_labels = torch.from_numpy(np.concatenate(labels))
    hf_labels = torch.full((batch * seq,), -100, dtype=torch.long)
    hf_labels[mlm_pos] = mlm_labels
    return input_ids, mlm_pos, mlm_labels, hf_labels.view(batch, seq)


def time_steps(step_fn, warmup: int, steps: int, device) -> float:
    for _ in range(warmup):
        step_fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn()
    sync(device)
    return time.perf_counter() - t0


def bench_models(args, device, peak) -> list[dict]:
    from transformers import BertConfig, BertForMaskedLM

    rows = []
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if not args.smoke else contextlib.nullcontext()
    for size in args.sizes:
        h, L, a, i = SIZES[size] if not args.smoke else (64, 2, 2, 128)
        batch = args.batch.get(size, 16) if not args.smoke else 4
        enc = EncoderConfig(vocab_size=args.vocab, hidden_size=h, num_hidden_layers=L, num_attention_heads=a,
                            intermediate_size=i, max_position_embeddings=max(512, args.seq))
        ids, pos, labels, hf_labels = masked_batch(batch, args.seq, args.vocab)
        ids, pos, labels, hf_labels = (t.to(device) for t in (ids, pos, labels, hf_labels))
        types = torch.zeros_like(ids)
        tokens = batch * args.seq
        encoder_flops = tokens * enc.flops_per_token(args.seq)
        step_flops = {  # the FLOPs each model does per step: its MLM head at masked positions vs every position
            "hf": encoder_flops + mlm_head_flops(h, args.vocab, tokens),
            "knowmix": encoder_flops + mlm_head_flops(h, args.vocab, int(pos.numel())),
        }
        variants = ["hf_eager", "hf_compile", "knowmix", "knowmix_compile"]
        if args.no_compile:
            variants = [v for v in variants if not v.endswith("compile")]
        results = {}
        for name in variants:
            torch.manual_seed(0)
            if name.startswith("hf"):
                cfg = BertConfig(vocab_size=args.vocab, hidden_size=h, num_hidden_layers=L, num_attention_heads=a,
                                 intermediate_size=i, max_position_embeddings=max(512, args.seq),
                                 attn_implementation="sdpa")
                model = BertForMaskedLM(cfg).to(device)
                fwd_model = torch.compile(model) if name == "hf_compile" else model

                def loss_fn():
                    return fwd_model(input_ids=ids, token_type_ids=types, labels=hf_labels).loss
            else:
                model = KnowmixForPretraining(enc).to(device)
                if name == "knowmix_compile":
                    for block in model.bert.encoder.layer:
                        block.compile()
                batch_d = {"input_ids": ids, "token_type_ids": types, "mlm_pos": pos, "mlm_labels": labels,
                           "mlm_task": torch.zeros_like(labels)}
                n_pred = float(len(labels))

                def loss_fn():
                    terms, _ = model(batch_d)
                    return weighted_sum(terms, {"mlm": 1.0 / n_pred})
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

            def step():
                opt.zero_grad(set_to_none=True)
                with amp:
                    loss = loss_fn()
                loss.backward()
                opt.step()

            try:
                secs = time_steps(step, args.warmup + (2 if name.endswith("compile") else 0), args.steps, device)
                tps = tokens * args.steps / secs
                results[name] = tps
                flops = step_flops["hf" if name.startswith("hf") else "knowmix"]
                mfu = flops * args.steps / secs / (peak * 1e12) if peak else 0.0
                counted = "head at every position" if name.startswith("hf") else "head at masked positions"
                rows.append({"section": "encoder", "size": size, "variant": name, "batch": batch, "seq": args.seq,
                             "tokens_per_s": round(tps), "mfu": round(mfu, 4), "gflop_per_step": round(flops / 1e9, 1),
                             "flops_counted": f"encoder + MLM {counted}"})
                print(f"  {size:5s} {name:16s} batch {batch:3d}  {tps:12,.0f} tokens/s  MFU {mfu:6.1%}"
                      f"  ({flops / 1e9:,.4g} GFLOP/step: encoder + MLM {counted})", flush=True)
            except Exception as exc:  # noqa: BLE001 - report and go on (e.g. out of memory)
                print(f"  {size:5s} {name:16s} failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            del model, opt
            free(device)
        base = results.get("hf_compile") or results.get("hf_eager")
        for name in ("knowmix", "knowmix_compile"):
            if name in results and base:
                ref = "hf_compile" if "hf_compile" in results else "hf_eager"
                rows.append({"section": "encoder", "size": size, "ratio": f"{name} / {ref}",
                             "value": round(results[name] / base, 3)})
                print(f"  {size:5s} {name} / {ref} = {results[name] / base:.2f}x", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------- shards


def bench_tokenizer(root: str, vocab: int) -> dict:
    """A synthetic wordpiece vocabulary written into ``root`` (beside its manifest); its manifest entry."""
    lines = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[E1]", "[/E1]", "[E2]", "[/E2]"]
    lines += [f"t{i}" for i in range(vocab - len(lines))]
    text = "\n".join(lines) + "\n"
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "vocab.txt"), "w") as fh:
        fh.write(text)
    return {"kind": "wordpiece", "file": "vocab.txt", "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "vocab_size": vocab, "special_ids": SPECIAL_IDS, "lowercase": False}


def write_pretrain_shards(root: str, vocab: int, seq: int, n_pre: int) -> str:
    rng = np.random.default_rng(0)
    tok = bench_tokenizer(root, vocab)
    ids = rng.integers(N_SPECIAL, vocab, size=(n_pre, seq)).astype(np.int32)
    ids[:, 0], ids[:, -1] = 2, 3
    ws = rng.random((n_pre, seq)) < 0.6
    table = pa.table({"id": [f"d{i}:0" for i in range(n_pre)], "input_ids": [r for r in ids.tolist()],
                      "word_start": ws.tolist(), "source_kinds": [["web"]] * n_pre}, schema=PRETRAIN_SCHEMA)
    write_shard_dir(root, "pretrain", [table.slice(0, n_pre // 2), table.slice(n_pre // 2)], extra={"tokenizer": tok})
    return root


def write_knowledge_shards(root: str, vocab: int, n_k: int, kseq: int, fixed: bool) -> str:
    """Knowledge rows of the three tasks: ``fixed`` = every row exactly ``kseq`` tokens (no padding: the equal
    length comparison), else ``kseq // 2 .. kseq - 1`` tokens (the mixed case)."""
    rng = np.random.default_rng(1)
    tok = bench_tokenizer(root, vocab)
    rows = []
    for i in range(n_k):
        task = ("relation", "substitution", "triple_mask")[i % 3]
        n = kseq if fixed else int(rng.integers(kseq // 2, kseq))
        body = rng.integers(N_SPECIAL, vocab, size=n).tolist()
        r = {"id": f"k{i}", "task": task, "e1_pos": None, "e2_pos": None, "head_span": None, "tail_span": None,
             "relations": None, "mention_spans": None, "mention_labels": None, "triple_head_span": None,
             "triple_relation_span": None, "triple_tail_span": None}
        if task == "relation":
            body[0], body[1], body[4], body[10], body[11], body[14], body[-1] = 2, 5, 6, 7, 7, 8, 3
            body[10] = 7
            r.update(e1_pos=1, e2_pos=10, head_span={"start": 2, "end": 4}, tail_span={"start": 11, "end": 14},
                     relations=[int(rng.integers(0, 20))])
            tt = [0] * n
        elif task == "substitution":
            body[0], body[-1] = 2, 3
            r.update(mention_spans=[{"start": 3, "end": 5}, {"start": 20, "end": 23}],
                     mention_labels=[int(rng.integers(0, 2)), int(rng.integers(0, 2))])
            tt = [0] * n
        else:
            body[0], body[3], body[5], body[8] = 2, 3, 3, 3
            r.update(triple_head_span={"start": 1, "end": 3}, triple_relation_span={"start": 4, "end": 5},
                     triple_tail_span={"start": 6, "end": 8}, head_span={"start": 12, "end": 14},
                     tail_span={"start": 30, "end": 32})
            tt = [0] * 9 + [1] * (n - 9)
        r.update(input_ids=body, token_type_ids=tt, word_start=[True] * n)
        rows.append(r)
    kt = pa.Table.from_pylist(rows, schema=KNOWLEDGE_TOKENS_SCHEMA)
    write_shard_dir(root, "knowledge_tokens", [kt.slice(0, n_k // 2), kt.slice(n_k // 2)], extra={"tokenizer": tok})
    with open(os.path.join(root, "relations.json"), "w") as fh:
        json.dump(["NA"] + [f"r{i}" for i in range(1, 20)], fh)
    return root


def bench_shards(args, tmp) -> dict[str, str]:
    """The synthetic shards of sections 2-5, written once per run: ``pretrain`` (seq tokens), ``ktok_equal``
    (knowledge rows of exactly seq tokens) and ``ktok_mixed`` (kseq//2 .. kseq tokens)."""
    dirs = {name: os.path.join(tmp, name) for name in ("pretrain", "ktok_equal", "ktok_mixed")}
    if not os.path.isdir(dirs["pretrain"]):
        # two processes read twice the rows per step: enough rows for every run without reusing them
        n = 2 * args.trainer_batch * (max(args.trainer_steps, args.technique_steps) + 2)
        write_pretrain_shards(dirs["pretrain"], args.vocab, args.seq, n)
        write_knowledge_shards(dirs["ktok_equal"], args.vocab, n, args.seq, fixed=True)
        write_knowledge_shards(dirs["ktok_mixed"], args.vocab, n, args.kseq, fixed=False)
    return dirs


# ---------------------------------------------------------------------------------------------- sections 2-5


def trainer_overrides(args, pre, ktok, out, device_type: str, **over) -> list[str]:
    size_keys = ({"model.size": '"custom"', "model.hidden_size": 64, "model.layers": 2, "model.heads": 2,
                  "model.intermediate_size": 128} if args.smoke else {"model.size": f'"{args.trainer_size}"'})
    base = {
        **size_keys, "data.pretrain": f'"{pre}"', "data.knowledge": f'"{ktok}"', "data.seq_len": args.seq,
        "data.knowledge_seq_len": args.kseq,
        "train.output_dir": f'"{out}"', "train.max_steps": args.trainer_steps, "train.log_every": args.trainer_log,
        "train.micro_batch_size": args.trainer_batch, "train.precision": '"fp32"' if args.smoke else '"bf16"',
        "train.zero": 0, "train.device": f'"{device_type}"', "train.tensorboard": "false", "train.progress": "false",
        "train.peak_tflops": args.peak_tflops or 0.0, "checkpoint.interval": 0, "optim.warmup_steps": 2,
    }
    base.update(over)
    return [f"{k}={v}" for k, v in base.items()]


def run_trainer(args, pre, ktok, out, device, **over) -> dict:
    from knowmix.trainer.loop import train

    cfg = load_config(None, trainer_overrides(args, pre, ktok, out, device.type, **over))
    free(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    train(cfg, log=lambda *a: None, verify=False)  # synthetic shards just written: skip hashing them
    seconds = time.perf_counter() - t0
    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        ms = [json.loads(line) for line in fh]
    later = ms[1:] or ms  # the first window holds warm-up (allocator, kernels)
    return {"tokens_per_s": float(np.mean([m["tokens_per_s"] for m in later])),
            "mfu": float(np.mean([m["mfu"] for m in later])), "seconds": seconds, "peak_mem_gib": peak_gib,
            "losses": [m["loss"] for m in ms]}


def rounded(r: dict) -> dict:
    return {k: round(v, 4) if v is not None else None for k, v in r.items() if k != "losses"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TECHNIQUES = {  # one switch each (all off = the baseline)
    "all off": {},
    "rdrop": {"distill.rdrop_alpha": 1.0},
    "layer_distill": {"distill.layer_beta": 1.0},
    "attn_residual": {"model.attn_residual_decay": 0.5},
    "multiround": {"mlm.mode": '"multiround"', "mlm.rounds": 2},
}


def bench_techniques(args, device, tmp) -> list[dict]:
    d = bench_shards(args, tmp)
    rows, res = [], {}
    for name, over in TECHNIQUES.items():
        out = os.path.join(tmp, "tech-" + name.replace(" ", "_"))
        try:
            r = run_trainer(args, d["pretrain"], d["ktok_mixed"], out, device,
                            **{"train.max_steps": args.technique_steps,
                               "train.log_every": max(1, args.technique_steps // 4)}, **over)
        except Exception as exc:  # noqa: BLE001 - report and go on (e.g. out of memory)
            print(f"  {name:14s} failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            free(device)
            continue
        res[name] = r
        base = res.get("all off")
        rel = f"  x{r['tokens_per_s'] / base['tokens_per_s']:.2f} tokens/s" if base and name != "all off" else ""
        mem = (f"  peak {r['peak_mem_gib']:6.1f} GiB" + (f" (x{r['peak_mem_gib'] / base['peak_mem_gib']:.2f})"
               if base and name != "all off" and base["peak_mem_gib"] else "")
               if r["peak_mem_gib"] is not None else "  peak mem n/a (CPU)")
        print(f"  {name:14s} {r['tokens_per_s']:12,.0f} tokens/s{rel}{mem}  ({r['seconds']:.0f}s run)", flush=True)
        row = {"section": "techniques", "variant": name, **rounded(r)}
        if base and name != "all off":
            row["tokens_per_s_vs_all_off"] = round(r["tokens_per_s"] / base["tokens_per_s"], 4)
            if base["peak_mem_gib"] and r["peak_mem_gib"] is not None:
                row["peak_mem_vs_all_off"] = round(r["peak_mem_gib"] / base["peak_mem_gib"], 4)
        rows.append(row)
    return rows


def bench_paths(args, device, tmp) -> list[dict]:
    """Single vs dual path at equal sequence length (the knowledge path's cost), then the mixed case apart."""
    d = bench_shards(args, tmp)
    rows = []
    eq = {"data.knowledge_seq_len": args.seq}
    single = run_trainer(args, d["pretrain"], "", os.path.join(tmp, "single"), device)
    dual = run_trainer(args, d["pretrain"], d["ktok_equal"], os.path.join(tmp, "dual-equal"), device, **eq)
    mixed = run_trainer(args, d["pretrain"], d["ktok_mixed"], os.path.join(tmp, "dual-mixed"), device)
    for name, r in ((f"single-path (seq {args.seq})", single), (f"dual-path (both seq {args.seq})", dual),
                    (f"dual-path mixed (seq {args.seq} + knowledge {args.kseq // 2}-{args.kseq - 1})", mixed)):
        print(f"  {name:48s} {r['tokens_per_s']:12,.0f} tokens/s  MFU {r['mfu']:6.1%}  ({r['seconds']:.0f}s run)",
              flush=True)
        rows.append({"section": "paths", "variant": name, **rounded(r)})
    cost = single["tokens_per_s"] / dual["tokens_per_s"] - 1.0
    print(f"  dual-path cost per token at equal sequence length: {cost:+.1%} (goal <= +10%)", flush=True)
    print("  (the mixed case is not a cost: its short knowledge rows do less attention work per token)", flush=True)
    rows.append({"section": "paths", "ratio": "single/dual tokens_per_s - 1 (equal seq)", "value": round(cost, 4)})
    return rows


def bench_zero_one_rank(args, device, tmp) -> list[dict]:
    """ZeRO-3 vs ZeRO-2 under a one-rank process group: FSDP2 wraps the model, but nothing is sharded."""
    import torch.distributed as dist

    d = bench_shards(args, tmp)
    rows = []
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0", "WORLD_SIZE": "1",
                       "LOCAL_RANK": "0"})
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    try:
        zero = {}
        for z in (2, 3):
            zero[z] = run_trainer(args, d["pretrain"], d["ktok_mixed"], os.path.join(tmp, f"zero{z}-1rank"), device,
                                  **{"train.zero": z})
            print(f"  ZeRO-{z}, one rank (nothing sharded) {zero[z]['tokens_per_s']:12,.0f} tokens/s"
                  f"  MFU {zero[z]['mfu']:6.1%}", flush=True)
            rows.append({"section": "zero", "variant": f"zero{z} one rank (nothing sharded)", **rounded(zero[z])})
        ratio = zero[3]["tokens_per_s"] / zero[2]["tokens_per_s"]
        print(f"  ZeRO-3 / ZeRO-2 tokens/s, one rank = {ratio:.3f} (FSDP2's wrapping cost only)", flush=True)
        rows.append({"section": "zero", "ratio": "zero3 / zero2 (one rank)", "value": round(ratio, 4)})
    finally:
        dist.destroy_process_group()
        for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
            os.environ.pop(k, None)
    return rows


def two_process_layout(smoke: bool) -> tuple[str, str]:
    """(backend, description) of the 2-process run on this machine."""
    if smoke or not torch.cuda.is_available():
        return "gloo", "2 processes on CPU, gloo"
    if torch.cuda.device_count() >= 2:
        return "nccl", "2 processes on 2 GPUs, NCCL"
    return "gloo", "2 processes on one GPU, gloo (NCCL refuses two ranks on one GPU; collectives via host memory)"


def passthrough(args) -> list[str]:
    """The options a 2-process worker needs to run the same trainer configuration."""
    out = ["--seq", str(args.seq), "--kseq", str(args.kseq), "--trainer-size", args.trainer_size,
           "--trainer-batch", str(args.trainer_batch), "--trainer-steps", str(args.trainer_steps),
           "--peak-tflops", str(args.peak_tflops)]
    return out + (["--smoke"] if args.smoke else [])


def bench_zero_two_processes(args, device, tmp) -> list[dict]:
    bench_shards(args, tmp)
    backend, layout = two_process_layout(args.smoke)
    result = os.path.join(tmp, "zero-2proc.json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.abspath(__file__), "--zero-worker", tmp, *passthrough(args)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.two_process_timeout)
    if proc.returncode != 0 or not os.path.exists(result):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        print(f"  ZeRO, {layout}: failed (exit {proc.returncode}): {' | '.join(tail)[:400]}", flush=True)
        return [{"section": "zero", "variant": f"2 processes ({layout})", "failed": " | ".join(tail)[:400]}]
    with open(result) as fh:
        zero = {int(k): v for k, v in json.load(fh).items()}
    rows = []
    for z in (2, 3):
        print(f"  ZeRO-{z}, {layout}: {zero[z]['tokens_per_s']:12,.0f} tokens/s (both ranks)"
              f"  MFU {zero[z]['mfu']:6.1%}", flush=True)
        rows.append({"section": "zero", "variant": f"zero{z} ({layout})", **zero[z]})
    ratio = zero[3]["tokens_per_s"] / zero[2]["tokens_per_s"]
    print(f"  ZeRO-3 / ZeRO-2 tokens/s, 2 processes = {ratio:.3f}", flush=True)
    rows.append({"section": "zero", "ratio": f"zero3 / zero2 ({layout})", "value": round(ratio, 4)})
    return rows


def zero_worker(args) -> int:
    """One rank of the 2-process ZeRO run (started by torchrun from :func:`bench_zero_two_processes`)."""
    import torch.distributed as dist

    tmp = args.zero_worker
    backend, _ = two_process_layout(args.smoke)
    use_cuda = torch.cuda.is_available() and not args.smoke
    if use_cuda and torch.cuda.device_count() < 2:
        os.environ["LOCAL_RANK"] = "0"  # both ranks on the one GPU (the trainer picks cuda:LOCAL_RANK)
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend)  # before the trainer: it keeps a group it did not open
    d = bench_shards(args, tmp)
    out = {}
    try:
        for z in (2, 3):
            r = run_trainer(args, d["pretrain"], d["ktok_mixed"], os.path.join(tmp, f"zero{z}-2proc"), device,
                            **{"train.zero": z})
            out[z] = rounded(r)
    finally:
        if dist.get_rank() == 0 and len(out) == 2:
            with open(os.path.join(tmp, "zero-2proc.json"), "w") as fh:
                json.dump(out, fh)
        dist.destroy_process_group()
    return 0


def bench_syncs(args, device, tmp) -> list[dict]:
    """Tokens/s with and without the per-step host syncs; the losses must not change."""
    d = bench_shards(args, tmp)
    res = {}
    for sync in (True, False):
        res[sync] = run_trainer(args, d["pretrain"], d["ktok_mixed"], os.path.join(tmp, f"sync-{sync}"), device,
                                **{"train.host_sync_every_step": "true" if sync else "false"})
    same = res[True]["losses"] == res[False]["losses"]
    rows = []
    for sync, label in ((True, "host syncs every step"), (False, "no per-step host syncs")):
        r = res[sync]
        print(f"  {label:24s} {r['tokens_per_s']:12,.0f} tokens/s  MFU {r['mfu']:6.1%}", flush=True)
        rows.append({"section": "syncs", "variant": label, **rounded(r)})
    ratio = res[False]["tokens_per_s"] / res[True]["tokens_per_s"]
    print(f"  without / with per-step syncs = {ratio:.3f}; losses identical: {'yes' if same else 'NO'}", flush=True)
    rows.append({"section": "syncs", "ratio": "no syncs / syncs tokens_per_s", "value": round(ratio, 4),
                 "losses_identical": same})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, a few steps: check the script end to end")
    p.add_argument("--sections", default="encoder,paths,zero,techniques,syncs",
                   help="any of encoder,paths,zero,techniques,syncs (comma-separated)")
    p.add_argument("--sizes", default="base,large")
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--kseq", type=int, default=128, help="knowledge path sequence length (the mixed case)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-base", type=int, default=32)
    p.add_argument("--batch-large", type=int, default=16)
    p.add_argument("--trainer-size", default="base")
    p.add_argument("--trainer-batch", type=int, default=32)
    p.add_argument("--trainer-steps", type=int, default=40)
    p.add_argument("--technique-steps", type=int, default=24, help="steps per run of section 4")
    p.add_argument("--two-process-timeout", type=int, default=300, help="seconds for the 2-process ZeRO run")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="device peak for MFU (default: looked up)")
    p.add_argument("--out", default="", help="also write the rows as JSON here")
    p.add_argument("--zero-worker", default="", help=argparse.SUPPRESS)  # internal: one rank of section 3b
    args = p.parse_args(argv)
    args.sizes = [s for s in args.sizes.split(",") if s]
    args.batch = {"base": args.batch_base, "large": args.batch_large}
    args.vocab = VOCAB
    if args.smoke:
        args.seq, args.kseq, args.steps, args.warmup, args.vocab = 64, 32, 2, 1, 512
        args.trainer_batch, args.trainer_steps, args.no_compile, args.technique_steps = 4, 6, True, 4
        args.sizes = args.sizes[:1]
    args.trainer_log = max(1, args.trainer_steps // 4)
    if args.zero_worker:
        return zero_worker(args)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    peak = peak_tflops(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; peak {peak or 'unknown'} TFLOP/s (dense bf16, by exact device"
          f" name); seq {args.seq}", flush=True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    t0 = time.perf_counter()
    rows = []
    sections = args.sections.split(",")
    trainer_what = f"{'tiny' if args.smoke else args.trainer_size}, micro-batch {args.trainer_batch}"
    if "encoder" in sections:
        print("1. encoder + MLM head, one AdamW step per step" + (" (fp32, smoke)" if args.smoke else " (bf16 autocast)")
              + "; MFU counts each model's own FLOPs:", flush=True)
        rows += bench_models(args, device, peak)
    with tempfile.TemporaryDirectory() as tmp:
        if "paths" in sections:
            print(f"2. the trainer ({trainer_what}): the knowledge path's cost at equal sequence length:", flush=True)
            rows += bench_paths(args, device, tmp)
        if "zero" in sections:
            print(f"3. FSDP2 ZeRO-3 vs ZeRO-2 in the trainer ({trainer_what} per rank, dual-path):", flush=True)
            rows += bench_zero_one_rank(args, device, tmp)
            rows += bench_zero_two_processes(args, device, tmp)
        if "techniques" in sections:
            print(f"4. the training techniques in the trainer (dual-path, {trainer_what}, {args.technique_steps} steps"
                  " each; ZeRO-0, one device):", flush=True)
            rows += bench_techniques(args, device, tmp)
        if "syncs" in sections:
            print(f"5. per-step host syncs in the trainer ({trainer_what}, dual-path, ZeRO-0, one device):", flush=True)
            rows += bench_syncs(args, device, tmp)
    print(f"total {time.perf_counter() - t0:.0f}s on {name}", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"device": name, "torch": torch.__version__, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
