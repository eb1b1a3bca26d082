"""Local paths and paths of any Beam filesystem (``gs://``, ``s3://``, ``hdfs://``, any registered scheme) alike.

A path with a scheme goes through ``apache_beam.io.filesystems.FileSystems``; a local path through ``os``, so
the trainer reads local shard directories without importing Beam. Object stores have no directories: a
"directory" here is a prefix, which exists once a file under it does. Errors from a remote store become one
line naming the path (``UserError``).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import uuid
from typing import Any, BinaryIO, Callable, TypeVar

from knowmix.errors import UserError

T = TypeVar("T")

_SCHEME = re.compile(r"^[a-zA-Z][-a-zA-Z0-9+.]*://")  # Beam's FileSystems.URI_SCHEMA_PATTERN


def is_remote(path: str | None) -> bool:
    """A path with a scheme (``gs://b/x``), read and written through Beam's FileSystems."""
    return bool(path) and _SCHEME.match(str(path).strip()) is not None


def _fs():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _uncompressed():
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.UNCOMPRESSED


def _remote_error(path: str, what: str, exc: BaseException) -> UserError:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return UserError(f"{path}: cannot {what} ({text[:300]})")


def join(root: str, *parts: str) -> str:
    if is_remote(root):
        return posixpath.join(root, *parts)
    return os.path.join(root, *parts)


def exists(path: str) -> bool:
    """A file (an object, for a remote path) is there."""
    if not is_remote(path):
        return os.path.exists(path)
    try:
        return _fs().exists(path)
    except Exception as exc:  # noqa: BLE001 - Beam raises BeamIOError and the stores' own errors
        raise _remote_error(path, "check it", exc) from None


def is_file(path: str) -> bool:
    return exists(path) if is_remote(path) else os.path.isfile(path)


def open_read(path: str) -> BinaryIO:
    """The file's bytes as they are (no decompression by name)."""
    if not is_remote(path):
        return open(path, "rb")
    try:
        return _fs().open(path, compression_type=_uncompressed())
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001
        if not exists(path):
            raise FileNotFoundError(2, "No such file or directory", path) from None
        raise _remote_error(path, "open it", exc) from None


def read_bytes(path: str) -> bytes:
    with open_read(path) as fh:
        return fh.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def list_names(directory: str) -> list[str]:
    """Names of the files directly under ``directory`` (empty when there is none)."""
    if not is_remote(directory):
        if not os.path.isdir(directory):
            return []
        return sorted(n for n in os.listdir(directory) if os.path.isfile(os.path.join(directory, n)))
    prefix = directory.rstrip("/") + "/"
    try:
        results = _fs().match([prefix + "*"])
    except Exception as exc:  # noqa: BLE001
        raise _remote_error(directory, "list it", exc) from None
    names = {m.path[len(prefix):] for r in results for m in r.metadata_list if m.path.startswith(prefix)}
    return sorted(n for n in names if n and "/" not in n)


def atomic_write(path: str, write: Callable[[BinaryIO], T], opener: Callable[[str], Any] | None = None) -> T:
    """Write ``path`` through ``write(file)`` under a temporary name beside it, then rename it into place: readers
    never see half a file, and a write that fails leaves the previous file as it was (and no temporary file).

    THE atomic write of the project: every file a stage or a tool writes whole goes through here.
    ``opener(temporary path)`` opens the temporary file for writing and is used as a context manager; default:
    ``open(path, "xb")`` for a local path, Beam's ``FileSystems.create`` for a remote one (``gs://``, ``s3://``,
    any registered scheme), so any Beam filesystem works. Pass e.g. ``lambda p: pyarrow.OSFile(p, "wb")`` for a
    native Arrow sink. Returns what ``write`` returns. A remote store's error is one line (``UserError``).
    """
    if not is_remote(path):
        directory = os.path.dirname(path) or "."
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex[:12]}-{os.path.basename(path)}")
        try:
            with (opener or _open_new)(tmp) as fh:
                result = write(fh)
            os.replace(tmp, path)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        return result
    fs = _fs()
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with (opener or _create_remote)(tmp) as fh:
            result = write(fh)
        if fs.exists(path):
            fs.delete([path])
        fs.rename([tmp], [path])
    except Exception as exc:  # noqa: BLE001 - Beam raises BeamIOError and the stores' own errors
        try:
            if fs.exists(tmp):
                fs.delete([tmp])
        except Exception:  # noqa: BLE001 - the error worth reporting is the write's
            pass
        raise _remote_error(path, "write it", exc) from None
    return result


def _open_new(path: str) -> BinaryIO:
    return open(path, "xb")


def _create_remote(path: str) -> BinaryIO:
    return _fs().create(path, compression_type=_uncompressed())


def write_bytes(path: str, data: bytes) -> None:
    """``data`` as the whole of ``path``, atomically (``atomic_write``)."""
    atomic_write(path, lambda fh: fh.write(data))


def write_text(path: str, text: str) -> None:
    """``text`` (UTF-8) as the whole of ``path``, atomically (``atomic_write``)."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def copy_file(src: str, dest: str) -> None:
    """A copy of ``src`` at ``dest`` (either local or remote), atomically: a trained model or index published
    where its readers look for it."""
    with open_read(src) as fh:
        atomic_write(dest, lambda out: shutil.copyfileobj(fh, out, 1 << 20))


def delete_under(directory: str, names: list[str] | None = None) -> list[str]:
    """Delete the files under ``directory`` (all of them, recursively, or only ``names``); returns the paths."""
    if is_remote(directory):
        fs = _fs()
        prefix = directory.rstrip("/") + "/"
        if names is None:
            paths = [m.path for r in fs.match([prefix + "**"]) for m in r.metadata_list]
        else:
            paths = [prefix + n for n in names if fs.exists(prefix + n)]
        if paths:
            fs.delete(paths)
        return paths
    if names is None:
        shutil.rmtree(directory, ignore_errors=True)
        return [directory]
    removed = []
    for n in names:
        if os.path.lexists(os.path.join(directory, n)):
            os.unlink(os.path.join(directory, n))
            removed.append(os.path.join(directory, n))
    return removed


def sha256_of(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open_read(path) as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def copy_to_local(path: str, directory: str, name: str | None = None) -> str:
    """A local copy of ``path`` in ``directory`` (for libraries that open files by name); returns its path."""
    dest = os.path.join(directory, name or posixpath.basename(path.rstrip("/")))
    with open_read(path) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    return dest
