"""The tokenizer side of the shard contract: the special tokens and the manifest's ``tokenizer`` entry.

A ``pretrain`` or ``knowledge_tokens`` manifest holds

    "tokenizer": {"kind": "spm" | "wordpiece", "file": NAME, "sha256": HEX, "vocab_size": N,
                  "special_ids": {"pad": i, "unk": i, "cls": i, "sep": i, "mask": i,
                                  "e1": i, "e1_end": i, "e2": i, "e2_end": i},
                  "lowercase": bool}

and the tokenizer file ``NAME`` lies beside the manifest (``knowmix tokenize`` copies it there), so a consumer
uses the very tokenizer the shards were made with, checked by its sha256. ``knowmix tokenize`` writes the entry
(:func:`tokenizer_entry`); the trainer and export read and verify it (:meth:`TokenizerInfo.from_manifest`).
Beam-free and torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

from knowmix.errors import UserError
from knowmix.fileio import sha256_of
from knowmix.manifest import MANIFEST_NAME, ContractError, ShardDir, confined_path

TOKENIZER_KINDS = ("spm", "wordpiece")

# The special tokens, in the order of their ids in a model `knowmix spm-train` makes (pad = 0 ... e2_end = 8).
# A WordPiece vocabulary has the first five under these names and its first four [unused*] slots as the markers.
SPECIAL_NAMES = ("pad", "unk", "cls", "sep", "mask", "e1", "e1_end", "e2", "e2_end")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[E1]", "[/E1]", "[E2]", "[/E2]")
SPECIAL_TOKEN_OF = dict(zip(SPECIAL_NAMES, SPECIAL_TOKENS))
REQUIRED_SPECIAL_NAMES = SPECIAL_NAMES[:5]  # every tokenizer entry has these; the entity markers follow
MARKER_NAMES = SPECIAL_NAMES[5:]  # around the head ([E1] ... [/E1]) and the tail ([E2] ... [/E2]) of a relation


def tokenizer_entry(kind: str, path: str, sha256: str, vocab_size: int, special_ids: Mapping[str, int],
                    lowercase: bool) -> dict:
    """The manifest's ``tokenizer`` entry for the tokenizer file at ``path`` (written beside the manifest)."""
    return {
        "kind": kind,
        "file": os.path.basename(path),
        "sha256": sha256,
        "vocab_size": int(vocab_size),
        "special_ids": {k: int(special_ids[k]) for k in SPECIAL_NAMES},
        "lowercase": bool(lowercase),
    }


@dataclass
class TokenizerInfo:
    """A manifest's ``tokenizer`` entry as read back, with ``path``: the verified tokenizer file beside it."""

    kind: str
    file: str
    sha256: str
    vocab_size: int
    special_ids: dict[str, int]
    lowercase: bool
    path: str = ""  # where the tokenizer file was found ("" if not beside the shards)

    @classmethod
    def from_entry(cls, entry: Any, where: str, key: str) -> "TokenizerInfo":
        """Parse a ``tokenizer`` entry (``where``: its manifest, for messages; ``key``: the config key that named it)."""
        if not isinstance(entry, dict):
            raise UserError(f"{where}: no `tokenizer` entry ({key} must be the output of `knowmix tokenize`)")
        try:
            info = cls(
                kind=entry["kind"], file=entry["file"], sha256=entry["sha256"], vocab_size=int(entry["vocab_size"]),
                special_ids={k: int(v) for k, v in entry["special_ids"].items()}, lowercase=bool(entry.get("lowercase")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"{where}: malformed `tokenizer` entry ({exc})") from None
        missing = [k for k in REQUIRED_SPECIAL_NAMES if k not in info.special_ids]
        if missing:
            raise UserError(f"{where}: tokenizer.special_ids lacks {', '.join(missing)}")
        return info

    @classmethod
    def from_manifest(cls, shard_dir: ShardDir, key: str) -> "TokenizerInfo":
        """The entry of a shard directory's manifest, and the tokenizer file beside it checked against its sha256."""
        where = os.path.join(shard_dir.root, MANIFEST_NAME)
        info = cls.from_entry(shard_dir.manifest.get("tokenizer"), where, key)
        info.path = verified_tokenizer_file(shard_dir.root, info.file, info.sha256, key)
        return info

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "file": self.file, "sha256": self.sha256, "vocab_size": self.vocab_size,
            "special_ids": self.special_ids, "lowercase": self.lowercase,
        }

    def check_same(self, other: "TokenizerInfo", what: str) -> None:
        """Shards of two directories fed to one model must come from the same tokenizer."""
        if (self.sha256, self.vocab_size) != (other.sha256, other.vocab_size):
            raise UserError(
                f"{what}: tokenizer differs (sha256 {other.sha256[:12]}…, vocab {other.vocab_size}) from the"
                f" pretrain shards' (sha256 {self.sha256[:12]}…, vocab {self.vocab_size})"
            )


def verified_tokenizer_file(root: str, name: Any, sha256: str, key: str) -> str:
    """The tokenizer file ``name`` beside the manifest in ``root``, hashed against the entry's ``sha256``;
    "" if it is not there. A name leaving ``root`` (absolute, ``..``) is refused before anything is opened."""
    where = os.path.join(root, MANIFEST_NAME)
    try:
        path = confined_path(root, name, "path")
    except ContractError as exc:
        raise UserError(f"{key}: {where}: tokenizer.file: {exc}") from None
    if not os.path.isfile(path):
        return ""
    try:
        digest = sha256_of(path)
    except OSError as exc:
        raise UserError(f"{key}: {path}: cannot read ({exc.strerror or exc})") from None
    if digest != sha256:
        raise UserError(f"{key}: {path}: sha256 {digest[:12]}… differs from {where}'s tokenizer.sha256"
                        f" {str(sha256)[:12]}… (not the tokenizer these shards were made with)")
    return os.path.abspath(path)
