"""URIs name sources and sinks: paths and globs (format from the extension), fsspec URLs,
``FILE.duckdb#TABLE``, ``FILE.sqlite#TABLE``, directories with ``/``, and the console."""

from __future__ import annotations

import uuid
from pathlib import Path

import polars as pl
import pytest

import riverbed as rb
from riverbed.connectors.duckdb import DuckDBSink, DuckDBSource
from riverbed.connectors.files import FileSource
from riverbed.connectors.files_sink import FileSink
from riverbed.connectors.sqlite import SQLiteSink, SQLiteSource

DF = pl.DataFrame({"a": [1, 2], "b": ["x", "y"]})


@pytest.mark.parametrize(
    ("uri", "fmt", "is_dir"),
    [
        ("out/x.parquet", "parquet", False),
        ("out/x.pq", "parquet", False),
        ("out/x.csv", "csv", False),
        ("out/x.jsonl", "jsonl", False),
        ("out/x.ndjson", "jsonl", False),
        ("out/x.csv.gz", "csv", False),
        ("out/report/", "parquet", True),
        ("s3://bucket/out/x.parquet", "parquet", False),
        ("s3://bucket/out/", "parquet", True),
    ],
)
def test_file_sinks(uri: str, fmt: str, is_dir: bool) -> None:
    sink = rb.sink(uri)
    assert isinstance(sink, FileSink)
    assert sink.fmt() == fmt
    assert sink.is_dir is is_dir
    assert sink.path == uri


def test_directory_sink_format_option() -> None:
    sink = rb.sink("out/report/", format="csv")
    assert isinstance(sink, FileSink) and sink.fmt() == "csv"


@pytest.mark.parametrize(
    ("uri", "cls", "path", "table"),
    [
        ("out/warehouse.duckdb#daily_revenue", DuckDBSink, "out/warehouse.duckdb", "daily_revenue"),
        ("out/w.ddb#t", DuckDBSink, "out/w.ddb", "t"),
        ("OUT/W.DUCKDB#T", DuckDBSink, "OUT/W.DUCKDB", "T"),
        ("out/app.sqlite#t", SQLiteSink, "out/app.sqlite", "t"),
        ("out/app.sqlite3#t", SQLiteSink, "out/app.sqlite3", "t"),
        ("out/app.db#t", SQLiteSink, "out/app.db", "t"),
    ],
)
def test_table_sinks(uri: str, cls: type, path: str, table: str) -> None:
    sink = rb.sink(uri)
    assert isinstance(sink, cls)
    assert (sink.path, sink.table, sink.mode) == (path, table, "replace")  # type: ignore[attr-defined]


def test_table_sink_options_pass_through() -> None:
    sink = rb.sink("w.duckdb#t", mode="upsert", key=["store_id", "window_start"])
    assert isinstance(sink, DuckDBSink)
    assert sink.key == ("store_id", "window_start")


@pytest.mark.parametrize("ext", ["duckdb", "sqlite"])
def test_database_without_table_uses_the_pipeline_name(tmp_path: Path, ext: str) -> None:
    assert rb.sink(f"w.{ext}", pipeline="daily").table == "daily"  # type: ignore[attr-defined]
    unnamed = rb.sink(str(tmp_path / f"w.{ext}"))
    assert "<pipeline name>" in unnamed.describe()
    p = rb.Pipeline("daily_revenue")
    p.read(rb.testing.source([DF])).write(unnamed)
    p.run(progress=False)
    back = rb.testing.collect()
    q = rb.Pipeline("back")
    q.read(f"{tmp_path / f'w.{ext}'}#daily_revenue").write(back)
    q.run(progress=False)
    assert back.frame().rows() == DF.rows()


def test_sources() -> None:
    assert isinstance(rb.source("data/sales/*.parquet"), FileSource)
    assert isinstance(rb.source("s3://bucket/sales/*.parquet"), FileSource)
    duck = rb.source("w.duckdb#stores")
    assert isinstance(duck, DuckDBSource) and duck.table == "stores"
    lite = rb.source("w.sqlite#stores")
    assert isinstance(lite, SQLiteSource) and lite.table == "stores"
    src = rb.source("data/x.csv", schema={"a": pl.Int64}, on_error="dead_letter")
    assert isinstance(src, FileSource) and src.on_error == "dead_letter"


@pytest.mark.parametrize("uri", ["w.duckdb", "w.sqlite"])
def test_a_table_source_needs_a_table(uri: str) -> None:
    with pytest.raises(rb.ConfigError, match="#my_table"):
        rb.source(uri)


@pytest.mark.parametrize("bad", ["", None, 3])
def test_bad_uris(bad: object) -> None:
    with pytest.raises(rb.ConfigError):
        rb.source(bad)  # type: ignore[arg-type]
    with pytest.raises(rb.ConfigError):
        rb.sink(bad)  # type: ignore[arg-type]


def test_unknown_extension() -> None:
    with pytest.raises(rb.ConfigError, match=r"\.parquet, \.csv"):
        rb.sink("out/report.xlsx")
    with pytest.raises(rb.ConfigError, match="format"):
        rb.files("x.csv", format="xlsx")  # type: ignore[arg-type]


@pytest.mark.parametrize("uri", ["console", "-", "stdout"])
def test_console_sink(uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    p = rb.Pipeline("show")
    p.read(rb.testing.source([DF])).write(uri)
    p.run(progress=False)
    out = capsys.readouterr().out
    assert "2 rows" in out and "x" in out and "y" in out


@pytest.mark.parametrize("target", ["one.parquet", "one.csv", "one.jsonl", "parts/"])
def test_fsspec_memory_urls_round_trip(target: str) -> None:
    root = f"memory://rb-{uuid.uuid4().hex[:8]}"
    uri = f"{root}/{target}"
    p = rb.Pipeline("mem")
    p.read(rb.testing.source([DF])).write(uri)
    p.run(progress=False)
    out = rb.testing.collect()
    q = rb.Pipeline("back")
    q.read(uri).write(out)
    q.run(progress=False)
    assert out.frame().rows() == DF.rows()


def test_file_urls(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}/x.parquet"
    p = rb.Pipeline("f")
    p.read(rb.testing.source([DF])).write(uri)
    p.run(progress=False)
    assert pl.read_parquet(tmp_path / "x.parquet").equals(DF)
    out = rb.testing.collect()
    q = rb.Pipeline("back")
    q.read(uri).write(out)
    q.run(progress=False)
    assert out.frame().equals(DF)


def test_missing_remote_file_lists_its_directory() -> None:
    root = f"memory://rb-{uuid.uuid4().hex[:8]}"
    p = rb.Pipeline("mem")
    p.read(rb.testing.source([DF])).write(f"{root}/sales/a.parquet")
    p.run(progress=False)
    q = rb.Pipeline("back")
    q.read(f"{root}/sales/b.parquet").write(rb.testing.collect())
    with pytest.raises(rb.SourceError) as err:
        q.validate()
    assert "a.parquet" in str(err.value) and "memory://" in str(err.value)
