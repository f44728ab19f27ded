"""The crash harness: run ``crash_job.py`` as a stream job over the embedded log, SIGKILL it
at random moments and at named kill points (``RIVERBED_KILL_AT``), restart it each time, and
compare every sink with an uninterrupted run of the same job.

Used by ``tests/recovery/test_crash.py`` (a short run) and ``python -m benchmarks.crash``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

JOB = Path(__file__).with_name("crash_job.py")
SRC = Path(__file__).resolve().parents[2] / "src"
# each named point and the hit to kill at (a later hit than the first, to be mid-run)
NAMED = {
    "offsets-written": 3,
    "sink-committed": 9,
    "before-checkpoint": 4,
    "checkpoint-write": 5,
    "after-checkpoint": 2,
    "file-appended": 7,
}
PG_NAMED = {"mid-copy": 4}


def make_events(home: Path, n: int, seed: int = 7, partitions: int = 1) -> None:
    """``n`` events in topic ``events``: some late, some without event time. One partition by
    default: with several, the arrival interleaving (and with it the watermark) depends on timing,
    so two uninterrupted runs may differ and could not serve as each other's reference."""
    from riverbed.eventlog import Log

    rnd = random.Random(seed)
    t = 1_700_000_000_000
    ids, stores, ts, amounts = [], [], [], []
    for i in range(n):
        t += rnd.randint(0, 200)
        late = rnd.random() < 0.02
        ids.append(i)
        stores.append(f"s{rnd.randint(0, 9)}")
        ts.append(None if rnd.random() < 0.005 else t - (rnd.randint(5_000, 30_000) if late else 0))
        amounts.append(rnd.randint(-5, 100))
    df = pl.DataFrame(
        {"id": ids, "store": stores, "ts": ts, "amount": amounts},
        schema={"id": pl.Int64, "store": pl.String, "ts": pl.Int64, "amount": pl.Int64},
    )
    with Log(home) as log:
        topic = log.create_topic("events", partitions, exist_ok=True)
        for k in range(0, n, 500):
            topic.append(df.slice(k, 500), "store")


@dataclass
class Run:
    """One job directory: its log home, outputs and checkpoints."""

    root: Path
    pg: str = ""
    pg_table: str = "crash_windows"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "riverbed.cli", "run", str(JOB), "--mode", "stream"]
        cmd += ["--home", str(self.home), "--checkpoint-dir", str(self.root / "ckpt"), "--stop-at-end"]
        cmd += ["--checkpoint-interval", "100ms", "--max-batch-rows", "300", "--no-progress"]
        cmd += ["-p", f"out={self.out}"]
        if self.pg:
            cmd += ["-p", f"pg={self.pg}", "-p", f"table={self.pg_table}"]
        return cmd

    def start(self, kill_at: str | None = None) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        env.pop(ENV_KILL, None)
        if kill_at:
            env[ENV_KILL] = kill_at
        return subprocess.Popen(self.command(), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


ENV_KILL = "RIVERBED_KILL_AT"


def _finish(proc: subprocess.Popen[bytes], timeout: float = 300) -> int:
    _, err = proc.communicate(timeout=timeout)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"job failed (rc {proc.returncode}):\n{err.decode()[-3000:]}")
    return proc.returncode


@dataclass
class Report:
    kills: int = 0
    named_hit: list[str] = field(default_factory=list)
    named_missed: list[str] = field(default_factory=list)
    restarts: int = 0
    lost: dict[str, int] = field(default_factory=dict)
    duplicated: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.kills} kills ({len(self.named_hit)} named points hit), {self.restarts} restarts; "
            f"lost = {sum(self.lost.values())}, duplicated = {sum(self.duplicated.values())} over "
            f"{sum(self.rows.values())} rows in {len(self.rows)} sinks"
        )


def crash_run(run: Run, kills: int, seed: int = 1, max_delay_s: float = 2.2) -> Report:
    """Kill ``run``'s job at every named point, then at random moments until ``kills`` kills;
    then let it finish."""
    rnd = random.Random(seed)
    report = Report()
    named = {**NAMED, **(PG_NAMED if run.pg else {})}
    for point, nth in named.items():
        proc = run.start(f"{point}:{nth}")
        rc = _finish(proc)
        report.restarts += 1
        if rc == -signal.SIGKILL:
            report.kills += 1
            report.named_hit.append(point)
        else:
            report.named_missed.append(point)
    while report.kills < kills:
        proc = run.start()
        delay = rnd.uniform(min(0.5, max_delay_s / 3), max_delay_s)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        rc = _finish(proc)
        report.restarts += 1
        if rc == 0:
            break  # the input ended before this kill: the caller sizes the input to avoid it
        report.kills += 1
    rc = _finish(run.start())
    report.restarts += 1
    assert rc == 0
    return report


def reference_run(run: Run) -> None:
    """The job uninterrupted."""
    assert _finish(run.start()) == 0


def _multiset(df: pl.DataFrame) -> Counter[tuple[Any, ...]]:
    cols = sorted(c for c in df.columns if not c.startswith("_"))
    return Counter(df.select(cols).rows())


def sink_contents(run: Run) -> dict[str, pl.DataFrame]:
    """What each sink of the job holds."""
    import sqlite3

    import duckdb

    from riverbed.eventlog import Log

    out = run.out
    got: dict[str, pl.DataFrame] = {}

    def parts(d: Path) -> pl.DataFrame:
        files = sorted(p for p in d.rglob("*.parquet") if not p.name.startswith("."))
        return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()

    got["w_files"] = parts(out / "windows")
    got["late_files"] = parts(out / "late")
    got["w_jsonl"] = pl.read_ndjson(out / "windows.jsonl")
    got["rows_csv"] = pl.read_csv(out / "rows.csv")
    con = duckdb.connect(str(out / "out.duckdb"), read_only=True)
    try:
        cur = con.execute("SELECT * FROM windows")
        cols = [d[0] for d in cur.description]
        got["w_duck"] = pl.DataFrame(cur.fetchall(), schema=cols, orient="row")
    finally:
        con.close()
    lite = sqlite3.connect(out / "out.sqlite")
    try:
        for table, name in (("windows", "w_sqlite"), ("dead", "dead_sqlite")):
            cur = lite.execute(f"SELECT * FROM {table}")
            cols = [d[0] for d in cur.description]
            got[name] = pl.DataFrame(cur.fetchall(), schema=cols, orient="row")
    finally:
        lite.close()
    with Log(run.home) as log:
        got["w_log"] = log.topic("windows_out").read_all()
    if run.pg:
        import psycopg

        with psycopg.connect(run.pg) as pg:
            cur = pg.execute(f"SELECT * FROM {run.pg_table}")
            cols = [d.name for d in cur.description or []]
            got["w_pg"] = pl.DataFrame(cur.fetchall(), schema=cols, orient="row")
    return got


def compare(report: Report, crashed: Run, reference: Run) -> Report:
    """Fill ``report`` with rows lost and duplicated per sink."""
    want = sink_contents(reference)
    have = sink_contents(crashed)
    for name, ref in want.items():
        a, b = _multiset(ref), _multiset(have[name])
        report.rows[name] = sum(a.values())
        report.lost[name] = sum((a - b).values())
        report.duplicated[name] = sum((b - a).values())
    return report


def main_run(
    root: Path, events: int, kills: int, pg: str = "", seed: int = 1, max_delay_s: float = 2.2
) -> Report:
    """Set up, run the reference and the crashed job, compare. With ``pg`` (a URL) the job
    also writes PostgreSQL, each run in a schema of its own (dropped at the end)."""
    tag = f"{os.getpid()}_{int(time.time())}"
    ref = Run(root / "reference", pg, f"rbcrash_ref_{tag}.crash_windows")
    crashed = Run(root / "crashed", pg, f"rbcrash_{tag}.crash_windows")
    for r in (ref, crashed):
        make_events(r.home, events)
    try:
        reference_run(ref)
        report = crash_run(crashed, kills, seed, max_delay_s)
        return compare(report, crashed, ref)
    finally:
        if pg:
            import psycopg

            with psycopg.connect(pg, autocommit=True) as con:
                for r in (ref, crashed):
                    con.execute(f"DROP SCHEMA IF EXISTS {r.pg_table.split('.')[0]} CASCADE")
