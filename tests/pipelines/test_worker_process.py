"""pipelines.worker_process: the startup heap is frozen in Beam's SDK worker processes, and only there."""

import gc
import json

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from knowmix.pipelines.worker_process import freeze_startup_heap, in_sdk_worker_process


class ReportFreeze(beam.DoFn):
    def setup(self):
        self.frozen = freeze_startup_heap()

    def process(self, _):
        yield json.dumps({"worker": in_sdk_worker_process(), "frozen": self.frozen, "count": gc.get_freeze_count()})


def run(tmp_path, flags):
    out = str(tmp_path / "out")
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner", *flags])) as p:
        p | beam.Create([0]) | beam.ParDo(ReportFreeze()) | beam.io.WriteToText(out, shard_name_template="")
    return json.loads(open(out, encoding="utf-8").read())


def test_a_worker_process_freezes_its_startup_heap(tmp_path):
    report = run(tmp_path, ["--direct_running_mode=multi_processing", "--direct_num_workers=1"])
    assert report["worker"] and report["frozen"] and report["count"] > 10_000  # Beam's modules, at least


def test_the_launching_process_does_not(tmp_path):
    before = gc.get_freeze_count()
    report = run(tmp_path, [])  # in-process: the DoFn runs in this (pytest) process
    assert not report["worker"] and not report["frozen"] and gc.get_freeze_count() == before
