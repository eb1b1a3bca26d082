"""Run ``knowmix ARGS...`` and freeze it at a named point, so a test can ``kill -9`` it exactly there.

    python tests/pipelines/fault_harness.py MARKER POINT knowmix-args...

When the run reaches POINT, this writes MARKER (holding the pid) and sleeps; the test waits for MARKER and
kills the process with SIGKILL. Nothing of the job is replaced: the wrapped function runs as it is, the run
only stops after (or before) it. Beam's local runner runs the steps in this process, so the wrap applies.

Points:
  spill     after the first spill file is closed (clean: documents read, nothing written to OUT yet)
  shard     after the first shard is written into the staging directory
  manifest  just before the staged manifest is built (every shard and dead letter written)
  staged    just before the swap (the staged manifest.json exists)
  swap      inside the swap: old entries moved aside, new ones in, the new manifest not yet in place
"""

from __future__ import annotations

import functools
import os
import sys
import time


def freeze(marker: str) -> None:
    with open(marker + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(marker + ".tmp", marker)
    time.sleep(600)
    os._exit(99)  # never reached in the tests: they kill first


def wrap(owner, name: str, marker: str, before: bool = False) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        if before:
            freeze(marker)
        result = original(*args, **kwargs)
        freeze(marker)
        return result

    setattr(owner, name, wrapped)


def main() -> int:
    marker, point, *argv = sys.argv[1:]
    if point == "spill":
        from knowmix.pipelines.spill import SpillWriter

        wrap(SpillWriter, "close", marker)
    elif point == "shard":
        from knowmix.pipelines import beamio

        wrap(beamio, "write_shard", marker)
    elif point == "manifest":
        from knowmix.pipelines import beamio

        wrap(beamio, "build_manifest", marker, before=True)
    elif point == "staged":
        from knowmix.outdir import OutputRun

        wrap(OutputRun, "commit", marker, before=True)
    elif point == "swap":
        from knowmix import outdir

        wrap(outdir, "_fsync_dir", marker)  # first called once the entries are swapped, before the manifest
    elif point != "none":
        raise SystemExit(f"unknown point {point!r}")
    from knowmix.cli import main as knowmix

    return knowmix(argv)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    sys.exit(main())
