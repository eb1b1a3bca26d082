"""An output directory that one run at a time writes, and that a failed run leaves as it was.

::

    OUT/.knowmix.lock        pid, host and command of the run writing OUT (held with flock while it runs)
    OUT/.staging-RUNID/      the new output while it is written: shards, dead letters, _spill/, manifest.json
    OUT/.old-RUNID/          the previous output for the moment of the swap

A job writes everything into the staging directory. Once the staged ``manifest.json`` exists, ``commit``
swaps the entries in: the old manifest leaves first (so no consumer ever sees a manifest beside half-swapped
shards), the old entries move aside, the new ones move in, and the new manifest moves in last. A run that
fails or is killed before the swap leaves the previous output (manifest and all) untouched; a kill inside
the swap (a handful of renames) leaves no ``manifest.json``, which every consumer refuses, and a journal:
the next run takes the lock, finishes that swap (the new output was complete), then removes what a dead run
left behind (staging, ``_spill/``, temporary files) before it starts its own.

The lock is an ``flock`` on ``OUT/.knowmix.lock``: the kernel drops it when its process dies, however it
dies, so a lock file left by a killed run is taken over (with a message naming the dead run), while a live
run's lock makes a second run refuse with one line. Beam-free: the trainer may use it for its run directory.

A remote output (``gs://``, ``s3://``, any Beam filesystem; ``RemoteOutputRun``) has neither an atomic rename
nor file locks: the previous output is removed up front (its manifest first) and the new one written in
place, through Beam's FileSystems; a failed run leaves no ``manifest.json``, which every consumer refuses.
``open_output`` picks the kind of run from the path.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time
import uuid
from typing import Callable, Iterable

from knowmix import fileio
from knowmix.errors import UserError

LOCK_NAME = ".knowmix.lock"
STAGING_PREFIX = ".staging-"
OLD_PREFIX = ".old-"
MANIFEST_NAME = "manifest.json"
# entries of a knowmix output that a new output replaces even when it has none of its own
OUTPUT_ENTRIES = ("manifest.json", "shards", "dead_letter", "clusters", "_spill", "relations.json")


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _inside(path: str, directory: str) -> bool:
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def refuse_inputs_inside(out_dir: str, inputs: Iterable[tuple[str, str]]) -> None:
    """UserError for an input that is the output directory or lies inside it (the run would replace it).

    ``inputs``: ``(what, path)`` pairs, e.g. ``("--docs", "out/docs")``; remote paths are compared as names.
    """
    if fileio.is_remote(out_dir):
        _refuse_remote_inputs_inside(out_dir, inputs)
        return
    for what, path in inputs:
        if not path or fileio.is_remote(path):
            continue
        if os.path.realpath(path) == os.path.realpath(out_dir):
            raise UserError(f"{what} {path} is the output directory itself: the run would replace its own input")
        if _inside(path, out_dir):
            raise UserError(
                f"{path}: {what} lies inside the output directory {out_dir}, which the run replaces; move it or"
                " choose another --output"
            )


def _refuse_remote_inputs_inside(out_dir: str, inputs: Iterable[tuple[str, str]]) -> None:
    out = out_dir.rstrip("/")
    for what, path in inputs:
        if not path or not fileio.is_remote(path):
            continue
        if path.rstrip("/") == out:
            raise UserError(f"{what} {path} is the output directory itself: the run would replace its own input")
        if path.startswith(out + "/"):
            raise UserError(
                f"{path}: {what} lies inside the output directory {out_dir}, which the run replaces; move it or"
                " choose another --output"
            )


# ---------------------------------------------------------------------------------------------- the lock


def _describe(holder: dict) -> str:
    since = holder.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else ""
    command = f": {holder['command']}" if holder.get("command") else ""
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}{when}{command}"


def _read_holder(fd: int) -> dict:
    try:
        data = os.pread(fd, 1 << 16, 0)
        holder = json.loads(data.decode("utf-8")) if data.strip() else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """``OUT/.knowmix.lock``: one run at a time. ``acquire`` raises UserError if a live run holds it."""

    def __init__(self, out_dir: str, command: str = "", say: Callable[[str], None] = _say):
        self.out_dir, self.command, self.say = out_dir, command, say
        self.path = os.path.join(out_dir, LOCK_NAME)
        self.fd: int | None = None

    def acquire(self) -> None:
        for _ in range(20):  # a holder releasing the lock unlinks the file: retry on the new one
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise UserError(
                    f"{self.out_dir}: another knowmix run is writing this directory ({_describe(holder)});"
                    " wait for it to finish or choose another --output"
                ) from None
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    os.close(fd)
                    raise
                self._without_flock(fd)  # a filesystem without locks: judge the holder by its pid
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            holder = _read_holder(fd)
            if holder:
                self.say(f"knowmix: {self.out_dir}: taking over a stale lock ({_describe(holder)}; that run is gone)")
            me = {"pid": os.getpid(), "host": socket.gethostname(), "since": round(time.time(), 3), "command": self.command}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(me) + "\n").encode("utf-8"), 0)
            os.fsync(fd)
            self.fd = fd
            return
        raise UserError(f"{self.path}: could not take the lock (it keeps being replaced)")

    def _without_flock(self, fd: int) -> None:
        holder = _read_holder(fd)
        if holder.get("host") == socket.gethostname() and holder.get("pid") != os.getpid() and _pid_alive(holder.get("pid")):
            os.close(fd)
            raise UserError(
                f"{self.out_dir}: another knowmix run is writing this directory ({_describe(holder)});"
                " wait for it to finish or choose another --output"
            )
        if holder and holder.get("host") != socket.gethostname():
            os.close(fd)
            raise UserError(
                f"{self.out_dir}: locked by a run on another host ({_describe(holder)}) and this filesystem has no"
                f" file locks to tell whether it still runs; remove {self.path} if it does not"
            )

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it: a waiter then retries on a fresh file
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None


# ---------------------------------------------------------------------------------------------- the run


class OutputRun:
    """Lock ``out_dir``, stage the new output beside the old one, swap it in on ``commit``.

    ::

        with OutputRun(out, inputs=[("--input", src)], command="knowmix tokenize ...") as run:
            ... write everything under run.staging (manifest.json last) ...
            run.commit()

    Leaving the block without ``commit`` (an exception, an interrupt) removes the staging directory and
    leaves the previous output as it was; an exception inside the swap itself keeps the staged output, which
    the next run finishes swapping in. The lock is released either way.
    """

    def __init__(
        self, out_dir: str, inputs: Iterable[tuple[str, str]] = (), command: str = "", say: Callable[[str], None] = _say
    ):
        self.out_dir = out_dir
        self.inputs = list(inputs)
        self.say = say
        self.run_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.staging = os.path.join(out_dir, STAGING_PREFIX + self.run_id)
        self.lock = OutputLock(out_dir, command or " ".join(sys.argv), say)
        self.committed = False
        self.swap_started = False

    def __enter__(self) -> "OutputRun":
        refuse_inputs_inside(self.out_dir, self.inputs)
        prepare_output_dir(self.out_dir)
        try:
            self.lock.acquire()
        except PermissionError as exc:
            raise UserError(f"{self.out_dir}: not writable ({exc.strerror})") from None
        try:
            finish_swaps(self.out_dir, self.say)
            remove_leftovers(self.out_dir)
            os.makedirs(self.staging)
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.swap_started and not self.committed:
                # the new output is complete and half swapped in: keep it for the next run to finish
                self.say(f"knowmix: {self.out_dir}: the swap was interrupted; the next run into it finishes it")
            else:
                shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self.lock.release()

    def commit(self) -> None:
        """Swap the staged output in; the staged ``manifest.json`` must exist (the job's last step wrote it)."""
        if not os.path.isfile(os.path.join(self.staging, MANIFEST_NAME)):
            raise RuntimeError(f"{self.staging}: the job ended without writing {MANIFEST_NAME}")
        shutil.rmtree(os.path.join(self.staging, "_spill"), ignore_errors=True)
        new = sorted(n for n in os.listdir(self.staging) if n != MANIFEST_NAME)
        old = sorted(set(new) | set(OUTPUT_ENTRIES) | _entries_of_manifest(self.out_dir))
        aside = os.path.join(self.out_dir, OLD_PREFIX + self.run_id)
        os.makedirs(aside)
        # the journal makes the swap resumable: a run that finds it finishes the swap (finish_swaps)
        with open(os.path.join(aside, JOURNAL_NAME), "w", encoding="utf-8") as fh:
            json.dump({"old": old, "new": new}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        self.swap_started = True
        _swap(self.out_dir, self.run_id)
        self.committed = True


JOURNAL_NAME = ".swap.json"


def _swap(out_dir: str, run_id: str) -> None:
    """Move the old entries aside, the staged ones in, the staged manifest last; then drop the old ones.

    Resumable at any point (``finish_swaps``): if any new entry has left the staging directory, every old
    entry had already been moved aside, so only the rest of the new ones (and the manifest) remain to move.
    """
    staging = os.path.join(out_dir, STAGING_PREFIX + run_id)
    aside = os.path.join(out_dir, OLD_PREFIX + run_id)
    with open(os.path.join(aside, JOURNAL_NAME), encoding="utf-8") as fh:
        journal = json.load(fh)
    staged = set(os.listdir(staging))
    moving_in = any(name not in staged for name in journal["new"])
    if not moving_in:
        # the old manifest leaves first: from here until the new one is in place, no consumer accepts OUT
        for name in [MANIFEST_NAME, *(n for n in journal["old"] if n != MANIFEST_NAME)]:
            if os.path.lexists(os.path.join(out_dir, name)) and not os.path.lexists(os.path.join(aside, name)):
                os.replace(os.path.join(out_dir, name), os.path.join(aside, name))
    for name in journal["new"]:
        if name in staged:
            os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
    _fsync_dir(out_dir)
    os.replace(os.path.join(staging, MANIFEST_NAME), os.path.join(out_dir, MANIFEST_NAME))
    _fsync_dir(out_dir)
    shutil.rmtree(aside, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


def finish_swaps(out_dir: str, say: Callable[[str], None] = _say) -> list[str]:
    """Finish the swap of a run that died inside it (its journal and staged manifest are there): the new
    output it had completed becomes the output. Call with the lock held. Returns the run ids finished."""
    finished = []
    for name in sorted(os.listdir(out_dir)):
        if not name.startswith(OLD_PREFIX):
            continue
        run_id = name[len(OLD_PREFIX):]
        journal = os.path.join(out_dir, name, JOURNAL_NAME)
        staged_manifest = os.path.join(out_dir, STAGING_PREFIX + run_id, MANIFEST_NAME)
        if os.path.isfile(journal) and os.path.isfile(staged_manifest):
            say(f"knowmix: {out_dir}: finishing the swap of run {run_id}, which was interrupted inside it")
            _swap(out_dir, run_id)
            finished.append(run_id)
    return finished


def prepare_output_dir(out_dir: str, label: str | None = None) -> None:
    """Create ``out_dir``; a path that is a file, or under one, or not writable is a one-line UserError naming
    ``label`` (default the path; e.g. ``--hf OUT`` or ``train.output_dir = 'runs/x'``)."""
    label = label or out_dir
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"{label}: exists and is not a directory (the output must be a directory)")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{label}: cannot create the output directory (a part of the path is a file)") from None
    except OSError as exc:
        raise UserError(f"{label}: cannot create the output directory ({exc.strerror})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise UserError(f"{label}: not writable")


def remove_leftovers(out_dir: str) -> list[str]:
    """Remove what a dead run left: staging and swap directories, ``_spill/``, temporary files. Returns them."""
    removed = []
    for name in os.listdir(out_dir):
        path = os.path.join(out_dir, name)
        if name.startswith((STAGING_PREFIX, OLD_PREFIX, ".tmp-", MANIFEST_NAME + ".tmp-")) or name == "_spill":
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
            removed.append(name)
    for sub in ("shards", "dead_letter", "clusters"):  # a temporary shard of a run before staging existed
        directory = os.path.join(out_dir, sub)
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                if ".tmp-" in name:
                    os.unlink(os.path.join(directory, name))
                    removed.append(f"{sub}/{name}")
    return removed


def _entries_of_manifest(out_dir: str) -> set[str]:
    """Top-level entries the previous manifest names (its shards' folders, its tokenizer copy)."""
    try:
        manifest = json.loads(fileio.read_text(fileio.join(out_dir, MANIFEST_NAME)))
        names = {str(s["path"]).split("/")[0] for s in manifest.get("shards", []) + manifest.get("cluster_table", [])}
        tok = manifest.get("tokenizer")
        if isinstance(tok, dict) and isinstance(tok.get("file"), str):
            names.add(os.path.basename(tok["file"]))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return set()
    return {n for n in names if n and n not in (".", "..") and not n.startswith(".") and "/" not in n}


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------- remote outputs


class RemoteOutputRun:
    """A remote output directory (gs://, s3://, any Beam filesystem): cleared up front, written in place.

    Object stores rename object by object and have no file locks, so there is no swap and no lock: entering
    refuses inputs inside the output, then removes the previous manifest (first: from then on no consumer
    accepts the directory) and the previous output's entries (``OUTPUT_ENTRIES``, the folders and files its
    manifest names, ``extra_subdirs``, temporary files); the job writes into ``staging``, which is the output
    itself, and its manifest, written last, makes the output whole again. ``commit`` has nothing to do.
    """

    def __init__(self, out_dir: str, inputs: Iterable[tuple[str, str]] = (), extra_subdirs: Iterable[str] = ()):
        self.out_dir = self.staging = out_dir
        self.inputs = list(inputs)
        self.extra_subdirs = tuple(extra_subdirs)

    def __enter__(self) -> "RemoteOutputRun":
        refuse_inputs_inside(self.out_dir, self.inputs)
        clear_remote_output(self.out_dir, self.extra_subdirs)
        return self

    def __exit__(self, *exc) -> None:
        pass

    def commit(self) -> None:
        pass


def clear_remote_output(out_dir: str, extra_subdirs: Iterable[str] = ()) -> list[str]:
    """Remove a previous knowmix output from a remote directory (the manifest first); returns what went."""
    named = _entries_of_manifest(out_dir)
    removed = fileio.delete_under(out_dir, [MANIFEST_NAME])
    top = fileio.list_names(out_dir)
    files = [n for n in top if n in named or n in OUTPUT_ENTRIES or n.startswith((".tmp-", MANIFEST_NAME + ".tmp-"))
             or ".tmp-" in n]
    removed += fileio.delete_under(out_dir, files)
    for sub in sorted(set(OUTPUT_ENTRIES) | named | set(extra_subdirs)):
        if sub not in top:
            removed += fileio.delete_under(fileio.join(out_dir, sub))
    return removed


def open_output(out_dir: str, inputs: Iterable[tuple[str, str]] = (), command: str = "",
                extra_subdirs: Iterable[str] = ()):
    """The context a job writes its output in: ``OutputRun`` for a local directory, ``RemoteOutputRun`` for a
    remote one. ``with open_output(out, inputs) as run:`` write under ``run.staging``, then ``run.commit()``."""
    if fileio.is_remote(out_dir):
        return RemoteOutputRun(out_dir, inputs, extra_subdirs)
    return OutputRun(out_dir, inputs, command)
