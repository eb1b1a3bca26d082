"""Main-text extraction benchmark: ours vs trafilatura (and readability-lxml / magic-html when installed).

    .venv/bin/python bench/html_extract.py [-n 20] [--truth base.json] [PAGE.html ...]

Runs every extractor over the bundled zh.wikipedia fixture page (repeated N times) and any pages given on the
command line, and prints a table of character F1 (``corpora.extraction_metrics.char_f1``, the magic-html
benchmark's score) and pages/s, with ratios to trafilatura. A page is scored when its hand-checked text is
known: ``PAGE.groundtruth.json`` beside it, or an entry of ``--truth`` (magic-html's ``base.json`` layout:
``{page-key: {"content": ...}}``, the key being the page's file stem). Pages without one are timed only.
A benchmark, not a test: it prints, it does not pass or fail.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import _repo_path  # noqa: E402,F401  (first: the repository root on sys.path, bench/ off it)

ROOT = Path(_repo_path.ROOT)

import lxml.html  # noqa: E402

from knowmix.corpora.extraction_metrics import char_f1  # noqa: E402
from knowmix.corpora.html_extract import decode_html, extract_main_text  # noqa: E402

FIXTURE = ROOT / "corpora" / "fixtures" / "web_zhwikipedia_page.html"


def _extractors() -> dict:
    found = {"knowmix": lambda html: extract_main_text(html)[1]}
    try:
        import trafilatura

        found["trafilatura"] = lambda html: trafilatura.extract(decode_html(html)) or ""
    except ImportError:
        pass
    try:
        from readability import Document

        def _readability(html: bytes) -> str:
            summary = Document(decode_html(html)).summary(html_partial=True)
            return lxml.html.fromstring(summary).text_content() if summary.strip() else ""

        found["readability"] = _readability
    except ImportError:
        pass
    try:
        from magic_html import GeneralExtractor

        extractor = GeneralExtractor()

        def _magic(html: bytes) -> str:
            out = extractor.extract(decode_html(html))
            return lxml.html.fromstring(out["html"]).text_content() if out.get("html") else ""

        found["magic-html"] = _magic
    except ImportError:
        pass
    return found


def _truth(page: Path, table: dict) -> str | None:
    side = page.with_name(page.name.removesuffix(".html") + ".groundtruth.json")
    if side.exists():
        (entry,) = json.loads(side.read_text(encoding="utf-8")).values()
        return entry["content"]
    entry = table.get(page.stem)
    return entry["content"] if entry else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pages", nargs="*", type=Path, help="more HTML pages")
    ap.add_argument("-n", "--repeat", type=int, default=20, help="times the fixture page is run (default 20)")
    ap.add_argument("--truth", type=Path, help="magic-html style base.json with hand-checked texts")
    args = ap.parse_args(argv)
    table = json.loads(args.truth.read_text(encoding="utf-8")) if args.truth else {}

    pages = [(FIXTURE, FIXTURE.read_bytes(), _truth(FIXTURE, {}))]
    pages += [(p, p.read_bytes(), _truth(p, table)) for p in args.pages]
    extractors = _extractors()
    print(f"pages: {len(pages)} (fixture x{args.repeat}); extractors: {', '.join(extractors)}")

    rows = {}
    for name, fn in extractors.items():
        f1s, seconds, calls = [], 0.0, 0
        for path, html, truth in pages:
            reps = args.repeat if path == FIXTURE else 1
            for _ in range(reps):
                t0 = time.perf_counter()
                text = fn(html)
                seconds += time.perf_counter() - t0
                calls += 1
            if truth is not None:
                f1s.append(char_f1(text, truth))
        rows[name] = (statistics.fmean(f1s) if f1s else float("nan"), len(f1s), calls / seconds)

    base = rows.get("trafilatura")
    print(f"{'extractor':<12} {'char F1':>8} {'scored':>7} {'pages/s':>9} {'F1 vs traf':>11} {'speed vs traf':>14}")
    for name, (f1, scored, rate) in rows.items():
        rel_f1 = f"{f1 - base[0]:+.3f}" if base else "-"
        rel_speed = f"{rate / base[2]:.2f}x" if base else "-"
        print(f"{name:<12} {f1:>8.4f} {scored:>7} {rate:>9.1f} {rel_f1:>11} {rel_speed:>14}")


if __name__ == "__main__":
    main()
