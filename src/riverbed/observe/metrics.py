"""Prometheus metrics of one job, and its health check, over HTTP.

One ``CollectorRegistry`` per job holds one collector that reads the observer's latest
figures when Prometheus scrapes: a micro-batch costs nothing here. ``/metrics`` answers in
the Prometheus text format, ``/healthz`` answers JSON with 200 (healthy) or 503 (stalled,
checkpoints too old, or the job failed). Needs ``prometheus-client``
(``pip install "riverbed[metrics]"``), imported only when a job runs with a metrics port.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from riverbed._errors import MissingExtraError, RiverbedError

if TYPE_CHECKING:
    from riverbed.observe.observer import JobObserver


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise MissingExtraError("prometheus-client", "metrics") from None
    return prometheus_client


# (name, help, figure key, kind): job-level figures exported as they are
_GAUGES = [
    ("riverbed_batch_rows", "Rows of the last micro-batch.", "batch_rows"),
    ("riverbed_batch_seconds", "Wall time of the last micro-batch.", "batch_seconds"),
    ("riverbed_watermark_delay_seconds", "Wall time minus the job's watermark.", "watermark_delay_s"),
    ("riverbed_open_windows", "Windows held in state.", "open_windows"),
    ("riverbed_state_bytes", "Bytes of operator state.", "state_bytes"),
    ("riverbed_sink_commit_seconds", "Time of the last sink commit.", "sink_commit_s"),
    ("riverbed_end_to_end_latency_seconds", "Wall time minus event time of the newest output.",
     "end_to_end_latency_s"),
]  # fmt: skip
_COUNTERS = [
    ("riverbed_events", "Events read.", "events"),
    ("riverbed_late_events", "Events dropped from their window as late.", "late"),
    ("riverbed_dead_letters", "Records rejected by a source.", "dead_letters"),
]


class JobCollector:
    """Yields a job's metrics from its observer at scrape time."""

    def __init__(self, observer: JobObserver) -> None:
        self.observer = observer

    def collect(self) -> Iterator[Any]:
        _prometheus()
        from prometheus_client import core

        obs = self.observer
        job = [obs.pipeline]
        figures = obs.figures  # replaced, never mutated, by the executor's thread
        info = core.GaugeMetricFamily(
            "riverbed_job_info", "The job: pipeline, mode and state.", labels=["pipeline", "mode", "state"]
        )
        info.add_metric([obs.pipeline, obs.mode, obs.state], 1)
        yield info
        up = core.GaugeMetricFamily("riverbed_job_running", "1 while the job runs.", labels=["pipeline"])
        up.add_metric(job, 1 if obs.state == "running" else 0)
        yield up
        batches = core.CounterMetricFamily("riverbed_batches", "Micro-batches run.", labels=["pipeline"])
        batches.add_metric(job, obs.batches)
        yield batches
        for name, doc, key in _COUNTERS:
            c = core.CounterMetricFamily(name, doc, labels=["pipeline"])
            c.add_metric(job, float(figures.get(key) or 0))  # type: ignore[arg-type]
            yield c
        for name, doc, key in _GAUGES:
            value = figures.get(key)
            if isinstance(value, int | float):
                g = core.GaugeMetricFamily(name, doc, labels=["pipeline"])
                g.add_metric(job, float(value))
                yield g
        wm = figures.get("watermark")
        if isinstance(wm, int):
            g = core.GaugeMetricFamily(
                "riverbed_watermark_seconds", "The job's watermark, Unix seconds.", labels=["pipeline"]
            )
            g.add_metric(job, wm / 1000)
            yield g
        lag = figures.get("source_lag")
        if lag:
            g = core.GaugeMetricFamily(
                "riverbed_source_lag",
                "Records not read yet, per partition.",
                labels=["pipeline", "partition"],
            )
            for part, value in lag.items():
                g.add_metric([obs.pipeline, str(part)], float(value))
            yield g
        rows_in = core.CounterMetricFamily(
            "riverbed_step_rows_in", "Rows into a step.", labels=["pipeline", "step"]
        )
        rows_out = core.CounterMetricFamily(
            "riverbed_step_rows_out", "Rows out of a step.", labels=["pipeline", "step"]
        )
        for step, (rin, rout) in list(obs.totals.items()):
            rows_in.add_metric([obs.pipeline, step], rin)
            rows_out.add_metric([obs.pipeline, step], rout)
        yield rows_in
        yield rows_out
        yield from self._checkpoints(core, job)

    def _checkpoints(self, core: Any, job: list[str]) -> Iterator[Any]:
        obs = self.observer
        with obs._lock:
            last = obs.checkpoints[-1] if obs.checkpoints else None
            count = obs.checkpoint_count
            at = obs.last_checkpoint_mono
        total = core.CounterMetricFamily("riverbed_checkpoints", "Checkpoints taken.", labels=["pipeline"])
        total.add_metric(job, count)
        yield total
        if last is None or at is None:
            return
        for name, doc, value in (
            ("riverbed_checkpoint_duration_seconds", "Time to take the last checkpoint.", last["duration_s"]),
            ("riverbed_checkpoint_size_bytes", "Size of the last checkpoint.", last["size_bytes"]),
            ("riverbed_checkpoint_epoch", "Epoch of the last checkpoint.", last["epoch"]),
            ("riverbed_checkpoint_age_seconds", "Seconds since the last checkpoint.", time.monotonic() - at),
        ):
            g = core.GaugeMetricFamily(name, doc, labels=["pipeline"])
            g.add_metric(job, float(value))
            yield g


class MetricsServer:
    """``/metrics`` and ``/healthz`` of one job on ``host:port``, in a daemon thread.

    Examples
    --------
    >>> import json, tempfile, urllib.request
    >>> from pathlib import Path
    >>> from riverbed.observe import JobObserver
    >>> obs = JobObserver(Path(tempfile.mkdtemp()), "p", "stream", '{"steps": []}', metrics_port=0)
    >>> obs.on_start()
    >>> obs.on_batch({"events": 42})
    >>> text = urllib.request.urlopen(obs.metrics_url + "/metrics").read().decode()
    >>> 'riverbed_events_total{pipeline="p"} 42.0' in text
    True
    >>> json.loads(urllib.request.urlopen(obs.metrics_url + "/healthz").read())["live"]
    True
    >>> obs.on_end("finished")
    """

    def __init__(self, observer: JobObserver, host: str, port: int) -> None:
        pc = _prometheus()
        self.registry = pc.CollectorRegistry(auto_describe=False)
        self.registry.register(JobCollector(observer))
        registry = self.registry
        generate, content_type = pc.generate_latest, pc.CONTENT_TYPE_LATEST

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, content_type, generate(registry))
                elif path in ("/healthz", "/health"):
                    ok, body = observer.health()
                    self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
                else:
                    self._send(404, "text/plain", b"not found: try /metrics or /healthz\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise RiverbedError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}.\n"
                "  hint: pick another --metrics-port (0 picks a free one)"
            ) from None
        self.httpd.daemon_threads = True
        bound_host, bound_port = (str(a) for a in self.httpd.server_address[:2])
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        self.port = int(bound_port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="riverbed-metrics", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()
