"""Crash test: a stream job over the embedded log into every exactly-once sink (files,
DuckDB, SQLite, PostgreSQL, the log), with a window, late output and dead letters, killed with
SIGKILL at every named kill point and at random moments (20+ kills), restarted each time; at
the end every sink holds exactly what an uninterrupted run wrote.

PostgreSQL at 127.0.0.1:5432 (database ``test``): without it the test runs without the
PostgreSQL sink locally, and fails under ``CI=true``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.pg_server import PG_URL, _unavailable
from tests.recovery.harness import NAMED, PG_NAMED, main_run

pytestmark = pytest.mark.integration


def test_killed_job_ends_exact(tmp_path: Path) -> None:
    reason = _unavailable()
    if reason and os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pg = "" if reason else PG_URL
    # short random delays: a fast machine must not finish the input before 20 random kills land
    kills = 20 + len(NAMED) + (len(PG_NAMED) if pg else 0)
    report = main_run(tmp_path, events=60_000, kills=kills, pg=pg, max_delay_s=1.2)
    print(report.line())
    assert report.named_missed == []
    assert sorted(report.named_hit) == sorted({**NAMED, **(PG_NAMED if pg else {})})
    assert report.kills >= 20 + len(report.named_hit), report.line()
    assert sum(report.lost.values()) == 0, report
    assert sum(report.duplicated.values()) == 0, report
    assert all(report.rows[s] for s in ("w_files", "late_files", "dead_sqlite", "w_log")), report
    if pg:
        assert report.rows["w_pg"] > 0
