"""DuckDB, SQLite and PostgreSQL tables: replace, append and upsert by key; the epochs table;
table sources. PostgreSQL cases use a schema of their own (see tests/pg_server.py)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb as duckdb_driver
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import riverbed as rb
from riverbed.connectors.base import SinkContext
from tests.pg_server import pg_execute, pg_schema, postgres_url

__all__ = ["pg_schema", "postgres_url"]  # fixtures

FIRST = pl.DataFrame(
    {
        "store_id": [1, 2],
        "day": ["d1", "d1"],
        "revenue": [10.0, 20.0],
        "at": [datetime(2026, 1, 1, 12), datetime(2026, 1, 2)],
        "ok": [True, False],
    }
)
SECOND = pl.DataFrame(
    {
        "store_id": [2, 3],
        "day": ["d1", "d1"],
        "revenue": [21.0, 30.0],
        "at": [None, datetime(2026, 1, 3)],
        "ok": [None, True],
    }
)

Kind = str


def sink_for(kind: Kind, path: Path, table: str, **kw: Any) -> Any:
    if kind == "postgres":
        return rb.postgres(str(path), table, **kw).as_sink()
    return rb.duckdb(path, table, **kw) if kind == "duckdb" else rb.sqlite(path, table, **kw)


def query(kind: Kind, path: Path, sql: str) -> list[tuple[Any, ...]]:
    if kind == "postgres":
        return pg_execute(str(path), sql)
    if kind == "duckdb":
        con = duckdb_driver.connect(str(path), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    scon = sqlite3.connect(path)
    try:
        return scon.execute(sql).fetchall()
    finally:
        scon.close()


def run_into(sink: Any, df: pl.DataFrame, name: str = "tables") -> rb.RunResult:
    p = rb.Pipeline(name)
    p.read(rb.testing.source([df])).write(sink, name="write_2")
    return p.run(progress=False)


def rows(kind: Kind, path: Path, table: str = "t") -> list[tuple[Any, ...]]:
    return query(kind, path, f'SELECT store_id, day, revenue FROM "{table}" ORDER BY store_id, day')


KINDS = pytest.mark.parametrize("kind", ["duckdb", "sqlite", "postgres"])


@pytest.fixture
def place(kind: Kind, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """Where a test's tables go: a database file, or a PostgreSQL URL with a schema of its own."""
    if kind == "postgres":
        url, _ = request.getfixturevalue("pg_schema")
        return url
    return tmp_path / f"w.{kind}"


@KINDS
def test_replace_append_upsert(place: Any, kind: Kind) -> None:
    path = place
    run_into(sink_for(kind, path, "t"), FIRST)
    assert rows(kind, path) == [(1, "d1", 10.0), (2, "d1", 20.0)]
    run_into(sink_for(kind, path, "t", mode="append"), SECOND)
    assert rows(kind, path) == [(1, "d1", 10.0), (2, "d1", 20.0), (2, "d1", 21.0), (3, "d1", 30.0)]
    run_into(sink_for(kind, path, "t"), FIRST)  # replace again
    assert rows(kind, path) == [(1, "d1", 10.0), (2, "d1", 20.0)]
    run_into(sink_for(kind, path, "t", mode="upsert", key=["store_id", "day"]), SECOND)
    assert rows(kind, path) == [(1, "d1", 10.0), (2, "d1", 21.0), (3, "d1", 30.0)]


@KINDS
def test_upsert_creates_the_table_and_keeps_the_last_row_per_key(place: Any, kind: Kind) -> None:
    path = place
    batch = pl.DataFrame({"store_id": [5, 5, 6], "day": ["d", "d", "d"], "revenue": [1.0, 2.0, 3.0]})
    run_into(sink_for(kind, path, "t", mode="upsert", key=["store_id", "day"]), batch)
    assert rows(kind, path) == [(5, "d", 2.0), (6, "d", 3.0)]


@KINDS
def test_upsert_with_null_keys_replaces_them(place: Any, kind: Kind) -> None:
    path = place
    batch = pl.DataFrame({"store_id": [None, 1], "day": ["d", None], "revenue": [1.0, 2.0]})
    for i in range(3):
        run_into(
            sink_for(kind, path, "t", mode="upsert", key=["store_id", "day"]),
            batch.with_columns(revenue=pl.col("revenue") + i),
        )
    got = query(kind, path, "SELECT store_id, day, revenue FROM t ORDER BY revenue")
    assert got == [(None, "d", 3.0), (1, None, 4.0)]


@KINDS
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 4), st.integers(-5, 5)), max_size=6), min_size=1, max_size=4
    )
)
def test_upsert_equals_last_write_per_key(tmp_path: Path, place: Any, kind: Kind, batches: list[Any]) -> None:
    if kind == "postgres":
        path = place
        pg_execute(path, "DROP TABLE IF EXISTS t")
    else:
        path = tmp_path / f"u-{len(list(tmp_path.iterdir()))}.{kind}"
    expected: dict[int, int] = {}
    for batch in batches:
        df = pl.DataFrame(batch, schema={"k": pl.Int64, "v": pl.Int64}, orient="row")
        run_into(sink_for(kind, path, "t", mode="upsert", key="k"), df)
        expected.update(dict(batch))
    if (kind != "postgres" and not path.exists()) or not any(batches):
        assert not expected
        return
    got = query(kind, path, "SELECT k, v FROM t ORDER BY k")
    assert got == sorted(expected.items())


@KINDS
def test_epochs_table_records_each_commit_atomically(place: Any, kind: Kind) -> None:
    path = place
    run_into(sink_for(kind, path, "t"), FIRST, name="daily")
    assert query(kind, path, "SELECT pipeline, step, epoch FROM _riverbed_epochs") == [
        ("daily", "write_2", 0)
    ]
    # a stream run commits epoch after epoch; the sink remembers the newest
    writer = sink_for(kind, path, "t", mode="append").open(
        SinkContext(mode="stream", pipeline="daily", step="write_2")
    )
    try:
        assert writer.last_committed_epoch() == 0
        writer.write(SECOND)
        writer.commit(1)
        writer.commit(2)  # an epoch with no rows is still recorded
        assert writer.last_committed_epoch() == 2
    finally:
        writer.close()
    assert query(kind, path, "SELECT epoch FROM _riverbed_epochs") == [(2,)]
    assert len(rows(kind, path)) == 4


@KINDS
def test_failed_commit_rolls_back_rows_and_epoch(place: Any, kind: Kind) -> None:
    path = place
    run_into(sink_for(kind, path, "t"), FIRST, name="daily")
    bad = SECOND.select("store_id", "day", "revenue", extra=pl.lit("x"))
    with pytest.raises(rb.SinkError, match="'t'"):
        run_into(sink_for(kind, path, "t", mode="append"), bad, name="daily")
    assert len(rows(kind, path)) == 2
    assert query(kind, path, "SELECT epoch FROM _riverbed_epochs") == [(0,)]


def test_upsert_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(rb.ConfigError, match="key"):
        rb.duckdb(tmp_path / "w.duckdb", "t", mode="upsert")
    with pytest.raises(rb.ConfigError, match="key"):
        rb.sqlite(tmp_path / "w.sqlite", "t", mode="upsert")
    with pytest.raises(rb.ConfigError, match="mode"):
        rb.duckdb(tmp_path / "w.duckdb", "t", mode="merge")  # type: ignore[arg-type]


@KINDS
def test_types_round_trip_through_a_table_source(place: Any, kind: Kind) -> None:
    path = place
    run_into(sink_for(kind, path, "t"), FIRST)
    p = rb.Pipeline("back")
    out = rb.testing.collect()
    p.read(f"{path}#t").write(out)
    p.run(progress=False)
    back = out.frame()
    assert back["store_id"].to_list() == [1, 2]
    assert back["revenue"].to_list() == [10.0, 20.0]
    if kind in ("duckdb", "postgres"):
        assert back.equals(FIRST)
    else:  # SQLite has no timestamp or boolean type: ISO text and 0/1
        assert back["at"].to_list() == ["2026-01-01 12:00:00.000000", "2026-01-02 00:00:00.000000"]
        assert back["ok"].to_list() == [1, 0]


@KINDS
def test_missing_table_names_what_exists(place: Any, kind: Kind) -> None:
    path = place
    run_into(sink_for(kind, path, "sales"), FIRST)
    p = rb.Pipeline("back")
    p.read(f"{path}#sale").write(rb.testing.collect())
    with pytest.raises(rb.SourceError, match="sale") as err:
        p.validate()
    assert "sales" in str(err.value)
    if kind == "postgres":
        return
    p = rb.Pipeline("back")
    p.read(f"{Path(str(path)).parent / 'nope'}.{kind}#t").write(rb.testing.collect())
    with pytest.raises(rb.SourceError, match="does not exist"):
        p.validate()


@KINDS
def test_windowed_pipeline_into_a_table_uri(place: Any, kind: Kind) -> None:
    events = pl.DataFrame({"store_id": [1, 1, 2], "ts": [0, 86_400_000, 5], "amount": [1.0, 2.0, 3.0]})
    path = place
    p = rb.Pipeline("daily_revenue")
    p.read(rb.testing.source([events]), event_time="ts").window(rb.tumbling("1d"), by="store_id").agg(
        revenue=rb.sum("amount"), orders=rb.count()
    ).write(str(path))  # no #TABLE: the pipeline's name
    p.run(progress=False)
    got = query(kind, path, "SELECT * FROM daily_revenue ORDER BY store_id, window_start")
    assert got == [
        (1, 0, 86_400_000, 1.0, 1),
        (1, 86_400_000, 172_800_000, 2.0, 1),
        (2, 0, 86_400_000, 3.0, 1),
    ]


def test_several_table_sinks_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    p = rb.Pipeline("two")
    s = p.read(rb.testing.source([FIRST]))
    s.write(f"{path}#a")
    s.filter(pl.col("ok")).write(rb.sink(f"{path}#b"))
    p.run(progress=False)
    assert query("duckdb", path, "SELECT count(*) FROM a") == [(2,)]
    assert query("duckdb", path, "SELECT count(*) FROM b") == [(1,)]
