"""Tokenizers, whole-word boundaries and packing for ``knowmix tokenize`` — pure functions, no Beam.

Two tokenizer kinds, both giving token ids plus each token's *character* span in the source text:

- ``spm:PATH.model``: a SentencePiece model (``knowmix spm-train`` makes one with the special tokens at fixed ids).
- ``wordpiece:PATH/vocab.txt``: an existing BERT vocabulary, tokenised the way BERT does (clean text, CJK
  characters split one per token, optional lower-casing and accent stripping, punctuation split, greedy
  longest-match WordPiece). Backed by HF ``tokenizers`` (Rust); the tests compare it with transformers'
  BertTokenizer. Entity markers ``[E1] [/E1] [E2] [/E2]`` take the vocabulary's first four ``[unused*]`` slots.

Whole-word boundaries come from jieba's segmentation (computed by ``rjieba``, a Rust port with jieba's
dictionary and algorithm; a test keeps it equal to jieba on fixture text). A token *starts a word* when its
first character starts a jieba word and no earlier token starts at the same character (byte-fallback pieces
of one character share a start). Spans that must be one word (knowledge entity mentions) are cut out before
segmenting, so a mention is always exactly one word and its tokens never straddle its edges.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from knowmix.errors import UserError
from knowmix.fileio import sha256_of  # the one sha256 helper of the shard contract

SPECIAL_NAMES = ("pad", "unk", "cls", "sep", "mask", "e1", "e1_end", "e2", "e2_end")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[E1]", "[/E1]", "[E2]", "[/E2]")
KINDS = ("spm", "wordpiece")


# ---------------------------------------------------------------------------------------------- encodings


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
        return {
            "kind": self.kind,
            "file": os.path.basename(self.path),
            "sha256": self.sha256,
            "vocab_size": int(self.vocab_size),
            "special_ids": {k: int(self.special_ids[k]) for k in SPECIAL_NAMES},
            "lowercase": bool(self.lowercase),
        }

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


# ---------------------------------------------------------------------------------------------- wordpiece


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
        for tok in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
            if tok not in self.vocab:
                raise UserError(f"{path}: the vocabulary has no {tok} token")
        unused = sorted((int(m.group(1)), i) for t, i in self.vocab.items() if (m := _UNUSED.match(t)))
        if len(unused) < 4:
            raise UserError(f"{path}: needs four [unused*] tokens for the entity markers, found {len(unused)}")
        markers = [i for _, i in unused[:4]]
        self.unk_id = self.vocab["[UNK]"]
        self.special_ids = {
            "pad": self.vocab["[PAD]"], "unk": self.unk_id, "cls": self.vocab["[CLS]"],
            "sep": self.vocab["[SEP]"], "mask": self.vocab["[MASK]"],
            "e1": markers[0], "e1_end": markers[1], "e2": markers[2], "e2_end": markers[3],
        }
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


# ---------------------------------------------------------------------------------------------- sentencepiece


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


def load_tokenizer(spec: str, lowercase: bool | None = None) -> BaseTokenizer:
    """``spm:PATH`` or ``wordpiece:PATH`` -> a tokenizer; a bad spec or file raises UserError."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in KINDS or not path:
        raise UserError(f"--tokenizer {spec!r}: expected spm:PATH.model or wordpiece:PATH/vocab.txt")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such tokenizer file")
    return SpmTokenizer(path, lowercase) if kind == "spm" else WordPieceTokenizer(path, lowercase)


class TokenizerSpec:
    """A picklable tokenizer: the file's bytes travel with it, so workers on any runner (Dataflow
    included) load the same tokenizer without reaching the launcher's disk."""

    def __init__(self, tok: BaseTokenizer):
        self.kind, self.name, self.lowercase = tok.kind, os.path.basename(tok.path), tok.lowercase
        with open(tok.path, "rb") as fh:
            self.data = fh.read()

    def load(self) -> BaseTokenizer:
        import tempfile

        directory = tempfile.mkdtemp(prefix="knowmix-tok-")
        path = os.path.join(directory, self.name)
        with open(path, "wb") as fh:
            fh.write(self.data)
        cls = SpmTokenizer if self.kind == "spm" else WordPieceTokenizer
        return cls(path, self.lowercase)


# ---------------------------------------------------------------------------------------------- word boundaries


_JOINERS = re.compile(r"[+#&._%\-]")
_ASCII_RUN = re.compile(r"[a-zA-Z0-9+#&._%\-]+")
_SKIP = re.compile(r"([a-zA-Z0-9]+(?:\.\d+)?%?)")  # jieba.finalseg.re_skip


class WordSegmenter:
    """jieba's segmentation (default dictionary, HMM on) as word-start flags over characters.

    ``engine`` is ``rjieba`` (fast, same output as jieba) or ``jieba``. ``user_words`` are added to the
    dictionary (e.g. the knowledge graph's entity names) so they come out as one word.
    """

    def __init__(self, engine: str = "rjieba", user_words: Iterable[str] = ()):
        self.engine = engine
        words = [w for w in user_words if w]
        if engine == "rjieba":
            import rjieba

            self._j = rjieba.Jieba() if words else rjieba._DEFAULT_JIEBA
            for w in words:
                self._j.add_word(w, None, None)
            self._starts = self._rjieba_starts
        elif engine == "jieba":
            import jieba

            self._j = jieba.Tokenizer() if words else jieba.dt
            for w in words:
                self._j.add_word(w)
            self._starts = lambda text: np.asarray([s for _, s, _ in self._j.tokenize(text)], dtype=np.int64)
        else:
            raise UserError(f"unknown word segmenter {engine!r}; expected rjieba or jieba")

    def _rjieba_starts(self, text: str) -> np.ndarray:
        """Start offsets of rjieba's words, with jieba's one difference undone: jieba's HMM step splits a
        non-dictionary run of Latin letters, digits and ``+#&._%-`` at the symbols ("Jean-Pierre" -> "Jean"
        "-" "Pierre"); rjieba keeps it whole. Only the words holding such a symbol are looked at."""
        words = self._j.cut(text)
        lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        starts = np.cumsum(lens) - lens
        if not _JOINERS.search(text):
            return starts
        hits = [m.start() for m in _JOINERS.finditer(text)]
        extra = []
        for k in np.unique(np.searchsorted(starts, hits, side="right") - 1).tolist():
            w = words[k]
            if len(w) > 1 and _ASCII_RUN.fullmatch(w) and not self._j.has_word(w):
                a = int(starts[k])
                for piece in _SKIP.split(w):
                    if piece:
                        extra.append(a)
                        a += len(piece)
        return np.concatenate([starts, np.asarray(extra, dtype=np.int64)]) if extra else starts

    def cut(self, text: str) -> list[str]:
        starts = np.flatnonzero(self.word_starts(text)).tolist()
        return [text[a:b] for a, b in zip(starts, starts[1:])]

    def word_starts(self, text: str, one_word_spans: Iterable[tuple[int, int]] = ()) -> np.ndarray:
        """bool array of length ``len(text) + 1``: True where a jieba word starts (and at the end).

        Each span in ``one_word_spans`` is one word: it is cut out before segmenting the text around it.
        """
        flags = np.zeros(len(text) + 1, dtype=bool)
        flags[len(text)] = True
        spans = sorted((int(a), int(b)) for a, b in one_word_spans if b > a)
        pos = 0
        pieces: list[tuple[int, int, bool]] = []
        for a, b in spans:
            if a >= pos:
                pieces.append((pos, a, False))
                pieces.append((a, b, True))
                pos = b
        pieces.append((pos, len(text), False))
        for a, b, whole in pieces:
            if b <= a:
                continue
            if whole:
                flags[a] = True
                continue
            flags[self._starts(text[a:b] if (a, b) != (0, len(text)) else text) + a] = True
        return flags


def word_start_flags(enc: Encoding, char_starts: np.ndarray | None, continuation: np.ndarray | None = None) -> np.ndarray:
    """Per token: starts a word. Without ``char_starts`` every token is its own word; a WordPiece ``##``
    piece (``continuation[id]``) never starts one, nor does a token starting where the previous one started."""
    if len(enc) == 0:
        return np.zeros(0, dtype=bool)
    first = np.empty(len(enc), dtype=bool)
    first[0] = True
    np.not_equal(enc.starts[1:], enc.starts[:-1], out=first[1:])
    if char_starts is not None:
        first &= char_starts[enc.starts]
    if continuation is not None:
        first &= ~continuation[enc.ids]
    return first


@dataclass
class Words:
    """A text's tokens with their word-start flags and character spans."""

    enc: Encoding
    word_start: np.ndarray = field(default=None)  # bool


def encode_with_words(
    tok: BaseTokenizer,
    seg: WordSegmenter | None,
    text: str,
    one_word_spans: Sequence[tuple[int, int]] = (),
) -> Words:
    """Tokenise ``text``; with ``one_word_spans``, tokens never cross a span's edges and each span is one word."""
    if one_word_spans:
        enc = tok.encode_pieces(text, [c for span in one_word_spans for c in span])
    else:
        enc = tok.encode(text)
    char_starts = seg.word_starts(text, one_word_spans) if seg is not None else None
    return Words(enc, word_start_flags(enc, char_starts, tok.continuation))


def token_span(enc: Encoding, start: int, end: int) -> tuple[int, int]:
    """Token offsets ``[a, b)`` of the tokens whose character start lies in ``[start, end)``."""
    a = int(np.searchsorted(enc.starts, start, side="left"))
    b = int(np.searchsorted(enc.starts, end, side="left"))
    return a, b


# ---------------------------------------------------------------------------------------------- packing


@dataclass
class DocTokens:
    doc_id: str
    source_kind: str
    ids: np.ndarray  # int32
    word_start: np.ndarray  # bool


def _cut_point(ws: np.ndarray, pos: int, room: int) -> int | None:
    """The last word start in ``(pos, pos + room]`` (a cut there splits no word), or None."""
    window = ws[pos + 1 : pos + room + 1]
    hits = np.flatnonzero(window)
    return None if len(hits) == 0 else pos + 1 + int(hits[-1])


def pack_documents(docs: Iterable[DocTokens], max_seq_len: int, cls_id: int, sep_id: int) -> list[dict]:
    """Pack documents (in the given order) into rows ``[CLS] doc [SEP] doc [SEP] …`` of at most ``max_seq_len``.

    A document that does not fit the room left is cut at the last word start that fits; if the row already
    holds other documents and no word start fits, the row is closed and the document starts a fresh row
    (a word is split only when one word is longer than a whole row). Row id: ``<doc_id>:<chunk>`` of the
    first piece in the row, where chunk counts the pieces a document was cut into.
    """
    if max_seq_len < 3:
        raise UserError(f"--max-seq-len {max_seq_len}: must be at least 3")
    rows: list[dict] = []
    ids_parts: list[np.ndarray] = []
    ws_parts: list[np.ndarray] = []
    kinds: list[str] = []
    state = {"len": 1, "id": None}
    cls = np.asarray([cls_id], dtype=np.int32)
    sep = np.asarray([sep_id], dtype=np.int32)
    true1 = np.ones(1, dtype=bool)

    def flush():
        if state["id"] is not None:
            rows.append({
                "id": state["id"],
                "input_ids": np.concatenate([cls, *ids_parts]).tolist(),
                "word_start": np.concatenate([true1, *ws_parts]).tolist(),
                "source_kinds": list(kinds),
            })
        ids_parts.clear()
        ws_parts.clear()
        kinds.clear()
        state["len"], state["id"] = 1, None

    for doc in docs:
        ids, ws = doc.ids, doc.word_start
        n, pos, chunk = len(ids), 0, 0
        while pos < n:
            room = max_seq_len - state["len"] - 1  # keep one place for the [SEP]
            if room <= 0:
                flush()
                continue
            take = n - pos
            if take > room:
                cut = _cut_point(ws, pos, room)
                if cut is None:
                    if state["id"] is not None:
                        flush()  # start the document in a fresh row rather than split a word
                        continue
                    cut = pos + room  # one word longer than a whole row
                take = cut - pos
            if state["id"] is None:
                state["id"] = f"{doc.doc_id}:{chunk}"
            ids_parts.extend((ids[pos : pos + take], sep))
            ws_parts.extend((ws[pos : pos + take], true1))
            kinds.append(doc.source_kind)  # one entry per document piece in the row
            state["len"] += take + 1
            pos += take
            chunk += 1
            if pos < n:
                flush()
    flush()
    return rows


# ---------------------------------------------------------------------------------------------- knowledge


class Dropped(Exception):
    """A well-formed knowledge row that cannot be turned into a sequence; ``reason`` goes to counts.dropped."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class BadRow(Exception):
    """A malformed knowledge row (e.g. a span that does not match its name): a dead letter."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


from knowmix.schemas import KNOWLEDGE_TASKS  # noqa: E402  (the one definition)
_NULL_COLUMNS = (
    "e1_pos", "e2_pos", "head_span", "tail_span", "relations", "mention_spans", "mention_labels",
    "triple_head_span", "triple_relation_span", "triple_tail_span",
)


def _entity_span(text: str, ent: dict | None, what: str) -> tuple[int, int]:
    if not ent:
        raise BadRow(f"missing_{what}")
    try:
        a, b = int(ent["start"]), int(ent["end"])
    except (KeyError, TypeError, ValueError):
        raise BadRow(f"bad_{what}_span") from None
    if not (0 <= a < b <= len(text)) or text[a:b] != ent.get("name"):
        raise BadRow(f"bad_{what}_span")
    return a, b


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _window(n: int, lo: int, hi: int, budget: int, ws: np.ndarray) -> tuple[int, int]:
    """A token window ``[start, end)`` of at most ``budget`` tokens containing ``[lo, hi)``, centred on it,
    with its edges moved inwards to word starts where that keeps ``[lo, hi)`` inside."""
    if n <= budget:
        return 0, n
    if hi - lo > budget:
        raise Dropped("too_long")
    start = max(0, min(lo - (budget - (hi - lo)) // 2, n - budget))
    end = start + budget
    while start < lo and not ws[start]:
        start += 1
    while end > hi and end < n and not ws[end]:
        end -= 1
    return start, end


def _span(a: int, b: int) -> dict:
    return {"start": int(a), "end": int(b)}


def _nonempty(span: tuple[int, int]) -> tuple[int, int]:
    if span[1] <= span[0]:
        raise Dropped("empty_span")  # the mention is only characters the tokenizer drops
    return span


def tokenize_knowledge(row: dict, tok: BaseTokenizer, seg: WordSegmenter | None, max_seq_len: int) -> dict:
    """One knowledge row -> one ``knowledge_tokens`` row (``relations`` still as names; see the job).

    Raises BadRow (dead letter) or Dropped (counted under its reason).
    """
    task, text = row.get("task"), row.get("text")
    if task not in KNOWLEDGE_TASKS:
        raise BadRow("unknown_task")
    if not isinstance(text, str) or not text:
        raise BadRow("missing_text")
    sp = tok.special_ids
    out = {"id": row["id"], "task": task, **{c: None for c in _NULL_COLUMNS}}

    if task == "relation":
        h = _entity_span(text, row.get("head"), "head")
        t = _entity_span(text, row.get("tail"), "tail")
        if _overlap(h, t):
            raise Dropped("overlapping_spans")
        w = encode_with_words(tok, seg, text, [h, t])
        hs, ts = _nonempty(token_span(w.enc, *h)), _nonempty(token_span(w.enc, *t))
        n = len(w.enc)
        a, b = _window(n, min(hs[0], ts[0]), max(hs[1], ts[1]), max_seq_len - 6, w.word_start)
        inserts = sorted([(hs[0], 1, sp["e1"]), (hs[1], 0, sp["e1_end"]), (ts[0], 1, sp["e2"]), (ts[1], 0, sp["e2_end"])])
        ids: list[int] = [sp["cls"]]
        wss: list[bool] = [True]
        pos_of: dict[int, int] = {}
        cur = a
        for p, _, marker in inserts:
            ids.extend(w.enc.ids[cur:p].tolist())
            wss.extend(w.word_start[cur:p].tolist())
            pos_of[marker] = len(ids)
            ids.append(marker)
            wss.append(True)
            cur = p
        ids.extend(w.enc.ids[cur:b].tolist())
        wss.extend(w.word_start[cur:b].tolist())
        ids.append(sp["sep"])
        wss.append(True)
        rels = row.get("relations") or ["NA"]
        out.update(
            e1_pos=pos_of[sp["e1"]], e2_pos=pos_of[sp["e2"]],
            head_span=_span(pos_of[sp["e1"]] + 1, pos_of[sp["e1_end"]]),
            tail_span=_span(pos_of[sp["e2"]] + 1, pos_of[sp["e2_end"]]),
            relations=[str(r) for r in rels],
        )
        types = [0] * len(ids)

    elif task == "substitution":
        mentions = row.get("mentions") or []
        if not mentions:
            raise BadRow("missing_mentions")
        spans = []
        for m in mentions:
            try:
                ma, mb = int(m["start"]), int(m["end"])
            except (KeyError, TypeError, ValueError):
                raise BadRow("bad_mention_span") from None
            if not (0 <= ma < mb <= len(text)) or text[ma:mb] not in (m.get("replacement"), m.get("original")):
                raise BadRow("bad_mention_span")
            spans.append((ma, mb))
        order = sorted(range(len(spans)), key=lambda i: spans[i])
        for i, j in zip(order, order[1:]):
            if _overlap(spans[i], spans[j]):
                raise Dropped("overlapping_spans")
        w = encode_with_words(tok, seg, text, spans)
        tspans = [_nonempty(token_span(w.enc, *s)) for s in spans]
        a, b = _window(len(w.enc), min(s[0] for s in tspans), max(s[1] for s in tspans), max_seq_len - 2, w.word_start)
        ids = [sp["cls"], *w.enc.ids[a:b].tolist(), sp["sep"]]
        wss = [True, *w.word_start[a:b].tolist(), True]
        out.update(
            mention_spans=[_span(s[0] - a + 1, s[1] - a + 1) for s in tspans],
            mention_labels=[1 if m.get("replacement") is not None else 0 for m in mentions],
        )
        types = [0] * len(ids)

    else:  # triple_mask
        triple = row.get("triple") or {}
        parts = [triple.get("head"), triple.get("relation"), triple.get("tail")]
        if not all(isinstance(x, str) and x for x in parts):
            raise BadRow("missing_triple")
        h = _entity_span(text, row.get("head"), "head")
        t = _entity_span(text, row.get("tail"), "tail")
        if _overlap(h, t):
            raise Dropped("overlapping_spans")
        ids, wss, seg_spans = [sp["cls"]], [True], []
        for k, part in enumerate(parts):
            pw = encode_with_words(tok, seg, part, [(0, len(part))] if k != 1 else ())
            if len(pw.enc) == 0:
                raise Dropped("empty_span")
            seg_spans.append(_span(len(ids), len(ids) + len(pw.enc)))
            ids.extend(pw.enc.ids.tolist())
            wss.extend(pw.word_start.tolist())
            ids.append(sp["sep"])
            wss.append(True)
        len_a = len(ids)
        w = encode_with_words(tok, seg, text, [h, t])
        hs, ts = _nonempty(token_span(w.enc, *h)), _nonempty(token_span(w.enc, *t))
        budget = max_seq_len - len_a - 1
        if budget <= 0:
            raise Dropped("too_long")
        a, b = _window(len(w.enc), min(hs[0], ts[0]), max(hs[1], ts[1]), budget, w.word_start)
        ids.extend(w.enc.ids[a:b].tolist())
        wss.extend(w.word_start[a:b].tolist())
        ids.append(sp["sep"])
        wss.append(True)
        off = len_a - a
        out.update(
            triple_head_span=seg_spans[0], triple_relation_span=seg_spans[1], triple_tail_span=seg_spans[2],
            head_span=_span(hs[0] + off, hs[1] + off), tail_span=_span(ts[0] + off, ts[1] + off),
        )
        types = [0] * len_a + [1] * (len(ids) - len_a)

    out.update(input_ids=[int(i) for i in ids], token_type_ids=types, word_start=[bool(x) for x in wss])
    return out
