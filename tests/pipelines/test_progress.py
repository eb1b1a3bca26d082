"""The live progress line of the Beam jobs (local runner) and the Beam counters in their summaries.

The live tallies are checked against the manifest's counts, which Beam's combines compute on their own."""

from __future__ import annotations

import io
import re
import sys

import pytest

from knowmix.cli import main
from knowmix.manifest import open_shard_dir
from knowmix.pipelines import progress
from tests.pipelines.helpers_tokenize import (
    all_fixture_texts,
    docs_rows,
    knowledge_rows,
    write_bert_vocab,
    write_docs_dir,
    write_knowledge_dir,
)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("progress")
    rows = docs_rows(30, 60)
    rows.append({**rows[0], "id": "zz-empty", "text": "   \n "})  # dropped (no tokens)
    rows.append({**rows[0], "id": None})  # dead letter
    write_docs_dir(str(d / "docs"), rows, n_shards=3)
    krows = knowledge_rows(40)
    bad = dict(next(r for r in krows if r["task"] == "relation"))
    bad["id"], bad["head"] = "rel-bad", {**bad["head"], "start": bad["head"]["start"] + 1}  # dead letter
    write_knowledge_dir(str(d / "kn"), [*krows, bad])
    vocab = write_bert_vocab(str(d / "bert" / "vocab.txt"), all_fixture_texts()[:300])
    return {"dir": d, "spec": f"wordpiece:{vocab}", "n_docs": len(rows), "n_knowledge": len(krows) + 1}


def _tokenize(work, src: str, out: str, *extra: str) -> int:
    return main(["tokenize", "--input", str(work["dir"] / src), "--output", str(work["dir"] / out),
                 "--tokenizer", work["spec"], *extra])


@pytest.mark.parametrize("src, n_key", [("docs", "n_docs"), ("kn", "n_knowledge")])
def test_live_tallies_equal_the_manifest_counts(work, src, n_key, capsys):
    assert _tokenize(work, src, f"tally-{src}") == 0
    counts = open_shard_dir(str(work["dir"] / f"tally-{src}")).manifest["counts"]
    live = progress.snapshot()
    assert live["read"] == work[n_key]  # rows in the input shards, counted as they were read
    assert live["input"] == counts["input"] == work[n_key]
    assert (live["output"], live["dead_letter"]) == (counts["output"], counts["dead_letter"])
    assert live["dropped"] == sum(counts["dropped"].values())
    assert counts["dead_letter"] >= 1
    # the summary ends with the job's Beam counters
    err = capsys.readouterr().err
    assert re.search(r"^  Beam counters: .*shard_rows [\d,]+", err, re.M), err


def test_live_line_on_a_terminal(work, monkeypatch):
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(progress, "INTERVAL", 0.01)
    assert _tokenize(work, "docs", "live") == 0
    text = term.getvalue()
    drawn = re.findall(r"\r(knowmix tokenize: [^\r\n]*?)\s*(?=\r)", text)
    assert drawn, text[:500]
    reads = [int(m.group(1).replace(",", "")) for line in drawn if (m := re.search(r"read ([\d,]+)", line))]
    assert reads and reads == sorted(reads) and reads[-1] <= work["n_docs"]
    # the line is wiped before the summary, which starts a line of its own
    assert re.search(r"\r +\rknowmix tokenize: pretrain:", text), text[-500:]


def test_quiet_draws_nothing(work, monkeypatch):
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(progress, "INTERVAL", 0.01)
    assert _tokenize(work, "docs", "quiet", "--quiet") == 0
    assert "\r" not in term.getvalue()
    assert term.getvalue().startswith("knowmix tokenize: pretrain:")


def test_spm_train_shows_its_phases(work, monkeypatch, tmp_path):
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(progress, "INTERVAL", 0.005)
    assert main(["spm-train", "--docs", str(work["dir"] / "docs"), "--output", str(tmp_path / "m"),
                 "--vocab-size", "3000", "--character-coverage", "0.98", "--num-threads", "1"]) == 0
    text = term.getvalue()
    assert "knowmix spm-train: training SentencePiece (unigram, 3000 pieces)" in text
    assert text.rstrip().splitlines()[-1].startswith("knowmix spm-train: ")


def test_format_line():
    live = {"read": 0, "input": 0, "output": 0, "dropped": 0, "dead_letter": 0}
    assert progress.format_line("p", live, 3.0) == "p: running… 0:03"
    live.update(read=1200)
    assert progress.format_line("p", live, 2.0) == "p: read 1,200  600/s  0:02"
    live.update(input=1200, output=1000, dropped=150, dead_letter=50)
    assert progress.format_line("p", live, 4000.0) == "p: read 1,200  kept 1,000  dropped 200  0/s  1:06:40"
