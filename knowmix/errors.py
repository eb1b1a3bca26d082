"""Errors a user can cause: the CLI prints the one-line message and exits with status 2."""

from __future__ import annotations

import json


class UserError(Exception):
    """A bad path, a config typo, a malformed option: the message names the file/key and what is wrong."""


class ContractError(Exception):
    """A shard directory that breaks the contract (``knowmix.manifest``); the message is one line naming the file.

    Defined here, beside UserError, so that :func:`user_message` needs no import of the manifest module
    (which imports this one); ``knowmix.manifest`` re-exports it."""


_WORKER_ERRORS = tuple(f"{__name__}.{cls.__name__}: " for cls in (UserError, ContractError))


def worker_user_error(text: str) -> str | None:
    """The message of a UserError/ContractError in the text of a worker's traceback (the last one named), or None."""
    found = None
    for line in str(text).splitlines():
        line = line.strip()
        if line.startswith(_WORKER_ERRORS):
            found = line.split(": ", 1)[1]
    return first_line(found) if found else None


def first_line(text: str, limit: int = 400) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def user_message(exc: BaseException) -> str | None:
    """A one-line message for an exception a user can cause without a bug of ours, or None (a bug: traceback).

    The places that know the file name raise UserError themselves; this is the net under them: a damaged
    Arrow file, a JSON file that does not parse, a path that is missing, a directory or not readable, a file
    that is not UTF-8. A Beam runner re-raises a worker's exception with the step's name added: the first
    line is kept.
    """
    if type(exc) is RuntimeError:
        # Beam's local runner re-raises a worker's exception whose type it cannot rebuild (an OSError with
        # an errno) as a RuntimeError "TypeName: message [while running 'Step']", the original as its context
        inner = exc.__cause__ or exc.__context__
        if inner is not None and inner is not exc:
            message = user_message(inner)
            if message is not None:
                step = str(exc).rsplit("[while running ", 1)
                return message + (f" [while running {step[1].strip()}" if len(step) == 2 else "")
        # a worker in another process (multi-processing, a remote runner): only the text of its traceback
        # comes back; its last line names the exception: ours are user errors like any other
        return worker_user_error(str(exc))
    if isinstance(exc, (UserError, ContractError)):
        return first_line(str(exc)) or type(exc).__name__
    if isinstance(exc, OSError):
        what = exc.strerror or first_line(str(exc)) or type(exc).__name__
        names = [n for n in (exc.filename, exc.filename2) if n is not None]
        if names:
            return f"{' -> '.join(map(str, names))}: {what}"
        return what
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, UnicodeDecodeError):
        return f"not {exc.encoding} text: {exc.reason} at byte {exc.start}"
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return None
    if isinstance(exc, (pa.ArrowInvalid, pa.ArrowIOError)):
        return f"damaged or not an Arrow file: {first_line(str(exc))}"
    return None
