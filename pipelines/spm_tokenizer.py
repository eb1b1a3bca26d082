"""A SentencePiece model as a knowmix tokenizer (``spm:PATH.model``; ``knowmix spm-train`` makes one with the
special tokens at fixed ids), with character offsets: computed from the ids alone when the model keeps the text
as it is (the models ``knowmix spm-train`` makes), else asked of SentencePiece.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from knowmix.errors import UserError
from knowmix.tokenizer_entry import SPECIAL_NAMES, SPECIAL_TOKENS
from knowmix.pipelines.subword import BaseTokenizer, Encoding


class SpmTokenizer(BaseTokenizer):
    kind = "spm"

    def __init__(self, path: str, lowercase: bool | None = None):
        super().__init__(path)
        import sentencepiece as spm

        try:
            self.sp = spm.SentencePieceProcessor(model_file=path)
        except (OSError, RuntimeError) as exc:
            raise UserError(f"{path}: not a SentencePiece model ({exc})") from None
        self.lowercase = bool(lowercase)  # SentencePiece normalises by its own rule; lower-case only on request
        ids = {}
        for name, tok in zip(SPECIAL_NAMES, SPECIAL_TOKENS):
            i = self.sp.piece_to_id(tok)
            if self.sp.id_to_piece(i) != tok:
                raise UserError(f"{path}: the model has no {tok} piece (train it with `knowmix spm-train`)")
            ids[name] = i
        self.special_ids = ids
        self._space_piece = self.sp.piece_to_id("\u2581")
        if self.sp.id_to_piece(self._space_piece) != "\u2581":
            self._space_piece = -1
        self._lengths = self._piece_lengths()

    _PROBE = "Ａ１，  a\u3000b ﬁ\t中\n"

    def _piece_lengths(self) -> np.ndarray | None:
        """Characters per piece, when the model keeps text as it is (identity normalisation, no dummy prefix,
        white space kept, byte fallback): then offsets follow from the ids alone (fast path). A byte piece
        counts 1 if it begins a character (ASCII or UTF-8 lead byte), 0 if it continues one. None otherwise."""
        sp = self.sp
        n = sp.get_piece_size()
        lengths = np.zeros(n, dtype=np.int32)
        cont = np.zeros(n, dtype=bool)
        has_bytes = False
        for i in range(n):
            piece = sp.id_to_piece(i)
            if sp.is_byte(i):
                has_bytes = True
                b = int(piece[3:5], 16)
                lengths[i] = 0 if 0x80 <= b <= 0xBF else 1
                cont[i] = 0x80 <= b <= 0xBF
            elif not (sp.is_control(i) or sp.is_unknown(i)):
                lengths[i] = len(piece)
        if not has_bytes:
            return None
        self._cont = cont
        ids = sp.encode(self._PROBE)
        if int(lengths[ids].sum()) != len(self._PROBE) or sp.is_unknown(ids[0]):
            return None
        pieces = [sp.id_to_piece(i) for i in ids]
        surface, buf = [], b""
        for i, p in zip(ids, pieces):
            if sp.is_byte(i):
                buf += bytes([int(p[3:5], 16)])
                continue
            if buf:
                surface.append(buf.decode("utf-8", "replace"))
                buf = b""
            surface.append(p.replace("\u2581", " "))
        if buf:
            surface.append(buf.decode("utf-8", "replace"))
        return lengths if "".join(surface) == self._PROBE else None

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def id_to_token(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def _to_encoding(self, m: dict) -> Encoding:
        ids = np.asarray(m["ids"], dtype=np.int32)
        if len(ids) == 0:
            return Encoding.empty()
        offs = np.asarray(m["offsets"], dtype=np.int32).reshape(-1, 2)
        return Encoding(ids, offs[:, 0].copy(), offs[:, 1].copy())

    def encode(self, text: str) -> Encoding:
        if self.lowercase:
            text = _lower_same_length(text)
        if self._lengths is not None:
            ids = np.asarray(self.sp.encode(text), dtype=np.int32)
            lens = self._lengths[ids]
            ends = np.cumsum(lens, dtype=np.int32)
            if len(ids) == 0 or int(ends[-1]) == len(text):
                starts = ends - lens
                cont = self._cont[ids]
                if cont.any():  # every byte piece of a character spans that character
                    starts[cont] = ends[cont] - 1
                return Encoding(ids, starts, ends) if len(ids) else Encoding.empty()
        return self._to_encoding(self.sp.encode_as_offset_mapping(text))

    def _drop_dummy_prefix(self, enc: Encoding) -> Encoding:
        # A model trained with add_dummy_prefix puts a lone "▁" before each piece; inside a sentence it is not text.
        if len(enc) and enc.ids[0] == self._space_piece and enc.starts[0] == enc.ends[0]:
            return Encoding(enc.ids[1:], enc.starts[1:], enc.ends[1:])
        return enc

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids])


def _lower_same_length(text: str) -> str:
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
