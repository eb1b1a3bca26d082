"""The ``knowmix`` console script: one command, subcommands, each implemented where its stage lives.

Subcommands are imported lazily so ``knowmix train`` works on a machine without Apache Beam.
Errors a user can cause print one line and exit with status 2 (``knowmix.errors.user_message`` says which
exceptions those are); ``knowmix --debug SUBCOMMAND ...`` (or ``KNOWMIX_DEBUG=1``) shows their traceback too.
A mistake on the command line is one line and exit 2 too (``knowmix.args.Parser``); ``-V``/``--version``
prints the version.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback

SUBCOMMANDS = {
    "clean": ("knowmix.pipelines.clean", "clean_main", "clean and deduplicate raw sources into docs shards"),
    "stats": ("knowmix.stats", "stats_main", "inspect any stage's output directory (table, --json, --html)"),
    "kg-stats": ("knowmix.kg.cli", "kg_stats_main", "statistics of a knowledge graph"),
    "kg-index": ("knowmix.pipelines.kg_index", "kg_index_main", "build a KG's entity index file (for kg-samples --kg-index)"),
    "kg-samples": ("knowmix.pipelines.kg_samples", "kg_samples_main", "knowledge samples from a KG and docs shards"),
    "export-opennre": ("knowmix.pipelines.opennre", "export_opennre_main", "relation samples as OpenNRE JSON lines"),
    "spm-train": ("knowmix.pipelines.spm_train", "spm_train_main", "train a SentencePiece tokenizer on docs shards"),
    "tokenize": ("knowmix.pipelines.tokenize", "tokenize_main", "docs/knowledge shards -> token shards"),
    "train": ("knowmix.trainer.cli", "train_main", "dual-path knowledge pretraining (FSDP2)"),
    "export": ("knowmix.trainer.cli", "export_main", "export a run to a Hugging Face BertForMaskedLM folder"),
    "export-parquet": ("knowmix.parquet", "export_parquet_main", "a stage's shards as Parquet (same rows, same schema)"),
    "eval": ("knowmix.trainer.eval", "eval_main", "fine-tune and probe a run or a Hugging Face folder -> results.json"),
    "quality-train": ("knowmix.pipelines.quality_train", "quality_train_main", "train a fastText quality classifier"),
    "quality-eval": ("knowmix.pipelines.quality_train", "quality_eval_main", "ROC-AUC and PR curve of a quality classifier"),
    "demo": ("knowmix.demo", "demo_main", "run the whole flow on the bundled fixture corpora"),
}


def usage() -> str:
    lines = [
        "usage: knowmix [--debug] SUBCOMMAND [options]   (knowmix SUBCOMMAND --help for its options)",
        "       knowmix -V | --version",
        "       --debug: show the traceback behind an error message",
        "",
    ]
    width = max(map(len, SUBCOMMANDS))
    for name, (_, _, summary) in SUBCOMMANDS.items():
        lines.append(f"  {name:<{width}}  {summary}")
    return "\n".join(lines)


def quiet_beam_logging(debug: bool = False) -> None:
    """Beam's local runner logs worker chatter at WARNING, and a failing step's traceback at ERROR before it
    re-raises the exception; keep the terminal for our own progress and the one-line error (``--debug``,
    ``--log-level`` on any subcommand, or ``KNOWMIX_BEAM_LOG=1`` shows Beam's errors; see ``knowmix.args``)."""
    from knowmix.args import configure_logging

    configure_logging(None)
    if os.environ.get("KNOWMIX_BEAM_LOG"):
        return
    level = logging.ERROR if debug else logging.CRITICAL
    for name in ("apache_beam", "apache_beam.runners.portability", "apache_beam.runners.worker"):
        logging.getLogger(name).setLevel(level)


def main(argv: list[str] | None = None) -> int:
    from knowmix.errors import user_message

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("KNOWMIX_DEBUG", "") not in ("", "0")
    while argv and argv[0] == "--debug":
        debug = True
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version", "version"):
        from knowmix import __version__

        print(f"knowmix {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if "--debug" in rest[: rest.index("--") if "--" in rest else len(rest)]:  # also after the subcommand
        debug = True
        rest.remove("--debug")
    if name not in SUBCOMMANDS:
        print(f"knowmix: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = SUBCOMMANDS[name]
    quiet_beam_logging(debug)
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(rest) or 0)
    except SystemExit as exc:  # argparse: --help (0) or a command-line mistake (2, one line already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print(f"knowmix {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise  # a bug of ours: the traceback is the report
        if debug:
            traceback.print_exc()
        print(f"knowmix {name}: error: {message}", file=sys.stderr)
        return 2


def entry() -> int:
    """The ``knowmix`` command: ``main``, then the process's objects frozen before it exits. Python's last
    garbage collection walks every object the imports made (0.5 s once Beam is imported, see
    ``pipelines.worker_process``); the process ends right after, so nothing is left to collect. Not in ``main``,
    which tests call in one long-lived process."""
    import gc

    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(entry())
