"""The PostgreSQL connector against a real server (127.0.0.1:5432, database ``test``).

Each test works in its own schema (``pg_schema``), dropped afterwards. Without a server the
tests skip, and fail under CI=true.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import riverbed as rb
from riverbed.connectors.base import SinkContext, SinkWriter
from riverbed.connectors.postgres import PostgresSink
from tests.pg_server import pg_execute, pg_schema, postgres_url

__all__ = ["pg_schema", "postgres_url"]  # fixtures

pytestmark = pytest.mark.integration

ROWS = pl.DataFrame({"k": [1, 2], "day": ["d1", "d1"], "v": [10.0, 20.0]})
MORE = pl.DataFrame({"k": [2, 3], "day": ["d1", "d1"], "v": [21.0, 30.0]})


def run_into(target: Any, df: pl.DataFrame, name: str = "pg") -> rb.RunResult:
    p = rb.Pipeline(name)
    p.read(rb.testing.source([df])).write(target, name="write_2")
    return p.run(progress=False)


def read(source: Any) -> pl.DataFrame:
    out = rb.testing.collect()
    p = rb.Pipeline("read")
    p.read(source).write(out)
    p.run(progress=False)
    return out.frame()


def table_rows(url: str, table: str = "t", order: str = "k") -> list[tuple[Any, ...]]:
    return pg_execute(url, f'SELECT k, day, v FROM "{table}" ORDER BY {order}')


def writer(url: str, table: str, schema: pl.Schema | None = None, step: str = "out", **kw: Any) -> SinkWriter:
    sink = rb.postgres(url, table, **kw).as_sink()
    return sink.open(SinkContext(mode="stream", pipeline="job", step=step, schema=schema))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_replace_append_upsert(pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    run_into(rb.postgres(url, "t"), ROWS)
    assert table_rows(url) == [(1, "d1", 10.0), (2, "d1", 20.0)]
    run_into(rb.postgres(url, "t", mode="append"), MORE)
    assert table_rows(url, order="k, v") == [
        (1, "d1", 10.0),
        (2, "d1", 20.0),
        (2, "d1", 21.0),
        (3, "d1", 30.0),
    ]
    run_into(rb.postgres(url, "t"), ROWS)  # replace again
    assert table_rows(url) == [(1, "d1", 10.0), (2, "d1", 20.0)]
    # upsert into a table riverbed created: it got a unique index on the key
    run_into(rb.postgres(url, "u", mode="upsert", key=["k", "day"]), ROWS)
    run_into(rb.postgres(url, "u", mode="upsert", key=["k", "day"]), MORE)
    assert table_rows(url, "u") == [(1, "d1", 10.0), (2, "d1", 21.0), (3, "d1", 30.0)]
    indexes = pg_execute(url, "SELECT indexdef FROM pg_indexes WHERE tablename = 'u'")
    assert len(indexes) == 1 and "UNIQUE" in indexes[0][0] and "NULLS NOT DISTINCT" in indexes[0][0]


@pytest.mark.parametrize("index", ["none", "unique"])
def test_upsert_into_a_table_made_elsewhere_with_null_keys(pg_schema: tuple[str, str], index: str) -> None:
    """Without a unique index on the key, upsert deletes matches then inserts (null keys match)."""
    url, _ = pg_schema
    pg_execute(url, "CREATE TABLE t (k bigint, day text, v double precision, note text DEFAULT 'x')")
    if index == "unique":
        pg_execute(url, "CREATE UNIQUE INDEX ON t (day, k) NULLS NOT DISTINCT")
    batch = pl.DataFrame({"k": [None, 1], "day": ["d", None], "v": [1.0, 2.0]})
    for i in range(3):
        run_into(
            rb.postgres(url, "t", mode="upsert", key=["k", "day"]), batch.with_columns(v=pl.col("v") + i)
        )
    assert pg_execute(url, "SELECT k, day, v, note FROM t ORDER BY v") == [
        (None, "d", 3.0, "x"),
        (1, None, 4.0, "x"),
    ]


def test_replace_happens_at_the_first_commit_only(pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    run_into(rb.postgres(url, "t"), MORE)
    w = writer(url, "t")
    try:
        w.write(ROWS)
        w.commit(0)
        w.write(MORE)
        w.commit(1)
        assert w.last_committed_epoch() == 1
    finally:
        w.close()
    assert len(table_rows(url)) == 4
    assert pg_execute(url, "SELECT pipeline, step, epoch FROM _riverbed_epochs ORDER BY 1") == [
        ("job", "out", 1),
        ("pg", "write_2", 0),
    ]


def test_a_failed_commit_leaves_neither_rows_nor_epoch(pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    w = writer(url, "t", mode="append")
    try:
        w.write(ROWS)
        w.commit(0)
        # the rows of epoch 5 are copied in, then recording the epoch fails: all rolls back
        pg_execute(url, "ALTER TABLE _riverbed_epochs ADD CHECK (epoch < 5)")
        w.write(MORE)
        with pytest.raises(rb.SinkError, match="epoch 5"):
            w.commit(5)
        assert w.last_committed_epoch() == 0
        assert table_rows(url) == [(1, "d1", 10.0), (2, "d1", 20.0)]
        w.commit(4)  # the writer is still usable; the failed epoch's rows stayed staged
        assert w.last_committed_epoch() == 4
    finally:
        w.close()
    assert len(table_rows(url)) == 4


def test_epochs_are_per_pipeline_and_step_and_empty_epochs_count(pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    a, b = writer(url, "t", mode="append"), writer(url, "t2", step="other", mode="append")
    try:
        assert a.last_committed_epoch() is None
        a.write(ROWS)
        a.commit(3)
        a.commit(4)  # nothing staged: the epoch is still recorded
        assert (a.last_committed_epoch(), b.last_committed_epoch()) == (4, None)
    finally:
        a.close()
        b.close()


def test_copy_of_100k_rows(pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    n = 100_000
    df = pl.DataFrame({"k": range(n), "day": [f"d{i % 7}" for i in range(n)], "v": [i / 4 for i in range(n)]})
    run_into(rb.postgres(url, "big"), df)
    assert pg_execute(url, "SELECT count(*), sum(k), sum(v), count(DISTINCT day) FROM big") == [
        (n, Decimal(n * (n - 1) // 2), sum(i / 4 for i in range(n)), 7)
    ]
    back = read(rb.postgres(url, "big"))
    assert back.sort("k").equals(df)


def test_source_from_a_table_and_from_a_query(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    run_into(rb.postgres(url, "t"), ROWS)
    assert read(rb.postgres(url, "t")).sort("k").equals(ROWS)
    assert read(rb.postgres_table(url, f"{schema}.t")).sort("k").equals(ROWS)
    got = read(rb.postgres(url, query="SELECT k, v * 2 AS v2, now() IS NOT NULL AS ok FROM t WHERE k > 1;"))
    assert got.rows() == [(2, 40.0, True)]
    assert got.schema == pl.Schema({"k": pl.Int64, "v2": pl.Float64, "ok": pl.Boolean})
    empty = read(rb.postgres(url, query="SELECT k, day FROM t WHERE false"))
    assert empty.height == 0 and empty.schema == pl.Schema({"k": pl.Int64, "day": pl.String})
    # a lookup join against a PostgreSQL table
    p = rb.Pipeline("lookup")
    out = rb.testing.collect()
    p.read(rb.testing.source([pl.DataFrame({"k": [2, 1]})])).lookup(rb.postgres(url, "t"), on="k").write(out)
    p.run(progress=False)
    assert sorted(out.frame().select("k", "v").rows()) == [(1, 10.0), (2, 20.0)]


def test_source_errors_name_what_exists(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    run_into(rb.postgres(url, "sales"), ROWS)
    with pytest.raises(rb.SourceError, match=f"no table 'sale'.*{schema}.sales"):
        read(rb.postgres(url, "sale"))
    with pytest.raises(rb.SourceError, match="duplicate column names"):
        read(rb.postgres(url, query="SELECT 1 AS a, 2 AS a"))
    with pytest.raises(rb.SourceError, match="nope"):
        read(rb.postgres(url, query="SELECT nope FROM sales"))


def test_uri_forms(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    assert url.startswith("postgresql://")
    short = "postgres://" + url.removeprefix("postgresql://")
    run_into(f"{url}#t", ROWS)
    run_into(f"{short}#{schema}.t2", MORE)
    run_into(short, ROWS, name="named_after_the_pipeline")  # no #TABLE: the pipeline's name
    assert read(f"{short}#t").sort("k").equals(ROWS)
    assert read(f"{url}#{schema}.t2").sort("k").equals(MORE)
    assert len(table_rows(url, "named_after_the_pipeline")) == 2
    assert rb.sink(f"{url}#t", mode="upsert", key="k").describe().endswith("#t (upsert)")
    assert rb.source("postgresql://me:secret@127.0.0.1:5432/test#t").describe() == (
        "postgres postgresql://me@127.0.0.1:5432/test#t"  # never the password
    )
    with pytest.raises(rb.ConfigError, match="name the table"):
        rb.source(url)
    with pytest.raises(rb.ConfigError, match="query is a source only"):
        run_into(rb.postgres(url, query="SELECT 1"), ROWS)


def test_an_unreachable_server_is_a_transient_error_naming_host_and_port(tmp_path: Path) -> None:
    port = closed_port()
    url = f"postgresql://127.0.0.1:{port}/test"
    with pytest.raises(rb.TransientError, match=f"127.0.0.1:{port}"):
        rb.postgres(url, "t", connect_timeout=1).as_sink().open(SinkContext())
    with pytest.raises(rb.TransientError, match=f"127.0.0.1:{port}"):
        read(f"{url}#t")


def test_a_lost_connection_is_transient_and_the_writer_reconnects(pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    w = writer(url, "t", mode="append")
    try:
        w.write(ROWS)
        w.commit(0)
        pid = w.con.info.backend_pid  # type: ignore[attr-defined]
        pg_execute(url, "SELECT pg_terminate_backend(%s)", [pid])
        w.write(MORE)
        with pytest.raises(rb.TransientError, match=r"127\.0\.0\.1:5432"):
            w.commit(1)
        assert w.last_committed_epoch() == 0  # reconnected; epoch 1 did not happen
        w.commit(1)  # a retry: the rows stayed staged
        assert w.last_committed_epoch() == 1
    finally:
        w.close()
    assert len(table_rows(url)) == 4


TYPES = pl.DataFrame(
    {
        "i": [1, None, -(2**62)],
        "i16": pl.Series([1, 2, None], dtype=pl.Int16),
        "i32": pl.Series([None, 2, 3], dtype=pl.Int32),
        "f": [0.1, None, float("inf")],
        "f32": pl.Series([1.5, 2.0, None], dtype=pl.Float32),
        "b": [True, None, False],
        "s": ["", None, 'a,"b"\nc\\d'],
        "ts": [datetime(2026, 1, 1, 12), None, datetime(1969, 7, 20, 20, 17, 40, 123456)],
        "d": [date(2026, 1, 1), None, date(1900, 2, 28)],
        "t": [time(12, 0, 1, 5), None, time(0)],
        "dec": pl.Series([Decimal("1.50"), None, Decimal("-2.25")], dtype=pl.Decimal(10, 2)),
        "li": [[1, None], [], None],
        "ls": [['a"b', "\\x,{}", None], None, []],
        "bin": [b"\x00\xff", None, b""],
    }
).with_columns(
    tz=pl.col("ts").dt.replace_time_zone("Europe/Paris").dt.convert_time_zone("UTC"),
)


def test_types_round_trip(pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    run_into(rb.postgres(url, "types"), TYPES)
    stored = dict(
        pg_execute(
            url, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'types'"
        )
    )
    assert stored["ts"] == "timestamp without time zone" and stored["tz"] == "timestamp with time zone"
    assert stored["dec"] == "numeric" and stored["li"] == "ARRAY" and stored["i16"] == "smallint"
    back = read(rb.postgres(url, "types"))
    assert back.schema == TYPES.schema
    assert back.equals(TYPES)
    # a zone other than UTC comes back as the same instant, in UTC
    paris = TYPES.select(tz=pl.col("tz").dt.convert_time_zone("Europe/Paris"))
    run_into(rb.postgres(url, "paris"), paris)
    assert read(rb.postgres(url, "paris"))["tz"].to_list() == TYPES["tz"].to_list()


def test_a_type_without_a_postgres_type_is_a_clear_error(pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    df = pl.select(k=pl.lit(1), gap=pl.duration(seconds=1))
    with pytest.raises(rb.SinkError, match=r"(?s)'gap' has type Duration.*hint: cast"):
        run_into(rb.postgres(url, "t"), df)
    with pytest.raises(rb.SinkError, match="'gap'"):  # at open, when the schema is known
        writer(url, "t", schema=df.schema)
    assert pg_execute(url, "SELECT to_regclass('t')") == [(None,)]


def test_open_checks_the_table_shape_for_append_and_upsert(pg_schema: tuple[str, str]) -> None:
    url, _ = pg_schema
    pg_execute(url, "CREATE TABLE t (k bigint, day text, v double precision)")
    writer(url, "t", schema=ROWS.schema, mode="append").close()  # fits
    with pytest.raises(rb.SinkError, match=r"no column\(s\) \['extra'\].*k bigint, day text"):
        writer(url, "t", schema=ROWS.with_columns(extra=pl.lit(1)).schema, mode="append")
    with pytest.raises(rb.SinkError, match=r"v \(Boolean into double precision\)"):
        writer(url, "t", schema=ROWS.with_columns(v=pl.lit(True)).schema, mode="append")
    with pytest.raises(rb.SinkError, match=r"no column\(s\) \['id'\]"):
        writer(url, "t", mode="upsert", key="id")
    writer(url, "t", schema=ROWS.with_columns(extra=pl.lit(1)).schema).close()  # replace recreates it


def test_open_checks_privileges(pg_schema: tuple[str, str], postgres_url: str) -> None:
    url, schema = pg_schema
    role = f"{schema}_reader"
    pg_execute(url, "CREATE TABLE t (k bigint, day text, v double precision)")
    pg_execute(url, f'CREATE ROLE "{role}" LOGIN')
    try:
        pg_execute(url, f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        pg_execute(url, f'GRANT SELECT ON t TO "{role}"')
        as_reader = url.replace("postgresql://", f"postgresql://{role}@")
        with pytest.raises(rb.SinkError, match=r'(?s)lacks INSERT on "t".*hint: GRANT INSERT ON TABLE "t"'):
            writer(as_reader, "t", mode="append")
        with pytest.raises(rb.SinkError, match="may not create tables"):
            writer(as_reader, "t2")
        pg_execute(url, f'GRANT CREATE ON SCHEMA "{schema}" TO "{role}"')
        owner = pg_execute(url, "SELECT current_user")[0][0]
        with pytest.raises(rb.SinkError, match=rf"only its owner \({owner}\) may"):
            writer(as_reader, "t")  # replace
        assert read(rb.postgres(as_reader, "t")).height == 0  # reading is allowed
    finally:
        pg_execute(postgres_url, f'DROP OWNED BY "{role}" CASCADE')
        pg_execute(postgres_url, f'DROP ROLE "{role}"')


def test_a_second_sink_that_cannot_be_written_fails_before_the_first_commits(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    """Open every writer before committing any: the bad one raises at open, nothing is published."""
    url, _ = pg_schema
    pg_execute(url, "CREATE TABLE t (k bigint, day text)")  # no column v
    pg_execute(url, "INSERT INTO t VALUES (7, 'old')")
    path = tmp_path / "w.duckdb"
    run_into(rb.duckdb(path, "a"), MORE)  # what the first sink's table holds before the job
    ctx = SinkContext(pipeline="two", step="a", schema=ROWS.schema)
    first = rb.duckdb(path, "a").open(ctx)  # replace
    try:
        with pytest.raises(rb.SinkError, match=r"no column\(s\) \['v'\]"):
            rb.postgres(url, "t", mode="append").as_sink().open(ctx)
    finally:
        first.close()
    assert read(rb.duckdb_table(path, "a")).equals(MORE)
    assert pg_execute(url, "SELECT * FROM t") == [(7, "old")]


def test_describe_and_options() -> None:
    sink = rb.postgres("postgresql://u:pw@127.0.0.1:5432/db", "s.t", mode="upsert", key="k").as_sink()
    assert isinstance(sink, PostgresSink)
    assert sink.describe() == "postgres postgresql://u@127.0.0.1:5432/db#s.t (upsert)"
    assert sink.capabilities.exactly_once and sink.capabilities.upsert
    assert rb.postgres_table("postgresql://127.0.0.1/db", "t").capabilities.bounded
    with pytest.raises(rb.ConfigError, match="key"):
        rb.postgres("postgresql://127.0.0.1/db", "t", mode="upsert")
    with pytest.raises(rb.ConfigError, match="not both"):
        rb.postgres("postgresql://127.0.0.1/db", "t", query="SELECT 1")
    with pytest.raises(rb.ConfigError, match="PostgreSQL URL"):
        rb.postgres("127.0.0.1:5432/db", "t")


def test_psycopg_is_imported_only_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    code = (
        "import sys, riverbed as rb; rb.postgres('postgresql://h/db', 't').describe(); "
        "print('psycopg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(rb.MissingExtraError, match=r"riverbed\[postgres\]"):
        rb.postgres("postgresql://127.0.0.1/db", "t").as_sink().open(SinkContext())


def test_types_that_change_on_the_way_back(pg_schema: tuple[str, str]) -> None:
    """Struct -> jsonb (text back), Categorical -> text, UInt64 -> numeric(20,0), ns -> us."""
    url, _ = pg_schema
    df = pl.DataFrame(
        {
            "st": [{"a": 1, "b": "x"}, None],
            "cat": pl.Series(["p", None], dtype=pl.Categorical),
            "u64": pl.Series([2**64 - 1, 0], dtype=pl.UInt64),
            "ns": pl.Series([datetime(2026, 1, 1, 0, 0, 0, 1), None]).cast(pl.Datetime("ns")),
        }
    )
    run_into(rb.postgres(url, "t"), df)
    back = read(rb.postgres(url, "t"))
    assert back.schema == pl.Schema(
        {"st": pl.String, "cat": pl.String, "u64": pl.Decimal(20, 0), "ns": pl.Datetime("us")}
    )
    assert pg_execute(url, "SELECT st->>'b', (st->>'a')::int FROM t WHERE st IS NOT NULL") == [("x", 1)]
    assert back["cat"].to_list() == ["p", None]
    assert back["u64"].to_list() == [Decimal(2**64 - 1), Decimal(0)]
    assert back["ns"].to_list() == [datetime(2026, 1, 1, 0, 0, 0, 1), None]


@pytest.mark.parametrize("emit", ["final", "update"])
def test_a_stream_job_writes_windows_like_the_batch_job(pg_schema: tuple[str, str], emit: str) -> None:
    url, _ = pg_schema
    events = pl.DataFrame(
        {
            "store_id": [1, 2, 1, 2, 1],
            "ts": [0, 10, 70_000, 65_000, 130_000],
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    for mode in ("batch", "stream"):
        p = rb.Pipeline(f"minutes_{mode}")
        (
            p.read(rb.testing.source([events.slice(0, 2), events.slice(2)]), event_time="ts")
            .window(rb.tumbling("1m"), by="store_id", emit=emit)  # type: ignore[arg-type]
            .agg(revenue=rb.sum("amount"), orders=rb.count())
            .write(rb.postgres(url, mode))
        )
        p.run(mode=mode, progress=False)  # type: ignore[arg-type]
    order = "ORDER BY store_id, window_start"
    got = pg_execute(url, f"SELECT store_id, window_start, revenue, orders FROM stream {order}")
    assert got == pg_execute(url, f"SELECT store_id, window_start, revenue, orders FROM batch {order}")
    assert len(got) == 5  # (1, 0), (1, 1m), (1, 2m), (2, 0), (2, 1m)
    epochs = pg_execute(url, "SELECT pipeline, epoch FROM _riverbed_epochs ORDER BY 1")
    assert [e[0] for e in epochs] == ["minutes_batch", "minutes_stream"]
