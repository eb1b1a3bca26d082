import gzip
import json

import pytest

from kg.index import load_kg
from kg.stats import graph_stats
from kg.cli import kg_stats_main
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
    idx = load_kg([path]).index
    assert (idx.get("C市").type, idx.get("C市").type_inferred) == ("city", True)
    assert (idx.get("Y省").type, idx.get("Y省").type_inferred) == ("province", True)
    assert idx.inferred == {"from_role_majority": 2}


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
