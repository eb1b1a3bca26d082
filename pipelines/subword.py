"""What every subword tokenizer of ``knowmix tokenize`` gives: token ids with each token's *character* span in
the source text (:class:`Encoding`), so word boundaries, entity spans and packing work on any of them.

The two kinds: ``spm`` (``pipelines/spm_tokenizer.py``, a SentencePiece model) and ``wordpiece``
(``pipelines/wordpiece.py``, a BERT vocabulary); ``pipelines/tokenizer_loader.py`` makes one from a
``--tokenizer KIND:PATH`` spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from knowmix.fileio import sha256_of  # the one sha256 helper of the shard contract
from knowmix.tokenizer_entry import tokenizer_entry


@dataclass
class Encoding:
    """Token ids and their half-open character spans ``[starts[i], ends[i])`` in the encoded text."""

    ids: np.ndarray  # int32
    starts: np.ndarray  # int32
    ends: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def empty() -> "Encoding":
        z = np.zeros(0, dtype=np.int32)
        return Encoding(z, z.copy(), z.copy())

    @staticmethod
    def concat(parts: Sequence["Encoding"]) -> "Encoding":
        if not parts:
            return Encoding.empty()
        return Encoding(
            np.concatenate([p.ids for p in parts]).astype(np.int32, copy=False),
            np.concatenate([p.starts for p in parts]).astype(np.int32, copy=False),
            np.concatenate([p.ends for p in parts]).astype(np.int32, copy=False),
        )

    def shifted(self, offset: int) -> "Encoding":
        return Encoding(self.ids, self.starts + offset, self.ends + offset)


class BaseTokenizer:
    """A tokenizer file (``path``) that encodes text to an :class:`Encoding`; ``special_ids`` maps
    ``knowmix.tokenizer_entry.SPECIAL_NAMES`` to ids."""

    kind: str = ""

    def __init__(self, path: str):
        self.path = path
        self.sha256 = sha256_of(path)
        self.special_ids: dict[str, int] = {}
        self.lowercase = False
        self.continuation: np.ndarray | None = None  # bool per id: a piece that never starts a word (WordPiece ##)

    # subclasses: vocab_size, encode, encode_batch, id_to_token, decode

    def info(self) -> dict:
        """The ``manifest.tokenizer`` entry."""
        return tokenizer_entry(self.kind, self.path, self.sha256, self.vocab_size, self.special_ids, self.lowercase)

    def encode_batch(self, texts: Sequence[str]) -> list[Encoding]:
        return [self.encode(t) for t in texts]

    def encode_pieces(self, text: str, cuts: Iterable[int]) -> Encoding:
        """Encode ``text`` as separate pieces split at the character offsets ``cuts``, so that no token
        crosses a cut (used to make entity spans line up with token boundaries)."""
        points = sorted({0, len(text), *(c for c in cuts if 0 < c < len(text))})
        parts = []
        for a, b in zip(points, points[1:]):
            enc = self.encode(text[a:b])
            if a > 0:
                enc = self._drop_dummy_prefix(enc)
            parts.append(enc.shifted(a))
        return Encoding.concat(parts)

    def _drop_dummy_prefix(self, enc: Encoding) -> Encoding:
        return enc
