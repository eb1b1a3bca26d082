"""Entry points for ``knowmix train`` and ``knowmix export`` (``knowmix/cli.py`` calls these), also runnable as
``python -m trainer.cli train CONFIG [section.key=value ...] [--resume]`` and
``python -m trainer.cli export RUN_DIR --hf OUT``."""

from __future__ import annotations

import sys

from knowmix.errors import UserError


def _rank0() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def train_main(argv: list[str]) -> int:
    from knowmix.args import Parser

    parser = Parser("knowmix train", "Dual-path knowledge pretraining.")
    parser.add_argument("config", help="a TOML config (a path, or the name of a bundled one: base, tiny)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="override any config key")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip hashing every shard against its manifest at start (paths and sizes are still"
                             " checked; the tokenizer file and a resumed checkpoint are always verified)")
    args = parser.parse_args(argv)
    try:
        from knowmix.trainer.config import load_config
        from knowmix.trainer.loop import TrainingStopped, train

        cfg = load_config(args.config, args.overrides)
        try:
            train(cfg, resume=args.resume, verify=not args.no_verify)
        except TrainingStopped as exc:
            print(f"knowmix train: {exc}", file=sys.stderr)
            return 1
    except UserError as exc:
        if _rank0():
            print(f"knowmix train: error: {exc}", file=sys.stderr)
        return 2
    return 0


def export_main(argv: list[str]) -> int:
    from knowmix.args import Parser

    parser = Parser("knowmix export", "Export a run as a Hugging Face folder (model and tokenizer).")
    parser.add_argument("run_dir", help="a training run's output_dir")
    parser.add_argument("--hf", required=True, metavar="OUT", help="the Hugging Face BertForMaskedLM folder to write")
    parser.add_argument("--checkpoint", default=None,
                        help="a checkpoint folder, or a step number / step-NNNNNNN under RUN_DIR/checkpoints"
                             " (default: the newest complete one); verified against its manifest before loading")
    args = parser.parse_args(argv)
    try:
        from knowmix.trainer.hf import export_run

        path, written = export_run(args.run_dir, args.hf, args.checkpoint)
    except UserError as exc:
        print(f"knowmix export: error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {path} -> {args.hf}: {', '.join(written)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train_main, "export": export_main}
    if not argv or argv[0] not in commands:
        print("usage: python -m trainer.cli {train,export} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
