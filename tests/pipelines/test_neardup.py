"""knowmix.pipelines.neardup: MinHash-LSH near-duplicate removal on real Beam runners (FnApiRunner, Dask), with planted
near-duplicates built from the fixture corpora."""

from __future__ import annotations

import json
import random
from itertools import combinations
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from knowmix.errors import UserError
from knowmix.pipelines.beamio import pipeline_options
from knowmix.pipelines.minhash import MinHasher, band_keys, optimal_params, text_jaccard
from knowmix.pipelines.dedup import survivor_key
from knowmix.pipelines.neardup import ConnectedComponents, NearDedupConfig
from tests.pipelines.neardup_reference import NearDedup

FIXTURES = Path(__file__).resolve().parents[2] / "corpora" / "fixtures"
SMALL = dict(max_rounds=6)  # small graphs converge in 2-3 rounds; each unrolled round is an extra stage
BOILERPLATE = "\n本文来源：人民网 责任编辑：王小明 版权所有，未经许可不得转载"


# ---------------------------------------------------------------------------------------------- corpus


def encyclopedia_paragraphs() -> list[str]:
    records = json.loads((FIXTURES / "encyclopedia_cmrc2018_trial.json").read_text(encoding="utf-8"))
    seen, out = set(), []
    for r in records:
        t = r["context_text"].strip()
        if len(t) >= 200 and t not in seen:
            seen.add(t)
            out.append(t)
    return out


def news_lines(low: int = 150, high: int = 10**9) -> list[str]:
    lines = (FIXTURES / "news_peoples_daily_199801_first400.txt").read_text(encoding="utf-8").splitlines()
    seen, out = set(), []
    for line in lines:
        t = line.strip()
        if low < len(t) <= high and t not in seen:
            seen.add(t)
            out.append(t)
    return out


def edit(text: str, rate: float, rng: random.Random) -> str:
    chars = list(text)
    for i in rng.sample(range(len(chars)), max(1, int(round(len(chars) * rate)))):
        chars[i] = chr(rng.randrange(0x4E00, 0x9FA5))
    return "".join(chars)


def doc(doc_id: str, kind: str, text: str) -> dict:
    return {"id": doc_id, "source_kind": kind, "text": text, "location": f"test#{doc_id}", "url": None, "title": None}


def planted_corpus():
    """Originals (encyclopedia paragraphs, news lines, 3-paragraph news articles) + planted copies.

    Returns (docs, near_pairs, heavy_pairs): pairs of doc ids, planted near-duplicates and heavy edits."""
    rng = random.Random(20260101)
    docs, near_pairs, heavy_pairs = [], [], []
    enc = encyclopedia_paragraphs()
    news = news_lines()
    for i, text in enumerate(enc):
        docs.append(doc(f"enc-{i:04d}", "encyclopedia", text))
    for i, text in enumerate(news):
        docs.append(doc(f"news-{i:04d}", "news", text))
    articles = []
    shorter = news_lines(60, 150)
    for i in range(0, 3 * 20, 3):  # 20 multi-paragraph articles from consecutive shorter news lines
        paras = shorter[i : i + 3]
        articles.append(paras)
        docs.append(doc(f"art-{i // 3:04d}", "news", "\n".join(paras)))

    def plant(base_id, base_text, copy_id, kind, text, heavy=False):
        docs.append(doc(copy_id, kind, text))
        (heavy_pairs if heavy else near_pairs).append((base_id, copy_id))

    for i in range(0, 60):  # character edits of 0.5-2 %
        rate = [0.005, 0.01, 0.015, 0.02][i % 4]
        plant(f"enc-{i:04d}", enc[i], f"web-edit-{i:04d}", "web", edit(enc[i], rate, rng))
    for i in range(60, 90):  # a boilerplate line appended
        plant(f"enc-{i:04d}", enc[i], f"web-boiler-{i:04d}", "web", enc[i] + BOILERPLATE)
    for i in range(0, 30):  # news lines: small edits, as qa copies
        plant(f"news-{i:04d}", news[i], f"qa-edit-{i:04d}", "qa", edit(news[i], 0.01, rng))
    for i, paras in enumerate(articles):  # paragraphs reordered
        order = [paras[2], paras[0], paras[1]] if i % 2 else [paras[1], paras[2], paras[0]]
        plant(f"art-{i:04d}", "\n".join(paras), f"web-reorder-{i:04d}", "web", "\n".join(order))
    for i in range(90, 120):  # heavy edits (Jaccard < 0.5): must survive beside their originals
        rate = [0.12, 0.2, 0.3][i % 3]
        plant(f"enc-{i:04d}", enc[i], f"web-heavy-{i:04d}", "web", edit(enc[i], rate, rng), heavy=True)
    for i in range(120, 135):  # a heavy edit that keeps only the first 40 % of the text
        plant(f"enc-{i:04d}", enc[i], f"web-part-{i:04d}", "web", enc[i][: len(enc[i]) * 2 // 5] + "。", heavy=True)
    return docs, near_pairs, heavy_pairs


# ---------------------------------------------------------------------------------------------- running


class _WriteGroup(beam.DoFn):
    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def process(self, kv):
        part, rows = kv
        lines = sorted(json.dumps(r, ensure_ascii=False, sort_keys=True) for r in rows)
        Path(self.out_dir, f"part-{part}.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")


def run_near(docs: list[dict], config: NearDedupConfig, out_dir: Path, beam_args=()) -> dict:
    """Run NearDedup on ``docs``; outputs land in files (so any runner works) and are read back, sorted.

    One sink fed by all three outputs: Beam's Dask runner (2.77) computes only the pipeline's last leaf."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with beam.Pipeline(options=pipeline_options(list(beam_args))) as p:
        out = p | "Docs" >> beam.Create(docs) | "Near" >> NearDedup(config)
        tagged = [
            getattr(out, tag) | f"Tag{tag}" >> beam.Map(lambda r, t=tag: {"tag": t, "row": r})
            for tag in ("kept", "dropped", "clusters")
        ]
        (
            tagged
            | "All" >> beam.Flatten()
            | "Key" >> beam.Map(lambda r: (len(json.dumps(r, sort_keys=True)) % 3, r))
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteGroup(str(out_dir)))
        )
    result = {"kept": [], "dropped": [], "clusters": []}
    for path in sorted(out_dir.glob("part-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            result[r["tag"]].append(r["row"])
    result["kept"] = sorted(r["id"] for r in result["kept"])
    result["dropped"] = sorted(r["id"] for r in result["dropped"])
    result["clusters"] = sorted((r["doc_id"], r["cluster_id"], r["cluster_size"]) for r in result["clusters"])
    return result


def cluster_of(result: dict) -> dict[str, str]:
    return {d: c for d, c, _ in result["clusters"]}


@pytest.fixture(scope="module")
def planted():
    return planted_corpus()


@pytest.fixture(scope="module")
def planted_result(planted, tmp_path_factory):
    docs, _, _ = planted
    return run_near(docs, NearDedupConfig(), tmp_path_factory.mktemp("planted"))


# ---------------------------------------------------------------------------------------------- config


def test_config_from_dict_defaults_and_overrides():
    assert NearDedupConfig.from_dict({}) == NearDedupConfig()
    c = NearDedupConfig.from_dict({"exact": True, "near": False, "threshold": 0.7, "tokenizer": "jieba", "ngram": 3})
    assert (c.near, c.threshold, c.tokenizer, c.ngram) == (False, 0.7, "jieba", 3)
    assert NearDedupConfig().bands_rows == optimal_params(0.8, 128, 0.2, 0.8) == (12, 10)
    assert NearDedupConfig(verify=True).bands_rows == (16, 8)


@pytest.mark.parametrize(
    "table,key",
    [
        ({"thresold": 0.8}, "thresold"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": "high"}, "threshold"),
        ({"num_perm": 0}, "num_perm"),
        ({"ngram": True}, "ngram"),
        ({"tokenizer": "spacy"}, "tokenizer"),
        ({"verify": "yes"}, "verify"),
        ({"max_rounds": 0}, "max_rounds"),
    ],
)
def test_config_errors_name_where_and_key(table, key):
    with pytest.raises(UserError) as err:
        NearDedupConfig.from_dict(table, where="job.toml [dedup]")
    assert "job.toml [dedup]" in str(err.value) and key in str(err.value)


# ---------------------------------------------------------------------------------------------- planted corpus


def test_planted_near_duplicates_are_found(planted, planted_result):
    docs, near_pairs, heavy_pairs = planted
    text = {d["id"]: d["text"] for d in docs}
    cluster = cluster_of(planted_result)
    true_near = [(a, b) for a, b in near_pairs if text_jaccard(text[a], text[b]) >= 0.8]
    assert len(true_near) >= 0.9 * len(near_pairs)
    found = [(a, b) for a, b in true_near if a in cluster and cluster.get(a) == cluster.get(b)]
    assert len(found) / len(true_near) >= 0.95, sorted(set(true_near) - set(found))[:10]

    # no merge of a pair under Jaccard 0.5: not the heavy edits, and nothing inside any output cluster
    for a, b in heavy_pairs:
        assert text_jaccard(text[a], text[b]) < 0.5
        assert not (a in cluster and cluster.get(a) == cluster.get(b)), (a, b)
    members: dict[str, list[str]] = {}
    for d, c in cluster.items():
        members.setdefault(c, []).append(d)
    for ids in members.values():
        for a, b in combinations(ids, 2):
            assert text_jaccard(text[a], text[b]) >= 0.5, (a, b)


def test_every_doc_is_kept_or_dropped_once_and_clusters_are_consistent(planted, planted_result):
    docs, _, _ = planted
    kept, dropped = planted_result["kept"], planted_result["dropped"]
    assert sorted(kept + dropped) == sorted(d["id"] for d in docs)
    members: dict[str, list[str]] = {}
    for d, c, size in planted_result["clusters"]:
        members.setdefault(c, []).append(d)
    for c, ids in members.items():
        assert c == min(ids)  # cluster id: the smallest doc id
        assert {s for d, cc, s in planted_result["clusters"] if cc == c} == {len(ids)}
        assert len(set(ids) & set(kept)) == 1  # one survivor per cluster
    assert len(dropped) == sum(len(ids) - 1 for ids in members.values())
    assert len({c for _, c, _ in planted_result["clusters"]}) == len(members)


def test_survivors_follow_the_priority_rule(planted, planted_result):
    docs, _, _ = planted
    by_id = {d["id"]: d for d in docs}
    kept = set(planted_result["kept"])
    for d, _, _ in planted_result["clusters"]:
        if d.startswith(("web-edit", "web-boiler", "web-reorder", "qa-edit")):
            assert d not in kept  # the encyclopedia / news original wins over web and qa copies
    for c in {c for _, c, _ in planted_result["clusters"]}:
        ids = [d for d, cc, _ in planted_result["clusters"] if cc == c]
        winner = min(ids, key=lambda i: survivor_key(by_id[i], prefer_longer=True))
        assert winner in kept


# ---------------------------------------------------------------------------------------------- rules and graphs


def test_survivor_order_kind_then_longer_then_smaller_id(tmp_path):
    base = encyclopedia_paragraphs()[3]
    longer = base + "。"
    docs = [
        doc("a-web", "web", longer + "！"),
        doc("b-qa", "qa", longer),
        doc("c-news-short", "news", base),
        doc("d-news-long", "news", longer),
        doc("e-news-long", "news", longer[:-1] + "！"),
    ]
    result = run_near(docs, NearDedupConfig(**SMALL), tmp_path)
    assert result["kept"] == ["d-news-long"]  # news beats qa/web even when shorter; then longer; then smaller id
    assert {c for _, c, _ in result["clusters"]} == {"a-web"}
    assert {s for _, _, s in result["clusters"]} == {5}
    assert survivor_of(docs) == "d-news-long"
    docs.append(doc("z-enc", "encyclopedia", base[:-1] + "！"))
    assert run_near(docs, NearDedupConfig(**SMALL), tmp_path / "2")["kept"] == ["z-enc"]


def survivor_of(docs):
    from knowmix.pipelines.dedup import survivor_key

    return min(docs, key=lambda d: survivor_key(d, prefer_longer=True))["id"]


def transitive_chain():
    """A, B, C: windows of one long text; A~B and B~C share LSH buckets, A and C share none (Jaccard < 0.8)."""
    long_text = "".join(encyclopedia_paragraphs()[10:20])
    hasher = MinHasher()
    plain, verified = NearDedupConfig().bands_rows, NearDedupConfig(verify=True).bands_rows

    def keys(text, bands_rows):
        return set(band_keys(hasher.signature(text), *bands_rows))

    for width, shift in ((2000, 160), (2000, 170), (2000, 180), (2000, 150)):
        for start in range(0, 1200, 53):
            a = long_text[start : start + width]
            b = long_text[start + shift : start + shift + width]
            c = long_text[start + 2 * shift : start + 2 * shift + width]
            ka, kb, kc = (keys(t, plain) for t in (a, b, c))
            va, vb, vc = (keys(t, verified) for t in (a, b, c))
            if (
                ka & kb and kb & kc and not ka & kc and va & vb and vb & vc
                and text_jaccard(a, c) < 0.8 <= min(text_jaccard(a, b), text_jaccard(b, c))
            ):
                return a, b, c
    raise AssertionError("no chain found")


@pytest.mark.parametrize("verify", [False, True])
def test_transitive_cluster_has_one_survivor(tmp_path, verify):
    a, b, c = transitive_chain()
    docs = [doc("A", "web", a), doc("B", "web", b), doc("C", "web", c), doc("D", "web", encyclopedia_paragraphs()[0])]
    result = run_near(docs, NearDedupConfig(verify=verify, **SMALL), tmp_path)
    assert [(d, cl) for d, cl, _ in result["clusters"]] == [("A", "A"), ("B", "A"), ("C", "A")]
    assert {s for _, _, s in result["clusters"]} == {3}
    assert len(set(result["kept"]) & {"A", "B", "C"}) == 1 and "D" in result["kept"]


def test_verify_rejects_pairs_under_the_threshold(tmp_path):
    """A bucket collision below the threshold (threshold 0.8, pair at ~0.7) merges without verify, not with it."""
    paragraphs = encyclopedia_paragraphs()
    hasher = MinHasher()
    configs = (NearDedupConfig().bands_rows, NearDedupConfig(verify=True).bands_rows)
    rng = random.Random(9)
    pair = None
    for _ in range(400):
        text = rng.choice(paragraphs)
        other = edit(text, rng.choice([0.04, 0.05, 0.06]), rng)
        if text_jaccard(text, other) < 0.8 and all(
            set(band_keys(hasher.signature(text), *br)) & set(band_keys(hasher.signature(other), *br)) for br in configs
        ):
            pair = (text, other)
            break
    assert pair is not None
    docs = [doc("x", "web", pair[0]), doc("y", "web", pair[1])]
    assert run_near(docs, NearDedupConfig(**SMALL), tmp_path / "plain")["dropped"] == ["y"]
    verified = run_near(docs, NearDedupConfig(verify=True, **SMALL), tmp_path / "verified")
    assert verified["kept"] == ["x", "y"] and verified["clusters"] == []


def test_empty_and_short_texts(tmp_path):
    docs = [doc("e1", "web", ""), doc("e2", "web", ""), doc("s1", "web", "你好"), doc("s2", "qa", "你好"), doc("s3", "web", "再见")]
    result = run_near(docs, NearDedupConfig(**SMALL), tmp_path)
    assert result["kept"] == ["e1", "e2", "s2", "s3"]  # empty texts are never near-duplicates of each other
    assert result["clusters"] == [("s1", "s1", 2), ("s2", "s1", 2)]


def test_near_off_passes_everything_through(tmp_path):
    docs = [doc("a", "web", "同一段文字" * 20), doc("b", "web", "同一段文字" * 20)]
    result = run_near(docs, NearDedupConfig(near=False), tmp_path)
    assert result == {"kept": ["a", "b"], "dropped": [], "clusters": []}


def test_other_columns_pass_through_untouched():
    text = encyclopedia_paragraphs()[5]
    docs = [dict(doc("k", "encyclopedia", text), lang="zh", lang_score=0.99, n_chars=len(text), title="T"),
            dict(doc("l", "web", text + "。"), lang="zh", lang_score=0.5, n_chars=len(text) + 1)]
    with beam.Pipeline(options=pipeline_options([])) as p:
        out = p | beam.Create(docs) | NearDedup(NearDedupConfig(**SMALL))
        assert_that(out.kept, equal_to([docs[0]]), label="Kept")
        assert_that(out.dropped, equal_to([docs[1]]), label="Dropped")
        assert_that(out.clusters, equal_to([{"doc_id": "k", "cluster_id": "k", "cluster_size": 2},
                                            {"doc_id": "l", "cluster_id": "k", "cluster_size": 2}]), label="Clusters")


def union_find_components(edges):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in edges:
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[max(ru, rv)] = min(ru, rv)
    return {x: find(x) for x in parent}


def run_components(edges, max_rounds, expected=None):
    with beam.Pipeline(options=pipeline_options([])) as p:
        components = p | beam.Create(edges) | ConnectedComponents(max_rounds)
        if expected is not None:
            assert_that(components, equal_to(expected))


def test_connected_components_match_union_find_and_fail_loudly_when_rounds_run_out():
    rng = random.Random(4)
    nodes = [f"n{i:03d}" for i in range(120)]
    path = [(nodes[i], nodes[i + 1]) for i in range(40)]  # a long path (the slow case), shuffled labels
    shuffled = nodes[40:80]
    rng.shuffle(shuffled)
    path2 = [(shuffled[i], shuffled[i + 1]) for i in range(39)]
    rand = [tuple(rng.sample(nodes[80:], 2)) for _ in range(30)]
    edges = [(max(u, v), min(u, v)) for u, v in path + path2 + rand]
    expected = {n: r for n, r in union_find_components(edges).items() if n != r}
    run_components(edges, 12, sorted(expected.items()))
    with pytest.raises(Exception, match="did not converge in max_rounds = 2"):
        run_components(edges, 2)


# ---------------------------------------------------------------------------------------------- runners


def test_dask_runner_gives_the_same_result(planted, planted_result, tmp_path):
    pytest.importorskip("distributed")
    from tests.pipelines.dask_cluster import dask_runner_flags

    docs, _, _ = planted
    with dask_runner_flags(npartitions=2) as flags:
        dask = run_near(docs, NearDedupConfig(max_rounds=8), tmp_path, flags)
    assert dask["kept"] == planted_result["kept"]
    assert dask["clusters"] == planted_result["clusters"]
    assert dask["dropped"] == planted_result["dropped"]


# ---------------------------------------------------------------------------------------------- dedup keys


def test_doc_keys_find_the_shard_of_their_id():
    import numpy as np

    from knowmix.pipelines.doc_keys import doc_key, partitions_of_keys, record_key, shard_of, shard_of_key

    keys = np.array([doc_key(f"doc-{i}") for i in range(300)], dtype=np.int64)
    for n in (1, 3, 7, 64):  # the vectorised partitions (signed keys and unsigned hashes) agree with the scalar one
        assert partitions_of_keys(keys, n).tolist() == [(int(k) + (1 << 64)) % (1 << 64) % n for k in keys]
        assert partitions_of_keys(keys.view(np.uint64), n).tolist() == partitions_of_keys(keys, n).tolist()
    for i in range(300):
        for n in (1, 3, 7, 64):
            assert shard_of_key(doc_key(f"doc-{i}"), n) == shard_of(f"doc-{i}", n)
            # a record's key (where it came from) lands in its id's shard, and a renamed id beside it
            key = record_key(i % 3, f"a/b{i}.jsonl:{i}", i, f"doc-{i}", n)
            assert shard_of_key(key, n) == shard_of(f"doc-{i}", n) == shard_of(f"doc-{i}~2", n)
            assert -(1 << 63) <= key < (1 << 63)
    # two records with one id get two keys
    assert record_key(0, "a.jsonl:1", 0, "1", 4) != record_key(0, "b.jsonl:1", 0, "1", 4)


def test_key_buffer_packs_every_document_once_in_its_partition():
    import numpy as np

    from knowmix.pipelines.dedup import BAND_DTYPE, EXACT_DTYPE, DedupKeyBuffer, unpack, unpack_meta
    from knowmix.pipelines.doc_keys import doc_key, shard_of_key

    texts = news_lines()[:50]
    buffer = DedupKeyBuffer(exact=True, near=NearDedupConfig(), num_parts=3)
    for i, text in enumerate(texts):
        buffer.add(f"n{i}", "news", text)
    out = buffer.flush()
    assert len(buffer) == 0 and buffer.flush() == []
    by_tag: dict[str, list] = {}
    for tag, (part, blob) in out:
        by_tag.setdefault(tag, []).append((part, blob))
    records, ids, locations = unpack_meta(blob for _, blob in by_tag["meta"])
    assert locations == [""] * len(ids)
    assert sorted(ids) == sorted(f"n{i}" for i in range(len(texts)))
    assert [doc_key(i) for i in ids] == records["doc"].tolist() and np.all(np.diff(records["doc"]) >= 0)
    for part, blob in by_tag["meta"]:
        assert {shard_of_key(int(d), 3) for d in unpack_meta([blob])[0]["doc"]} == {part}
    assert len(unpack([b for _, b in by_tag["exact"]], EXACT_DTYPE)) == len(texts)
    bands, _ = NearDedupConfig().bands_rows
    assert len(unpack([b for _, b in by_tag["band"]], BAND_DTYPE)) == bands * len(texts)
    assert {part[0] for part, _ in by_tag["band"]} == set(range(bands))
