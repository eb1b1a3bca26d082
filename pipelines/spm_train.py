"""``knowmix spm-train``: a SentencePiece model from a deterministic sample of docs shards.

Sample: a document is taken when ``blake2b(id)`` falls below a rate chosen so that about ``--sample-chars``
characters are kept (the rate comes from the ``n_chars`` column, read first); the same docs give the same
sample, whatever the shard layout. Documents are split into lines/sentences of bounded length (SentencePiece
skips over-long sentences) and written, in id order, to a temporary file under the output's directory.

Model: ``character_coverage`` 0.9995, byte fallback, digits split, no dummy prefix (Chinese has no spaces, and
pieces of a sentence can be encoded apart), no normalisation of its own (identity: the docs are already
normalised by ``knowmix clean``, which keeps Chinese punctuation full-width on purpose, and text kept as it is
lets the tokenizer compute character offsets from the ids alone), and the special tokens at fixed ids:
``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4 [E1]=5 [/E1]=6 [E2]=7 [/E2]=8`` (control symbols: literal
"[CLS]" in text is not turned into the token). Writes ``PREFIX.model`` and ``PREFIX.vocab``.

The file's shape (the Beam jobs', though this one runs in-process): ``parse_args`` -> ``resolve`` (an
``SpmTrainJob``) -> ``run(job)`` (sample, train, publish) -> ``spm_train_main``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass

import pyarrow.compute as pc

from knowmix import fileio
from knowmix.errors import UserError
from knowmix.manifest import ContractError, open_shard_dir
from knowmix.pipelines import progress
from knowmix.tokenizer_entry import SPECIAL_TOKENS

MAX_SENTENCE_CHARS = 1000  # SentencePiece's max_sentence_length is in bytes (4192 by default); CJK is 3 bytes/char
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])")


def doc_hash(doc_id: str) -> float:
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big") / 2.0**64


def sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS):
    """Lines of a document, long lines cut after sentence ends, and pieces still too long cut hard."""
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if len(line) <= max_chars:
            yield line
            continue
        buf = ""
        for part in _SENTENCE_END.split(line):
            if len(buf) + len(part) > max_chars and buf:
                yield buf
                buf = ""
            while len(part) > max_chars:
                yield part[:max_chars]
                part = part[max_chars:]
            buf += part
        if buf:
            yield buf


def write_sample(docs_dir: str, sample_chars: int, out_path: str, live: dict | None = None) -> dict:
    """Write the sample's sentences to ``out_path``; return {docs, chars, lines, total_chars, rate}.

    ``live`` (optional) is updated as shards are read: ``shards``, ``docs`` (read), ``picked``."""
    live = {} if live is None else live
    try:
        src = open_shard_dir(docs_dir, "docs")
    except ContractError as exc:
        raise UserError(str(exc)) from None
    total = 0
    for table in src.iter_tables():
        if "n_chars" in table.column_names:
            total += int(pc.sum(table.column("n_chars")).as_py() or 0)
        else:
            total += int(pc.sum(pc.utf8_length(table.column("text"))).as_py() or 0)
    rate = 1.0 if total <= sample_chars else sample_chars / total
    picked: list[tuple[str, str]] = []
    live.update(phase="sampling", shards=0, docs=0, picked=0)
    for table in src.iter_tables():
        ids = table.column("id").to_pylist()
        keep = [i for i, d in enumerate(ids) if d is not None and doc_hash(d) < rate]
        live["shards"] += 1
        live["docs"] += len(ids)
        live["picked"] += len(keep)
        if keep:
            texts = table.column("text").take(keep).to_pylist()
            picked.extend((ids[i], t) for i, t in zip(keep, texts) if t)
    picked.sort()
    stats = {"docs": 0, "chars": 0, "lines": 0, "total_chars": total, "rate": rate}
    with open(out_path, "w", encoding="utf-8") as fh:
        for _, text in picked:
            stats["docs"] += 1
            for s in sentences(text):
                fh.write(s + "\n")
                stats["lines"] += 1
                stats["chars"] += len(s)
    if stats["lines"] == 0:
        raise UserError(f"{docs_dir}: no text to train on")
    return stats


def train(
    input_path: str,
    prefix: str,
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 0.9995,
    num_threads: int = 1,
    shown_as: str | None = None,
) -> None:
    """Train into ``prefix``.model/.vocab; ``shown_as``: the prefix error messages name (default ``prefix``)."""
    import sentencepiece as spm

    try:
        spm.SentencePieceTrainer.train(
            input=input_path,
            model_prefix=prefix,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            byte_fallback=True,
            split_digits=True,
            add_dummy_prefix=False,
            normalization_rule_name="identity",  # `knowmix clean` has normalised (NFKC, keeping Chinese punctuation)
            remove_extra_whitespaces=False,
            pad_id=0, pad_piece=SPECIAL_TOKENS[0],
            unk_id=1, unk_piece=SPECIAL_TOKENS[1],
            bos_id=-1, eos_id=-1,
            control_symbols=list(SPECIAL_TOKENS[2:]),
            input_sentence_size=0,  # our sample is the sample: no reservoir sampling inside SentencePiece
            shuffle_input_sentence=False,
            max_sentence_length=4 * MAX_SENTENCE_CHARS + 8,
            num_threads=num_threads,
            minloglevel=2,
        )
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
        raise UserError(f"{shown_as or prefix}.model: SentencePiece training failed: {msg}") from None


def parse_args(argv: list[str]) -> argparse.Namespace:
    from knowmix.args import Parser

    ap = Parser("knowmix spm-train", __doc__, progress=True)
    ap.add_argument("--docs", required=True, help="a docs shard directory (knowmix clean)")
    ap.add_argument("--output", required=True, help="PREFIX: writes PREFIX.model and PREFIX.vocab")
    ap.add_argument("--vocab-size", type=int, default=32000,
                    help="pieces in the model, specials and 256 byte pieces included")
    ap.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram", help="SentencePiece algorithm")
    ap.add_argument("--character-coverage", type=float, default=0.9995,
                    help="share of characters the pieces cover; the rarest others fall back to bytes")
    ap.add_argument("--sample-chars", type=int, default=200_000_000, help="about this many characters of docs")
    ap.add_argument("--num-threads", type=int, default=os.cpu_count() or 1, help="SentencePiece training threads")
    return ap.parse_args(argv)  # no Beam here: every option is ours


def prepare_prefix(prefix: str) -> str:
    """The directory of ``--output PREFIX``, created; a PREFIX that is a directory or lies under a file is a
    one-line UserError. A remote PREFIX (gs://, s3://, any Beam filesystem) has no directory to create: the
    sample and the model are made in a local temporary directory, then the files are copied there."""
    if fileio.is_remote(prefix):
        if prefix.endswith("/"):
            raise UserError(f"--output {prefix}: is a directory; give a PREFIX (writes PREFIX.model and PREFIX.vocab)")
        return tempfile.mkdtemp(prefix="knowmix-spm-")
    if prefix.endswith(("/", os.sep)) or os.path.isdir(prefix):
        raise UserError(f"--output {prefix}: is a directory; give a PREFIX (writes PREFIX.model and PREFIX.vocab)")
    out_dir = os.path.dirname(os.path.abspath(prefix))
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"--output {prefix}: {out_dir} is not a directory")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"--output {prefix}: cannot create {out_dir} (a part of the path is a file)") from None
    except OSError as exc:
        raise UserError(f"--output {prefix}: cannot create {out_dir} ({exc.strerror})") from None
    for existing in (f"{prefix}.model", f"{prefix}.vocab"):
        if os.path.isdir(existing):
            raise UserError(f"{existing}: is a directory, where the tokenizer file goes")
    return out_dir


@dataclass(frozen=True)
class SpmTrainJob:
    """``knowmix spm-train`` resolved once (``resolve``): what ``run`` reads."""

    docs_dir: str
    prefix: str  # writes PREFIX.model and PREFIX.vocab
    vocab_size: int = 32000
    model_type: str = "unigram"
    character_coverage: float = 0.9995
    sample_chars: int = 200_000_000
    num_threads: int = 1


def resolve(args: argparse.Namespace) -> SpmTrainJob:
    """The job for parsed flags; a value SentencePiece would refuse is a one-line UserError now."""
    if args.vocab_size < len(SPECIAL_TOKENS) + 256 + 1:
        raise UserError(f"--vocab-size {args.vocab_size}: must exceed {len(SPECIAL_TOKENS) + 256} (specials + 256 byte pieces)")
    if not 0 < args.character_coverage <= 1:
        raise UserError(f"--character-coverage {args.character_coverage}: must be in (0, 1]")
    return SpmTrainJob(args.docs, args.output, args.vocab_size, args.model_type, args.character_coverage,
                       args.sample_chars, args.num_threads)


def run(job: SpmTrainJob, quiet: bool = False) -> dict:
    """Sample the docs, train, publish PREFIX.vocab then PREFIX.model; return the sample's stats (``write_sample``).

    Trained under a temporary prefix and copied into place when complete (``knowmix.fileio.copy_file``, atomic;
    .model last): a failed or killed run leaves the previous PREFIX.model/.vocab as they were, never half a model.
    """
    out_dir = prepare_prefix(job.prefix)
    fd, sample_path = tempfile.mkstemp(prefix=".spm-sample-", suffix=".txt", dir=out_dir)
    os.close(fd)
    temp_prefix = sample_path[: -len(".txt")]
    live: dict = {"phase": "reading"}
    n_shards = "?"

    def line(elapsed: float) -> str:
        clock = progress.clock(elapsed)
        if live["phase"] == "training":
            return f"knowmix spm-train: training SentencePiece ({job.model_type}, {job.vocab_size} pieces) {clock}"
        if live["phase"] == "sampling":
            return (f"knowmix spm-train: sampling shard {live['shards']}/{n_shards}: read {live['docs']:,} docs,"
                    f" picked {live['picked']:,} {clock}")
        return f"knowmix spm-train: counting characters… {clock}"

    try:
        with progress.LiveLine("knowmix spm-train", quiet, text=line):
            try:
                n_shards = len(open_shard_dir(job.docs_dir, "docs", verify=False).manifest["shards"])
            except ContractError:
                pass  # write_sample reports it
            stats = write_sample(job.docs_dir, job.sample_chars, sample_path, live)
            live["phase"] = "training"
            train(sample_path, temp_prefix, job.vocab_size, job.model_type, job.character_coverage,
                  job.num_threads, shown_as=job.prefix)
        for ext in (".vocab", ".model"):  # .model last: it is what `tokenize --tokenizer spm:` reads
            fileio.copy_file(f"{temp_prefix}{ext}", f"{job.prefix}{ext}")
    finally:
        for path in (sample_path, f"{temp_prefix}.vocab", f"{temp_prefix}.model"):
            if os.path.exists(path):
                os.unlink(path)
        if fileio.is_remote(job.prefix):
            shutil.rmtree(out_dir, ignore_errors=True)
    return stats


def spm_train_main(argv: list[str]) -> int:
    args = parse_args(argv)
    job = resolve(args)
    stats = run(job, quiet=args.quiet)
    print(
        f"knowmix spm-train: {job.prefix}.model ({job.vocab_size} pieces, {job.model_type}) from"
        f" {stats['docs']} docs, {stats['lines']} lines, {stats['chars']} chars"
        f" ({stats['rate']:.3g} of {stats['total_chars']})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":  # the same as `knowmix spm-train ...`
    from knowmix.cli import main

    sys.exit(main(["spm-train", *sys.argv[1:]]))
