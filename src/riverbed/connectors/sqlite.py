"""SQLite tables as a sink (replace, append, upsert by key) and as a source (stdlib sqlite3)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl

from riverbed._errors import SinkError, SourceError
from riverbed.connectors._table import (
    TableMode,
    TableSink,
    TableSource,
    TableWriter,
    check_directory,
    check_shape,
    table_options,
)
from riverbed.connectors.base import (
    SinkContext,
    SinkWriter,
    SourceContext,
)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_type(dtype: pl.DataType) -> str:
    if dtype.is_integer() or dtype == pl.Boolean:
        return "INTEGER"
    if dtype.is_float():
        return "REAL"
    return "TEXT"


def _rows(df: pl.DataFrame) -> list[tuple[Any, ...]]:
    """Rows with temporal and nested values turned into text SQLite can store."""
    conv = []
    for c, t in df.schema.items():
        if t.is_temporal():
            conv.append(pl.col(c).dt.to_string("iso") if t != pl.Time else pl.col(c).cast(pl.String))
        elif isinstance(t, pl.List | pl.Struct | pl.Array):  # nested values as JSON text
            text = pl.struct(pl.col(c).alias("v")).struct.json_encode().str.slice(5).str.head(-1)
            conv.append(pl.when(pl.col(c).is_not_null()).then(text).alias(c))
        elif t == pl.Boolean:
            conv.append(pl.col(c).cast(pl.Int8))
        elif t.is_decimal():
            conv.append(pl.col(c).cast(pl.Float64))
        else:
            conv.append(pl.col(c))
    return df.select(conv).rows()


@dataclass(frozen=True)
class SQLiteSink(TableSink):
    """A SQLite table. Build it with :func:`riverbed.sqlite`."""

    kind: ClassVar[str] = "sqlite"

    def open(self, ctx: SinkContext) -> SinkWriter:
        return _SQLiteWriter(self, ctx)


class _SQLiteWriter(TableWriter):
    begin = "BEGIN IMMEDIATE"

    def __init__(self, sink: SQLiteSink, ctx: SinkContext) -> None:
        super().__init__(sink.table or ctx.pipeline, sink.mode, sink.key, ctx)  # "": the pipeline's name
        self.where = f"sink sqlite table {self.table!r} ({sink.path})"
        check_directory(self.where, sink.path)
        try:
            self.con = sqlite3.connect(sink.path, isolation_level=None)
            # WAL: readers never wait for the writer, and a writer killed mid-transaction leaves
            # no hot journal that would lock out read-only readers
            self.con.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise SinkError(f"{self.where}: cannot open the SQLite file: {exc}") from None
        self._check(ctx.schema)

    def _check(self, schema: pl.Schema | None) -> None:
        """Fail now, before any sink of the job commits, if this one cannot be written."""
        if self.mode == "replace":
            return
        rows = self.con.execute(f"SELECT name, type FROM pragma_table_info({_lit(self.table)})").fetchall()
        if rows:  # SQLite stores any value in any column: only the columns are checked
            check_shape(self.where, dict(rows), schema, self.key if self.upsert else ())

    def _create(self, df: pl.DataFrame) -> None:
        cols = ", ".join(f"{_q(c)} {_sql_type(t)}" for c, t in df.schema.items())
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {_q(self.table)} ({cols})")

    def _transaction(self, df: pl.DataFrame, *, replace: bool, epoch: int) -> None:
        con, t = self.con, _q(self.table)
        con.execute(self.begin)
        try:
            if replace:
                con.execute(f"DROP TABLE IF EXISTS {t}")
            self._create(df)
            if self.upsert and not replace:
                keys = ", ".join(_q(k) for k in self.key)
                con.execute(f"CREATE TEMP TABLE IF NOT EXISTS __rb_keys AS SELECT {keys} FROM {t} WHERE 0")
                con.execute("DELETE FROM __rb_keys")
                marks = ", ".join("?" for _ in self.key)
                con.executemany(f"INSERT INTO __rb_keys VALUES ({marks})", _rows(df.select(self.key)))
                con.execute(f"CREATE INDEX IF NOT EXISTS temp.__rb_keys_idx ON __rb_keys ({keys})")
                same = " AND ".join(f"{t}.{_q(k)} IS r.{_q(k)}" for k in self.key)  # null-safe
                con.execute(f"DELETE FROM {t} WHERE EXISTS (SELECT 1 FROM __rb_keys AS r WHERE {same})")
            names = ", ".join(_q(c) for c in df.columns)
            marks = ", ".join("?" for _ in df.columns)
            con.executemany(f"INSERT INTO {t} ({names}) VALUES ({marks})", _rows(df))
            self._epoch(epoch)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.con.close()


@dataclass(frozen=True)
class SQLiteSource(TableSource):
    """A SQLite table read as a bounded source."""

    kind: ClassVar[str] = "sqlite"

    def _read(self, limit: int | None = None) -> pl.DataFrame:
        if not os.path.exists(self.path):
            raise SourceError(f"SQLite file {self.path!r} does not exist")
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            if self.table not in tables:
                raise SourceError(
                    f"SQLite file {self.path!r} has no table {self.table!r}; it has: "
                    f"{', '.join(tables) or '(none)'}"
                )
            cur = con.execute(
                f"SELECT * FROM {_q(self.table)}" + (f" LIMIT {limit}" if limit is not None else "")
            )
            names = [d[0] for d in cur.description]
            return pl.DataFrame(cur.fetchall(), schema=names, orient="row", infer_schema_length=None)
        finally:
            con.close()

    def schema(self, ctx: SourceContext) -> pl.Schema:
        return self._read().schema


def sqlite(
    path: str | os.PathLike[str],
    table: str,
    *,
    mode: TableMode = "replace",
    key: str | list[str] | None = None,
) -> SQLiteSink:
    """Write to a SQLite table: ``mode`` replace (default), append or upsert (by ``key``).

    Examples
    --------
    >>> import riverbed as rb
    >>> rb.sqlite("out.sqlite", "daily").describe()
    'sqlite out.sqlite#daily (replace)'
    """
    mode, keys = table_options("sqlite", mode, key)
    return SQLiteSink(os.fspath(path), table, mode, keys)


def sqlite_table(path: str | os.PathLike[str], table: str) -> SQLiteSource:
    """Read a SQLite table as a bounded source.

    Examples
    --------
    >>> import riverbed as rb
    >>> rb.sqlite_table("app.sqlite", "stores").describe()
    'sqlite app.sqlite#stores'
    """
    return SQLiteSource(os.fspath(path), table)
