"""Shared logic of table sinks (DuckDB, SQLite, PostgreSQL): modes, staging, epochs.

Rows are staged in memory and written in one transaction on commit, together with the
epoch, so a reader never sees a half-written epoch and a restarted job can skip epochs
already committed.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import polars as pl

from riverbed._cols import visible
from riverbed._errors import ConfigError, RiverbedError, SinkError
from riverbed.connectors.base import (
    Capabilities,
    Sink,
    SinkContext,
    SinkWriter,
    Source,
    SourceContext,
    SourceReader,
)

TableMode = Literal["replace", "append", "upsert"]
EPOCHS_TABLE = "_riverbed_epochs"


def table_options(kind: str, mode: str, key: str | list[str] | None) -> tuple[TableMode, tuple[str, ...]]:
    """Check a table sink's mode and key; the key as a tuple."""
    keys = (key,) if isinstance(key, str) else tuple(key or ())
    if mode not in ("replace", "append", "upsert"):
        raise ConfigError(f"table sink mode must be replace, append or upsert; got {mode!r}")
    if mode == "upsert" and not keys:
        raise ConfigError(f"{kind}(..., mode='upsert') needs key=... (the columns to match on)")
    return mode, keys  # type: ignore[return-value]


def check_shape(
    where: str,
    stored: dict[str, str],
    schema: pl.Schema | None,
    key: tuple[str, ...],
    fits: Callable[[str, pl.DataType], bool] | None = None,
) -> None:
    """Check an existing table (``stored``: column -> type) takes rows of ``schema`` and has
    the ``key`` columns; ``fits(column, dtype)`` says whether a column's type takes ``dtype``.

    Called by table sinks when they open, so a job fails before any of its sinks commits.
    """
    shape = ", ".join(f"{c} {t}" for c, t in stored.items())
    wanted = [*(schema or {}), *key]
    missing = [c for c in dict.fromkeys(wanted) if c not in stored]
    if missing:
        raise SinkError(
            f"{where}: the table has no column(s) {missing}; it has ({shape}).\n"
            "  hint: mode='replace' recreates the table, or add the column(s) to the table"
        )
    if fits is None or schema is None:
        return
    wrong = [f"{c} ({dtype} into {stored[c]})" for c, dtype in schema.items() if not fits(c, dtype)]
    if wrong:
        raise SinkError(
            f"{where}: column types do not fit the table: {', '.join(wrong)}; "
            f"the table is ({shape}).\n"
            "  hint: cast the columns in the pipeline, or use mode='replace'"
        )


def check_directory(where: str, path: str) -> None:
    """Check the directory that will hold ``path`` exists (or can be made) and is writable."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise SinkError(f"{where}: cannot create the directory {parent!r}: {exc}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SinkError(
            f"{where}: the directory {parent!r} is not writable.\n"
            "  hint: choose another path, or fix the directory's permissions"
        )


@dataclass(frozen=True)
class TableSink(Sink):
    """A database table as a sink; ``table=""`` means the name of the pipeline writing it."""

    path: str
    table: str
    mode: TableMode = "replace"
    key: tuple[str, ...] = ()

    kind: ClassVar[str] = "table"
    capabilities: ClassVar[Capabilities] = Capabilities(
        bounded=True, unbounded=True, exactly_once=True, upsert=True
    )

    def describe(self) -> str:
        return f"{self.kind} {self.path}#{self.table or '<pipeline name>'} ({self.mode})"


@dataclass(frozen=True)
class TableSource(Source):
    """A database table read whole as a bounded source (e.g. a lookup table)."""

    path: str
    table: str

    kind: ClassVar[str] = "table"
    capabilities: ClassVar[Capabilities] = Capabilities(bounded=True)

    def describe(self) -> str:
        return f"{self.kind} {self.path}#{self.table}"

    @abstractmethod
    def _read(self, limit: int | None = None) -> pl.DataFrame:
        """The table's rows (at most ``limit``)."""

    def schema(self, ctx: SourceContext) -> pl.Schema:
        return self._read(0).schema

    def scan(self, ctx: SourceContext) -> tuple[pl.LazyFrame, pl.DataFrame | None] | None:
        return self._read().lazy(), None

    def partitions(self, ctx: SourceContext) -> list[str]:
        return ["0"]

    def open(self, partition: str, resume: Any, ctx: SourceContext) -> SourceReader:
        from riverbed.connectors.memory import FrameReader

        return FrameReader(self._read(), resume)


class TableWriter(SinkWriter):
    """Stage frames; on commit run one transaction: (replace) + (delete keys) + insert."""

    def __init__(self, table: str, mode: TableMode, key: tuple[str, ...], ctx: SinkContext):
        self.table = table
        self.ctx = ctx
        self.mode = mode
        upsert = mode == "upsert" or ctx.emit == "update"
        self.key: tuple[str, ...] = key or ctx.key
        if upsert and not self.key:
            raise SinkError(
                f"sink table {table!r}: upsert needs key columns.\n"
                "  hint: pass key=['id'] to the sink (window outputs use their keys and window_start)"
            )
        self.upsert = upsert
        self.staged: list[pl.DataFrame] = []
        self.commits = 0

    def write(self, df: pl.DataFrame) -> None:
        if df.height or not self.staged:
            self.staged.append(df)

    def commit(self, epoch: int) -> None:
        # staged rows stay until the commit succeeds: a retried commit writes them again
        frames = [f for f in self.staged if f.width]
        # replace at the job's first epoch only: a resumed job's later epochs append
        replace = self.mode == "replace" and epoch <= self.ctx.first_epoch and self.commits == 0
        if not frames and replace and self.ctx.schema is not None:
            frames = [visible(pl.DataFrame(schema=self.ctx.schema))]  # replace with an empty table
        if not frames:
            self._record_epoch_only(epoch)
            self.staged = []
            self.commits += 1
            return
        df = pl.concat(frames, how="diagonal_relaxed")
        if self.upsert:
            missing = [k for k in self.key if k not in df.columns]
            if missing:
                raise SinkError(
                    f"sink table {self.table!r}: key column(s) {missing} not in the rows ({df.columns})"
                )
            df = df.unique(subset=list(self.key), keep="last", maintain_order=True)
        try:
            self._transaction(df, replace=replace, epoch=epoch)
        except RiverbedError:  # SinkError, or TransientError for the retry logic to see
            raise
        except Exception as exc:
            raise SinkError(f"sink table {self.table!r}: commit failed: {exc}") from exc
        self.staged = []
        self.commits += 1

    con: Any  # a DB-API connection with ``?`` parameters (DuckDB, sqlite3)
    begin = "BEGIN TRANSACTION"

    @abstractmethod
    def _transaction(self, df: pl.DataFrame, *, replace: bool, epoch: int) -> None:
        """Write ``df`` and the epoch in one transaction."""

    def _epoch(self, epoch: int) -> None:
        """Record ``epoch`` for this pipeline and step (inside the caller's transaction)."""
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {EPOCHS_TABLE} "
            "(pipeline TEXT, step TEXT, epoch BIGINT, PRIMARY KEY (pipeline, step))"
        )
        self.con.execute(
            f"INSERT OR REPLACE INTO {EPOCHS_TABLE} VALUES (?, ?, ?)",
            [self.ctx.pipeline, self.ctx.step, epoch],
        )

    def _record_epoch_only(self, epoch: int) -> None:
        """Record an epoch that wrote no rows."""
        self.con.execute(self.begin)
        self._epoch(epoch)
        self.con.execute("COMMIT")

    def last_committed_epoch(self) -> int | None:
        try:
            # fetchall, not fetchone: DuckDB refuses the next statement while a result is open
            rows = self.con.execute(
                f"SELECT epoch FROM {EPOCHS_TABLE} WHERE pipeline = ? AND step = ?",
                [self.ctx.pipeline, self.ctx.step],
            ).fetchall()
        except Exception:  # no epochs table yet
            return None
        return int(rows[0][0]) if rows else None
