"""Every job with every input and output on a non-local Beam filesystem, end to end, against a local run.

``memtest://KEY`` is a Beam ``FileSystem`` registered here (Beam finds ``FileSystem`` subclasses by their
scheme), an object store in a temporary directory with GCS's semantics: no directories (a listing is by prefix;
a "directory" does not exist, only objects under it), rename is copy-and-delete, and every open for reading is
logged. The jobs run on the in-process FnApiRunner, so the workers see the registered class. Inputs downstream
of clean are the local run's docs copied up (a document id holds a hash of its source path, so clean's own
shards differ by path); their shards must then be byte for byte the local run's.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import posixpath
import shutil

import pytest
from apache_beam.io.filesystem import BeamIOError, CompressionTypes, FileMetadata, FileSystem
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

from knowmix.cli import main
from knowmix.demo import fixture
from knowmix.manifest import open_shard_dir, read_arrow, read_manifest

PREFIX = "memtest://"


class MemTestFileSystem(FileSystem):
    """``memtest://KEY`` -> ``ROOT/KEY``: a bucket-like store (see the module docstring)."""

    ROOT = ""
    opened: list[str] = []

    @classmethod
    def scheme(cls):
        return "memtest"

    def _local(self, path: str) -> str:
        assert path.startswith(PREFIX), path
        return os.path.join(self.ROOT, path[len(PREFIX):])

    def join(self, basepath, *paths):
        return posixpath.join(basepath, *paths)

    def split(self, path):
        i = path.rstrip("/").rfind("/")
        return (path, "") if i < len(PREFIX) else (path[:i], path[i + 1:])

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, prefix):
        for dirpath, _, files in os.walk(self.ROOT):
            for name in files:
                local = os.path.join(dirpath, name)
                path = PREFIX + os.path.relpath(local, self.ROOT).replace(os.sep, "/")
                if path.startswith(prefix):
                    yield FileMetadata(path, os.path.getsize(local), os.path.getmtime(local))

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        local = self._local(path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        return LocalFileSystem(None)._path_open(local, "wb", mime_type, compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        if not self.exists(path):
            raise BeamIOError("Open failed", {path: FileNotFoundError(path)})
        type(self).opened.append(path)
        return LocalFileSystem(None)._path_open(self._local(path), "rb", mime_type, compression_type)

    def copy(self, sources, destinations):
        for src, dst in zip(sources, destinations):
            os.makedirs(os.path.dirname(self._local(dst)), exist_ok=True)
            shutil.copyfile(self._local(src), self._local(dst))

    def rename(self, sources, destinations):
        self.copy(sources, destinations)  # as GCS does: copy, then delete
        self.delete(sources)

    def exists(self, path):
        return os.path.isfile(self._local(path))

    def size(self, path):
        return os.path.getsize(self._local(path))

    def last_updated(self, path):
        return os.path.getmtime(self._local(path))

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        missing = {}
        for path in paths:
            if path.endswith("/"):
                for m in list(self._list(path)):
                    os.unlink(self._local(m.path))
            elif self.exists(path):
                os.unlink(self._local(path))
            else:
                missing[path] = FileNotFoundError(path)
        if missing:
            raise BeamIOError("Delete operation failed", missing)


def put(local: str, remote: str) -> str:
    """Copy a local file, or a directory's files, to ``remote``."""
    fs = MemTestFileSystem(None)
    pairs = [(local, remote)]
    if os.path.isdir(local):
        pairs = [
            (os.path.join(d, f), posixpath.join(remote, os.path.relpath(os.path.join(d, f), local).replace(os.sep, "/")))
            for d, _, files in os.walk(local) for f in files
        ]
    for src, dst in pairs:
        target = fs._local(dst)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(src, target)
    return remote


def shard_digests(out: str) -> list[tuple[str, str, int]]:
    """(path, sha256 of the bytes as read, rows) of every shard; the manifest's entries must agree."""
    manifest = read_manifest(out)
    result = []
    for entry in manifest["shards"]:
        path = posixpath.join(out, entry["path"]) if out.startswith(PREFIX) else os.path.join(out, entry["path"])
        data = MemTestFileSystem(None).open(path).read() if out.startswith(PREFIX) else open(path, "rb").read()
        digest = hashlib.sha256(data).hexdigest()
        assert digest == entry["sha256"], path
        result.append((entry["path"], digest, entry["rows"]))
    return result


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    MemTestFileSystem.ROOT = str(tmp_path_factory.mktemp("memtest"))
    yield MemTestFileSystem
    MemTestFileSystem.ROOT = ""


def clean_job(sources: dict[str, str], out: str) -> str:
    return "\n".join(
        [f'[[sources]]\nkind = "{kind}"\npaths = [{json.dumps(path)}]\n' for kind, path in sources.items()]
        + [f"[output]\ndir = {json.dumps(out)}\nnum_shards = 2\ncluster_table = true\n"]
    )


@pytest.fixture(scope="module")
def runs(store, tmp_path_factory):
    """The same five jobs twice: everything local, and everything on memtest://."""
    d = tmp_path_factory.mktemp("remote-jobs")
    world_gz = str(d / "world_triples.tsv.gz")
    with open(fixture("world_triples.tsv"), "rb") as src, gzip.open(world_gz, "wb") as dst:
        dst.write(src.read())
    entities = d / "entities.tsv"
    entities.write_text("name\ttype\taliases\n北京\tcity\t北京市\n", encoding="utf-8")
    local_inputs = {
        "encyclopedia": fixture("encyclopedia_cmrc2018_trial.json"),
        "news": fixture("news_peoples_daily_199801_first400.txt"),
        "admin": fixture("admin_triples_county_up.tsv"), "world": world_gz, "entities": str(entities),
    }
    remote = {k: put(v, f"{PREFIX}in/{os.path.basename(v)}") for k, v in local_inputs.items()}

    def chain(inp: dict, out, docs_for_next=None) -> dict:
        outs = {k: out(k) for k in ("docs", "knowledge", "spm", "pretrain", "ktok")}
        job = d / f"job-{abs(hash(outs['docs']))}.toml"
        job.write_text(clean_job({k: inp[k] for k in ("encyclopedia", "news")}, outs["docs"]), encoding="utf-8")
        assert main(["clean", "--config", str(job)]) == 0
        docs = docs_for_next(outs["docs"]) if docs_for_next else outs["docs"]
        assert main(["spm-train", "--docs", docs, "--output", outs["spm"], "--vocab-size", "4000",
                     "--num-threads", "1", "--quiet"]) == 0
        assert main(["kg-samples", "--kg", inp["admin"], "--kg", inp["world"], "--entities", inp["entities"],
                     "--docs", docs, "--output", outs["knowledge"], "--num-shards", "2", "--quiet"]) == 0
        return {"outs": outs, "docs": docs}

    local = chain(local_inputs, lambda k: str(d / "local" / k))
    # the relation list and user dictionary, from the local knowledge output; the same bytes for both runs
    rows = open_shard_dir(local["outs"]["knowledge"]).read_all().to_pylist()
    names = sorted({n for r in rows if r["task"] == "relation" for n in r["relations"] if n != "NA"})
    (d / "relations.json").write_text(json.dumps(["NA", *names], ensure_ascii=False), encoding="utf-8")
    words = sorted({r["head"]["name"] for r in rows if r["head"]})[:50]
    (d / "user.dict").write_text("".join(f"{w} 10\n" for w in words), encoding="utf-8")
    local_inputs.update(relations=str(d / "relations.json"), user_dict=str(d / "user.dict"))
    remote.update(relations=put(local_inputs["relations"], f"{PREFIX}in/relations.json"),
                  user_dict=put(local_inputs["user_dict"], f"{PREFIX}in/user.dict"))

    store.opened.clear()
    # downstream of clean, the remote run reads the local run's docs copied up (ids hold the source path)
    far = chain(remote, lambda k: f"{PREFIX}out/{k}",
                docs_for_next=lambda _: put(local["docs"], f"{PREFIX}in/docs-copy"))
    for run, inp in ((local, local_inputs), (far, remote)):
        outs = run["outs"]
        tok = f"spm:{outs['spm']}.model"
        assert main(["tokenize", "--input", run["docs"], "--output", outs["pretrain"], "--tokenizer", tok,
                     "--user-dict", inp["user_dict"], "--max-seq-len", "64", "--num-shards", "2", "--quiet"]) == 0
        assert main(["tokenize", "--input", outs["knowledge"], "--output", outs["ktok"], "--tokenizer", tok,
                     "--relations", inp["relations"], "--max-seq-len", "64", "--quiet"]) == 0
    return {"local": local, "remote": far, "dir": d}


def test_every_job_reads_and_writes_a_remote_filesystem_with_the_local_runs_shards(runs):
    local, far = runs["local"]["outs"], runs["remote"]["outs"]
    for stage in ("knowledge", "pretrain", "ktok"):
        assert far[stage].startswith(PREFIX) and not os.path.exists(far[stage])
        assert shard_digests(far[stage]) == shard_digests(local[stage]), stage
    # the same pieces and scores (the .model file itself records its temporary training file names)
    with open(local["spm"] + ".vocab", "rb") as fh:
        assert MemTestFileSystem(None).open(far["spm"] + ".vocab").read() == fh.read()
    tok_far, tok_local = (read_manifest(o["pretrain"])["tokenizer"] for o in (far, local))
    assert {**tok_far, "sha256": None} == {**tok_local, "sha256": None}
    assert tok_far["sha256"] == hashlib.sha256(MemTestFileSystem(None).open(far["spm"] + ".model").read()).hexdigest()
    # the tokenizer file travels with the pretrain output, and relations.json with the knowledge tokens
    assert read_arrow(posixpath.join(far["ktok"], "shards", "part-00000-of-00001.arrow")).num_rows > 0
    fs = MemTestFileSystem(None)
    assert fs.exists(posixpath.join(far["pretrain"], "spm.model")) and fs.exists(posixpath.join(far["ktok"], "relations.json"))


def test_clean_on_a_remote_filesystem_keeps_what_the_local_run_keeps(runs):
    """Ids and locations hold the source path; the rest of every row, the counts and the clusters agree."""
    local, far = runs["local"]["outs"]["docs"], runs["remote"]["outs"]["docs"]
    ml, mr = read_manifest(local), read_manifest(far)
    assert mr["counts"] == ml["counts"] and mr["counts"]["output"] > 0
    assert len(mr["cluster_table"]) == len(ml["cluster_table"])

    def rows(out):
        table = open_shard_dir(out).read_all().drop_columns(["id", "location"])
        return sorted(map(json.dumps, table.to_pylist()))

    assert rows(far) == rows(local)


def test_stats_reads_a_remote_output(runs, capsys):
    for stage in ("docs", "knowledge", "pretrain", "ktok"):
        local, far = runs["local"]["outs"][stage], runs["remote"]["outs"][stage]
        capsys.readouterr()
        assert main(["stats", far, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert main(["stats", local, "--json"]) == 0
        expected = json.loads(capsys.readouterr().out)
        assert report["dir"] == far and report["verified"]
        for key in ("kind", "shards", "rows", "counts"):
            assert report[key] == expected[key], (stage, key)
        for key in ("total", "reasons"):  # the examples name the source paths
            assert report["dead_letters"][key] == expected["dead_letters"][key], stage
        if stage == "docs":
            assert report.get("cluster_sizes") == expected.get("cluster_sizes") and report["per_source_kind"]


def test_the_launcher_reads_manifests_and_each_worker_checks_the_shard_it_opens(runs, store):
    """Each remote input shard was opened once, by the step that reads its rows (which checks its sha256): the
    launcher did not download and hash the shards before submitting the job."""
    docs = read_manifest(runs["remote"]["docs"])
    for entry in docs["shards"]:
        path = posixpath.join(runs["remote"]["docs"], entry["path"])
        # spm-train reads it twice (counting characters, then sampling); kg-samples and tokenize once each
        assert store.opened.count(path) == 4, (path, store.opened.count(path))
    store.opened.clear()
    shard_dir = open_shard_dir(runs["remote"]["docs"], "docs")
    assert shard_dir.deferred and store.opened == [posixpath.join(runs["remote"]["docs"], "manifest.json")]


def test_a_remote_shard_that_fails_its_checksum_is_refused_by_its_reader(runs, store, capsys):
    bad = put(runs["local"]["docs"], f"{PREFIX}in/bad-docs")
    entry = read_manifest(bad)["shards"][0]
    local = store(None)._local(posixpath.join(bad, entry["path"]))
    with open(local, "r+b") as fh:  # same size, one byte changed inside the file
        fh.seek(entry["bytes"] // 2)
        byte = fh.read(1)
        fh.seek(entry["bytes"] // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    tok = f"spm:{runs['local']['outs']['spm']}.model"
    capsys.readouterr()
    code = main(["tokenize", "--input", bad, "--output", f"{PREFIX}out/bad-pretrain", "--tokenizer", tok, "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "sha256" in err and entry["path"] in err and "Traceback" not in err, err
    assert not store(None).exists(f"{PREFIX}out/bad-pretrain/manifest.json")


def test_a_rerun_into_a_remote_output_replaces_it_and_inputs_inside_it_are_refused(runs, store, tmp_path):
    from knowmix.errors import UserError
    from knowmix.outdir import RemoteOutputRun

    out = f"{PREFIX}out/rerun"
    fs = store(None)
    for name in ("manifest.json", "shards/part-00007-of-00009.arrow", "dead_letter/part-00000.jsonl",
                 "relations.json", "shards/x.arrow.tmp-1", "notes/keep.txt"):
        with fs.create(posixpath.join(out, name)) as fh:
            fh.write(b"stale")
    with RemoteOutputRun(out, [("--input", f"{PREFIX}in/docs-copy")]) as run:
        assert run.staging == out
    left = sorted(m.path for r in FileSystems.match([out + "/**"]) for m in r.metadata_list)
    assert left == [f"{out}/notes/keep.txt"]
    for inside in (out, out + "/", f"{out}/docs"):
        with pytest.raises(UserError, match="output directory"):
            RemoteOutputRun(out, [("--docs", inside)]).__enter__()
    assert fs.exists(f"{out}/notes/keep.txt")
