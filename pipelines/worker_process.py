"""What a DoFn's ``setup`` may do for the SDK worker process it runs in (Beam's multi-processing workers on a
local run, Dataflow's workers): ``freeze_startup_heap``.

Why: a process that has imported Beam takes about 0.5 s to exit, nearly all of it Python's last garbage
collection walking every object the imports made (measured: ``import apache_beam.coders`` then exit, 0.51 s;
with ``gc.freeze()`` first, 0.04 s). Beam's local runner stops its workers one after another, so every local
run on 2 workers paid about 1 s at its end, and collections during the run walk that heap too. What exists
when setup has loaded its models (modules, models, the DoFn) lives as long as the process, so it is moved to
the permanent generation. Only inside an SDK worker process: in the launching process (an in-process run, a
test session running many pipelines) the garbage of earlier pipelines would never be collected.
"""

from __future__ import annotations

import gc
import sys

SDK_WORKER_MAIN = "apache_beam.runners.worker.sdk_worker_main"


def in_sdk_worker_process() -> bool:
    """Whether this process is a Beam SDK worker (``python -m apache_beam.runners.worker.sdk_worker_main``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == SDK_WORKER_MAIN


def freeze_startup_heap() -> bool:
    """In an SDK worker process, ``gc.freeze()`` the objects alive now (call at the end of ``DoFn.setup``).
    Returns whether it did."""
    if not in_sdk_worker_process():
        return False
    gc.freeze()
    return True
