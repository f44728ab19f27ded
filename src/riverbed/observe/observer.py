"""What an executor tells about a running job: :class:`JobObserver`.

The executors call it; it keeps the figures, writes the status file (at most every
``write_interval`` seconds, atomically) and, with ``metrics_port``, serves Prometheus metrics
and a health check. Every call is cheap: the stream loop calls :meth:`JobObserver.on_batch`
once per micro-batch.

The figures of a micro-batch (:class:`Figures`; every key optional):

==========================  ======================================================================
``events``                  int, events read since the job started (cumulative)
``events_per_s``            float, the executor's own rate, if it has one (the observer also
                            computes ``rate``, events/s over the last status interval)
``batch_rows``              int, rows the sources gave this micro-batch
``batch_seconds``           float, wall time of this micro-batch (pull to commit)
``watermark``               int epoch milliseconds, or ``None`` before any event
``watermark_delay_s``       float, wall time minus the watermark, seconds (``None``: unknown)
``open_windows``            int, windows held in state
``state_bytes``             int, bytes of operator state (windows, dedupe sets, join buffers)
``late``                    int, late events since the start (cumulative)
``dead_letters``            int, rejected records since the start (cumulative)
``source_lag``              dict partition name -> int, records/offsets not read yet
``sink_commit_s``           float, time of the last sink commit
``end_to_end_latency_s``    float, wall time minus event time of the newest emitted row
==========================  ======================================================================

``steps`` maps a step id to :class:`StepFigures`: ``rows_in`` and ``rows_out`` of that step
*in this micro-batch* (the observer adds them up and computes rates). Batch runs call
:meth:`JobObserver.on_step_timing` per step instead, which builds the per-step timeline.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from riverbed.observe.status import status_path, write_status

if TYPE_CHECKING:
    from riverbed.observe.metrics import MetricsServer


class Figures(TypedDict, total=False):
    """Job-level figures of one micro-batch (see the module docstring for units)."""

    events: int
    events_per_s: float
    batch_rows: int
    batch_seconds: float
    watermark: int | None
    watermark_delay_s: float | None
    open_windows: int
    state_bytes: int
    late: int
    dead_letters: int
    source_lag: dict[str, int]
    sink_commit_s: float
    end_to_end_latency_s: float | None


class StepFigures(TypedDict):
    """Rows into and out of one step in one micro-batch."""

    rows_in: int
    rows_out: int


EndState = Literal["finished", "failed", "stopped"]

SAMPLES = 720
"""Chart samples kept in the status file (6 minutes at the default 0.5 s interval)."""
CHECKPOINTS = 100
"""Checkpoints kept in the status file."""


class JobObserver:
    """Collects a job's figures for the status file, Prometheus and the health check.

    Parameters
    ----------
    home
        riverbed's home; the status goes to ``<home>/jobs/<pipeline>/status.json``.
    pipeline
        The pipeline's name.
    mode
        ``"stream"`` or ``"batch"``.
    plan_json
        ``Plan.to_json()``: the steps, for the graph.
    metrics_port
        Serve ``/metrics`` and ``/healthz`` on this port (0: any free port); ``None``: no server.
    metrics_host
        Address the metrics server binds to.
    write_interval
        Least time between two status-file writes while running, seconds.
    stall_after
        ``/healthz`` answers 503 when no micro-batch finished for this long, seconds.
    checkpoint_max_age
        ``/healthz`` answers 503 when the newest checkpoint is older than this, seconds
        (once a first checkpoint was taken).

    Examples
    --------
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> home = Path(tempfile.mkdtemp())
    >>> plan = json.dumps({"pipeline": "p", "steps": [{"id": "read_1", "kind": "read",
    ...                    "inputs": [], "description": "read"}]})
    >>> obs = JobObserver(home, "p", "stream", plan)
    >>> obs.on_start()
    >>> obs.on_batch({"events": 10, "batch_rows": 10}, {"read_1": {"rows_in": 10, "rows_out": 10}})
    >>> obs.on_end("finished")
    >>> status = json.loads((home / "jobs" / "p" / "status.json").read_text())
    >>> status["state"], status["figures"]["events"], status["steps"]["read_1"]["rows_out"]
    ('finished', 10, 10)
    """

    def __init__(
        self,
        home: Path,
        pipeline: str,
        mode: str,
        plan_json: str,
        metrics_port: int | None = None,
        *,
        metrics_host: str = "127.0.0.1",
        write_interval: float = 0.5,
        stall_after: float = 60.0,
        checkpoint_max_age: float = 600.0,
    ) -> None:
        self.home = Path(home)
        self.pipeline = pipeline
        self.mode = mode
        self.plan: dict[str, Any] = json.loads(plan_json)
        self.path = status_path(self.home, pipeline)
        self.write_interval = write_interval
        self.stall_after = stall_after
        self.checkpoint_max_age = checkpoint_max_age
        self.state = "running"
        self.error: str | None = None
        self.started = time.time()
        self.started_mono = time.monotonic()
        self.ended: float | None = None
        self.figures: Figures = {}
        self.batches = 0
        self.last_batch_mono: float | None = None
        self.totals: dict[str, list[int]] = {}  # step -> [rows_in, rows_out]
        self.step_seconds: dict[str, float] = {}
        self.rates: dict[str, tuple[float, float]] = {}
        self.samples: deque[dict[str, Any]] = deque(maxlen=SAMPLES)
        self.checkpoints: deque[dict[str, Any]] = deque(maxlen=CHECKPOINTS)
        self.checkpoint_count = 0
        self.last_checkpoint_mono: float | None = None
        self.timeline: list[dict[str, Any]] = []
        self._last_write = 0.0
        self._pending: dict[str, Any] | None = None  # a status for the writer thread
        self._wake = threading.Condition()
        self._writer: threading.Thread | None = None
        self._prev: tuple[float, int, dict[str, list[int]]] | None = None
        self._lock = threading.Lock()  # the metrics server reads from another thread
        self.metrics: MetricsServer | None = None
        self.metrics_url: str | None = None
        if metrics_port is not None:
            from riverbed.observe.metrics import MetricsServer

            self.metrics = MetricsServer(self, metrics_host, metrics_port)
            self.metrics_url = self.metrics.url

    # -- calls from the executor --------------------------------------------------------
    def on_start(self) -> None:
        """The job starts: write the first status (state ``running``)."""
        self._prev = (time.monotonic(), 0, {})
        self._write()
        self._writer = threading.Thread(target=self._write_loop, name="riverbed-status", daemon=True)
        self._writer.start()

    def on_batch(self, figures: Figures, steps: Mapping[str, StepFigures] | None = None) -> None:
        """A micro-batch finished with these figures (and rows per step, for this batch)."""
        now = time.monotonic()
        self.figures = figures
        self.batches += 1
        self.last_batch_mono = now
        if steps:
            totals = self.totals
            for step_id, fig in steps.items():
                tot = totals.get(step_id)
                if tot is None:
                    totals[step_id] = [fig["rows_in"], fig["rows_out"]]
                else:
                    tot[0] += fig["rows_in"]
                    tot[1] += fig["rows_out"]
        if now - self._last_write >= self.write_interval:
            self._sample(now)
            self._last_write = now
            if self._writer is None:
                self._write()
            else:  # JSON and fsync off the executor's thread; a newer status replaces a pending one
                status = self.snapshot()
                with self._wake:
                    self._pending = status
                    self._wake.notify()

    def on_checkpoint(self, duration_s: float, size_bytes: int, epoch: int) -> None:
        """A checkpoint of ``epoch`` was written in ``duration_s`` seconds, ``size_bytes`` big."""
        with self._lock:
            self.checkpoint_count += 1
            self.last_checkpoint_mono = time.monotonic()
            self.checkpoints.append(
                {"t": time.time(), "epoch": epoch, "duration_s": duration_s, "size_bytes": size_bytes}
            )

    def on_step_timing(self, step_id: str, seconds: float) -> None:
        """A batch run finished ``step_id`` just now, after ``seconds`` of work on it."""
        end = time.monotonic() - self.started_mono
        self.step_seconds[step_id] = self.step_seconds.get(step_id, 0.0) + seconds
        self.timeline.append({"step": step_id, "start_s": max(end - seconds, 0.0), "seconds": seconds})

    def on_end(self, state: EndState, error: str | None = None) -> None:
        """The job ended (``finished``, ``failed`` with ``error``, or ``stopped`` on request):
        write the final status and stop the metrics server."""
        self.state = state
        self.error = error
        self.ended = time.time()
        if self.last_batch_mono is not None:
            self._sample(time.monotonic())
        writer, self._writer = self._writer, None
        if writer is not None:
            with self._wake:
                self._pending = None
                self._wake.notify()
            writer.join()
        self._write()
        if self.metrics is not None:
            self.metrics.close()

    # -- reading ------------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the job is healthy, and why: live, making progress, checkpoint age.

        Examples
        --------
        >>> import tempfile
        >>> obs = JobObserver(Path(tempfile.mkdtemp()), "p", "stream", '{"steps": []}')
        >>> obs.health()[0]
        True
        """
        now = time.monotonic()
        since = now - (self.last_batch_mono if self.last_batch_mono is not None else self.started_mono)
        age = None if self.last_checkpoint_mono is None else now - self.last_checkpoint_mono
        live = self.state in ("running", "finished")
        progressing = self.state != "running" or since <= self.stall_after
        checkpoint_ok = age is None or self.state != "running" or age <= self.checkpoint_max_age
        body = {
            "pipeline": self.pipeline,
            "state": self.state,
            "live": live,
            "making_progress": progressing,
            "seconds_since_last_batch": round(since, 3),
            "checkpoint_age_s": None if age is None else round(age, 3),
            "checkpoint_ok": checkpoint_ok,
        }
        return live and progressing and checkpoint_ok, body

    def snapshot(self) -> dict[str, Any]:
        """The status as written to the status file."""
        with self._lock:
            checkpoints = list(self.checkpoints)
        steps: dict[str, dict[str, Any]] = {}
        for node in self.plan.get("steps", []):
            sid = node["id"]
            tot = self.totals.get(sid)
            rate = self.rates.get(sid, (0.0, 0.0))
            steps[sid] = {  # None: the executor did not report this step
                "rows_in": tot[0] if tot else None,
                "rows_out": tot[1] if tot else None,
                "rate_in": rate[0],
                "rate_out": rate[1],
                "seconds": self.step_seconds.get(sid),
            }
        return {
            "version": 1,
            "pipeline": self.pipeline,
            "state": self.state,
            "error": self.error,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "mode": self.mode,
            "started": self.started,
            "updated": time.time(),
            "ended": self.ended,
            "elapsed_s": (self.ended or time.time()) - self.started,
            "batches": self.batches,
            "metrics_url": self.metrics_url,
            "plan": self.plan,
            "figures": dict(self.figures),
            "steps": steps,
            "samples": list(self.samples),
            "checkpoints": checkpoints,
            "timeline": list(self.timeline),
        }

    # -- internals ----------------------------------------------------------------------
    def _sample(self, now: float) -> None:
        """One chart sample, with rates over the time since the previous sample."""
        f = self.figures
        events = int(f.get("events") or 0)
        prev_t, prev_events, prev_totals = self._prev or (self.started_mono, 0, {})
        dt = max(now - prev_t, 1e-6)
        rates: dict[str, tuple[float, float]] = {}
        for sid, (rin, rout) in self.totals.items():
            pin, pout = prev_totals.get(sid, (0, 0))
            rates[sid] = ((rin - pin) / dt, (rout - pout) / dt)
        self.rates = rates
        self._prev = (now, events, {k: [v[0], v[1]] for k, v in self.totals.items()})
        lag = f.get("source_lag")
        self.samples.append(
            {
                "t": round(time.time(), 3),
                "events": events,
                "rate": round((events - prev_events) / dt, 3),
                "watermark_delay_s": _round(f.get("watermark_delay_s")),
                "lag": sum(lag.values()) if lag else None,
                "late": f.get("late", 0),
                "dead_letters": f.get("dead_letters", 0),
                "batch_rows": f.get("batch_rows"),
                "batch_seconds": _round(f.get("batch_seconds")),
                "open_windows": f.get("open_windows"),
                "state_bytes": f.get("state_bytes"),
            }
        )

    def _write(self) -> None:
        self._last_write = time.monotonic()
        write_status(self.path, self.snapshot())

    def _write_loop(self) -> None:
        """The writer thread: writes each status handed to it until the job ends."""
        while True:
            with self._wake:
                while self._pending is None and self._writer is not None:
                    self._wake.wait()
                status, self._pending = self._pending, None
            if status is None:  # on_end: it writes the last status itself
                return
            with contextlib.suppress(OSError):  # a full disk must not stop the job; the next write retries
                write_status(self.path, status)


def _round(value: float | None) -> float | None:
    """Four significant digits: enough for a chart, and a smaller status file."""
    return None if value is None else float(f"{value:.4g}")
