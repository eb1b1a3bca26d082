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


def jobs(d, inp: dict, out: dict) -> dict:
    """clean, spm-train, kg-samples and two tokenize runs; ``inp`` names every input (a job's input from an
    earlier stage comes from ``inp`` too, so each remote job reads copies of the local run's). Exit codes."""
    job = d / f"job-{len(list(d.glob('job-*')))}.toml"
    job.write_text(clean_job({k: inp[k] for k in ("encyclopedia", "news")}, out["docs"]), encoding="utf-8")
    codes = {"clean": main(["clean", "--config", str(job)])}
    codes["spm-train"] = main(["spm-train", "--docs", inp["docs"], "--output", out["spm"], "--vocab-size", "4000",
                               "--num-threads", "1", "--quiet"])
    codes["kg-samples"] = main(["kg-samples", "--kg", inp["admin"], "--kg", inp["world"], "--entities", inp["entities"],
                                "--docs", inp["docs"], "--output", out["knowledge"], "--num-shards", "2", "--quiet"])
    tok = f"spm:{inp['spm']}.model"
    codes["tokenize docs"] = main(["tokenize", "--input", inp["docs"], "--output", out["pretrain"], "--tokenizer", tok,
                                   "--user-dict", inp["user_dict"], "--max-seq-len", "64", "--num-shards", "2", "--quiet"])
    codes["tokenize knowledge"] = main(["tokenize", "--input", inp["knowledge"], "--output", out["ktok"], "--tokenizer",
                                        tok, "--relations", inp["relations"], "--max-seq-len", "64", "--quiet"])
    return codes


@pytest.fixture(scope="module")
def runs(store, tmp_path_factory):
    """The same jobs twice: everything local, then everything on memtest:// (inputs: copies of the local ones)."""
    d = tmp_path_factory.mktemp("remote-jobs")
    world_gz = str(d / "world_triples.tsv.gz")
    with open(fixture("world_triples.tsv"), "rb") as src, gzip.open(world_gz, "wb") as dst:
        dst.write(src.read())
    entities = d / "entities.tsv"
    entities.write_text("name\ttype\taliases\n北京\tcity\t北京市\n", encoding="utf-8")
    local_out = {k: str(d / "local" / k) for k in ("docs", "knowledge", "spm", "pretrain", "ktok")}
    local_in = {
        "encyclopedia": fixture("encyclopedia_cmrc2018_trial.json"),
        "news": fixture("news_peoples_daily_199801_first400.txt"),
        "admin": fixture("admin_triples_county_up.tsv"), "world": world_gz, "entities": str(entities),
        "relations": str(d / "relations.json"), "user_dict": str(d / "user.dict"), **local_out,
    }
    # the relation list and user dictionary are written from the local knowledge output before tokenize reads them
    job = d / "job-local.toml"
    job.write_text(clean_job({k: local_in[k] for k in ("encyclopedia", "news")}, local_out["docs"]), encoding="utf-8")
    assert main(["clean", "--config", str(job)]) == 0
    assert main(["kg-samples", "--kg", local_in["admin"], "--kg", local_in["world"], "--entities", str(entities),
                 "--docs", local_out["docs"], "--output", local_out["knowledge"], "--num-shards", "2", "--quiet"]) == 0
    rows = open_shard_dir(local_out["knowledge"]).read_all().to_pylist()
    names = sorted({n for r in rows if r["task"] == "relation" for n in r["relations"] if n != "NA"})
    (d / "relations.json").write_text(json.dumps(["NA", *names], ensure_ascii=False), encoding="utf-8")
    words = sorted({r["head"]["name"] for r in rows if r["head"]})[:50]
    (d / "user.dict").write_text("".join(f"{w} 10\n" for w in words), encoding="utf-8")
    assert jobs(d, local_in, local_out) == dict.fromkeys(["clean", "spm-train", "kg-samples", "tokenize docs",
                                                          "tokenize knowledge"], 0)

    # directories by their role, files by their name (its suffix tells the format: .tsv.gz is gzip)
    remote_in = {k: put(v, f"{PREFIX}in/{k if os.path.isdir(v) else os.path.basename(v)}")
                 for k, v in local_in.items() if k not in ("spm", "pretrain", "ktok")}
    remote_in["spm"] = put(local_out["spm"] + ".model", f"{PREFIX}in/spm.model")[: -len(".model")]
    remote_out = {k: f"{PREFIX}out/{k}" for k in local_out}
    store.opened.clear()
    codes = jobs(d, remote_in, remote_out)
    return {"local": local_out, "remote": remote_out, "remote_in": remote_in, "codes": codes,
            "opened": list(store.opened)}


def test_clean_writes_a_remote_output_and_reads_its_manifest_back(runs):
    """Before: it wrote everything, then exited 2 reading the manifest with local file APIs ("no such directory").
    Ids and locations hold the source path; the rest of every row, the counts and the clusters agree."""
    assert runs["codes"]["clean"] == 0
    local, far = runs["local"]["docs"], runs["remote"]["docs"]
    ml, mr = read_manifest(local), read_manifest(far)
    assert mr["counts"] == ml["counts"] and mr["counts"]["output"] > 0
    assert len(mr["cluster_table"]) == len(ml["cluster_table"])

    def rows(out):
        table = open_shard_dir(out).read_all().drop_columns(["id", "location"])
        return sorted(map(json.dumps, table.to_pylist()))

    assert rows(far) == rows(local)


def test_kg_samples_reads_kg_entities_and_docs_remotely_and_writes_a_remote_output(runs):
    """Before: --kg/--entities were "no such file"; after writing a remote output it crashed reading it back."""
    assert runs["codes"]["kg-samples"] == 0
    assert shard_digests(runs["remote"]["knowledge"]) == shard_digests(runs["local"]["knowledge"])
    assert read_manifest(runs["remote"]["knowledge"])["counts"] == read_manifest(runs["local"]["knowledge"])["counts"]


def test_tokenize_reads_input_tokenizer_user_dict_and_relations_remotely(runs):
    far, local = runs["remote"], runs["local"]
    assert runs["codes"]["tokenize docs"] == 0 and runs["codes"]["tokenize knowledge"] == 0
    for stage in ("pretrain", "ktok"):
        assert not os.path.exists(far[stage])
        assert shard_digests(far[stage]) == shard_digests(local[stage]), stage
        assert read_manifest(far[stage])["tokenizer"] == read_manifest(local[stage])["tokenizer"]
    # the tokenizer file travels with the output, relations.json with the knowledge tokens (the same ids)
    fs = MemTestFileSystem(None)
    assert fs.open(f"{far['pretrain']}/spm.model").read() == open(local["spm"] + ".model", "rb").read()
    assert fs.open(f"{far['ktok']}/relations.json").read() == open(f"{local['ktok']}/relations.json", "rb").read()
    assert read_arrow(f"{far['ktok']}/shards/part-00000-of-00001.arrow").num_rows > 0


def test_spm_train_reads_remote_docs_and_writes_a_remote_prefix(runs):
    assert runs["codes"]["spm-train"] == 0
    fs = MemTestFileSystem(None)
    # the same pieces and scores (the .model file itself records its temporary training file names)
    with open(runs["local"]["spm"] + ".vocab", "rb") as fh:
        assert fs.open(runs["remote"]["spm"] + ".vocab").read() == fh.read()
    import sentencepiece as spm

    model = spm.SentencePieceProcessor(model_proto=fs.open(runs["remote"]["spm"] + ".model").read())
    assert model.get_piece_size() == 4000 and model.id_to_piece(4) == "[MASK]"
    assert not [m for m in fs._list(PREFIX) if ".tmp-" in m.path or "spm-sample" in m.path]


def test_stats_reads_a_remote_output(runs, capsys):
    """Before: "no such directory". Every stage's report of a remote copy is the local one's."""
    for stage in ("docs", "knowledge", "pretrain", "ktok"):
        local = runs["local"][stage]
        far = put(local, f"{PREFIX}stats/{stage}")
        capsys.readouterr()
        assert main(["stats", far, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert main(["stats", local, "--json"]) == 0
        expected = json.loads(capsys.readouterr().out)
        assert report["dir"] == far and report["verified"]
        assert {**report, "dir": None} == {**expected, "dir": None}, stage


def test_the_launcher_reads_manifests_and_each_worker_checks_the_shard_it_opens(runs, store):
    """Each remote input shard was opened once, by the step that reads its rows (which checks its sha256): the
    launcher did not download and hash the shards before submitting the job."""
    docs = runs["remote_in"]["docs"]
    for entry in read_manifest(docs)["shards"]:
        path = posixpath.join(docs, entry["path"])
        # spm-train reads it twice (counting characters, then sampling); kg-samples and tokenize once each
        assert runs["opened"].count(path) == 4, (path, runs["opened"].count(path))
    store.opened.clear()
    shard_dir = open_shard_dir(docs, "docs")
    assert shard_dir.deferred and store.opened == [posixpath.join(docs, "manifest.json")]


def test_a_remote_shard_that_fails_its_checksum_is_refused_by_its_reader(runs, store, capsys):
    bad = put(runs["local"]["docs"], f"{PREFIX}in/bad-docs")
    entry = read_manifest(bad)["shards"][0]
    local = store(None)._local(posixpath.join(bad, entry["path"]))
    with open(local, "r+b") as fh:  # same size, one byte changed inside the file
        fh.seek(entry["bytes"] // 2)
        byte = fh.read(1)
        fh.seek(entry["bytes"] // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    tok = f"spm:{runs['local']['spm']}.model"
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


# ---------------------------------------------------------------------------------------------- README's Dataflow lines


def readme_dataflow_commands() -> list[list[str]]:
    """The knowmix command lines of README's Dataflow block ("Use with other tools"), $FLAGS expanded."""
    import re
    import shlex

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    section = text[text.index("## Use with other tools"):]
    block = next(b for b in re.findall(r"```sh\n(.*?)```", section, re.S) if "DataflowRunner" in b)
    lines = block.replace("\\\n", " ").splitlines()
    flags = next(shlex.split(line.split("=", 1)[1])[0] for line in lines if line.startswith("FLAGS="))
    return [shlex.split(line.replace("$FLAGS", flags)) for line in lines if line.startswith("knowmix ")]


def test_readme_dataflow_lines_parse_and_build_their_dataflow_graphs_offline(store, tmp_path):
    pytest.importorskip("apache_beam.runners.dataflow.dataflow_runner")
    pytest.importorskip("google.cloud.storage")
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from knowmix.pipelines import clean, kg_index, kg_samples, spm_train, tokenize
    from tests.kg.helpers import encyclopedia_docs, write_docs

    commands = {argv[1]: argv[2:] for argv in readme_dataflow_commands()}
    assert set(commands) == {"clean", "kg-index", "kg-samples", "spm-train", "tokenize", "stats"}
    # inputs the graphs are built from sit on memtest:// (offline); outputs and temp_location stay gs://
    package = tmp_path / "knowmix-0.1.0.tar.gz"
    package.write_bytes(b"")
    put(fixture("news_peoples_daily_199801_first400.txt"), f"{PREFIX}my-bucket/raw/news/a.txt")
    put(write_docs(str(tmp_path / "docs"), encyclopedia_docs(drcd=False)[:20]), f"{PREFIX}my-bucket/out/docs")
    with open(fixture("world_triples.tsv"), "rb") as fh:
        with store(None).create(f"{PREFIX}my-bucket/kg/triples.tsv.gz", compression_type=CompressionTypes.GZIP) as out:
            out.write(fh.read())
    with store(None).create(f"{PREFIX}my-bucket/kg/entities.tsv") as out:
        out.write("name\ttype\taliases\n北京\tcity\t北京市\n".encode("utf-8"))

    def offline(argv: list[str]) -> list[str]:
        out = []
        for prev, arg in zip([""] + argv, argv):
            if prev in ("--source", "--kg", "--entities", "--docs"):
                arg = arg.replace("gs://", PREFIX)
            out.append(str(package) if prev == "--extra_package" else arg)
        return out

    def dry_run(beam_args: list[str], name: str) -> beam.Pipeline:
        assert "--runner" in beam_args and "DataflowRunner" in beam_args
        return beam.Pipeline(options=PipelineOptions(
            [*beam_args, "--dry_run=True", f"--job_name=knowmix-{name}-readme", "--staging_location=gs://my-bucket/staging"]
        ))

    def steps(p) -> set[str]:
        return {t.unique_name for t in p.run().job.proto_pipeline.components.transforms.values()}

    args, beam_args = clean.parse_args(offline(commands["clean"]))
    config = clean.load_config(args.config, args.source, args.output, {})
    assert config.output_dir == "gs://my-bucket/out/docs"
    p = dry_run(beam_args, "clean")
    clean.build(p, clean.resolve(config, beam_args, ["knowmix", "clean"]))
    assert {"ReadAndClean", "WriteDocs", "Manifest"} <= steps(p)

    args, beam_args = kg_index.parse_args(offline(commands["kg-index"]))
    assert args.output == "gs://my-bucket/kg/triples.kgi" and "--worker_machine_type" in beam_args
    p = dry_run(beam_args, "kg-index")
    kg_index.build(p, kg_index.resolve(args, beam_args), "gs://my-bucket/kg/.kgindex-receipt-test.json")
    assert {"BuildIndexFile", "Receipt"} <= steps(p)

    args, beam_args = kg_samples.parse_args(offline(commands["kg-samples"]))
    assert args.kg_index == "gs://my-bucket/kg/triples.kgi"
    p = dry_run(beam_args, "kg-samples")
    # the launcher builds the KG index and puts it beside the output (here on memtest://: no network)
    from knowmix.kg.index import TypeRules

    index = kg_samples.prepare_index(None, args.kg, args.entities, f"{PREFIX}my-bucket/out/knowledge", 2, TypeRules())
    assert index.startswith(f"{PREFIX}my-bucket/out/knowledge/_spill/kgindex-")
    kg_samples.build(p, kg_samples.KgSamplesJob(docs_dir=args.docs, kg_paths=args.kg, entity_paths=args.entities,
                                                out_dir=args.output, num_shards=1, index_path=index))
    assert args.kg == [f"{PREFIX}my-bucket/kg/triples.tsv.gz"], args.kg
    assert {"ReadDocs", "LinkSentences/Link", "DownsampleNa", "WriteShards", "WriteManifest"} <= steps(p)

    args, beam_args = tokenize.parse_args(commands["tokenize"])
    assert args.tokenizer == "spm:gs://my-bucket/tok/spm.model" and "DataflowRunner" in beam_args
    assert spm_train.parse_args(commands["spm-train"]).output == "gs://my-bucket/tok/spm"
    assert commands["stats"] == ["gs://my-bucket/out/pretrain"]


def test_consumers_accept_the_knowledge_schema_kg_samples_writes():
    """kg-samples' spans carry fields knowmix.schemas does not list (type_source, ...): a consumer reads what it
    knows (before: tokenize refused every kg-samples output, "the schema column 'head' is struct<...>")."""
    import pyarrow as pa

    from knowmix.schemas import KNOWLEDGE_SCHEMA as written
    from knowmix.manifest import schema_mismatch, schema_to_json

    assert schema_mismatch("knowledge", schema_to_json(written)) is None
    fewer = pa.schema([f if f.name != "head" else pa.field("head", pa.struct([("name", pa.string())]))
                       for f in written])
    assert "column 'head'" in schema_mismatch("knowledge", schema_to_json(fewer))
    other = pa.schema([f if f.name != "mentions" else pa.field("mentions", pa.list_(pa.struct([("start", pa.string())])))
                       for f in written])
    assert "column 'mentions'" in schema_mismatch("knowledge", schema_to_json(other))


def test_a_remote_wordpiece_vocab_brings_its_tokenizer_config(store, tmp_path):
    from knowmix.pipelines.tokenizer_loader import TokenizerSpec
    from tests.pipelines.helpers_tokenize import all_fixture_texts, write_bert_vocab

    vocab = write_bert_vocab(str(tmp_path / "bert" / "vocab.txt"), all_fixture_texts()[:20])
    (tmp_path / "bert" / "tokenizer_config.json").write_text('{"do_lower_case": false}', encoding="utf-8")
    put(str(tmp_path / "bert"), f"{PREFIX}tok/bert")
    spec = TokenizerSpec.resolve(f"wordpiece:{PREFIX}tok/bert/vocab.txt", None)
    assert spec.lowercase is False and spec.entry["file"] == "vocab.txt" and spec.entry["lowercase"] is False
    with open(vocab, "rb") as fh:
        data = fh.read()
    assert spec.entry["sha256"] == hashlib.sha256(data).hexdigest() and spec.data == data


@pytest.mark.parametrize("argv, needle", [
    (["kg-samples", "--kg", f"{PREFIX}nowhere/kg.tsv", "--docs", f"{PREFIX}nowhere/docs", "--output", f"{PREFIX}o"],
     f"{PREFIX}nowhere/kg.tsv: no such file"),
    (["tokenize", "--input", f"{PREFIX}nowhere/docs", "--output", f"{PREFIX}o", "--tokenizer", "spm:x.model"],
     f"{PREFIX}nowhere/docs/manifest.json: missing"),
    (["stats", f"{PREFIX}nowhere/docs"], f"{PREFIX}nowhere/docs/manifest.json: missing"),
    (["spm-train", "--docs", f"{PREFIX}nowhere/docs", "--output", f"{PREFIX}o/spm"],
     f"{PREFIX}nowhere/docs/manifest.json: missing"),
])
def test_a_missing_remote_input_is_one_line(store, capsys, argv, needle):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_kg_index_writes_a_remote_index_that_kg_samples_and_kg_stats_read(runs, store, capsys):
    """`knowmix kg-index` with remote KG files into a remote "directory" (content-addressed name) and to a remote
    file name: the same bytes, no receipt left behind; kg-samples --kg-index on the remote file gives the
    shards of the run that built its own index; kg-stats --kg-index reads the remote header."""
    kg = ["--kg", runs["remote_in"]["admin"], "--kg", runs["remote_in"]["world"],
          "--entities", runs["remote_in"]["entities"]]
    capsys.readouterr()
    assert main(["kg-index", *kg, "--output", f"{PREFIX}idx/"]) == 0
    addressed = capsys.readouterr().out.strip()
    assert addressed.startswith(f"{PREFIX}idx/kgindex-") and addressed.endswith(".kgi"), addressed
    assert main(["kg-index", *kg, "--output", f"{PREFIX}idx/named.kgi"]) == 0
    named = capsys.readouterr().out.strip()
    fs = MemTestFileSystem(None)
    assert named == f"{PREFIX}idx/named.kgi" and fs.open(named).read() == fs.open(addressed).read()
    assert sorted(os.listdir(os.path.join(store.ROOT, "idx"))) == sorted([os.path.basename(addressed), "named.kgi"])
    out = f"{PREFIX}out/knowledge-prebuilt"
    assert main(["kg-samples", *kg, "--docs", runs["remote_in"]["docs"], "--output", out, "--num-shards", "2",
                 "--quiet", "--kg-index", named]) == 0
    assert shard_digests(out) == shard_digests(runs["remote"]["knowledge"])
    capsys.readouterr()
    assert main(["kg-stats", "--kg-index", named, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["entities"] == read_manifest(runs["remote"]["knowledge"])["knowledge_graph"]["entities"] > 100
