"""DuckDB tables as a sink (replace, append, upsert by key) and as a source."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl

from riverbed._errors import SinkError, SourceError, TransientError
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
)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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


_INTS = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
}


def _family(duck_type: str) -> str:
    t = duck_type.upper()
    if t in _INTS:
        return "int"
    if t in ("FLOAT", "DOUBLE") or t.startswith("DECIMAL"):
        return "number"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    return t


def _fits(stored: str, arriving: str) -> bool:
    """Whether a column of DuckDB type ``stored`` takes values of type ``arriving``."""
    have, new = _family(stored), _family(arriving)
    return have == new or (new == "int" and have == "number") or (new == "DATE" and have == "timestamp")


class _DuckDBWriter(TableWriter):
    """Opens the database file for each commit only, so other processes can read it between
    commits; waits up to ``LOCK_WAIT_S`` for a reader to let go of it."""

    LOCK_WAIT_S = 10.0

    def __init__(self, sink: DuckDBSink, ctx: SinkContext) -> None:
        super().__init__(sink.table or ctx.pipeline, sink.mode, sink.key, ctx)  # "": the pipeline's name
        self.sink = sink
        self.where = f"sink duckdb table {self.table!r} ({sink.path})"
        self.memory = _connect(":memory:") if sink.path == ":memory:" else None
        self._check(ctx.schema)

    def _check(self, schema: pl.Schema | None) -> None:
        """Fail now, before any sink of the job commits, if this one cannot be written."""
        if self.memory is None and not os.path.exists(self.sink.path):
            check_directory(self.where, self.sink.path)
            return
        with self._connection() as con:
            if self.mode == "replace" or not self._exists(con):
                return
            stored = dict(
                con.execute(f"SELECT name, type FROM pragma_table_info({_lit(self.table)})").fetchall()
            )
            arriving: dict[str, str] = {}
            if schema is not None:
                con.register("__rb_shape", pl.DataFrame(schema=schema).to_arrow())
                try:
                    arriving = {
                        r[0]: r[1] for r in con.execute("DESCRIBE SELECT * FROM __rb_shape").fetchall()
                    }
                finally:
                    con.unregister("__rb_shape")
            check_shape(
                self.where,
                stored,
                schema,
                self.key if self.upsert else (),
                lambda column, _dtype: _fits(stored[column], arriving[column]),
            )

    def _exists(self, con: Any) -> bool:
        found = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = current_schema() "
            "AND database_name = current_database()",
            [self.table],
        ).fetchall()
        return bool(found[0][0])

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """The database, opened for as long as the block runs (the in-memory one stays open)."""
        if self.memory is not None:
            self.con = self.memory
            yield self.memory
            return
        deadline = time.monotonic() + self.LOCK_WAIT_S
        pause = 0.01
        while True:
            try:
                con = _connect(self.sink.path)
                break
            except Exception as exc:
                if "lock" not in str(exc).lower():
                    raise SinkError(f"{self.where}: cannot open the DuckDB file: {exc}") from None
                if time.monotonic() >= deadline:
                    raise TransientError(
                        f"{self.where}: another process has held the DuckDB file for "
                        f"{self.LOCK_WAIT_S:g} s: {exc}\n"
                        "  hint: readers should open it read-only, query and close, or read a copy"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
        try:
            self.con = con
            yield con
        finally:
            self.con = None
            con.close()

    def _transaction(self, df: pl.DataFrame, *, replace: bool, epoch: int) -> None:
        t = _q(self.table)
        with self._connection() as con:
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

    def _record_epoch_only(self, epoch: int) -> None:
        with self._connection():
            super()._record_epoch_only(epoch)

    def last_committed_epoch(self) -> int | None:
        if self.memory is None and not os.path.exists(self.sink.path):
            return None
        with self._connection():
            return super().last_committed_epoch()

    def close(self) -> None:
        if self.memory is not None:
            self.memory.close()


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
