"""The ``knowmix`` console script: one command, subcommands, each implemented where its stage lives.

Subcommands are imported lazily so ``knowmix train`` works on a machine without Apache Beam.
Errors a user can cause print one line and exit with status 2.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

SUBCOMMANDS = {
    "clean": ("pipelines.clean", "clean_main", "clean and deduplicate raw sources into docs shards"),
    "stats": ("knowmix.stats", "stats_main", "inspect any stage's output directory (table, --json, --html)"),
    "kg-stats": ("kg.cli", "kg_stats_main", "statistics of a knowledge graph"),
    "kg-samples": ("pipelines.kg_samples", "kg_samples_main", "knowledge samples from a KG and docs shards"),
    "export-opennre": ("pipelines.opennre", "export_opennre_main", "relation samples as OpenNRE JSON lines"),
    "spm-train": ("pipelines.spm_train", "spm_train_main", "train a SentencePiece tokenizer on docs shards"),
    "tokenize": ("pipelines.tokenize", "tokenize_main", "docs/knowledge shards -> token shards"),
    "train": ("trainer.cli", "train_main", "dual-path knowledge pretraining (FSDP2)"),
    "export": ("trainer.cli", "export_main", "export a run to a Hugging Face BertForMaskedLM folder"),
    "quality-train": ("pipelines.quality_train", "quality_train_main", "train a fastText quality classifier"),
    "quality-eval": ("pipelines.quality_train", "quality_eval_main", "ROC-AUC and PR curve of a quality classifier"),
    "demo": ("knowmix.demo", "demo_main", "run the whole flow on the bundled fixture corpora"),
}


def usage() -> str:
    lines = ["usage: knowmix SUBCOMMAND [options]   (knowmix SUBCOMMAND --help for its options)", ""]
    width = max(map(len, SUBCOMMANDS))
    for name, (_, _, summary) in SUBCOMMANDS.items():
        lines.append(f"  {name:<{width}}  {summary}")
    return "\n".join(lines)


def quiet_beam_logging() -> None:
    """Beam's local runner logs worker chatter at WARNING; keep the terminal for our own progress."""
    if os.environ.get("KNOWMIX_BEAM_LOG"):
        return
    for name in ("apache_beam", "apache_beam.runners.portability", "apache_beam.runners.worker"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    from knowmix.errors import UserError
    from knowmix.manifest import ContractError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("--version", "version"):
        from knowmix import __version__

        print(f"knowmix {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"knowmix: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = SUBCOMMANDS[name]
    quiet_beam_logging()
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(rest) or 0)
    except (UserError, ContractError) as exc:
        print(f"knowmix {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"knowmix {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
