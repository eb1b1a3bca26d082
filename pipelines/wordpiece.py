"""BERT's WordPiece tokenisation of an existing vocabulary (``wordpiece:PATH/vocab.txt``), with character offsets.

Clean text, CJK characters split one per token, optional lower-casing and accent stripping, punctuation split,
greedy longest-match WordPiece; the tests compare it with transformers' BertTokenizer and HF ``tokenizers``'
BertWordPieceTokenizer. Entity markers ``[E1] [/E1] [E2] [/E2]`` take the vocabulary's first four
``[unused*]`` slots.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from typing import Iterable

import numpy as np

from knowmix.errors import UserError
from knowmix.tokenizer_entry import MARKER_NAMES, REQUIRED_SPECIAL_NAMES, SPECIAL_TOKEN_OF
from knowmix.pipelines.subword import BaseTokenizer, Encoding


def _read_vocab(path: str) -> dict[str, int]:
    try:
        with open(path, encoding="utf-8") as fh:
            tokens = [line.rstrip("\n").rstrip("\r") for line in fh]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the vocabulary ({exc})") from None
    while tokens and tokens[-1] == "":
        tokens.pop()
    vocab: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        vocab.setdefault(tok, i)
    return vocab


def _bert_config_lowercase(vocab_path: str) -> bool | None:
    """``do_lower_case`` from a tokenizer_config.json beside the vocabulary, if there is one."""
    cfg = os.path.join(os.path.dirname(vocab_path) or ".", "tokenizer_config.json")
    if not os.path.exists(cfg):
        return None
    try:
        with open(cfg, encoding="utf-8") as fh:
            value = json.load(fh).get("do_lower_case")
    except (OSError, ValueError) as exc:
        raise UserError(f"{cfg}: not readable JSON ({exc})") from None
    return None if value is None else bool(value)


_UNUSED = re.compile(r"^\[unused(\d+)\]$")


_DROP, _SINGLE, _WORD, _REMOVE = 0, 1, 2, 3
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def _bert_class(ch: str) -> int:
    """BERT's basic tokenizer, per character: white space (splits words), removed (control, U+0000, U+FFFD:
    deleted by clean_text, so the characters around it join), a token of its own (CJK ideograph,
    punctuation), or part of a word."""
    cp = ord(ch)
    if ch in " \t\n\r":
        return _DROP
    cat = unicodedata.category(ch)
    if cp == 0 or cp == 0xFFFD or cat.startswith("C"):
        return _REMOVE
    if cat == "Zs":
        return _DROP
    if any(a <= cp <= b for a, b in _CJK_RANGES):
        return _SINGLE
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or cat.startswith("P"):
        return _SINGLE
    return _WORD


_BMP_CLASS: np.ndarray | None = None


def _HAS_REMOVED(word: str) -> bool:
    return (not word.isprintable() or "\ufffd" in word) and any(_bert_class(c) == _REMOVE for c in word)


def _bmp_class() -> np.ndarray:
    global _BMP_CLASS
    if _BMP_CLASS is None:
        _BMP_CLASS = np.fromiter((_bert_class(chr(c)) if not 0xD800 <= c <= 0xDFFF else _DROP for c in range(0x10000)),
                                 dtype=np.uint8, count=0x10000)
    return _BMP_CLASS


class WordPieceTokenizer(BaseTokenizer):
    """BERT's tokenisation (clean text, CJK split, lower-case + strip accents when uncased, punctuation split,
    greedy longest-match WordPiece, words over 100 characters -> [UNK]), with character offsets.

    Vectorised for Chinese: characters are classified with a lookup table over the code points, CJK
    characters and punctuation become tokens by table lookup, and only the runs of other characters
    (Latin words, numbers) go through WordPiece in Python, cached per distinct run. Tested token-for-token
    against transformers' BertTokenizer and HF ``tokenizers``' BertWordPieceTokenizer (ids and offsets).
    """

    kind = "wordpiece"
    MAX_WORD_CHARS = 100

    def __init__(self, path: str, lowercase: bool | None = None):
        super().__init__(path)
        self.vocab = _read_vocab(path)
        if lowercase is None:
            lowercase = _bert_config_lowercase(path)
        self.lowercase = True if lowercase is None else bool(lowercase)
        for name in REQUIRED_SPECIAL_NAMES:
            if SPECIAL_TOKEN_OF[name] not in self.vocab:
                raise UserError(f"{path}: the vocabulary has no {SPECIAL_TOKEN_OF[name]} token")
        unused = sorted((int(m.group(1)), i) for t, i in self.vocab.items() if (m := _UNUSED.match(t)))
        if len(unused) < len(MARKER_NAMES):
            raise UserError(f"{path}: needs four [unused*] tokens for the entity markers, found {len(unused)}")
        self.special_ids = {
            **{name: self.vocab[SPECIAL_TOKEN_OF[name]] for name in REQUIRED_SPECIAL_NAMES},
            **{name: i for name, (_, i) in zip(MARKER_NAMES, unused)},  # the first four [unused*] slots
        }
        self.unk_id = self.special_ids["unk"]
        self.id_to_tok = {i: t for t, i in self.vocab.items()}
        self.continuation = np.zeros(self.vocab_size, dtype=bool)
        self.continuation[[i for t, i in self.vocab.items() if t.startswith("##")]] = True
        self._class = _bmp_class()
        single = np.full(0x10000, self.unk_id, dtype=np.int32)
        for cp in np.flatnonzero(self._class == _SINGLE).tolist():
            single[cp] = self.vocab.get(self._norm_char(chr(cp)), self.unk_id)
        self._single = single
        self._astral: dict[int, tuple[int, int]] = {}
        self._words: dict[str, tuple[list[int], list[int], list[int]]] = {}

    @property
    def vocab_size(self) -> int:
        return max(self.vocab.values()) + 1

    def id_to_token(self, i: int) -> str:
        return self.id_to_tok.get(int(i), "[UNK]")

    def _norm_char(self, ch: str) -> str:
        if not self.lowercase:
            return ch
        return "".join(c for c in unicodedata.normalize("NFD", ch.lower()) if unicodedata.category(c) != "Mn")

    def _astral_info(self, cp: int) -> tuple[int, int]:
        got = self._astral.get(cp)
        if got is None:
            ch = chr(cp)
            cls = _bert_class(ch)
            got = (cls, self.vocab.get(self._norm_char(ch), self.unk_id) if cls == _SINGLE else self.unk_id)
            self._astral[cp] = got
        return got

    def _wordpiece(self, word: str) -> tuple[list[int], list[int], list[int]]:
        """One run of word characters -> (ids, starts, ends), offsets relative to the run's original text."""
        got = self._words.get(word)
        if got is not None:
            return got
        if self.lowercase or _HAS_REMOVED(word):
            parts = [self._norm_char(c) if _bert_class(c) != _REMOVE else "" for c in word]
            norm = "".join(parts)
            align = [i for i, p in enumerate(parts) for _ in p]
        else:
            norm, align = word, list(range(len(word)))
        ids: list[int] = []
        starts: list[int] = []
        ends: list[int] = []
        vocab = self.vocab
        if not norm:
            got = (ids, starts, ends)
        elif len(norm) > self.MAX_WORD_CHARS:
            got = ([self.unk_id], [0], [len(word)])
        else:
            start, n = 0, len(norm)
            while start < n:
                end, cur = n, None
                while start < end:
                    sub = norm[start:end] if start == 0 else "##" + norm[start:end]
                    cur = vocab.get(sub)
                    if cur is not None:
                        break
                    end -= 1
                if cur is None:
                    ids, starts, ends = [self.unk_id], [0], [len(word)]
                    break
                ids.append(cur)
                starts.append(align[start])
                ends.append(align[end - 1] + 1)
                start = end
            got = (ids, starts, ends)
        if len(self._words) < 1_000_000:
            self._words[word] = got
        return got

    def encode(self, text: str) -> Encoding:
        if not text:
            return Encoding.empty()
        cps = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        astral = np.flatnonzero(cps > 0xFFFF)
        idx = cps.astype(np.int64) if len(astral) == 0 else np.where(cps > 0xFFFF, 0, cps).astype(np.int64)
        cls = self._class[idx]
        if len(astral):
            cls = cls.copy()
            info = [self._astral_info(int(cps[p])) for p in astral]
            cls[astral] = [c for c, _ in info]
        single_pos = np.flatnonzero(cls == _SINGLE)
        single_ids = self._single[idx[single_pos]]
        if len(astral):
            for p, (c, i) in zip(astral.tolist(), info):
                if c == _SINGLE:
                    single_ids[np.searchsorted(single_pos, p)] = i
        word = (cls >= _WORD).view(np.int8)  # word characters, and removed ones (they join their neighbours)
        edges = np.diff(word, prepend=np.int8(0), append=np.int8(0))
        run_starts = np.flatnonzero(edges == 1).tolist()
        if not run_starts:
            return Encoding(single_ids.astype(np.int32), single_pos.astype(np.int32), (single_pos + 1).astype(np.int32))
        run_ends = np.flatnonzero(edges == -1).tolist()
        w_ids: list[int] = []
        w_starts: list[int] = []
        w_ends: list[int] = []
        for a, b in zip(run_starts, run_ends):
            ids, starts, ends = self._wordpiece(text[a:b])
            w_ids.extend(ids)
            w_starts.extend([a + x for x in starts])
            w_ends.extend([a + x for x in ends])
        all_starts = np.concatenate([single_pos, np.asarray(w_starts, dtype=np.int64)])
        order = np.argsort(all_starts, kind="stable")
        return Encoding(
            np.concatenate([single_ids, np.asarray(w_ids, dtype=np.int32)])[order].astype(np.int32),
            all_starts[order].astype(np.int32),
            np.concatenate([single_pos + 1, np.asarray(w_ends, dtype=np.int64)])[order].astype(np.int32),
        )

    def decode(self, ids: Iterable[int]) -> str:
        """Tokens joined BERT-style: ``##`` pieces glued to the previous token, CJK without spaces."""
        out: list[str] = []
        for i in ids:
            tok = self.id_to_token(i)
            if tok.startswith("##"):
                out.append(tok[2:])
            else:
                if out and not (_is_cjk(tok) or _is_cjk(out[-1][-1:])):
                    out.append(" ")
                out.append(tok)
        return "".join(out)


def _is_cjk(s: str) -> bool:
    if len(s) != 1:
        return False
    cp = ord(s)
    return (
        0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F
    )
