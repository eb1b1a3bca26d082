"""knowmix's tokenizers as Hugging Face ``tokenizers`` objects, for ``tokenizer.json`` in an export.

Built from the tokenizer *file* (``trainer/`` never imports ``pipelines/``), so the ids equal those of
``pipelines.wordpiece`` and ``pipelines.spm_tokenizer`` on the same text (a test checks every fixture text):

- SentencePiece (``spm``): the model file's protobuf is read directly (no ``sentencepiece_model_pb2``, whose
  generated code pins a protobuf version). Unigram -> ``models.Unigram`` with the pieces' scores; BPE ->
  ``models.BPE`` with merges ordered as SentencePiece applies them (by the merged piece's score); both with
  byte fallback. SentencePiece's own normalisation is mirrored (identity for ``knowmix spm-train`` models;
  the precompiled character map otherwise; extra-white-space removal and the dummy prefix when the model
  asks for them), plus knowmix's optional lower-casing. No pre-tokenisation beyond replacing " " with "▁":
  SentencePiece encodes a sentence whole.
- WordPiece: BERT's normaliser, pre-tokeniser and greedy WordPiece (100 characters at most per word), with
  the vocabulary's first four ``[unused*]`` tokens as the entity markers (knowmix's rule).

Both add ``[CLS] $A [SEP]`` (``[CLS] $A [SEP] $B [SEP]`` with type ids 0/1 for pairs) and declare the
special tokens and entity markers at their ids. Differences that remain: SentencePiece treats a literal
"[MASK]" in text as characters (control symbols), Hugging Face matches it as the token — which is what
``pipeline("fill-mask")`` needs; and with lower-casing on, knowmix leaves the few characters whose lower case
is longer (e.g. "İ") as they are, Hugging Face's ``Lowercase`` does not.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from knowmix.errors import UserError
from knowmix.tokenizer_entry import MARKER_NAMES, SPECIAL_NAMES

HF_KEYS = {"unk": "unk_token", "sep": "sep_token", "pad": "pad_token", "cls": "cls_token", "mask": "mask_token"}
SPACE = "\u2581"

# SentencePiece piece types (sentencepiece_model.proto)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
UNIGRAM, BPE = 1, 2


# ---------------------------------------------------------------------------------------------- spm model file


@dataclass
class SpmModel:
    """The parts of a SentencePiece ``ModelProto`` a tokenizer needs."""

    pieces: list[tuple[str, float, int]] = field(default_factory=list)  # (piece, score, type) in id order
    model_type: int = UNIGRAM
    byte_fallback: bool = False
    normalizer_name: str = ""
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) of one protobuf message; value is int, bytes or the 4/8 raw bytes."""
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield num, wire, value


def read_spm_model(path: str) -> SpmModel:
    """Parse a SentencePiece ``.model`` file (ModelProto: pieces = 1, trainer_spec = 2, normalizer_spec = 3)."""
    import struct

    try:
        with open(path, "rb") as fh:
            data = fh.read()
        model = SpmModel()
        for num, wire, value in _fields(data):
            if num == 1 and wire == 2:
                piece, score, kind = "", 0.0, NORMAL
                for n, w, v in _fields(value):
                    if n == 1 and w == 2:
                        piece = v.decode("utf-8")
                    elif n == 2 and w == 5:
                        score = struct.unpack("<f", v)[0]
                    elif n == 3 and w == 0:
                        kind = v
                model.pieces.append((piece, score, kind))
            elif num == 2 and wire == 2:
                for n, w, v in _fields(value):
                    if n == 3 and w == 0:
                        model.model_type = v
                    elif n == 35 and w == 0:
                        model.byte_fallback = bool(v)
            elif num == 3 and wire == 2:
                for n, w, v in _fields(value):
                    if n == 1 and w == 2:
                        model.normalizer_name = v.decode("utf-8")
                    elif n == 2 and w == 2:
                        model.precompiled_charsmap = bytes(v)
                    elif n == 3 and w == 0:
                        model.add_dummy_prefix = bool(v)
                    elif n == 4 and w == 0:
                        model.remove_extra_whitespaces = bool(v)
                    elif n == 5 and w == 0:
                        model.escape_whitespaces = bool(v)
    except (OSError, ValueError, IndexError, UnicodeDecodeError, struct.error) as exc:
        raise UserError(f"{path}: not a readable SentencePiece model ({exc})") from None
    if not model.pieces:
        raise UserError(f"{path}: not a SentencePiece model (no pieces)")
    if model.model_type not in (UNIGRAM, BPE):
        raise UserError(f"{path}: SentencePiece model type {model.model_type} (word/char) has no Hugging Face export;"
                        " train unigram or bpe")
    return model


def _bpe_merges(pieces: list[tuple[str, float, int]], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """SentencePiece BPE merges the adjacent pair whose joined piece scores best (lowest id); Hugging Face
    BPE merges the pair of lowest rank: rank every split of every normal piece by that piece's id."""
    merges = []
    for pid, (piece, _, kind) in enumerate(pieces):
        if kind != NORMAL or len(piece) < 2:
            continue
        for i in range(1, len(piece)):
            left, right = piece[:i], piece[i:]
            if left in vocab and right in vocab:
                merges.append((pid, vocab[left], vocab[right], left, right))
    merges.sort()
    return [(m[3], m[4]) for m in merges]


def spm_tokenizer(path: str, special_ids: dict[str, int], lowercase: bool = False):
    """A ``tokenizers.Tokenizer`` giving the SentencePiece model's ids (knowmix's ``SpmTokenizer``)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    m = read_spm_model(path)
    unk_ids = [i for i, (_, _, k) in enumerate(m.pieces) if k == UNKNOWN]
    unk_id = unk_ids[0] if unk_ids else special_ids.get("unk", 1)
    if m.model_type == UNIGRAM:
        model = models.Unigram([(p, s) for p, s, _ in m.pieces], unk_id, m.byte_fallback)
    else:
        vocab = {}
        for i, (p, _, _) in enumerate(m.pieces):
            vocab.setdefault(p, i)
        model = models.BPE(vocab, _bpe_merges(m.pieces, vocab), unk_token=m.pieces[unk_id][0], fuse_unk=True,
                           byte_fallback=m.byte_fallback)
    tok = Tokenizer(model)

    norm = []
    if lowercase:
        norm.append(normalizers.Lowercase())
    if m.precompiled_charsmap and m.normalizer_name != "identity":
        norm.append(normalizers.Precompiled(m.precompiled_charsmap))
    if m.remove_extra_whitespaces:
        norm += [normalizers.Strip(left=True, right=True), normalizers.Replace(Regex(" {2,}"), " ")]
    if norm:
        tok.normalizer = normalizers.Sequence(norm)
    if m.escape_whitespaces:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement=SPACE, prepend_scheme="always" if m.add_dummy_prefix else "never", split=False
        )
    dec = [decoders.Replace(SPACE, " ")] if m.escape_whitespaces else []
    dec += [decoders.ByteFallback(), decoders.Fuse()]
    if m.add_dummy_prefix:
        dec.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(dec)
    names = {k: m.pieces[i][0] for k, i in special_ids.items() if 0 <= i < len(m.pieces)}
    return _finish(tok, names, special_ids)


# ---------------------------------------------------------------------------------------------- wordpiece


def wordpiece_tokenizer(path: str, special_ids: dict[str, int], lowercase: bool = True):
    """A ``tokenizers.Tokenizer`` giving knowmix's ``WordPieceTokenizer`` ids (BERT's tokenisation)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    with open(path, encoding="utf-8") as fh:
        tokens = [line.rstrip("\n").rstrip("\r") for line in fh]
    while tokens and tokens[-1] == "":
        tokens.pop()
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    names = {k: tokens[i] for k, i in special_ids.items() if 0 <= i < len(tokens)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token=names.get("unk", "[UNK]"), max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=bool(lowercase))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return _finish(tok, names, special_ids)


def _finish(tok, names: dict[str, str], special_ids: dict[str, int]):
    from tokenizers import AddedToken, processors

    specials = [AddedToken(names[k], special=True, normalized=False) for k in SPECIAL_NAMES if k in names]
    tok.add_special_tokens(specials)
    for k in SPECIAL_NAMES:  # the declared tokens must keep knowmix's ids (not be appended as new ones)
        if k in names and tok.token_to_id(names[k]) != special_ids[k]:
            got = tok.token_to_id(names[k])
            raise UserError(f"special token {names[k]!r}: id {got} in the tokenizer, knowmix uses {special_ids[k]}")
    cls, sep = names.get("cls", "[CLS]"), names.get("sep", "[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, special_ids["cls"]), (sep, special_ids["sep"])],
    )
    return tok


# ---------------------------------------------------------------------------------------------- files


def build(tok_info: dict, tok_path: str):
    """The ``tokenizers.Tokenizer`` of a manifest ``tokenizer`` entry and its file."""
    special = {k: int(v) for k, v in tok_info.get("special_ids", {}).items()}
    missing = [k for k in SPECIAL_NAMES if k not in special]
    if missing:
        raise UserError(f"{tok_path}: the tokenizer entry has no id for {', '.join(missing)}")
    if tok_info["kind"] == "spm":
        return spm_tokenizer(tok_path, special, bool(tok_info.get("lowercase")))
    if tok_info["kind"] == "wordpiece":
        return wordpiece_tokenizer(tok_path, special, bool(tok_info.get("lowercase")))
    raise UserError(f"{tok_path}: unknown tokenizer kind {tok_info['kind']!r}")


def write_files(out_dir: str, tok_info: dict, tok_path: str, max_len: int) -> list[str]:
    """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``; return their names.

    ``tokenizer_class`` is ``BertTokenizer`` for WordPiece (``vocab.txt`` is written beside by the caller) and
    ``PreTrainedTokenizerFast`` for SentencePiece: both load through ``AutoTokenizer`` from ``tokenizer.json``.
    """
    tok = build(tok_info, tok_path)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    special = tok_info["special_ids"]
    names = {k: tok.id_to_token(int(special[k])) for k in SPECIAL_NAMES}
    markers = [names[k] for k in MARKER_NAMES]
    smap = {HF_KEYS[k]: names[k] for k in HF_KEYS}
    smap["additional_special_tokens"] = markers
    config = {
        "tokenizer_class": "BertTokenizer" if tok_info["kind"] == "wordpiece" else "PreTrainedTokenizerFast",
        "model_max_length": int(max_len),
        "clean_up_tokenization_spaces": False,
        **smap,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
    }
    if tok_info["kind"] == "wordpiece":
        config.update(do_lower_case=bool(tok_info.get("lowercase")), tokenize_chinese_chars=True, strip_accents=None)
    _dump(os.path.join(out_dir, "tokenizer_config.json"), config)
    _dump(os.path.join(out_dir, "special_tokens_map.json"), smap)
    return ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def _dump(path: str, obj: dict) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2)
        fh.write("\n")

