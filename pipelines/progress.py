"""A live progress line for the Beam jobs, and their Beam counters at the end.

The readers note each record they read (``beamio.ReadShardRows`` per batch, the clean job's reader per
document) with :func:`note`, and every job's accounting events (``input``, ``output``, ``dropped``,
``dead_letter``) pass through ``beamio.tally``, which hands each one to :func:`observe` on its way. On the
local runner in one process (the default FnApiRunner) the DoFns run in the launcher's process, so
:class:`LiveLine` can read these process-wide tallies from a thread and redraw one line on stderr:

    knowmix tokenize: read 12,345  2,870/s  0:04                                 (while reading)
    knowmix tokenize: read 23,100  kept 22,756  dropped 344  2,870/s  0:08     (once the counts are in)

The accounting events reach the counting step in bulk (after the runner's shuffles), so kept/dropped
appear late in a run; the read count moves from the start.

Where the work runs in other processes (``--direct_running_mode multi_processing``, Dask, Dataflow) the line
shows only the elapsed time; every runner's counts are in the summary at the end, with the Beam counters the
job keeps (:func:`counter_summary`). The line is off when stderr is not a terminal (logs, CI, tests) or with
``--quiet``.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable

INTERVAL = 0.5  # seconds between redraws
_LIVE = {"read": 0, "input": 0, "output": 0, "dropped": 0, "dead_letter": 0}
_LOCK = threading.Lock()


def reset() -> None:
    with _LOCK:
        for k in _LIVE:
            _LIVE[k] = 0


def note(metric: str, n: int = 1) -> None:
    """Add ``n`` to one live tally (``read``, ``input``, ``output``, ``dropped`` or ``dead_letter``)."""
    with _LOCK:
        if metric in _LIVE:
            _LIVE[metric] += n


def observe(event: Any) -> Any:
    """Passthrough for an accounting event ``(metric, reason, group)``: tallies it, returns it unchanged."""
    note(event[0])
    return event


def observe_counted(pair: Any) -> Any:
    """Passthrough for an already counted ``((metric, reason, group), n)``."""
    note(pair[0][0], int(pair[1]))
    return pair


def snapshot() -> dict[str, int]:
    with _LOCK:
        return dict(_LIVE)


def clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_line(prog: str, live: dict[str, int], elapsed: float) -> str:
    read = max(live["read"], live["input"])
    if not read:
        return f"{prog}: running… {clock(elapsed)}"
    parts = [f"read {read:,}"]
    dropped = live["dropped"] + live["dead_letter"]
    if live["output"] or dropped:
        parts += [f"kept {live['output']:,}", f"dropped {dropped:,}"]
    rate = read / elapsed if elapsed > 0 else 0.0
    return f"{prog}: {'  '.join(parts)}  {rate:,.0f}/s  {clock(elapsed)}"


class LiveLine:
    """Context manager: redraws ``text()`` (default: the live tallies) on stderr every ``interval`` seconds
    while the block runs, and clears it at the end. Does nothing when disabled or stderr is not a terminal."""

    def __init__(self, prog: str, quiet: bool = False, text: Callable[[float], str] | None = None,
                 interval: float | None = None, stream=None):
        self.prog, self.interval = prog, INTERVAL if interval is None else interval
        self.stream = stream or sys.stderr
        self.enabled = not quiet and bool(getattr(self.stream, "isatty", lambda: False)())
        self.text = text or (lambda elapsed: format_line(self.prog, snapshot(), elapsed))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0

    def __enter__(self) -> "LiveLine":
        reset()
        self.start = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="knowmix-progress", daemon=True)
            self._thread.start()
        return self

    def _draw(self) -> None:
        line = self.text(time.monotonic() - self.start)
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


_LAST_COUNTERS = {"text": ""}


def record_counters(result: Any) -> str:
    """Keep (and return) the finished pipeline's counter summary for the job's closing lines."""
    _LAST_COUNTERS["text"] = counter_summary(result)
    return _LAST_COUNTERS["text"]


def last_counters() -> str:
    return _LAST_COUNTERS["text"]


def counter_summary(result: Any) -> str:
    """The user counters of a finished pipeline (``p.result`` after its ``with`` block), as ``name value, …``;
    empty where the runner does not report metrics."""
    try:
        counters = result.metrics().query()["counters"]
    except Exception:  # noqa: BLE001 - a runner without metrics support: nothing to show
        return ""
    totals: dict[str, int] = {}
    for c in counters:
        value = c.committed if c.committed is not None else c.attempted
        if value:
            totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + int(value)
    return ", ".join(f"{k} {v:,}" for k, v in sorted(totals.items()))
