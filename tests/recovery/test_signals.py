"""SIGTERM stops a checkpointed stream job cleanly: it finishes the micro-batch, commits,
checkpoints and exits 0; the next start resumes there and reads nothing twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from riverbed.eventlog import Log
from riverbed.executors._checkpoint import CheckpointStore

SRC = Path(__file__).resolve().parents[2] / "src"
JOB = """
import riverbed as rb
p = rb.Pipeline("copy")
p.read(rb.log("events"), name="events").write(rb.sqlite(OUT, table="rows", mode="append"), name="out")
"""


def test_sigterm_checkpoints_and_exits_0(tmp_path: Path) -> None:
    home, ckpt, out = tmp_path / "home", tmp_path / "ckpt", tmp_path / "o.sqlite"
    (tmp_path / "job.py").write_text(f"OUT = {str(out)!r}\n" + JOB)
    with Log(home) as log:
        log.create_topic("events", 2).append(pl.DataFrame({"id": list(range(1000))}))
    cmd = [sys.executable, "-m", "riverbed.cli", "run", str(tmp_path / "job.py"), "--mode", "stream"]
    cmd += ["--home", str(home), "--checkpoint-dir", str(ckpt), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while CheckpointStore(str(ckpt)).latest() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    with Log(home) as log:
        log.topic("events").append(pl.DataFrame({"id": list(range(1000, 1500))}))
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert "they are in the checkpoint" in err.decode()
    ckpt_positions = CheckpointStore(str(ckpt)).latest()
    assert ckpt_positions is not None
    assert sum(ckpt_positions.positions.values()) == 1500
    # resumed with --stop-at-end: nothing new to read, nothing written twice
    done = subprocess.run([*cmd, "--stop-at-end"], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    rows = sqlite3.connect(out).execute("SELECT count(*), count(DISTINCT id) FROM rows").fetchone()
    assert rows == (1500, 1500)
