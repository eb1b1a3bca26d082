"""Source specs: the TOML table, the --source shorthand, glob expansion and format from the file name."""

from __future__ import annotations

import pytest

from knowmix.corpora.sources import (
    DEFAULT_MAX_RECORD_BYTES,
    SourceSpec,
    expand_paths,
    format_of,
    source_from_dict,
    source_from_shorthand,
)
from knowmix.errors import UserError


def test_shorthand_kind_format_glob():
    s = source_from_shorthand("qa:csv=zhidao/*.csv")
    assert s == SourceSpec(kind="qa", format="csv", paths=("zhidao/*.csv",))
    s = source_from_shorthand("web=pages/*.html")
    assert (s.kind, s.format, s.paths, s.encoding, s.text_fields) == ("web", None, ("pages/*.html",), "auto", ("text",))
    assert s.max_record_bytes == DEFAULT_MAX_RECORD_BYTES == 8 * 1024 * 1024


@pytest.mark.parametrize(
    "bad, words",
    [
        ("web", ["KIND[:FORMAT]=GLOB"]),
        ("=x.txt", ["KIND[:FORMAT]=GLOB"]),
        ("web=", ["KIND[:FORMAT]=GLOB"]),
        ("blog=x.txt", ["kind", "'blog'", "web, encyclopedia, news, qa"]),
        ("news:tsv=x.tsv", ["format", "'tsv'"]),
        ("news:jsonn=x.json", ["did you mean 'jsonl'"]),
    ],
)
def test_shorthand_errors_name_the_option(bad, words):
    with pytest.raises(UserError) as e:
        source_from_shorthand(bad)
    msg = str(e.value)
    assert f"--source {bad!r}" in msg and "\n" not in msg
    for w in words:
        assert w in msg


def test_source_from_dict_full_table():
    s = source_from_dict(
        {
            "kind": "qa",
            "format": "csv",
            "paths": ["a/*.csv", "b.csv"],
            "encoding": "gbk",
            "text_fields": ["title", "question", "reply"],
            "id_field": "id",
            "title_field": "title",
            "url_field": "url",
            "max_record_bytes": 1000,
        },
        "job.toml: sources[0]",
    )
    assert s.paths == ("a/*.csv", "b.csv") and s.text_fields == ("title", "question", "reply")
    assert (s.encoding, s.id_field, s.title_field, s.url_field, s.max_record_bytes) == ("gbk", "id", "title", "url", 1000)
    assert source_from_dict({"kind": "news", "paths": "x.txt", "txt_mode": "block"}, "w").paths == ("x.txt",)


@pytest.mark.parametrize(
    "table, words",
    [
        ({"kind": "qa", "paths": ["x"], "text_field": ["a"]}, ["unknown key 'text_field'", "did you mean 'text_fields'"]),
        ({"kind": "forum", "paths": ["x"]}, ["kind = 'forum'"]),
        ({"kind": "qa", "paths": ["x"], "format": "xlsx"}, ["format = 'xlsx'"]),
        ({"kind": "qa"}, ["missing key 'paths'"]),
        ({"paths": ["x"]}, ["missing key 'kind'"]),
        ({"kind": "qa", "paths": []}, ["paths must be"]),
        ({"kind": "qa", "paths": ["x"], "encoding": "gbkk"}, ["encoding = 'gbkk'"]),
        ({"kind": "qa", "paths": ["x"], "encoding": "rot13"}, ["encoding = 'rot13' is not a text encoding"]),
        ({"kind": "qa", "paths": ["x"], "encoding": "hex"}, ["encoding = 'hex' is not a text encoding"]),
        ({"kind": "qa", "paths": ["x"], "encoding": "base64_codec"}, ["not a text encoding"]),
        ({"kind": "qa", "paths": ["x"], "txt_mode": "para"}, ["txt_mode = 'para'"]),
        ({"kind": "qa", "paths": ["x"], "max_record_bytes": 0}, ["max_record_bytes"]),
        ({"kind": "qa", "paths": ["x"], "text_fields": [1]}, ["text_fields"]),
    ],
)
def test_source_from_dict_errors_name_where_and_key(table, words):
    with pytest.raises(UserError) as e:
        source_from_dict(table, "job.toml: sources[3]")
    msg = str(e.value)
    assert msg.startswith("job.toml: sources[3]: ") and "\n" not in msg
    for w in words:
        assert w in msg


def test_expand_paths_sorted_deduplicated_and_missing(tmp_path):
    for name in ("b.txt", "a.txt", "c.csv"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.txt").write_text("x\n")
    spec = SourceSpec("news", None, (str(tmp_path / "*.txt"), str(tmp_path / "a.txt"), str(tmp_path / "**" / "d.txt")))
    assert expand_paths(spec) == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), str(tmp_path / "sub" / "d.txt")]
    with pytest.raises(UserError, match=r"nothing\*\.txt' matches no file"):
        expand_paths(SourceSpec("news", None, (str(tmp_path / "nothing*.txt"),)))
    with pytest.raises(UserError, match="matches no file"):  # a directory is not a file
        expand_paths(SourceSpec("news", None, (str(tmp_path / "sub"),)))


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("a.jsonl", "jsonl"),
        ("a.jsonl.gz", "jsonl"),
        ("a.json.gz", "jsonl"),
        ("a.JSONL.zst", "jsonl"),
        ("a.txt", "txt"),
        ("a.txt.bz2", "txt"),
        ("a.csv", "csv"),
        ("a.html", "html"),
        ("a.htm", "html"),
        ("a.warc", "warc"),
        ("a.warc.gz", "warc"),
        ("a.wet", "warc"),
        ("a.xml", "mediawiki"),
        ("zhwiki-pages-articles.xml.bz2", "mediawiki"),
        ("a.json", "squad"),
    ],
)
def test_format_from_extension(name, fmt):
    assert format_of(SourceSpec("web", None, ()), f"d/{name}") == fmt


def test_explicit_format_wins_and_unknown_extension_is_a_user_error():
    assert format_of(SourceSpec("web", "txt", ()), "d/a.dat") == "txt"
    with pytest.raises(UserError, match=r"d/a\.dat: cannot tell the format"):
        format_of(SourceSpec("web", None, ()), "d/a.dat")
