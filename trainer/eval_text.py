"""The tokenizer of a model to evaluate, found where ``knowmix train`` / ``knowmix export`` put it.

- a run dir: ``run.json``'s ``tokenizer`` entry (kind, special ids, lower-casing) and its copy under ``tokenizer/``
  (its sha256 checked against the entry's);
- a Hugging Face folder: ``knowmix_tokenizer.json`` (+ the file it names) as ``knowmix export`` writes it, or a
  BERT ``vocab.txt`` (+ ``tokenizer_config.json``), as any BERT-compatible Chinese checkpoint ships.

Ids are the ones the shards were made with: a SentencePiece model through ``sentencepiece``; a WordPiece
vocabulary through Hugging Face ``tokenizers``' BERT tokenizer (the one ``knowmix tokenize``'s own WordPiece is
tested against). The entity markers are the tokenizer entry's ``e1 .. e2_end``; in a plain BERT vocabulary the
``tokenizer_config.json``'s four additional special tokens, else ``[E1] [/E1] [E2] [/E2]`` if the vocabulary has
them, else its first four ``[unused*]`` slots (as ``knowmix tokenize`` assigns them).
"""

from __future__ import annotations

import json
import os
import re

from knowmix.errors import UserError
from knowmix.fileio import sha256_of
from knowmix.tokenizer_entry import MARKER_NAMES, REQUIRED_SPECIAL_NAMES, SPECIAL_TOKEN_OF

SPECIALS = {k: SPECIAL_TOKEN_OF[k] for k in REQUIRED_SPECIAL_NAMES}
MARKERS = {k: SPECIAL_TOKEN_OF[k] for k in MARKER_NAMES}
_UNUSED = re.compile(r"^\[unused(\d+)\]$")


class EvalTokenizer:
    """Text -> token ids (no special tokens added); ``special_ids`` as in a manifest's tokenizer entry."""

    def __init__(self, kind: str, path: str, special_ids: dict[str, int], lowercase: bool):
        self.kind, self.path, self.special_ids, self.lowercase = kind, path, dict(special_ids), bool(lowercase)
        if kind == "spm":
            import sentencepiece as spm

            try:
                self._sp = spm.SentencePieceProcessor(model_file=path)
            except (OSError, RuntimeError) as exc:
                raise UserError(f"{path}: not a SentencePiece model ({exc})") from None
            self.vocab_size = self._sp.get_piece_size()
            space = self._sp.piece_to_id("\u2581")
            self._space = space if self._sp.id_to_piece(space) == "\u2581" else -1
        elif kind == "wordpiece":
            from tokenizers import BertWordPieceTokenizer

            try:
                self._wp = BertWordPieceTokenizer(path, lowercase=self.lowercase, clean_text=True,
                                                  handle_chinese_chars=True)
            except Exception as exc:  # noqa: BLE001 - a vocabulary tokenizers cannot read is the user's file
                raise UserError(f"{path}: not a readable WordPiece vocabulary ({exc})") from None
            self.vocab_size = self._wp.get_vocab_size()
        else:
            raise UserError(f"{path}: unknown tokenizer kind {kind!r} (expected spm or wordpiece)")
        missing = [k for k in SPECIALS if k not in self.special_ids]
        if missing:
            raise UserError(f"{path}: the tokenizer has no {', '.join(SPECIALS[k] for k in missing)}")

    def encode(self, text: str, first: bool = True) -> list[int]:
        """Token ids of ``text``; ``first=False`` for a piece inside a sentence (no SentencePiece dummy prefix)."""
        if not text:
            return []
        if self.kind == "spm":
            ids = self._sp.encode(text.lower() if self.lowercase else text)
            if not first and ids and ids[0] == self._space:
                ids = ids[1:]
            return list(ids)
        return list(self._wp.encode(text, add_special_tokens=False).ids)

    @property
    def has_markers(self) -> bool:
        return all(k in self.special_ids for k in MARKERS)


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc})") from None


def from_entry(entry: dict, file_path: str, where: str) -> EvalTokenizer:
    """A tokenizer from a manifest-style entry (``kind``, ``special_ids``, ``lowercase``) and its file."""
    if not file_path or not os.path.isfile(file_path):
        raise UserError(f"{where}: no tokenizer file beside the model (looked for {file_path or entry.get('file')!r})")
    try:
        special = {k: int(v) for k, v in entry["special_ids"].items()}
        kind = entry["kind"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{where}: malformed tokenizer entry ({exc})") from None
    if entry.get("sha256") and sha256_of(file_path) != entry["sha256"]:
        raise UserError(f"{file_path}: differs from the tokenizer the model was trained with (sha256 in {where})")
    return EvalTokenizer(kind, file_path, special, bool(entry.get("lowercase")))


def for_run(run_dir: str, info: dict) -> EvalTokenizer:
    """The tokenizer a training run recorded in ``run.json`` (its copy under ``RUN/tokenizer/``)."""
    entry = info.get("tokenizer")
    where = os.path.join(run_dir, "run.json")
    if not isinstance(entry, dict) or not info.get("tokenizer_copy"):
        raise UserError(f"{where}: the run has no tokenizer copy (the shards' tokenizer file was not found"
                        " when it trained); export it with a tokenizer or evaluate a Hugging Face folder")
    return from_entry(entry, os.path.join(run_dir, info["tokenizer_copy"]), where)


def for_hf(folder: str) -> EvalTokenizer:
    """The tokenizer of a Hugging Face folder (``knowmix_tokenizer.json`` first, then ``vocab.txt``)."""
    kt = os.path.join(folder, "knowmix_tokenizer.json")
    if os.path.isfile(kt):
        entry = _read_json(kt)
        return from_entry(entry, os.path.join(folder, os.path.basename(str(entry.get("file", "")))), kt)
    vocab_path = os.path.join(folder, "vocab.txt")
    if not os.path.isfile(vocab_path):
        raise UserError(f"{folder}: no tokenizer (neither knowmix_tokenizer.json nor vocab.txt)")
    with open(vocab_path, encoding="utf-8") as fh:
        tokens = [line.rstrip("\r\n") for line in fh]
    vocab: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        vocab.setdefault(tok, i)
    cfg_path = os.path.join(folder, "tokenizer_config.json")
    cfg = _read_json(cfg_path) if os.path.isfile(cfg_path) else {}
    names = dict(SPECIALS)
    for key, field in (("pad", "pad_token"), ("unk", "unk_token"), ("cls", "cls_token"), ("sep", "sep_token"),
                       ("mask", "mask_token")):
        if isinstance(cfg.get(field), str):
            names[key] = cfg[field]
    special = {k: vocab[v] for k, v in names.items() if v in vocab}
    extra = [t for t in cfg.get("additional_special_tokens") or [] if isinstance(t, str) and t in vocab]
    if len(extra) == 4:
        special.update({k: vocab[t] for k, t in zip(MARKERS, extra)})
    elif all(t in vocab for t in MARKERS.values()):
        special.update({k: vocab[t] for k, t in MARKERS.items()})
    else:
        unused = sorted((int(m.group(1)), i) for t, i in vocab.items() if (m := _UNUSED.match(t)))
        if len(unused) >= 4:
            special.update({k: i for k, (_, i) in zip(MARKERS, unused[:4])})
    lowercase = cfg.get("do_lower_case", True)
    return EvalTokenizer("wordpiece", vocab_path, special, bool(lowercase))
