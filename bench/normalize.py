"""Benchmark: the normalisation step alone, t2s only where the text is traditional vs the old always-t2s path.

    python bench/normalize.py [--mb 3] [--repeats 3]

The texts are the bundled fixture documents (read with the real readers), repeated to ``--mb`` megabytes per
corpus: the simplified corpora (CMRC, People's Daily, FinRE, medical Q&A), the traditional DRCD articles, and
both together. "old" is the step as it was: HTML entities, NFKC, full-width, OpenCC t2s on every document,
control characters, white space. "new" is ``Normalizer(DEFAULT_STEPS[kind])``: the same steps with script
detection on every document and t2s only on traditional (or mostly traditional mixed) ones, and without
the full-width scan after NFKC (a no-op there), detecting a chunk of 256 documents at once as the clean job
does (``normalize_many``). Prints characters per CPU second (best of ``--repeats``, taking turns, one process) and the
ratios against old: new, new keeping the full-width scan (the detection's own cost), and new one document at
a time (what the chunking saves on short documents).
"""

from __future__ import annotations

import argparse
import time

import _repo_path  # noqa: E402,F401  (first: the repository root on sys.path, bench/ off it)

from knowmix.corpora.document import Document  # noqa: E402
from knowmix.corpora.readers import read_path  # noqa: E402
from knowmix.corpora.sources import SourceSpec  # noqa: E402
from knowmix.demo import fixture  # noqa: E402
from knowmix.pipelines import normalize  # noqa: E402

SIMPLIFIED = [
    SourceSpec("encyclopedia", "squad", (fixture("encyclopedia_cmrc2018_trial.json"),)),
    SourceSpec("news", "txt", (fixture("news_peoples_daily_199801_first400.txt"),)),
    SourceSpec("news", "txt", (fixture("finre_valid.txt"),)),
    SourceSpec("qa", "csv", (fixture("qa_medical_toyhom_300.gbk.csv"),), text_fields=("title", "ask", "answer")),
]
TRADITIONAL = [SourceSpec("encyclopedia", "squad", (fixture("encyclopedia_drcd_dev_first40articles.json"),))]


def texts_of(specs: list[SourceSpec], megabytes: float) -> list[str]:
    texts = [r.text for spec in specs for r in read_path(spec, spec.paths[0]) if isinstance(r, Document)]
    size = sum(len(t.encode("utf-8")) for t in texts)
    return texts * max(1, round(megabytes * 1e6 / size))


class OldNormalizer:
    """The step before script detection: t2s on every document."""

    def __init__(self):
        import opencc

        self.converter = opencc.OpenCC("t2s")

    def __call__(self, text: str) -> str:
        text = normalize._fullwidth(normalize._nfkc(normalize._html_entities(text)))
        if not text.isascii():
            text = self.converter.convert(text)
        return normalize._whitespace(normalize._control_chars(text))


class NewKeepingFullwidthScan(normalize.Normalizer):
    """"new" without its other saving (the full-width scan after NFKC, a no-op): the detection's own cost."""

    def _before_t2s(self, text: str) -> str:
        return normalize._fullwidth(super()._before_t2s(text))


def per_document(fn):
    """The old clean job's loop: each text of a chunk on its own."""
    return lambda chunk: [fn(text) for text in chunk]


def best_rates(fns, texts: list[str], repeats: int, chunk: int = 256) -> list[float]:
    """Characters per CPU second of each function over ``chunk``-text chunks (as the clean job hands them
    over), best of ``repeats``; CPU time, not wall time, and the functions take turns in every repeat, so a
    shared machine's load falls on all of them alike."""
    chars = sum(map(len, texts))
    chunks = [texts[i : i + chunk] for i in range(0, len(texts), chunk)]
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.process_time()
            for part in chunks:
                fn(part)
            best[i] = min(best[i], time.process_time() - start)
    return [chars / b for b in best]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=3.0, help="megabytes of text per corpus")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    old, new = OldNormalizer(), normalize.Normalizer(normalize.DEFAULT_STEPS["web"])
    new_scan = NewKeepingFullwidthScan(normalize.DEFAULT_STEPS["web"])
    simplified, traditional = texts_of(SIMPLIFIED, args.mb), texts_of(TRADITIONAL, args.mb)
    both = simplified[: len(simplified) // 2] + traditional[: len(traditional) // 2]
    for text in simplified[:50] + traditional[:5]:  # warm up: OpenCC's dictionaries, the script table
        old(text), new(text), new_scan(text)
    print(f"{'corpus':<24}{'docs':>7}{'old Mchar/s':>13}{'new Mchar/s':>13}{'new/old':>9}{'with the scan':>15}{'per document':>14}")
    for name, texts in (("simplified (4 corpora)", simplified), ("traditional (DRCD)", traditional), ("half and half", both)):
        fns = [per_document(old), new.normalize_many, new_scan.normalize_many, per_document(new)]
        r_old, r_new, r_scan, r_single = best_rates(fns, texts, args.repeats)
        print(
            f"{name:<24}{len(texts):>7,}{r_old / 1e6:>13.2f}{r_new / 1e6:>13.2f}{r_new / r_old:>9.3f}"
            f"{r_scan / r_old:>15.3f}{r_single / r_old:>14.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
