"""PostgreSQL sink under connection trouble in a checkpointed stream job: a connection killed
by the server is retried on a new one; a commit that landed while the client saw the
connection drop is not written twice (the sink's epoch record is asked before a retry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

import riverbed as rb
from riverbed._errors import SinkUnavailable
from riverbed.connectors import postgres as pgmod
from riverbed.eventlog import Log
from tests.pg_server import pg_execute, pg_schema, postgres_url

__all__ = ["pg_schema", "postgres_url"]  # fixtures

pytestmark = pytest.mark.integration


def _job(home: Path, url: str, n: int) -> rb.Pipeline:
    with Log(home) as log:
        log.create_topic("events", 1, exist_ok=True).append(pl.DataFrame({"id": list(range(n))}))
    p = rb.Pipeline("pg_retry")
    p.read(rb.log("events"), name="events").write(rb.postgres(url, table="rows", mode="append"), name="out")
    return p


def test_commit_landed_but_connection_dropped_is_not_doubled(
    pg_schema: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, schema = pg_schema
    p = _job(tmp_path / "home", url, 100)
    original = pgmod._PostgresWriter._transaction
    calls: list[int] = []

    def landed_then_lost(self: Any, df: pl.DataFrame, *, replace: bool, epoch: int) -> None:
        original(self, df, replace=replace, epoch=epoch)
        calls.append(epoch)
        if len(calls) == 1:
            self.con.close()  # the client never hears the COMMIT's answer
            raise SinkUnavailable("connection lost during COMMIT (outcome unknown)")

    monkeypatch.setattr(pgmod._PostgresWriter, "_transaction", landed_then_lost)
    p.run("stream", home=tmp_path / "home", checkpoint_dir=tmp_path / "ckpt", stop_at_end=True)
    assert len(calls) == 1  # not committed again: the epoch record said it landed
    assert pg_execute(url, f'SELECT count(*), count(DISTINCT id) FROM "{schema}".rows') == [(100, 100)]


def test_connection_killed_by_the_server_is_retried(pg_schema: tuple[str, str], tmp_path: Path) -> None:
    url, schema = pg_schema
    p = _job(tmp_path / "home", url, 50)
    killed: list[int] = []
    original = pgmod._PostgresWriter._transaction

    def kill_first(self: Any, df: pl.DataFrame, *, replace: bool, epoch: int) -> None:
        if not killed:
            pid = self.con.info.backend_pid
            pg_execute(url, "SELECT pg_terminate_backend(%s)", [pid])
            killed.append(pid)
        original(self, df, replace=replace, epoch=epoch)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pgmod._PostgresWriter, "_transaction", kill_first)
        p.run("stream", home=tmp_path / "home", checkpoint_dir=tmp_path / "ckpt", stop_at_end=True)
    assert killed
    assert pg_execute(url, f'SELECT count(*), count(DISTINCT id) FROM "{schema}".rows') == [(50, 50)]
