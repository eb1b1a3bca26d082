"""What the trainer checks before it trusts a file it is handed (README, "What the trainer trusts").

- **Shard directories** (``data.pretrain``, ``data.knowledge``): every path a manifest names (shards, the tokenizer
  file) must stay inside the manifest's directory: an absolute path or a ``..`` component is refused before
  anything is opened. Every shard's sha256 and row count are then checked against the manifest
  (``knowmix.manifest.verify_shard``); ``knowmix train --no-verify`` skips the hashing and checks sizes only.
- **The tokenizer file** beside each manifest is hashed and compared with that manifest's ``tokenizer.sha256``
  before the run copies it (and export later ships it): ``knowmix.tokenizer_entry.TokenizerInfo.from_manifest``.
- **Checkpoints**: after the DCP files of a step are written, ``manifest.json`` in the checkpoint directory
  records every file's size and sha256. ``--resume`` and ``knowmix export`` check it before torch reads a byte
  (DCP's ``.metadata`` is a pickle): a directory without it, a file it does not list, or a file whose size or
  sha256 differ is refused with one line. This catches damage and checkpoints knowmix did not write; it is no
  defence against someone who can write the run directory (they can rewrite the manifest too).

The lexical confinement check (:func:`confined`) sits here beside ``knowmix.manifest``'s readers, so the trainer
refuses an escaping path whichever version of the shard contract it runs with.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from knowmix import __version__
from knowmix.errors import UserError
from knowmix.fileio import sha256_of, write_text
from knowmix.manifest import ContractError, ShardDir, verify_shard

CHECKPOINT_MANIFEST = "manifest.json"
CHECKPOINT_KIND = "checkpoint"
CHECKPOINT_SCHEMA_VERSION = 1


# ---------------------------------------------------------------------------------------------- paths


def confined(root: str, rel: Any, what: str) -> str:
    """``root/rel`` if ``rel`` is a relative path that stays inside ``root`` (``knowmix.manifest.confined_path``:
    absolute paths, drive letters, backslashes, ``..`` and links out of it are refused); else a UserError
    naming ``what``, so a manifest cannot point the trainer (or an export) at a file elsewhere."""
    from knowmix.manifest import ContractError, confined_path

    try:
        return confined_path(root, rel, "path")
    except ContractError as exc:
        raise UserError(f"{what}: {exc}") from None


def check_shard_dir(shard_dir: ShardDir, key: str, verify: bool) -> None:
    """Every listed shard confined to the directory, present, and (``verify``) matching its sha256 and rows;
    without ``verify`` only its size in bytes is compared."""
    where = os.path.join(shard_dir.root, "manifest.json")
    shards = shard_dir.manifest.get("shards")
    if not isinstance(shards, list):
        raise UserError(f"{key}: {where}: `shards` is not a list")
    seen = set()
    for entry in shards:
        if not isinstance(entry, dict) or not {"path", "sha256", "rows"} <= entry.keys():
            raise UserError(f"{key}: {where}: a shard entry lacks path, sha256 or rows")
        path = confined(shard_dir.root, entry["path"], f"{key}: {where}")
        if os.path.normpath(path) in seen:
            raise UserError(f"{key}: {where}: lists {entry['path']} twice")
        seen.add(os.path.normpath(path))
        if verify:
            try:
                verify_shard(path, entry)
            except ContractError as exc:
                raise UserError(f"{key}: {exc}") from None
            except OSError as exc:
                raise UserError(f"{key}: {path}: cannot read ({exc.strerror or exc})") from None
        else:
            if not os.path.isfile(path):
                raise UserError(f"{key}: {path}: listed in the manifest but missing")
            if "bytes" in entry and os.path.getsize(path) != int(entry["bytes"]):
                raise UserError(f"{key}: {path}: {os.path.getsize(path)} bytes, the manifest says {entry['bytes']}")


# ---------------------------------------------------------------------------------------------- checkpoints


def _files_under(directory: str) -> list[str]:
    """Relative paths ('/'-separated) of every file under ``directory`` except the checkpoint manifest."""
    out = []
    for base, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(base, name), directory).replace(os.sep, "/")
            if rel != CHECKPOINT_MANIFEST:
                out.append(rel)
    return out


def write_checkpoint_manifest(directory: str, step: int, world: int) -> dict:
    """Record the size and sha256 of every file in a finished checkpoint directory (written last)."""
    files = []
    for rel in _files_under(directory):
        path = os.path.join(directory, rel)
        files.append({"path": rel, "bytes": os.path.getsize(path), "sha256": sha256_of(path)})
    manifest = {"schema_version": CHECKPOINT_SCHEMA_VERSION, "kind": CHECKPOINT_KIND,
                "tool": {"name": "knowmix", "version": __version__}, "step": int(step), "world": int(world),
                "files": files}
    write_text(os.path.join(directory, CHECKPOINT_MANIFEST), json.dumps(manifest, indent=2) + "\n")
    return manifest


def verify_checkpoint(directory: str) -> dict:
    """Check a checkpoint directory against its manifest before anything in it is read; return the manifest.

    Refused (UserError, one line): no such directory, no manifest (not written by knowmix), a malformed one, a
    listed file missing or with another size or sha256, or a file the manifest does not list."""
    if not os.path.isdir(directory):
        raise UserError(f"{directory}: no such checkpoint directory")
    mpath = os.path.join(directory, CHECKPOINT_MANIFEST)
    if not os.path.isfile(mpath):
        raise UserError(f"{directory}: no {CHECKPOINT_MANIFEST}; not a checkpoint written by this knowmix,"
                        " refused before reading it")
    try:
        with open(mpath, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise UserError(f"{mpath}: not a readable checkpoint manifest ({exc})") from None
    if not isinstance(manifest, Mapping) or manifest.get("kind") != CHECKPOINT_KIND:
        kind = manifest.get("kind") if isinstance(manifest, Mapping) else None
        raise UserError(f"{mpath}: not a knowmix checkpoint manifest (kind {kind!r})")
    files = manifest.get("files")
    if not isinstance(files, list) or not all(isinstance(f, Mapping) and {"path", "bytes", "sha256"} <= f.keys()
                                              for f in files):
        raise UserError(f"{mpath}: `files` must list path, bytes and sha256 of every file")
    listed = set()
    for entry in files:
        path = confined(directory, entry["path"], mpath)
        listed.add(str(entry["path"]))
        if not os.path.isfile(path):
            raise UserError(f"{path}: listed in {CHECKPOINT_MANIFEST} but missing")
        if os.path.getsize(path) != entry["bytes"]:
            raise UserError(f"{path}: {os.path.getsize(path)} bytes, {CHECKPOINT_MANIFEST} says {entry['bytes']}")
        digest = sha256_of(path)
        if digest != entry["sha256"]:
            raise UserError(f"{path}: sha256 {digest[:12]}… differs from {CHECKPOINT_MANIFEST}'s"
                            f" {str(entry['sha256'])[:12]}… (damaged or altered checkpoint)")
    foreign = [rel for rel in _files_under(directory) if rel not in listed]
    if foreign:
        raise UserError(f"{os.path.join(directory, foreign[0])}: not listed in {CHECKPOINT_MANIFEST}"
                        f" ({len(foreign)} foreign file(s)); refused")
    return manifest
