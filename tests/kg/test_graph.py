import gzip
import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from knowmix.kg.graph import iter_triples
from knowmix.kg.index import TypeRules, load_kg
from knowmix.kg.stats import graph_stats
from knowmix.kg.cli import kg_stats_main
from knowmix.errors import UserError
from tests.kg.helpers import ADMIN, WORLD


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_admin_fixture_ignores_unknown_columns_and_keeps_types_and_aliases():
    kg = load_kg([ADMIN])
    e = kg.index.get("嘉定区")
    assert e.type == "county" and not e.type_inferred
    assert "嘉定" in e.aliases
    assert kg.index.relations_between("嘉定区", "上海市") == ("located_in",)
    assert "嘉定区" in kg.index.candidates("嘉定")
    assert kg.problems == []


def test_world_fixture_bad_lines_reported_with_line_numbers():
    kg = load_kg([WORLD])
    got = {(p.line, p.reason) for p in kg.problems}
    assert (43, "self_loop") in got  # 新加坡 capital 新加坡
    assert (160, "duplicate_triple") in got  # 佛罗伦萨 country 意大利, again
    assert all(p.path == WORLD for p in kg.problems)
    assert kg.problem_counts()["self_loop"] == 8


def test_bad_tsv_lines_counted_never_crash(tmp_path):
    path = write(tmp_path / "kg.tsv",
                 "head\trelation\ttail\thead_type\n"
                 "北京\tcapital_of\t中国\tcity\n"        # 2 ok
                 "上海\tin\n"                           # 3 wrong column count
                 "\tin\t中国\tcity\n"                   # 4 empty name
                 "中国\tsame\t中国\tcountry\n"           # 5 self-loop
                 "北京\tcapital_of\t中国\tcity\n"        # 6 duplicate
                 "\n"
                 "广州\tin\t中国\tcity\textra\n"          # 8 wrong column count
                 "广州\tin\t中国\t\n")                   # 9 ok, no type
    kg = load_kg([path])
    assert [(p.line, p.reason) for p in kg.problems] == [
        (3, "wrong_column_count"), (4, "empty_name"), (5, "self_loop"), (6, "duplicate_triple"), (8, "wrong_column_count")]
    assert len(kg.triples) == 2
    assert all(str(p).startswith(f"{path}:{p.line}: ") for p in kg.problems)
    # 广州 has no type: inferred from the typed entities in the same relation role? (in:head has none) -> role name
    gz = kg.index.get("广州")
    assert gz.type_inferred and gz.type == "in:head"
    assert kg.index.get("北京").type == "city" and not kg.index.get("北京").type_inferred


def test_type_inferred_from_majority_of_same_role(tmp_path):
    path = write(tmp_path / "kg.tsv",
                 "head\trelation\ttail\thead_type\ttail_type\n"
                 "A市\tlocated_in\tX省\tcity\tprovince\n"
                 "B市\tlocated_in\tX省\tcity\t\n"
                 "C市\tlocated_in\tY省\t\t\n")
    # two typed cities of three entities in located_in:head: enough with min_support 2, not with the default 3
    idx = load_kg([path], rules=TypeRules(min_support=2)).index
    assert (idx.get("C市").type, idx.get("C市").type_inferred, idx.get("C市").type_source) == ("city", True, "role_majority")
    # located_in:tail: one typed province of two entities is no majority -> the role signature
    assert (idx.get("Y省").type, idx.get("Y省").type_source) == ("located_in:tail", "role_signature")
    assert idx.inferred == {"from_role_majority": 1, "from_role_signature": 1}
    assert idx.inferred_roles["city"] == {"rule": "role_majority", "entities": 1, "roles": {"located_in:head": 1}}
    idx = load_kg([path]).index
    assert idx.get("C市").type == "located_in:head"


def test_a_few_homonyms_cannot_type_a_role_of_companies(tmp_path):
    """The issue's case: a typed admin KG and an untyped company KG share two names; in 合作:head the only typed
    entities are those two townships, so the majority rule must not type the companies as townships."""
    admin = write(tmp_path / "admin.tsv", "head\trelation\ttail\thead_type\ttail_type\n"
                  "平安\tlocated_in\t某县\ttownship\tcounty\n兴业\tlocated_in\t某县\ttownship\tcounty\n")
    companies = [f"公司{chr(0x4e00 + i)}" for i in range(8)]
    lines = [f"{c}\t合作\t{companies[(i + 1) % 8]}" for i, c in enumerate(companies)]
    lines += ["平安\t合作\t公司一", "兴业\t合作\t公司丁"]
    fin = write(tmp_path / "fin.tsv", "head\trelation\ttail\n" + "\n".join(lines) + "\n")
    idx = load_kg([admin, fin]).index
    assert {idx.get(c).type for c in companies} == {"合作:head", "合作:tail"}
    assert all(idx.get(c).type_source == "role_signature" for c in companies)
    # the old rule (any typed entity in the role votes) gave them all 'township': min_support 1, no share needed
    old = load_kg([admin, fin], rules=TypeRules(min_support=1, min_share=0.0)).index
    assert {old.get(c).type for c in companies} == {"township"}
    # a role signature never equals a declared type
    weird = write(tmp_path / "weird.tsv", "head\trelation\ttail\thead_type\ttail_type\nX公司\t合作\tY公司\t合作:head\t\n"
                  "Z公司\t合作\tW公司\t\t\n")
    idx = load_kg([weird]).index
    assert idx.get("Z公司").type == "role:合作:head" and idx.get("X公司").type == "合作:head"


def test_junk_names_are_bad_lines(tmp_path):
    path = write(tmp_path / "kg.tsv",
                 "head\trelation\ttail\thead_aliases\n"
                 "<N>\t合作\t京东方\t\n"          # 2 placeholder
                 "京东方\t合作\t123\t\n"          # 3 digits only
                 "京东方\t合作\tTCL\t京东|--|B\n"  # 4 ok; aliases '--' and 'B' (1 char) are junk, 京东 kept
                 "F&amp\t合作\t京东方\t\n"        # 5 HTML reference leaves one letter
                 "LG\t合作\t京东方\t\n")          # 6 ok: two letters
    kg = load_kg([path])
    assert [(p.line, p.reason) for p in kg.problems] == [
        (2, "junk_name"), (3, "junk_name"), (4, "junk_name"), (4, "junk_name"), (5, "junk_name")]
    assert sorted(kg.index.surface_to_ids) == ["LG", "TCL", "京东", "京东方"]
    assert kg.problem_counts() == {"junk_name": 5}
    assert [t.head for t in iter_triples(path)] == ["京东方", "LG"]
    # a longer minimum makes short names junk too
    assert "LG" not in load_kg([path], min_name_chars=3).index.surface_to_ids


def test_homonyms_across_sources_become_distinct_entities(tmp_path):
    a = write(tmp_path / "a.tsv", "head\trelation\ttail\thead_type\ttail_type\n平安\tlocated_in\t海东市\ttownship\tcity\n")
    b = write(tmp_path / "b.tsv", "head\trelation\ttail\thead_type\ttail_type\n平安\t合作\t招商银行\tcompany\tcompany\n")
    kg = load_kg([a, b])
    idx = kg.index
    assert idx.candidates("平安") == ("平安@company", "平安@township")
    assert idx.get("平安@township").type == "township" and idx.get("平安@company").type == "company"
    assert idx.relations_between("平安@township", "海东市") == ("located_in",)
    assert idx.relations_between("平安@company", "招商银行") == ("合作",)
    assert [(t.head, t.relation, t.tail) for t in iter_triples(b, kg.raw.renames)] == [("平安@company", "合作", "招商银行")]
    from knowmix.kg.stats import graph_stats

    hom = graph_stats(kg)["homonyms"]
    assert hom["count"] == 1 and hom["names"]["平安"]["types"] == {a: "township", b: "company"}


def test_missing_header_column_and_missing_file_are_user_errors(tmp_path):
    path = write(tmp_path / "kg.tsv", "subject\trelation\ttail\na\tb\tc\n")
    with pytest.raises(UserError, match="head"):
        load_kg([path])
    with pytest.raises(UserError, match="no such file"):
        load_kg([str(tmp_path / "nope.tsv")])
    with pytest.raises(UserError, match="unknown knowledge-graph format"):
        load_kg([write(tmp_path / "kg.xml", "x")])


def test_jsonl(tmp_path):
    lines = [json.dumps({"head": "腾讯", "relation": "投资", "tail": "京东", "head_type": "公司",
                         "tail_type": "公司", "tail_aliases": "京东集团|JD"}, ensure_ascii=False),
             "{not json",
             json.dumps({"head": "腾讯", "tail": "京东"}, ensure_ascii=False),
             json.dumps({"head": "腾讯", "relation": "投资", "tail": "腾讯"}, ensure_ascii=False)]
    path = write(tmp_path / "kg.jsonl", "\n".join(lines) + "\n")
    kg = load_kg([path])
    assert [(p.line, p.reason) for p in kg.problems] == [(2, "malformed_json"), (3, "wrong_column_count"), (4, "self_loop")]
    assert kg.index.get("京东").aliases == ("JD", "京东集团")
    assert kg.index.relations_between("腾讯", "京东") == ("投资",)


NT = """\
# a comment
<http://ex.org/e/Beijing> <http://www.w3.org/2000/01/rdf-schema#label> "北京"@zh .
<http://ex.org/e/Beijing> <http://www.w3.org/2000/01/rdf-schema#label> "Beijing"@en .
<http://ex.org/e/Beijing> <http://www.w3.org/2004/02/skos/core#altLabel> "北平" .
<http://ex.org/e/Beijing> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <http://ex.org/t/City> .
<http://ex.org/e/Beijing> <http://ex.org/p/capitalOf> <http://ex.org/e/China> .
<http://ex.org/e/China> <http://www.w3.org/2000/01/rdf-schema#label> "\\u4E2D\\u56FD" .
<http://ex.org/e/China> <http://ex.org/p/population> "1400000000"^^<http://www.w3.org/2001/XMLSchema#integer> .
<http://ex.org/e/China> <http://ex.org/p/capitalOf> <http://ex.org/e/China> .
this is not a triple
<http://ex.org/e/Beijing> <http://ex.org/p/capitalOf> <http://ex.org/e/China> .
"""


@pytest.mark.parametrize("gz", [False, True])
def test_ntriples(tmp_path, gz):
    if gz:
        path = str(tmp_path / "kg.nt.gz")
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(NT)
    else:
        path = write(tmp_path / "kg.nt", NT)
    kg = load_kg([path])
    assert [(p.line, p.reason) for p in kg.problems] == [(9, "self_loop"), (10, "malformed_ntriples"), (11, "duplicate_triple")]
    bj = kg.index.get("http://ex.org/e/Beijing")
    assert bj.name == "北京" and bj.aliases == ("北平",) and bj.type == "City"
    assert kg.index.get("http://ex.org/e/China").name == "中国"
    assert kg.index.relations_between("http://ex.org/e/Beijing", "http://ex.org/e/China") == ("capitalOf",)
    assert kg.index.candidates("北平") == ("http://ex.org/e/Beijing",)


def test_entities_file(tmp_path):
    kgp = write(tmp_path / "kg.tsv", "head\trelation\ttail\n腾讯\t投资\t京东\n")
    ents = write(tmp_path / "entities.tsv", "name\ttype\taliases\n腾讯\t公司\t腾讯控股|鹅厂\n阿里巴巴\t公司\t阿里\n"
                 "\t公司\t\n只有两列\t公司\n")
    kg = load_kg([kgp], [ents])
    assert kg.index.get("腾讯").type == "公司" and not kg.index.get("腾讯").type_inferred
    assert kg.index.get("阿里巴巴").aliases == ("阿里",)
    # no typed entity fills 投资:tail, so 京东 gets the role name as its (inferred) type
    assert kg.index.get("京东").type == "投资:tail" and kg.index.get("京东").type_inferred
    assert [(p.line, p.reason) for p in kg.problems] == [(4, "empty_name"), (5, "wrong_column_count")]


def test_graph_stats_and_cli(capsys):
    kg = load_kg([ADMIN, WORLD])
    s = graph_stats(kg)
    assert s["entities"] == len(kg.index.entities) and s["triples"] == len(kg.triples)
    assert s["relations"]["located_in"] > 3000
    assert s["types"]["county"] > 1000
    assert s["inferred"]["entities"] > 0
    assert sum(s["degree"]["distribution"].values()) == s["entities"]
    assert s["bad_lines"] == {"duplicate_triple": 1, "self_loop": 8}
    assert kg_stats_main(["--kg", ADMIN, "--kg", WORLD, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["triples"] == s["triples"]
    assert kg_stats_main(["--kg", WORLD]) == 0
    assert "self_loop" in capsys.readouterr().out


def test_truncated_gzip_keeps_what_was_read_and_reports_the_rest(tmp_path):
    import io

    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as fh:
        fh.write(("head\trelation\ttail\n" + "".join(f"城{i}\tin\t省{i % 7}\n" for i in range(5000))).encode())
    path = tmp_path / "kg.tsv.gz"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    kg = load_kg([str(path)])
    assert 0 < len(kg.triples) < 5000
    assert [p.reason for p in kg.problems] == ["unreadable"]
    assert kg.problems[0].line > len(kg.triples)


@example(["&amp"], "AB")
@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("0123456789０１２.-_%#/（）()<>[]{}&;:，。 ") + ["<N>", "[UNK]", "&amp", "&#39;"]),
                min_size=0, max_size=8),
       st.text(alphabet="平安合作京东方ABCxyz", min_size=2, max_size=6))
def test_junk_name_property(junk_parts, name):
    """Digits, punctuation and placeholders alone never make a name; adding a real name (≥ 2 Han characters or
    letters) to them always does."""
    from knowmix.kg.graph import is_junk_name

    junk = "".join(junk_parts)
    assert is_junk_name(junk)
    assert not is_junk_name(junk + name) and not is_junk_name(name + junk)
