"""The same clean job on a real distributed Beam runner (Dask), and its Dataflow job graph built offline."""

from __future__ import annotations

import pytest

from knowmix.demo import demo_job_toml
from knowmix.manifest import open_shard_dir
from knowmix.pipelines.clean import build, resolve
from knowmix.pipelines.clean_config import load_config
from tests.pipelines.dask_cluster import dask_runner_flags


def small_job(tmp_path, out, split_bytes=None):
    job = tmp_path / "job.toml"
    job.write_text(demo_job_toml(str(out)), encoding="utf-8")
    config = load_config(str(job))
    if split_bytes is not None:  # the news txt file (line mode) is read as byte ranges of this size
        config.split_bytes = split_bytes
    return config


def test_dask_runner_writes_the_same_shards_as_the_local_runner(tmp_path):
    pytest.importorskip("distributed")
    from knowmix.pipelines.clean import run

    local = run(resolve(small_job(tmp_path, tmp_path / "local", split_bytes=16384), [], ["test"]))
    with dask_runner_flags() as flags:
        dask = run(resolve(small_job(tmp_path, tmp_path / "dask", split_bytes=16384), flags, ["test"]))
    assert dask["shards"] == local["shards"]
    assert dask["counts"] == local["counts"]
    open_shard_dir(str(tmp_path / "dask"), kind="docs")  # checksums verify


def test_dataflow_job_graph_builds_offline_with_every_step(tmp_path):
    pytest.importorskip("apache_beam.runners.dataflow.dataflow_runner")
    pytest.importorskip("google.cloud.storage")
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from knowmix.pipelines.clean import input_files, plan_reads

    config = small_job(tmp_path, "gs://knowmix-test/out/docs", split_bytes=16384)
    config.cluster_table = True
    whole, ranges = plan_reads(config, input_files(config))
    assert len(ranges) > 4 and all(r[0] == 1 for r in ranges)  # the news txt file, as byte ranges
    options = PipelineOptions(
        [
            # valid-looking names matter: a bucket or project name Beam rejects sends it looking for a
            # default bucket over the network
            "--runner=DataflowRunner", "--dry_run=True", "--project=knowmix-test", "--region=us-central1",
            "--temp_location=gs://knowmix-test/tmp", "--staging_location=gs://knowmix-test/staging",
            "--job_name=knowmix-clean-test",
        ]
    )
    p = beam.Pipeline(options=options)
    build(p, resolve(config, [], ["knowmix", "clean"]))
    result = p.run()
    names = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
    for step in ("PlanReads/Files", "PlanReads/ByteRanges", "PlanReads/CountLines", "PlanReads/RangesByFile", "PlanReads/NumberRanges", "ReadAndClean", "Dedup/Exact", "Dedup/Near", "WriteDocs", "WriteDeadLetters", "WriteClusters", "Manifest"):
        assert step in names, (step, sorted(n for n in names if "/" not in n))
