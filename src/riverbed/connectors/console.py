"""The console as a sink: rows printed as tables on standard output."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import ClassVar

import polars as pl

from riverbed.connectors.base import Capabilities, Sink, SinkContext, SinkWriter


@dataclass(frozen=True)
class ConsoleSink(Sink):
    """Print rows. Build it with :func:`riverbed.console`."""

    max_rows: int = 20

    capabilities: ClassVar[Capabilities] = Capabilities(bounded=True, unbounded=True)

    def describe(self) -> str:
        return "console"

    def open(self, ctx: SinkContext) -> SinkWriter:
        return _ConsoleWriter(self, ctx)


class _ConsoleWriter(SinkWriter):
    def __init__(self, sink: ConsoleSink, ctx: SinkContext) -> None:
        self.sink = sink
        self.ctx = ctx
        self.staged: list[pl.DataFrame] = []

    def write(self, df: pl.DataFrame) -> None:
        if df.height:
            self.staged.append(df)

    def commit(self, epoch: int) -> None:
        if not self.staged:
            return
        df = pl.concat(self.staged, how="diagonal_relaxed")
        self.staged = []
        with pl.Config(tbl_rows=self.sink.max_rows, tbl_cols=-1, tbl_width_chars=160):
            label = f" epoch {epoch}" if self.ctx.mode == "stream" else ""
            sys.stdout.write(f"-- {self.ctx.step}{label}: {df.height} rows\n{df}\n")
            sys.stdout.flush()


def console(*, max_rows: int = 20) -> ConsoleSink:
    """Print rows to standard output (at most ``max_rows`` shown per commit).

    Examples
    --------
    >>> import riverbed as rb
    >>> rb.console().describe()
    'console'
    """
    return ConsoleSink(max_rows)
