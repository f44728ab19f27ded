"""DuckDB tables as a sink (replace, append, upsert by key) and as a source."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl

from riverbed._errors import SinkError, SourceError
from riverbed.connectors._table import (
    TableMode,
    TableSink,
    TableSource,
    TableWriter,
    table_options,
)
from riverbed.connectors.base import (
    SinkContext,
    SinkWriter,
)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _connect(path: str, *, read_only: bool = False) -> Any:
    import duckdb

    if path != ":memory:":
        parent = os.path.dirname(os.path.abspath(path))
        if read_only and not os.path.exists(path):
            raise SourceError(f"DuckDB file {path!r} does not exist")
        os.makedirs(parent, exist_ok=True)
    return duckdb.connect(path, read_only=read_only)


@dataclass(frozen=True)
class DuckDBSink(TableSink):
    """A DuckDB table. Build it with :func:`riverbed.duckdb`."""

    kind: ClassVar[str] = "duckdb"

    def open(self, ctx: SinkContext) -> SinkWriter:
        return _DuckDBWriter(self, ctx)


class _DuckDBWriter(TableWriter):
    def __init__(self, sink: DuckDBSink, ctx: SinkContext) -> None:
        super().__init__(sink.table or ctx.pipeline, sink.mode, sink.key, ctx)  # "": the pipeline's name
        self.sink = sink
        try:
            self.con = _connect(sink.path)
        except Exception as exc:
            raise SinkError(f"cannot open DuckDB file {sink.path!r}: {exc}") from None

    def _transaction(self, df: pl.DataFrame, *, replace: bool, epoch: int) -> None:
        t = _q(self.table)
        con = self.con
        con.register("__rb_rows", df.to_arrow())
        try:
            con.execute("BEGIN TRANSACTION")
            if replace:
                con.execute(f"CREATE OR REPLACE TABLE {t} AS SELECT * FROM __rb_rows")
            else:
                con.execute(f"CREATE TABLE IF NOT EXISTS {t} AS SELECT * FROM __rb_rows LIMIT 0")
                if self.upsert:
                    cond = " AND ".join(f"{t}.{_q(k)} IS NOT DISTINCT FROM r.{_q(k)}" for k in self.key)
                    con.execute(f"DELETE FROM {t} USING __rb_rows AS r WHERE {cond}")
                con.execute(f"INSERT INTO {t} BY NAME SELECT * FROM __rb_rows")
            self._epoch(epoch)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("__rb_rows")

    def close(self) -> None:
        self.con.close()


@dataclass(frozen=True)
class DuckDBSource(TableSource):
    """A DuckDB table (or query) read as a bounded source."""

    kind: ClassVar[str] = "duckdb"

    def _read(self, limit: int | None = None) -> pl.DataFrame:
        try:
            con = _connect(self.path, read_only=True)
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"cannot open DuckDB file {self.path!r}: {exc}") from None
        try:
            tables = [r[0] for r in con.execute("SHOW TABLES").fetchall()]
            if self.table not in tables:
                raise SourceError(
                    f"DuckDB file {self.path!r} has no table {self.table!r}; it has: "
                    f"{', '.join(tables) or '(none)'}"
                )
            sql = f"SELECT * FROM {_q(self.table)}" + (f" LIMIT {limit}" if limit is not None else "")
            return pl.from_arrow(con.sql(sql).to_arrow_table())  # type: ignore[return-value]
        finally:
            con.close()


def duckdb(
    path: str | os.PathLike[str],
    table: str,
    *,
    mode: TableMode = "replace",
    key: str | list[str] | None = None,
) -> DuckDBSink:
    """Write to a DuckDB table: ``mode`` replace (default), append or upsert (by ``key``).

    Each commit is one transaction that also records the pipeline's epoch.

    Examples
    --------
    >>> import riverbed as rb
    >>> rb.duckdb("warehouse.duckdb", table="daily_revenue").describe()
    'duckdb warehouse.duckdb#daily_revenue (replace)'
    """
    mode, keys = table_options("duckdb", mode, key)
    return DuckDBSink(os.fspath(path), table, mode, keys)


def duckdb_table(path: str | os.PathLike[str], table: str) -> DuckDBSource:
    """Read a DuckDB table as a bounded source (e.g. a lookup table).

    Examples
    --------
    >>> import riverbed as rb
    >>> rb.duckdb_table("warehouse.duckdb", "stores").describe()
    'duckdb warehouse.duckdb#stores'
    """
    return DuckDBSource(os.fspath(path), table)
