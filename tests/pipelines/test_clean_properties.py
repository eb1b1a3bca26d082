"""Property-based tests of the clean job's data-integrity contract (Hypothesis, real FnApiRunner).

Each example is a generated corpus: 1-3 JSON-lines files with generated names, holding documents drawn from
a small pool of encyclopedia paragraphs, their exact copies and one-character edits (near copies), ids that
collide within and across files (``1~2`` among them), malformed lines, lone surrogates and numbers as text.
It runs through the real clean job three times: as written, again (a rerun), and with the files renamed
(so read in another order). On every example:

* ``counts.input`` is the number of lines written (counted here, not by a reader);
* output ids are unique; every output id is its record's id, or ``BASE~K`` of it, counted in
  ``counts.id_collisions``;
* every distinct text of the input survives, or is a near duplicate of a text that does (nothing is lost
  to dedup or to an id shared with another document; no text is dropped as a duplicate of itself);
  ``exact_duplicate`` is the number of copies beyond the first of each distinct text;
* malformed and surrogate lines are dead letters, numbers are dropped by a rule;
* a rerun is byte-identical; renaming the files changes at most the ``location`` column.

Cost: each example runs the job 3 times, so it takes a fifth of the profile's ``max_examples`` (4 with the
default "ci" profile, 100 with ``--hypothesis-profile=long``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from knowmix.demo import fixture
from knowmix.manifest import open_shard_dir
from knowmix.pipelines.minhash import text_jaccard
from knowmix.pipelines.normalize import Normalizer, steps_for

EXAMPLES = max(1, settings.default.max_examples // 5)
_NORMALIZE = Normalizer(steps_for("encyclopedia"))
#: 6 distinct paragraphs; a "near copy" replaces one character (at one of 4 places) with 某
POOL = [_NORMALIZE(p) for p in sorted({r["context_text"] for r in json.load(open(fixture("encyclopedia_cmrc2018_trial.json"), encoding="utf-8"))})[60:66]]
IDS = ("1", "2", "3", "1~2")


def text_of(base: int, edit: int | None) -> str:
    text = POOL[base]
    if edit is None:
        return text
    at = 20 + 41 * edit
    return text[:at] + "某" + text[at + 1 :]


documents = st.tuples(st.just("doc"), st.sampled_from(IDS), st.integers(0, len(POOL) - 1), st.none() | st.integers(0, 3))
junk = st.tuples(st.sampled_from(("malformed", "surrogate", "number")), st.sampled_from(IDS), st.just(0), st.none())
records = st.one_of(documents, documents, documents, junk)  # mostly documents
names = st.text(alphabet="abcxyz_-09", min_size=1, max_size=6)


def line_of(record) -> str:
    what, doc_id, base, edit = record
    if what == "doc":
        return json.dumps({"id": doc_id, "text": text_of(base, edit)}, ensure_ascii=False)
    if what == "malformed":
        return '{"id": "' + doc_id + '", "text": '
    if what == "surrogate":
        return '{"id": "' + doc_id + '", "text": "\\ud83d' + POOL[base][:60] + '"}'
    return json.dumps({"id": doc_id, "text": 1234567})


def run_clean(src: str, out: str) -> dict:
    from knowmix.pipelines.clean import resolve, run
    from knowmix.pipelines.clean_config import load_config

    job = os.path.join(src, "job.toml")
    with open(job, "w", encoding="utf-8") as fh:
        fh.write(
            '[[sources]]\nkind = "encyclopedia"\nformat = "jsonl"\nid_field = "id"\npaths = ["in/*.jsonl"]\n'
            f'[output]\ndir = "{out}"\nnum_shards = 2\n[dedup]\nmax_rounds = 6\n'
        )
    return run(resolve(load_config(job), [], ["test"]))


def write_corpus(src: str, files: dict[str, list]) -> None:
    os.makedirs(os.path.join(src, "in"), exist_ok=True)
    for name, recs in files.items():
        with open(os.path.join(src, "in", f"{name}.jsonl"), "w", encoding="utf-8") as fh:
            fh.write("".join(line_of(r) + "\n" for r in recs))


def rows_without_location(out: str) -> list[dict]:
    rows = open_shard_dir(out).read_all().to_pylist()
    return sorted(({k: v for k, v in r.items() if k != "location"} for r in rows), key=lambda r: r["id"])


@settings(max_examples=EXAMPLES)
@given(
    corpus=st.lists(st.lists(records, min_size=1, max_size=8), min_size=1, max_size=3),
    file_names=st.lists(names, min_size=6, max_size=6, unique=True),
)
def test_nothing_is_lost_ids_are_unique_and_shards_do_not_depend_on_file_names(corpus, file_names):
    first, renamed = file_names[: len(corpus)], file_names[3 : 3 + len(corpus)]
    files = dict(zip(first, corpus))
    with tempfile.TemporaryDirectory() as tmp:
        write_corpus(tmp, files)
        manifest = run_clean(tmp, os.path.join(tmp, "out"))
        out = os.path.join(tmp, "out")

        # the independent count: one input record per line written
        lines = sum(len(recs) for recs in corpus)
        counts = manifest["counts"]
        assert counts["input"] == lines
        flat = [r for recs in corpus for r in recs]
        docs = [r for r in flat if r[0] == "doc"]
        assert counts["dead_letter"] == sum(1 for r in flat if r[0] in ("malformed", "surrogate"))

        rows = open_shard_dir(out).read_all().to_pylist()
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids))  # unique output ids
        texts = [r["text"] for r in rows]
        assert len(texts) == len(set(texts))  # no exact duplicate survives

        # every output id is its record's id or BASE~K of it; the renamed ones are counted
        renamed_ids = 0
        for r in rows:
            name, line = r["location"].rsplit(":", 1)
            record = files[name[: -len(".jsonl")]][int(line) - 1]
            assert r["text"] == text_of(record[2], record[3])
            if r["id"] != record[1]:
                base = re.sub(r"~[0-9]+$", "", record[1])
                assert re.fullmatch(re.escape(base) + r"~[0-9]+", r["id"]), (r["id"], record)
                renamed_ids += 1
        assert counts["id_collisions"] == renamed_ids == len(manifest["id_collisions"])
        assert {files[r["location"].rsplit(":", 1)[0][:-6]][int(r["location"].rsplit(":", 1)[1]) - 1][1] for r in rows} <= set(ids)

        # every distinct text survives or is a near duplicate of a survivor; exact duplicates counted exactly
        distinct = {text_of(r[2], r[3]) for r in docs}
        for text in distinct:
            assert text in texts or max(text_jaccard(text, t) for t in texts) >= 0.5
        dropped = counts["dropped"]
        assert dropped.get("exact_duplicate", 0) == len(docs) - len(distinct)
        assert dropped.get("near_duplicate", 0) == len(distinct) - len(rows)
        rules = sum(v for k, v in dropped.items() if k not in ("exact_duplicate", "near_duplicate"))
        assert rules == sum(1 for r in flat if r[0] == "number")

        # a rerun is byte-identical
        again = run_clean(tmp, os.path.join(tmp, "again"))
        assert again["shards"] == manifest["shards"] and again["counts"] == counts

        # the same files under other names (read in another order): only locations may change
        other = os.path.join(tmp, "renamed")
        write_corpus(other, dict(zip(renamed, corpus)))
        moved = run_clean(other, os.path.join(other, "out"))
        assert moved["counts"] == counts
        assert rows_without_location(os.path.join(other, "out")) == rows_without_location(out)
