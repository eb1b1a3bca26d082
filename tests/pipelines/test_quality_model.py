"""The fastText quality classifier: metrics, training on a separable set, its use in ``knowmix clean``, and
``keep_dropped`` (every dropped document written, with its reason).

Training needs a fastText build with ``train_supervised`` (fasttext-numpy2); fasttext-predict only predicts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections import Counter

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knowmix.cli import main as knowmix
from knowmix.demo import fixture
from knowmix.manifest import open_shard_dir, read_arrow, verify_shard
from knowmix.pipelines.quality_model import QualityModel, fasttext_line, pr_curve, roc_auc

def sha256_file(path) -> str:
    """Independent of knowmix's helper: the whole file through hashlib."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


SPAM_PHRASES = [
    "点击领取优惠券", "免费下载最新版本", "注册即送会员礼包", "限时抢购全场五折", "扫码关注公众号",
    "添加客服微信咨询", "马上开通超级会员", "一键安装手机助手", "转发好友再得红包", "今日特价仅剩三件",
    "充值返现百分之五十", "点击链接立即参与",
]


def spam_docs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["，".join(rng.sample(SPAM_PHRASES, rng.randint(4, 8))) + "！" for _ in range(n)]


def news_docs() -> list[str]:
    lines = open(fixture("news_peoples_daily_199801_first400.txt"), encoding="utf-8").read().splitlines()
    return [line.strip() for line in lines if len(line.strip()) >= 60]


def pairwise_auc(pos, neg) -> float:
    """The definition, pair by pair: P(score_pos > score_neg) + P(tie) / 2 (independent of the rank formula)."""
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def has_training() -> bool:
    import fasttext

    return hasattr(fasttext, "train_supervised")


needs_training = pytest.mark.skipif(not has_training(), reason="fastText training needs fasttext-numpy2")


def test_the_installed_fasttext_can_train():
    """quality-train needs ``fasttext.train_supervised``: fasttext-predict (predict only) is not enough. This
    test fails (the ones that train are skipped) where only fasttext-predict is installed."""
    assert has_training(), "the installed fastText cannot train (fasttext-predict?): install fasttext-numpy2"


# ---------------------------------------------------------------------------------------------- metrics


def test_roc_auc_on_a_hand_example():
    # pairs: 0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1 -> 3 of 4
    assert roc_auc([0.9, 0.4], [0.5, 0.1]) == 0.75 == pairwise_auc([0.9, 0.4], [0.5, 0.1])
    assert roc_auc([0.5], [0.5]) == 0.5  # a tie counts half
    assert roc_auc([0.2, 0.3], [0.7, 0.8]) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=12),
    st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=12),
)
def test_roc_auc_equals_the_pairwise_count(pos, neg):
    assert roc_auc(pos, neg) == pytest.approx(pairwise_auc(pos, neg))


def test_pr_curve_on_a_hand_example():
    # scores 0.9 (pos), 0.8 (neg), 0.4 (pos): at 0.9 P=1 R=.5; at 0.8 P=.5 R=.5; at 0.4 P=2/3 R=1
    assert pr_curve([0.9, 0.4], [0.8]) == [(0.9, 1.0, 0.5), (0.8, 0.5, 0.5), (0.4, pytest.approx(2 / 3), 1.0)]


def test_chinese_is_fed_as_words_or_characters():
    assert fasttext_line("我爱北京天安门\n今天") == "我 爱 北京 天安门 今天"
    assert fasttext_line("北京 天安门", tokenizer="char") == "北 京 天 安 门"


# ---------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained by the CLI on news (positive) vs generated spam (negative); held-out lines kept aside."""
    if not has_training():
        pytest.skip("fastText training needs fasttext-numpy2")
    root = tmp_path_factory.mktemp("quality")
    news = news_docs()
    spam = spam_docs(300, seed=1)
    held = {"good": news[::4], "bad": spam[::4]}  # the held-out lines: never seen by the trainer
    train = {"good": [t for i, t in enumerate(news) if i % 4], "bad": [t for i, t in enumerate(spam) if i % 4]}
    for name, texts in {**{f"train_{k}": v for k, v in train.items()}, **{f"held_{k}": v for k, v in held.items()}}.items():
        (root / f"{name}.jsonl").write_text(
            "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8"
        )
    model = root / "models" / "quality.bin"
    rc = knowmix(
        ["quality-train", "--positive-file", str(root / "train_good.jsonl"), "--negative-file",
         str(root / "train_bad.jsonl"), "--dim", "16", "--epoch", "5", "--bucket", "20000", "--seed", "3",
         "--output", str(model)]
    )
    assert rc == 0
    return root, model, held


@needs_training
def test_a_separable_set_scores_at_least_095_roc_auc_on_held_out_lines(trained):
    _, model, held = trained
    scorer = QualityModel(str(model))
    pos, neg = scorer.score_many(held["good"]), scorer.score_many(held["bad"])
    assert len(pos) > 20 and len(neg) > 20
    assert pairwise_auc(pos.tolist(), neg.tolist()) >= 0.95


@needs_training
def test_the_training_record_sits_beside_the_model(trained):
    
    _, model, _ = trained
    record = json.loads((model.parent / "quality.bin.json").read_text())
    assert record["sha256"] == sha256_file(str(model))
    assert record["tokenizer"] == "jieba"
    v = record["validation"]
    assert v["positives"] > 0 and v["negatives"] > 0 and 0.0 <= v["roc_auc"] <= 1.0
    assert record["train"]["positives"] + v["positives"] == len([t for i, t in enumerate(news_docs()) if i % 4])


@needs_training
def test_quality_eval_prints_roc_auc_and_writes_the_pr_curve(trained, capsys):
    root, model, held = trained
    capsys.readouterr()
    html_path = root / "pr.html"
    rc = knowmix(["quality-eval", str(model), "--positive", str(root / "held_good.jsonl"), "--negative",
                  str(root / "held_bad.jsonl"), "--html", str(html_path), "--json"])
    assert rc == 0
    m = json.loads(capsys.readouterr().out)
    scorer = QualityModel(str(model))
    expected = pairwise_auc(scorer.score_many(held["good"]).tolist(), scorer.score_many(held["bad"]).tolist())
    assert m["roc_auc"] == pytest.approx(expected)
    assert m["positives"] == len(held["good"]) and m["negatives"] == len(held["bad"])
    page = html_path.read_text()
    assert "<svg" in page and "<polyline" in page


def test_a_corrupt_or_missing_model_is_one_line_and_status_2(tmp_path, capsys):
    bad = tmp_path / "quality.bin"
    bad.write_bytes(b"\x00not a fasttext model" * 100)
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "这是一段用来检查的中文文本。"}, ensure_ascii=False) + "\n")
    for model in (bad, tmp_path / "missing.bin"):
        job = tmp_path / "job.toml"
        job.write_text(
            f'[[sources]]\nkind = "web"\nformat = "jsonl"\npaths = ["docs.jsonl"]\n[output]\ndir = "out"\n'
            f'[quality]\nmodel = "{model.name}"\n',
            encoding="utf-8",
        )
        capsys.readouterr()
        assert knowmix(["clean", "--config", str(job)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and model.name in err, err
        assert not (tmp_path / "out" / "manifest.json").exists()
    capsys.readouterr()
    assert knowmix(["quality-eval", str(bad), "--positive", str(tmp_path / "docs.jsonl"), "--negative",
                    str(tmp_path / "docs.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a fastText model" in err


def test_a_quality_table_typo_is_one_line_and_status_2(tmp_path, capsys):
    (tmp_path / "docs.jsonl").write_text(json.dumps({"text": "这是一段用来检查的中文文本。"}, ensure_ascii=False) + "\n")
    job = tmp_path / "job.toml"
    job.write_text('[[sources]]\nkind = "web"\nformat = "jsonl"\npaths = ["docs.jsonl"]\n[output]\ndir = "out"\n'
                   '[quality]\nmodel = "m.bin"\nthreshhold = 0.5\n', encoding="utf-8")
    assert knowmix(["clean", "--config", str(job)]) == 2
    assert "threshhold" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- in clean


def _dropped_rows(out) -> pa.Table:
    d = open_shard_dir(str(out), kind="docs")
    tables = []
    for entry in d.manifest["dropped_shards"]:
        path = str(out / entry["path"])
        verify_shard(path, entry)  # checksummed like the docs shards
        tables.append(read_arrow(path))
    return pa.concat_tables(tables)


@needs_training
def test_clean_scores_the_chosen_kinds_and_drops_low_quality(trained, tmp_path):
    _, model, held = trained
    good, bad = held["good"][:30], spam_docs(30, seed=99)  # spam never seen in training
    others = held["good"][30:35]  # news, a kind the model does not score
    rows = [{"id": f"g{i}", "text": t} for i, t in enumerate(good)] + [{"id": f"b{i}", "text": t} for i, t in enumerate(bad)]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "news.jsonl").write_text(
        "".join(json.dumps({"id": f"n{i}", "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(others)),
        encoding="utf-8",
    )
    job = tmp_path / "job.toml"
    job.write_text(
        '[[sources]]\nkind = "qa"\nformat = "jsonl"\npaths = ["qa.jsonl"]\n'
        '[[sources]]\nkind = "news"\nformat = "jsonl"\npaths = ["news.jsonl"]\n'
        f'[output]\ndir = "out"\nkeep_dropped = true\n[rules.news]\nmin_chars = 10\n'
        f'[quality]\nmodel = "{model}"\nthreshold = {{ qa = 0.5 }}\n',
        encoding="utf-8",
    )
    assert knowmix(["clean", "--config", str(job), "--no-near-dedup"]) == 0
    out = tmp_path / "out"
    d = open_shard_dir(str(out), kind="docs")
    kept = d.read_all()
    dropped = _dropped_rows(out)
    low = dropped.filter(pa.compute.equal(dropped.column("reason"), "low_quality"))
    # the planted spam (qa) is dropped as low quality, the held-out news lines are kept
    low_texts = low.column("text").to_pylist()
    # every planted spam document the rules let through (lid.176 calls some of them Korean) and nothing else
    by_rules = {t for t, r in zip(dropped.column("text").to_pylist(), dropped.column("reason").to_pylist()) if r != "low_quality"}
    assert sorted(low_texts) == sorted(set(bad) - by_rules) and len(low_texts) >= 15
    assert kept.num_rows == len(good) + len(others)  # every news line kept (their text as normalised)
    assert not [t for t in kept.column("text").to_pylist() if any(p in t for p in SPAM_PHRASES)]
    assert d.manifest["counts"]["dropped"]["low_quality"] == len(low)
    assert all(s < 0.5 for s in low.column("quality_score").to_pylist())
    by_kind = {k: [s for kk, s in zip(kept.column("source_kind").to_pylist(), kept.column("quality_score").to_pylist()) if kk == k]
               for k in ("qa", "news")}
    assert by_kind["qa"] and all(s is not None and s >= 0.5 for s in by_kind["qa"])
    assert by_kind["news"] and all(s is None for s in by_kind["news"])  # not a scored kind: null, and kept
    assert kept.schema.field("quality_score").type == pa.float32()
    
    assert d.manifest["options"]["quality"]["sha256"] == sha256_file(str(model))
    assert d.manifest["models"] == [{"role": "quality", "path": str(model), "sha256": sha256_file(str(model))}]


# ---------------------------------------------------------------------------------------------- keep_dropped


def test_the_dropped_rows_must_add_up_to_the_dropped_counts():
    from knowmix.pipelines.dropped import check_dropped_rows

    def manifest(entries):
        return {"counts": {"dropped": {"lang": 2, "too_short": 1}}, "dropped_shards": entries}

    good = [{"rows": 2, "reasons": {"lang": 1, "too_short": 1}}, {"rows": 1, "reasons": {"lang": 1}}]
    assert check_dropped_rows(manifest(good))
    with pytest.raises(ValueError, match="3"):  # a row short
        check_dropped_rows(manifest(good[:1]))
    with pytest.raises(ValueError, match="per reason"):  # the right total, the wrong reasons
        check_dropped_rows(manifest([{"rows": 3, "reasons": {"lang": 3}}]))


def _planted_sources(tmp_path):
    """Planted drops: web docs too short or English (lang); copies of news docs (exact_duplicate)."""
    news = list(dict.fromkeys(news_docs()))[:40]
    short = [f"短文本{i}。" for i in range(7)]
    english = [f"This is an English paragraph number {i} about the weather, and it should be dropped by language id."
               for i in range(5)]
    copies = news[:6]
    (tmp_path / "news.jsonl").write_text(
        "".join(json.dumps({"id": f"n{i:02d}", "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(news + copies)),
        encoding="utf-8",
    )
    web = [*short, *english]
    (tmp_path / "web.jsonl").write_text(
        "".join(json.dumps({"id": f"w{i:02d}", "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(web)),
        encoding="utf-8",
    )
    return {"too_short": short, "lang": english, "exact_duplicate": copies}


def _clean(tmp_path, out, *extra):
    return knowmix(["clean", "--source", f"news:jsonl={tmp_path / 'news.jsonl'}", "--source",
                    f"web:jsonl={tmp_path / 'web.jsonl'}", "--output", str(out), "--num-shards", "3", *extra])


def test_keep_dropped_writes_exactly_the_dropped_documents(tmp_path):
    planted = _planted_sources(tmp_path)
    assert _clean(tmp_path, tmp_path / "plain") == 0
    assert _clean(tmp_path, tmp_path / "kept", "--keep-dropped") == 0
    plain = open_shard_dir(str(tmp_path / "plain"), kind="docs")
    kept = open_shard_dir(str(tmp_path / "kept"), kind="docs")
    assert "dropped_shards" not in plain.manifest and not (tmp_path / "plain" / "dropped").exists()
    # the kept documents and the counts do not change with keep_dropped
    assert kept.read_all().equals(plain.read_all())
    assert kept.manifest["counts"] == plain.manifest["counts"]
    dropped = _dropped_rows(tmp_path / "kept")
    kept_ids = set(plain.read_all().column("id").to_pylist())
    dropped_ids = dropped.column("id").to_pylist()
    # row for row: every dropped document once, none of them kept, and together they are the input
    assert len(dropped_ids) == len(set(dropped_ids)) == sum(plain.manifest["counts"]["dropped"].values())
    assert not kept_ids & set(dropped_ids)
    assert len(kept_ids) + len(dropped_ids) == plain.manifest["counts"]["input"] == 40 + sum(map(len, planted.values()))
    assert dict(Counter(dropped.column("reason").to_pylist())) == plain.manifest["counts"]["dropped"]
    # the planted documents, by reason
    by_reason: dict[str, list[str]] = {}
    for reason, text in zip(dropped.column("reason").to_pylist(), dropped.column("text").to_pylist()):
        by_reason.setdefault(reason, []).append(text)
    assert set(by_reason) == set(planted)
    for reason in ("too_short", "lang"):
        assert sorted(by_reason[reason]) == sorted(planted[reason]), reason
    assert len(by_reason["exact_duplicate"]) == len(planted["exact_duplicate"])
    # a duplicate names its survivor: a kept document with the same text
    kept_text = dict(zip(plain.read_all().column("id").to_pylist(), plain.read_all().column("text").to_pylist()))
    for row in dropped.to_pylist():
        if row["reason"] == "exact_duplicate":
            assert kept_text[row["survivor_id"]] == row["text"]
        else:
            assert row["survivor_id"] is None
    for entry in kept.manifest["dropped_shards"]:  # each entry's rows per reason, as read back
        rows = read_arrow(str(tmp_path / "kept" / entry["path"])).column("reason").to_pylist()
        assert entry["reasons"] == dict(Counter(rows)) and entry["rows"] == len(rows)
    # quality-train reads them as a negative set, and the kept documents by kind as a positive one
    from knowmix.pipelines.quality_train import texts_from_output

    assert sorted(texts_from_output(f"{tmp_path / 'kept' / 'dropped'}:web")) == sorted(planted["too_short"] + planted["lang"])
    assert len(texts_from_output(f"{tmp_path / 'kept'}:news")) == len(kept_ids) == 40
    assert texts_from_output(f"{tmp_path / 'kept'}:web") == []
    # the dropped shards are hash-partitioned and sorted by id like the docs shards
    for entry in kept.manifest["dropped_shards"]:
        ids = read_arrow(str(tmp_path / "kept" / entry["path"])).column("id").to_pylist()
        assert ids == sorted(ids)


def test_stats_shows_dropped_examples_and_quality_histogram(tmp_path, capsys):
    _planted_sources(tmp_path)
    assert _clean(tmp_path, tmp_path / "kept", "--keep-dropped") == 0
    capsys.readouterr()
    html_path = tmp_path / "r.html"
    assert knowmix(["stats", str(tmp_path / "kept"), "--json", "--html", str(html_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    examples = report["dropped_examples"]
    assert set(examples) == {"too_short", "lang", "exact_duplicate"}
    assert all(1 <= len(v["examples"]) <= 5 for v in examples.values())
    assert examples["too_short"]["rows"] == 7
    page = html_path.read_text(encoding="utf-8")
    assert "dropped-examples" in page and "短文本" in page
    # seeded: the same examples twice
    assert knowmix(["stats", str(tmp_path / "kept"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dropped_examples"] == examples


def test_keep_dropped_on_the_dask_runner_writes_the_same_dropped_shards(tmp_path):
    pytest.importorskip("distributed")
    from knowmix.demo import demo_job_toml
    from knowmix.pipelines.clean import resolve, run
    from knowmix.pipelines.clean_config import load_config
    from tests.pipelines.dask_cluster import dask_runner_flags

    def job(out):
        path = tmp_path / f"{out.name}.toml"
        path.write_text(demo_job_toml(str(out), keep_dropped=True), encoding="utf-8")
        return load_config(str(path))

    local = run(resolve(job(tmp_path / "local"), [], ["test"]))
    with dask_runner_flags() as flags:
        dask = run(resolve(job(tmp_path / "dask"), flags, ["test"]))
    assert local["dropped_shards"] and dask["dropped_shards"] == local["dropped_shards"]
    assert dask["shards"] == local["shards"] and dask["counts"] == local["counts"]
    assert sum(e["rows"] for e in local["dropped_shards"]) == sum(local["counts"]["dropped"].values())


def test_training_does_not_depend_on_what_the_process_imported(tmp_path):
    """Before: after ``import transformers`` (as a test session or a notebook has done), the same data, seed and
    lr diverged to NaN inside the calling process; training now runs in a fresh interpreter, so the model is
    a function of the data and options only: the same bytes as training from a process that imported nothing."""
    if not has_training():
        pytest.skip("fastText training needs fasttext-numpy2")
    import os
    import subprocess
    import sys

    import transformers  # noqa: F401 - the import that used to change the outcome

    from knowmix.pipelines.quality_train import train

    news, spam = news_docs(), spam_docs(300, seed=1)
    good, bad = [t for i, t in enumerate(news) if i % 4], [t for i, t in enumerate(spam) if i % 4]
    here = tmp_path / "here.bin"
    train(good, bad, str(here), dim=16, epoch=5, bucket=20000, seed=3)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.pipelines.test_quality_model import news_docs, spam_docs;"
        "from pipelines.quality_train import train;"
        "n, s = news_docs(), spam_docs(300, seed=1);"
        "train([t for i, t in enumerate(n) if i % 4], [t for i, t in enumerate(s) if i % 4], sys.argv[2],"
        " dim=16, epoch=5, bucket=20000, seed=3)"
    )
    fresh = tmp_path / "fresh.bin"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, "-c", code, root, str(fresh)], check=True, timeout=300)
    assert here.read_bytes() == fresh.read_bytes()


def test_keep_dropped_with_exact_dedup_off_writes_the_same_id_copies_too(tmp_path):
    """With exact dedup off, a record repeated (same id, same text) in two files is dropped by the shard writer
    as an ``exact_duplicate``. Before: keep_dropped did not write it, the dropped rows fell one short of
    ``counts.dropped`` and the manifest step failed the run."""
    text = "今天北京的天气很好，很多市民去公园散步，孩子们在草地上放风筝，老人们在树下下棋聊天。"
    other = "上海证券交易所今天发布公告，三家公司的股票将于下周一起在主板挂牌上市交易（{}），发行价格已经确定。"
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text(json.dumps({"id": "7", "text": text}, ensure_ascii=False) + "\n"
                                     + json.dumps({"id": name, "text": other.format(name)}, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    job = tmp_path / "job.toml"
    job.write_text('[[sources]]\nkind = "news"\npaths = ["*.jsonl"]\nid_field = "id"\n[output]\ndir = "out"\nkeep_dropped = true\n'
                   '[dedup]\nexact = false\nnear = false\n[rules.news]\nmin_chars = 10\n', encoding="utf-8")
    assert knowmix(["clean", "--config", str(job)]) == 0
    counts = open_shard_dir(str(tmp_path / "out"), kind="docs").manifest["counts"]
    assert (counts["input"], counts["output"], counts["dropped"]) == (4, 3, {"exact_duplicate": 1})
    dropped = _dropped_rows(tmp_path / "out").to_pylist()
    assert [(r["id"], r["text"], r["reason"], r["survivor_id"]) for r in dropped] == [("7", text, "exact_duplicate", "7")]
