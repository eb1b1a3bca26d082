"""Tokenize throughput, MB/s of UTF-8 input per core, with and without jieba whole-word boundaries, beside
HF ``tokenizers``' BertWordPieceTokenizer on the same text (the baseline of the ratio column).

    .venv/bin/python bench/tokenize.py [--mb 8] [--vocab PATH/vocab.txt] [--spm PATH.model]

Without --vocab / --spm it builds a BERT-style vocab from the fixture characters and trains a small
SentencePiece model on the fixture text. Runs on one core (Rust thread pools pinned to 1 thread).
Goal: >= 3 MB/s per core with boundaries.
"""

from __future__ import annotations

import sys

import _repo_path  # noqa: E402,F401  (first: the repository root on sys.path, bench/ off it)

import os  # noqa: E402

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from knowmix.pipelines.packing import DocTokens, pack_documents  # noqa: E402
from knowmix.pipelines.tokenizer_loader import load_tokenizer  # noqa: E402
from knowmix.pipelines.word_boundaries import encode_with_words, word_segmenter  # noqa: E402
from tests.pipelines.helpers_tokenize import all_fixture_texts, docs_rows, write_bert_vocab  # noqa: E402


def corpus(mb: float) -> list[str]:
    base = [r["text"] for r in docs_rows(40, 256)]
    docs, size = [], 0
    k = 0
    while size < mb * 1e6:
        t = base[k % len(base)]
        docs.append(t if k < len(base) else f"{k}:{t}")  # vary the copies slightly
        size += len(docs[-1].encode("utf-8"))
        k += 1
    return docs


def timed(fn, docs, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn(docs)
        best = min(best, time.process_time() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=8.0)
    ap.add_argument("--vocab")
    ap.add_argument("--spm")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="knowmix-bench-")
    vocab = args.vocab or write_bert_vocab(os.path.join(tmp, "vocab.txt"), all_fixture_texts())
    spm_path = args.spm
    if not spm_path:
        from knowmix.pipelines.spm_train import train

        sample = os.path.join(tmp, "sample.txt")
        with open(sample, "w", encoding="utf-8") as fh:
            fh.write("\n".join(t for t in all_fixture_texts() for t in t.splitlines() if t.strip()))
        train(sample, os.path.join(tmp, "spm"), 8000, num_threads=1)
        spm_path = os.path.join(tmp, "spm.model")

    docs = corpus(args.mb)
    mb = sum(len(t.encode("utf-8")) for t in docs) / 1e6
    wp = load_tokenizer(f"wordpiece:{vocab}")
    sp = load_tokenizer(f"spm:{spm_path}")
    seg = word_segmenter("rjieba")
    seg.cut(docs[0])  # load the dictionary outside the timing

    from tokenizers import BertWordPieceTokenizer

    hf = BertWordPieceTokenizer(vocab, lowercase=True, strip_accents=None, clean_text=True, handle_chinese_chars=True)

    def hf_batch(ds):
        hf.encode_batch(ds, add_special_tokens=False)

    def hf_loop(ds):
        for d in ds:
            hf.encode(d, add_special_tokens=False).offsets

    def ours(tok, boundaries):
        s = seg if boundaries else None

        def run(ds):
            for d in ds:
                encode_with_words(tok, s, d)

        return run

    def ours_packed(tok):
        def run(ds):
            out = []
            for i, d in enumerate(ds):
                w = encode_with_words(tok, seg, d)
                out.append(DocTokens(f"d{i:08d}", "news", w.enc.ids, w.word_start))
            pack_documents(out, 512, tok.special_ids["cls"], tok.special_ids["sep"])

        return run

    def jieba_only(ds):
        for d in ds:
            seg.word_starts(d)

    cases = [
        ("HF BertWordPieceTokenizer.encode_batch (baseline)", hf_batch),
        ("HF BertWordPieceTokenizer.encode + offsets, per doc", hf_loop),
        ("rjieba word starts only", jieba_only),
        ("knowmix wordpiece, no word boundaries", ours(wp, False)),
        ("knowmix wordpiece, jieba word boundaries", ours(wp, True)),
        ("knowmix wordpiece, boundaries + packing (512)", ours_packed(wp)),
        ("knowmix spm, no word boundaries", ours(sp, False)),
        ("knowmix spm, jieba word boundaries", ours(sp, True)),
        ("knowmix spm, boundaries + packing (512)", ours_packed(sp)),
    ]
    print(f"{len(docs)} docs, {mb:.1f} MB UTF-8 (fixture text repeated), 1 core (RAYON_NUM_THREADS=1), CPU time of this process")
    print(f"{'case':52s} {'s':>7s} {'MB/s':>7s} {'vs HF':>6s}")
    base = None
    for name, fn in cases:
        secs = timed(fn, docs, args.repeat)
        rate = mb / secs
        base = base or rate
        print(f"{name:52s} {secs:7.2f} {rate:7.2f} {rate / base:6.2f}")
    print("goal: >= 3 MB/s per core with boundaries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
