"""A real stream job for tests of status, metrics and the dashboard: ``riverbed run --mode
stream`` in a child process, following a JSON-lines file that a thread keeps appending to, so
the job runs (and its figures move) until the test stops it with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

PIPELINE = """\
import polars as pl, riverbed as rb

def pipeline(source: str, sink: str, late: str) -> rb.Pipeline:
    p = rb.Pipeline("clicks")
    schema = {"ts_ms": pl.Int64, "store_id": pl.Int64, "amount": pl.Float64}
    s = p.read(rb.files(source, tail=True, schema=schema), event_time="ts_ms",
               watermark=rb.watermark(max_delay="10s"), name="clicks")
    w = (s.filter(pl.col("amount") > 0, name="paid")
          .window(rb.tumbling("1m"), by="store_id", name="per_minute")
          .agg(orders=rb.count(), revenue=rb.sum("amount")))
    w.write(sink, name="out")
    w.late().write(late, name="late_out")
    return p
"""
STEPS = ["clicks", "paid", "per_minute", "out", "per_minute.late", "late_out"]


@dataclass
class LiveJob:
    home: Path
    proc: subprocess.Popen[str]
    events: Path

    def status(self) -> dict[str, Any]:
        return json.loads((self.home / "jobs" / "clicks" / "status.json").read_text())


def _feed(path: Path, stop: threading.Event) -> None:
    """200 events every 0.1 s, event time following wall time (1 in 50 a minute and a half late)."""
    k = 0
    with path.open("a") as fh:
        while not stop.is_set():
            now = int(time.time() * 1000)
            for i in range(200):
                late = 90_000 if (k * 200 + i) % 50 == 0 else 0
                fh.write(json.dumps({"ts_ms": now - late, "store_id": i % 7, "amount": 1.0 + i % 5}) + "\n")
            fh.flush()
            k += 1
            stop.wait(0.1)


@contextmanager
def live_stream_job(tmp_path: Path, *extra: str) -> Iterator[LiveJob]:
    """Start the job, wait until its status says running, yield it; stop it on exit."""
    home = tmp_path / "home"
    events = tmp_path / "events.jsonl"
    events.touch()
    pipeline = tmp_path / "clicks.py"
    pipeline.write_text(PIPELINE)
    stop = threading.Event()
    feeder = threading.Thread(target=_feed, args=(events, stop), daemon=True)
    feeder.start()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "riverbed.cli", "run", str(pipeline), "--mode", "stream",
            "-p", "source=events.jsonl", "-p", "sink=out.duckdb#minutes", "-p", "late=late.jsonl",
            "--home", str(home), "--no-progress", *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    job = LiveJob(home, proc, events)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the stream job ended early: {proc.communicate()}")
            try:
                if job.status()["batches"] > 0:
                    break
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the stream job did not start within 60 s")
            time.sleep(0.1)
        yield job
    finally:
        stop.set()
        feeder.join(timeout=10)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
