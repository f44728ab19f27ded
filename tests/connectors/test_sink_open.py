"""Sinks check at open that they can write; DuckDB output readable between commits; SQLite WAL.

The executors open every sink of a job before the first commit, so a sink that cannot be
written fails the job before any other sink has published anything.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import duckdb as duckdb_driver
import polars as pl
import pytest

import riverbed as rb
from riverbed.connectors.base import SinkContext, SinkWriter

ROWS = pl.DataFrame({"k": [1, 2], "v": [1.0, 2.0]})
SRC = str(Path(__file__).resolve().parents[2] / "src")


def open_writer(sink: Any, schema: pl.Schema | None = None, step: str = "out") -> SinkWriter:
    writer: SinkWriter = sink.open(SinkContext(mode="stream", pipeline="job", step=step, schema=schema))
    return writer


def fill(sink: Any, df: pl.DataFrame = ROWS) -> None:
    w = open_writer(sink, step="fill")
    try:
        w.write(df)
        w.commit(0)
    finally:
        w.close()


def python(code: str, *args: str, **kw: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, text=True, **kw)


@pytest.mark.parametrize("kind", ["duckdb", "sqlite"])
def test_append_and_upsert_check_the_table_at_open(tmp_path: Path, kind: str) -> None:
    make = rb.duckdb if kind == "duckdb" else rb.sqlite
    path = tmp_path / f"w.{kind}"
    fill(make(path, "t"))
    open_writer(make(path, "t", mode="append"), ROWS.schema).close()  # fits
    with pytest.raises(rb.SinkError, match=r"no column\(s\) \['extra'\]; it has \(k "):
        open_writer(make(path, "t", mode="append"), ROWS.with_columns(extra=pl.lit(1)).schema)
    with pytest.raises(rb.SinkError, match=r"no column\(s\) \['id'\]"):
        open_writer(make(path, "t", mode="upsert", key="id"))
    open_writer(make(path, "t"), ROWS.with_columns(extra=pl.lit(1)).schema).close()  # replace: any shape
    open_writer(make(path, "new", mode="append"), ROWS.schema).close()  # a new table: any shape
    if kind == "duckdb":
        with pytest.raises(rb.SinkError, match=r"v \(Boolean into DOUBLE\)"):
            open_writer(make(path, "t", mode="append"), ROWS.with_columns(v=pl.lit(True)).schema)
        ints = ROWS.with_columns(v=pl.col("v").cast(pl.Int32)).schema
        open_writer(make(path, "t", mode="append"), ints).close()  # integers go into a DOUBLE column


@pytest.mark.parametrize(
    "make",
    [
        lambda p: rb.duckdb(p / "w.duckdb", "t"),
        lambda p: rb.sqlite(p / "w.sqlite", "t"),
        lambda p: rb.file_sink(p / "out.parquet"),
        lambda p: rb.file_sink(f"{p}/parts/", format="parquet"),
    ],
    ids=["duckdb", "sqlite", "file", "directory"],
)
def test_an_unwritable_place_fails_at_open(tmp_path: Path, make: Any) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(rb.SinkError, match="a_file"):
        open_writer(make(blocker / "sub"))


def test_a_second_sink_that_cannot_open_leaves_the_first_untouched(tmp_path: Path) -> None:
    first_path, second_path = tmp_path / "first.duckdb", tmp_path / "second.sqlite"
    fill(rb.duckdb(first_path, "t"))
    fill(rb.sqlite(second_path, "t"))
    schema = ROWS.with_columns(extra=pl.lit("x")).schema
    first = open_writer(rb.duckdb(first_path, "t"), schema)  # replace: would publish on commit
    try:
        with pytest.raises(rb.SinkError, match="extra"):
            open_writer(rb.sqlite(second_path, "t", mode="append"), schema)
    finally:
        first.close()
    con = duckdb_driver.connect(str(first_path), read_only=True)
    try:
        assert con.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [(1, 1.0), (2, 2.0)]
    finally:
        con.close()


READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("SELECT count(*) FROM t").fetchall()[0][0])
con.close()
"""


def test_another_process_reads_duckdb_output_between_commits(tmp_path: Path) -> None:
    path = tmp_path / "live.duckdb"
    w = open_writer(rb.duckdb(path, "t", mode="append"))
    try:
        for epoch in range(3):
            w.write(ROWS)
            w.commit(epoch)
            reader = python(READER, str(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = reader.communicate(timeout=60)
            assert reader.returncode == 0, err
            assert int(out) == 2 * (epoch + 1)
        assert w.last_committed_epoch() == 2
    finally:
        w.close()


HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("open", flush=True)
sys.stdin.readline()
con.close()
"""


def test_a_commit_waits_for_a_reader_to_close_the_duckdb_file(tmp_path: Path) -> None:
    path = tmp_path / "live.duckdb"
    fill(rb.duckdb(path, "t"))
    w = open_writer(rb.duckdb(path, "t", mode="append"))
    holder = python(HOLDER, str(path), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline().strip() == "open"
        w.LOCK_WAIT_S = 0.2  # type: ignore[attr-defined]
        w.write(ROWS)
        with pytest.raises(rb.TransientError, match="another process has held the DuckDB file"):
            w.commit(1)
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=60)
        w.commit(1)  # the reader let go: a retry commits the rows still staged
    finally:
        holder.kill()
        holder.wait()
        w.close()
    con = duckdb_driver.connect(str(path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM t").fetchall() == [(4,)]
    finally:
        con.close()


CRASHING_WRITER = """
import sys, time
import polars as pl
import riverbed as rb
from riverbed.connectors.base import SinkContext
path = sys.argv[1]
w = rb.sqlite(path, "t", mode="append").open(SinkContext(mode="stream", pipeline="job", step="out"))
w.write(pl.DataFrame({"k": [1, 2], "v": [1.0, 2.0]}))
w.commit(0)
# an epoch in flight: a big transaction, killed before COMMIT
w.con.execute("BEGIN IMMEDIATE")
w.con.executemany("INSERT INTO t VALUES (?, ?)", [(i, 0.0) for i in range(200_000)])
print("in transaction", flush=True)
time.sleep(600)
"""


def test_sqlite_output_is_readable_read_only_after_a_writer_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite"
    writer = python(CRASHING_WRITER, str(path), stdout=subprocess.PIPE)
    assert writer.stdout is not None
    try:
        assert writer.stdout.readline().strip() == "in transaction"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert con.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [(1, 1.0), (2, 2.0)]
        assert con.execute("SELECT epoch FROM _riverbed_epochs").fetchall() == [(0,)]
    finally:
        con.close()
    back = rb.Pipeline("back")
    out = rb.testing.collect()
    back.read(f"{path}#t").write(out)
    back.run(progress=False)
    assert out.frame().height == 2
