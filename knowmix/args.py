"""Command-line parsing shared by every subcommand, and the logging setup it applies.

- A mistake on the command line is one line on stderr and exit status 2 (argparse prints its usage too).
- Abbreviated options are not guessed (``--max-seq`` is not ``--max-seq-len``): a typo is an error.
- ``--help`` shows every option's default and a plain description (no reStructuredText markup).
- ``--log-level`` (every subcommand): without it knowmix logs warnings and Beam, absl and gRPC only errors
  (and Dataflow's "monitoring console" line with the job's URL); with it, all of them log at that level.

Beam jobs parse with ``parse_known_args`` and hand the rest to ``pipelines.beamio.check_beam_args``, which
rejects what no Beam option class knows.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import textwrap

LOG_LEVELS = ("debug", "info", "warning", "error")
QUIET_LOGGERS = ("apache_beam", "absl", "distributed", "dask", "jieba")  # chatty below ERROR by default
BEAM_EPILOG = ("Beam pipeline options pass through (e.g. --runner DataflowRunner, --direct_running_mode "
               "multi_processing, --direct_num_workers 4, --project, --region, --temp_location); an option that "
               "neither knowmix nor Beam knows is an error.")


def plain(doc: str | None) -> str:
    """The first paragraph of a docstring as a help description: without ``literal`` and :role:`x` markup,
    without a leading "knowmix NAME ...:" (the usage line says it), wrapped to 79 columns."""
    text = (doc or "").strip().split("\n\n")[0]
    text = re.sub(r":\w+:`~?([^`]*)`", r"\1", text)
    text = " ".join(text.replace("``", "").split())
    text = re.sub(r"^knowmix [^:]*:\s+", "", text)
    return textwrap.fill(text[:1].upper() + text[1:], 79)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows ``(default: X)`` after an option's help wherever the default says something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or not action.option_strings or action.nargs == 0 or default is None
                or default is False or default == [] or default == "" or default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with knowmix's conventions (see the module docstring).

    ``beam``: the subcommand is a Beam job (its epilog says Beam's flags pass through). ``progress``: it shows
    a live progress line, and ``--quiet`` turns it off."""

    def __init__(self, prog: str, description: str | None = "", *, beam: bool = False, progress: bool = False, **kw):
        kw.setdefault("formatter_class", HelpFormatter)
        kw.setdefault("allow_abbrev", False)
        if beam:
            kw.setdefault("epilog", textwrap.fill(BEAM_EPILOG, 79))
        super().__init__(prog=prog, description=plain(description), **kw)
        if progress:
            self.add_argument("--quiet", action="store_true",
                              help="no live progress line (it is also off when stderr is not a terminal)")
        self.add_argument("--log-level", choices=LOG_LEVELS, default=None,
                          help="log level of knowmix, Beam and absl (default: knowmix warnings, the others errors)")

    def error(self, message: str):  # one line, exit 2
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        if getattr(ns, "log_level", None):
            configure_logging(ns.log_level)
        return ns, rest


# ---------------------------------------------------------------------------------------------- logging


class _DropApitoolsWarning(logging.Filter):
    """Beam imports its BigQuery client on every run; without the gcp extra it logs, on the root logger,
    "apitools not found, and bigquery client libraries are not available" — noise for a local job."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("apitools not found")


DATAFLOW_LOGGER = "apache_beam.runners.dataflow.internal.apiclient"


class _OnlyJobUrl(logging.Filter):
    """On the quiet default, Dataflow's submitter still says where the job can be watched."""

    def filter(self, record: logging.LogRecord) -> bool:
        return str(record.msg).startswith("To access the Dataflow monitoring console")


def configure_logging(level: str | None = None) -> None:
    """knowmix's logging: ``level`` None is the quiet default (see the module docstring)."""
    root = logging.getLogger()
    if not any(isinstance(f, _DropApitoolsWarning) for f in root.filters):
        root.addFilter(_DropApitoolsWarning())
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    # C++ logging of gRPC/absl inside Beam's portable runners: read when they start
    if level is None:
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        os.environ.setdefault("GLOG_minloglevel", "2")
        root.setLevel(logging.WARNING)
        if not os.environ.get("KNOWMIX_BEAM_LOG"):
            for name in QUIET_LOGGERS:
                logging.getLogger(name).setLevel(logging.ERROR)
            dataflow = logging.getLogger(DATAFLOW_LOGGER)
            dataflow.setLevel(logging.INFO)
            if not any(isinstance(f, _OnlyJobUrl) for f in dataflow.filters):
                dataflow.addFilter(_OnlyJobUrl())
        return
    os.environ["GRPC_VERBOSITY"] = level.upper()
    os.environ["GLOG_minloglevel"] = "0" if level in ("debug", "info") else "1" if level == "warning" else "2"
    value = getattr(logging, level.upper())
    root.setLevel(value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(value)
    dataflow = logging.getLogger(DATAFLOW_LOGGER)
    dataflow.setLevel(logging.NOTSET)
    for f in [f for f in dataflow.filters if isinstance(f, _OnlyJobUrl)]:
        dataflow.removeFilter(f)
