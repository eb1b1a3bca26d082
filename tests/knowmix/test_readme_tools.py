"""Every Python block of README's "Use with other tools" section runs, on a real export (HF), a real tokenize
output with dead letters (OUT) and its Parquet export (PQ)."""

from __future__ import annotations

import os
import re

import pytest

pytest.importorskip("transformers")
pytest.importorskip("datasets")
pytest.importorskip("duckdb")

from knowmix.cli import main  # noqa: E402
from knowmix.pipelines.spm_train import sentences, train  # noqa: E402
from tests.pipelines.helpers_tokenize import all_fixture_texts, docs_rows, write_docs_dir  # noqa: E402
from tests.trainer.test_hf_tokenizer import _spm_shards  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECTION = "## Use with other tools"


def readme_blocks() -> list[str]:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start : end if end > 0 else None], re.S)


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    # OUT: a tokenize output with a dead letter (a doc without an id)
    rows = docs_rows(10, 10)
    rows.append({**rows[0], "id": None})
    write_docs_dir(str(root / "docs"), rows)
    sample = root / "sample.txt"
    sample.write_text("\n".join(s for t in all_fixture_texts() for s in sentences(t)) + "\n", encoding="utf-8")
    train(str(sample), str(root / "spm"), 3000, "unigram", character_coverage=0.98, num_threads=1)
    out = root / "pretrain"
    assert main(["tokenize", "--input", str(root / "docs"), "--output", str(out), "--tokenizer",
                 f"spm:{root / 'spm.model'}", "--max-seq-len", "64"]) == 0
    assert list((out / "dead_letter").glob("*"))
    pq_dir = root / "pq"
    assert main(["export-parquet", str(out), "--output", str(pq_dir)]) == 0
    # HF: a tiny run on shards made with the same SentencePiece model, exported
    pre, ktok = _spm_shards(str(root / "train"), str(root / "spm.model"))
    from tests.trainer.helpers import tiny_overrides

    assert main(["train", "", *tiny_overrides(pre, ktok, str(root / "run"), **{"train.max_steps": 2})]) == 0
    assert main(["export", str(root / "run"), "--hf", str(root / "hf")]) == 0
    return {"HF": str(root / "hf"), "OUT": str(out), "PQ": str(pq_dir)}


@pytest.fixture(autouse=True)
def offline_hf(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))


def test_the_section_has_the_examples():
    blocks = readme_blocks()
    assert len(blocks) == 3
    assert any("AutoTokenizer" in b for b in blocks) and any("load_dataset" in b for b in blocks)
    assert any("duckdb" in b for b in blocks)


@pytest.mark.parametrize("index", range(3))
def test_readme_block_runs(places, index, capsys):
    code = readme_blocks()[index]
    exec(compile(code, f"README.md[{SECTION} block {index}]", "exec"), dict(places))


def test_why_the_readme_names_the_shard_files(places, tmp_path):
    """More .jsonl files than shards under OUT: the bare call guesses JSON and fails; the README's form works."""
    import shutil

    from datasets import load_dataset

    out = tmp_path / "out"
    shutil.copytree(places["OUT"], out)
    dead = next((out / "dead_letter").glob("*.jsonl"))
    for i in (1, 2):
        shutil.copyfile(dead, dead.with_name(f"extra-{i}.jsonl"))
    with pytest.raises(Exception):
        load_dataset(str(out))
    code = next(b for b in readme_blocks() if "load_dataset" in b)
    exec(compile(code, "README.md datasets block", "exec"), {**places, "OUT": str(out)})
