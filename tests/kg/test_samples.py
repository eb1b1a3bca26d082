import pytest

from knowmix.kg.index import TypeRules, index_from_triples, load_kg
from knowmix.kg.link import Linker, Mention
from knowmix.kg.samples import (
    NA, TASKS, SubstitutionSampler, is_na, na_quota, select_na, sentence_outcomes, sentence_samples,
)
from tests.kg.helpers import ADMIN, COOC, WORLD


@pytest.fixture(scope="module")
def kg():
    return load_kg([ADMIN, WORLD])


@pytest.fixture(scope="module")
def linked(kg):
    linker = Linker(kg.index)
    rows = [line.rstrip("\n").split("\t") for line in open(COOC, encoding="utf-8")][1:]
    return [(f"d{i}", f"d{i}#00000", r[-1], linker.link(r[-1]).mentions) for i, r in enumerate(rows)]


def all_samples(kg, linked, seed=0):
    sampler = SubstitutionSampler(kg.index)
    out = []
    for doc, sid, text, mentions in linked:
        out += sentence_samples(doc, sid, text, mentions, kg.index, kg.index.relations_between, TASKS, sampler, seed)
    return out


def check_span(row, span):
    assert row["text"][span["start"]:span["end"]] == span["name"]


def test_relation_samples_invariants(kg, linked):
    rows = [r for r in all_samples(kg, linked) if r["task"] == "relation"]
    assert rows and any(not is_na(r) for r in rows) and any(is_na(r) for r in rows)
    for r in rows:
        check_span(r, r["head"])
        check_span(r, r["tail"])
        assert r["head"]["entity_id"] != r["tail"]["entity_id"]
        expected = sorted(kg.index.relations_between(r["head"]["entity_id"], r["tail"]["entity_id"])) or [NA]
        assert r["relations"] == expected
        assert r["head"]["type"] == kg.index.get(r["head"]["entity_id"]).type


def test_substitution_invariants(kg, linked):
    rows = [r for r in all_samples(kg, linked) if r["task"] == "substitution"]
    name_to_id = {e.name: e.id for e in kg.index.entities.values()}
    replaced = kept = 0
    for r, (doc, sid, text, mentions) in zip(rows, [x for x in linked if x[3]]):
        ms = sorted(mentions, key=lambda m: m.start)
        assert len(r["mentions"]) == len(ms)
        new_ids = []
        for m, orig in zip(r["mentions"], ms):
            word = m["replacement"] if m["replacement"] is not None else m["original"]
            assert r["text"][m["start"]:m["end"]] == word
            assert m["original"] == orig.surface
            assert m["type"] == kg.index.get(orig.entity_id).type
            if m["replacement"] is None:
                kept += 1
                new_ids.append(orig.entity_id)
                continue
            replaced += 1
            rep = kg.index.get(name_to_id[m["replacement"]])
            assert rep.type == m["type"]  # same type
            assert rep.id != orig.entity_id
            assert m["replacement"] not in kg.index.get(orig.entity_id).surfaces  # never an alias of the original
            assert not set(rep.surfaces) & set(kg.index.get(orig.entity_id).surfaces)
            new_ids.append(rep.id)
            # never a true statement: the replacement has no triple with any other entity of the sentence
            for other in {x.entity_id for x in ms} | set(new_ids):
                if other != rep.id and other != orig.entity_id:
                    assert not kg.index.connected(rep.id, other), (r["text"], rep.id, other)
        # text outside the mentions is unchanged
        pieces, pos = [], 0
        for m, orig in zip(r["mentions"], ms):
            pieces.append(text[pos:orig.start])
            pos = orig.end
        assert "".join(pieces) + text[pos:] == "".join(
            r["text"][a["end"]:b["start"]] for a, b in zip([{"end": 0}] + r["mentions"], r["mentions"])) + r["text"][r["mentions"][-1]["end"]:]
    assert replaced > 0 and kept > 0
    assert 0.3 < replaced / (replaced + kept) < 0.7


def test_triple_mask_samples(kg, linked):
    rows = [r for r in all_samples(kg, linked) if r["task"] == "triple_mask"]
    assert len(rows) >= 100
    for r in rows:
        check_span(r, r["head"])
        check_span(r, r["tail"])
        h, t = r["head"]["entity_id"], r["tail"]["entity_id"]
        assert r["triple"]["relation"] in kg.index.relations_between(h, t)
        assert (r["triple"]["head"], r["triple"]["tail"]) == (kg.index.get(h).name, kg.index.get(t).name)


def test_deterministic_by_seed(kg, linked):
    assert all_samples(kg, linked, seed=3) == all_samples(kg, linked, seed=3)
    a = [r["text"] for r in all_samples(kg, linked, seed=3) if r["task"] == "substitution"]
    b = [r["text"] for r in all_samples(kg, linked, seed=4) if r["task"] == "substitution"]
    assert a != b


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3, 0.5, 0.9, 1.0])
def test_na_down_sampling(kg, linked, ratio):
    rows = [r for r in all_samples(kg, linked) if r["task"] == "relation"]
    kept, dropped = select_na(rows, ratio, seed=1)
    na = sum(1 for r in kept if is_na(r))
    assert na <= ratio * len(kept) + 1e-9
    assert len(kept) + len(dropped) == len(rows)
    positive = len(rows) - sum(1 for r in rows if is_na(r))
    assert na == na_quota(positive, na + len(dropped), ratio)
    assert select_na(rows, ratio, seed=1) == (kept, dropped)


def test_na_quota_edges():
    assert na_quota(10, 100, 0.5) == 10
    assert na_quota(10, 3, 0.5) == 3
    assert na_quota(0, 5, 0.5) == 0
    assert na_quota(7, 100, 1 / 3) == 3
    for p in range(50):
        for r in (0.1, 0.25, 1 / 3, 0.5, 0.7):
            k = na_quota(p, 1000, r)
            assert k <= r * (p + k) + 1e-12 and (k + 1) > r * (p + k + 1) - 1e-9


def test_substitution_never_picks_alias_or_true_triple():
    # 北京市 has alias 北京 (another entity's name); 天津 is connected to 中国 in the sentence
    idx = index_from_triples(
        [("北京", "capital_of", "中国"), ("天津", "city_of", "中国"), ("上海", "city_of", "中国"), ("巴黎", "capital_of", "法国")],
        types={"北京": "city", "北京市": "city", "天津": "city", "上海": "city", "巴黎": "city", "中国": "country", "法国": "country"},
        aliases={"北京市": ["北京"]},
    )
    sampler = SubstitutionSampler(idx, probability=1.0, tries=64)
    text = "北京是中国的首都"
    ms = [Mention(0, 2, "北京", "北京"), Mention(3, 5, "中国", "中国")]
    seen = set()
    for seed in range(200):
        row = sampler.sample("d", "d#0", text, ms, seed)
        m0 = row["mentions"][0]
        if m0["replacement"] is not None:
            seen.add(m0["replacement"])
        m1 = row["mentions"][1]
        assert m1["replacement"] in (None, "法国")
        if m1["replacement"] == "法国":
            assert m0["replacement"] != "巴黎"
    assert "北京市" not in seen and "天津" not in seen and "上海" not in seen
    assert seen <= {"巴黎"}


def test_sentence_outcomes():
    ms = [Mention(0, 2, "北京", "a"), Mention(3, 5, "中国", "b")]
    na_row = {"task": "relation", "relations": [NA]}
    pos_row = {"task": "relation", "relations": ["x"]}
    sub_row = {"task": "substitution", "relations": None}
    assert sentence_outcomes([], 0, [], TASKS)[""] == "no_entity"
    assert sentence_outcomes([], 2, [], TASKS)["relation"] == "ambiguous"
    assert sentence_outcomes(ms[:1], 0, [sub_row], TASKS) == {"": None, "relation": "one_entity", "substitution": None, "triple_mask": "one_entity"}
    o = sentence_outcomes(ms, 0, [na_row, na_row], ("relation", "triple_mask"))
    assert o == {"": "pending_na", "relation": "pending_na", "triple_mask": "no_triple"}
    assert sentence_outcomes(ms, 0, [na_row, pos_row], ("relation",))["relation"] is None


def test_substitution_stays_in_its_pool_and_records_both_entities():
    """A declared county is replaced by a declared county, never by an entity whose 'county' was inferred by role
    majority; role signatures are pools of their own; the mention records both ids and types."""
    triples = [(f"{c}县", "located_in", "某市") for c in "甲乙丙丁"] + [("戊县", "located_in", "某市")]
    triples += [(f"公司{c}", "合作", f"公司{d}") for c, d in zip("一二三四", "二三四一")]
    types = {f"{c}县": "county" for c in "甲乙丙丁"}
    types["某市"] = "prefecture"
    idx = index_from_triples(triples, types=types, rules=TypeRules(min_support=3))
    assert (idx.get("戊县").type, idx.get("戊县").type_source) == ("county", "role_majority")
    assert idx.get("公司一").type_source == "role_signature"
    sampler = SubstitutionSampler(idx, probability=1.0, tries=64)
    seen = set()
    for k, text in enumerate(["甲县和戊县", "公司一与公司二合作", "乙县的公司三"]):
        ms = [Mention(text.index(n), text.index(n) + len(n), n, n) for n in ("甲县", "戊县", "乙县", "公司一", "公司二", "公司三")
              if n in text]
        for seed in range(30):
            row = sampler.sample("d", f"d#{k}", text, ms, seed)
            for m in row["mentions"]:
                if m["replacement_id"] is None:
                    continue
                orig, rep = idx.get(m["entity_id"]), idx.get(m["replacement_id"])
                assert (orig.type, orig.type_source) == (rep.type, rep.type_source), m
                assert m["type"] == m["replacement_type"] == orig.type and m["type_source"] == orig.type_source
                seen.add((m["entity_id"], m["replacement_id"]))
    assert ("戊县", "甲县") not in seen and ("甲县", "戊县") not in seen
    assert any(a.startswith("公司") for a, _ in seen) and any(a.endswith("县") for a, _ in seen)
