"""Relation names and their ids: ``relations.json`` beside a ``knowledge_tokens`` manifest, and the relation
files users hand in (``knowmix tokenize --relations``, ``knowmix eval --relations``).

``relations.json`` is a JSON list of names, index = id, ``[0] == "NA"`` (no relation); the ``relations`` column
of a ``knowledge_tokens`` shard holds ids into it. ``knowmix tokenize`` writes it (the names it saw, sorted after
NA, or a fixed ``--relations`` file) and the trainer reads it to size the relation head. A user's relation file
is a JSON list of names, a JSON object ``{name: id}`` (OpenNRE's rel2id.json) or ``name id`` lines (FinRE's
relation2id.txt); ids run 0..n-1. Beam-free and torch-free; the file may be local or on any Beam filesystem.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterable

from knowmix import fileio
from knowmix.errors import UserError

RELATIONS_FILE = "relations.json"
NA = "NA"


# ---------------------------------------------------------------------------------------------- users' files


def read_relation_file(path: str) -> list[str]:
    """The relation names of a user's relation file, in the order of their ids (any of the three layouts)."""
    try:
        text = fileio.read_text(path)  # local or any Beam filesystem (gs://, s3://, ...)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the relation list ({exc})") from None
    body = text.lstrip("\ufeff").strip()
    if body.startswith("["):
        try:
            names = [str(x) for x in json.loads(body)]
        except (ValueError, TypeError) as exc:
            raise UserError(f"{path}: not a JSON list ({exc})") from None
        pairs = list(enumerate(names))
    elif body.startswith("{"):
        try:
            pairs = [(int(v), str(k)) for k, v in json.loads(body).items()]
        except (ValueError, TypeError, AttributeError) as exc:
            raise UserError(f"{path}: not a JSON object of name: id ({exc})") from None
    else:
        pairs = []
        for n, line in enumerate(body.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) < 2:
                    raise ValueError
                pairs.append((int(parts[-1]), " ".join(parts[:-1])))
            except ValueError:
                raise UserError(f"{path}:{n}: expected `name id`") from None
    if not pairs:
        raise UserError(f"{path}: no relations")
    pairs.sort()
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise UserError(f"{path}: relation ids must run 0..{len(pairs) - 1}, each once")
    names = [name for _, name in pairs]
    _check_unique(names, path)
    return names


def fixed_relation_list(path: str) -> list[str]:
    """A ``--relations`` file as the relation list of ``knowledge_tokens`` shards: id 0 is NA, whatever the file
    calls it (FinRE's ``unknown``, OpenNRE's ``NA``)."""
    names = read_relation_file(path)
    names[0] = NA
    _check_unique(names, path)
    return names


def _check_unique(names: list[str], path: str) -> None:
    if len(set(names)) != len(names):
        raise UserError(f"{path}: duplicate relation names")


# ---------------------------------------------------------------------------------------------- relations.json


def relation_list_of(names_seen: Iterable[str]) -> list[str]:
    """The relation list of the names a run saw (without a fixed file): NA = 0, then the other names sorted."""
    return [NA, *sorted(n for n in set(names_seen) if n != NA)]


def relation_ids(names: list[str], relations: list[str]) -> list[int] | None:
    """Relation names -> their ids in ``relations``; None if one of them is not in it."""
    index = {name: i for i, name in enumerate(relations)}
    ids = [index.get(name) for name in names]
    return None if any(i is None for i in ids) else ids


def write_relations_json(out_dir: str, relations: list[str],
                         write_text: Callable[[str, str], None] | None = None) -> dict:
    """``relations.json`` in ``out_dir``; returns the manifest's ``relations`` entry.

    ``write_text(path, text)`` writes a file atomically (default: ``knowmix.fileio``); a Beam job passes the
    writer it writes its manifest with, so both land the same way on any filesystem."""
    text = json.dumps(relations, ensure_ascii=False, indent=0) + "\n"
    path = fileio.join(out_dir, RELATIONS_FILE)
    if write_text is None:
        fileio.write_bytes(path, text.encode("utf-8"))
    else:
        write_text(path, text)
    return {"relations": {"file": RELATIONS_FILE, "count": len(relations)}}


def read_relations_json(directory: str) -> list[str]:
    """The relation list beside a ``knowledge_tokens`` manifest (local directory)."""
    path = os.path.join(directory, RELATIONS_FILE)
    if not os.path.exists(path):
        raise UserError(f"{path}: missing (a knowledge_tokens directory holds {RELATIONS_FILE} beside its manifest)")
    try:
        with open(path, encoding="utf-8") as fh:
            names = json.load(fh)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable JSON list ({exc})") from None
    if not isinstance(names, list) or not names or names[0] != NA:
        raise UserError(f"{path}: expected a JSON list of relation names starting with \"NA\"")
    return names
