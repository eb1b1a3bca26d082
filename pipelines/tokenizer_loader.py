"""A tokenizer from a ``--tokenizer KIND:PATH`` spec, local or on any Beam filesystem, and the picklable
:class:`TokenizerSpec` that carries it to the workers of a Beam job."""

from __future__ import annotations

import os
import shutil
import tempfile

from knowmix import fileio
from knowmix.errors import UserError
from knowmix.tokenizer_entry import TOKENIZER_KINDS
from knowmix.pipelines.spm_tokenizer import SpmTokenizer
from knowmix.pipelines.subword import BaseTokenizer
from knowmix.pipelines.wordpiece import WordPieceTokenizer


def load_tokenizer(spec: str, lowercase: bool | None = None) -> BaseTokenizer:
    """``spm:PATH`` or ``wordpiece:PATH`` -> a tokenizer; a bad spec or file raises UserError."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in TOKENIZER_KINDS or not path:
        raise UserError(f"--tokenizer {spec!r}: expected spm:PATH.model or wordpiece:PATH/vocab.txt")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such tokenizer file")
    return SpmTokenizer(path, lowercase) if kind == "spm" else WordPieceTokenizer(path, lowercase)


class TokenizerSpec:
    """A picklable tokenizer: the file's bytes travel with it, so workers on any runner (Dataflow
    included) load the same tokenizer without reaching the launcher's disk. ``entry`` is the manifest's
    ``tokenizer`` entry (``knowmix.tokenizer_entry``)."""

    def __init__(self, tok: BaseTokenizer):
        self.kind, self.name, self.lowercase = tok.kind, os.path.basename(tok.path), tok.lowercase
        self.entry = tok.info()
        with open(tok.path, "rb") as fh:
            self.data = fh.read()

    @classmethod
    def resolve(cls, spec: str, lowercase: bool | None = None) -> "TokenizerSpec":
        """``--tokenizer KIND:PATH`` with PATH local or on any Beam filesystem: a remote file (and, for WordPiece,
        the ``tokenizer_config.json`` beside it) is copied to a temporary directory first, since the libraries
        open files by name. Messages name the remote path."""
        kind, sep, path = spec.partition(":")
        if not sep or not fileio.is_remote(path):
            return cls(load_tokenizer(spec, lowercase))
        if not fileio.is_file(path):
            raise UserError(f"{path}: no such tokenizer file")
        with tempfile.TemporaryDirectory(prefix="knowmix-tokenizer-") as local_dir:
            local = fileio.copy_to_local(path, local_dir)
            config = fileio.join(path.rsplit("/", 1)[0], "tokenizer_config.json")
            if kind == "wordpiece" and fileio.is_file(config):
                fileio.copy_to_local(config, local_dir)
            try:
                return cls(load_tokenizer(f"{kind}:{local}", lowercase))
            except UserError as exc:
                raise UserError(str(exc).replace(local, path)) from None

    @property
    def special_ids(self) -> dict[str, int]:
        return self.entry["special_ids"]

    def load(self) -> BaseTokenizer:
        """The tokenizer, from a copy of the file in a temporary directory (``discard`` removes it)."""
        directory = tempfile.mkdtemp(prefix="knowmix-tok-")
        path = os.path.join(directory, self.name)
        with open(path, "wb") as fh:
            fh.write(self.data)
        cls = SpmTokenizer if self.kind == "spm" else WordPieceTokenizer
        return cls(path, self.lowercase)

    @staticmethod
    def discard(tok: BaseTokenizer) -> None:
        """Remove the temporary copy ``load`` made."""
        shutil.rmtree(os.path.dirname(tok.path), ignore_errors=True)

    def write_file(self, out_dir: str) -> None:
        """The tokenizer file beside the manifest (``out_dir`` local or remote), so the trainer finds it."""
        fileio.write_bytes(fileio.join(out_dir, self.name), self.data)
