"""`riverbed run --mode stream` as a real process: it follows a growing file, and SIGTERM
stops it cleanly (exit 0, a summary, committed output)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl

ROOT = Path(__file__).resolve().parents[1]


def test_stream_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with events.open("w") as fh:
        for i in range(200):
            fh.write(json.dumps({"ts_ms": i * 1_000, "store_id": i % 3, "amount": 1.0}) + "\n")
    pipeline = tmp_path / "tail.py"
    pipeline.write_text(
        "import polars as pl, riverbed as rb\n"
        "def pipeline(source: str, sink: str) -> rb.Pipeline:\n"
        "    p = rb.Pipeline('tail')\n"
        "    schema = {'ts_ms': pl.Int64, 'store_id': pl.Int64, 'amount': pl.Float64}\n"
        "    s = p.read(rb.files(source, tail=True, schema=schema), event_time='ts_ms',\n"
        "               watermark=rb.watermark(max_delay='10s'))\n"
        "    s.window(rb.tumbling('1m'), by='store_id').agg(n=rb.count()).write(sink)\n"
        "    return p\n"
    )
    db = tmp_path / "out.duckdb"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "riverbed.cli",
            "run",
            str(pipeline),
            "--mode",
            "stream",
            "-p",
            f"source={events}",
            "-p",
            f"sink={db}#minutes",
            "--home",
            str(tmp_path / "home"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    try:
        time.sleep(4)  # let it read and commit
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "200 rows read" in err
    assert "stopped on request" in err
    con = duckdb.connect(str(db), read_only=True)
    total = con.execute("SELECT sum(n) FROM minutes").fetchone()
    con.close()
    # windows up to the watermark (190 s - 10 s) are closed: minutes 0, 1 and 2 (0-179 s)
    assert total is not None and total[0] == 180
    assert pl.read_ndjson(events).height == 200
