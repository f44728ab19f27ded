"""Watermark tracking for stream jobs: every partition's watermark, the job's watermark, and
the per-row watermark stamped on each arriving event.

The contract (also in the README). A stream job's input is the *arrival sequence*: the rows
of every partition in the order the executor pulled them (each pull takes a chunk from one
partition; a micro-batch concatenates its chunks in pull order). Along that sequence:

* a partition's watermark is the maximum event time it has delivered so far minus its
  ``max_delay`` (minus infinity before its first event);
* a partition that is idle (no rows for ``idle_timeout`` of processing time, judged when a
  micro-batch starts) does not hold the job back until its next row arrives; a partition that
  ended does not hold it back after its last row;
* each row is judged against the job watermark *just before it arrived*: the minimum over the
  partitions that hold it, never lower than the job watermark at the start of its micro-batch.

So results depend on the arrival sequence only, never on how it was cut into micro-batches.
With several partitions the sequence depends on timing; ``riverbed.testing.source(...,
sequence=...)`` pins it for tests. Event times are int64 microseconds here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from riverbed._cols import WM
from riverbed.connectors.base import SourceReader
from riverbed.windows import US, event_time_expr

NEG = -(2**62)
"""The watermark before any event: minus infinity as an int64."""
INF = 2**62
"""A partition that holds nothing back."""


@dataclass
class PartitionClock:
    """One partition of one read step: its reader and its watermark."""

    read_id: str
    name: str
    reader: SourceReader
    event_time: str | None
    delay: int
    """max_delay in µs."""
    idle_ms: int | None
    last_active: float = 0.0
    max_t: int | None = None
    ended: bool = False

    @property
    def key(self) -> str:
        return f"{self.read_id}/{self.name}"

    @property
    def wm(self) -> int:
        return NEG if self.max_t is None else self.max_t - self.delay

    def idle(self, now: float) -> bool:
        return self.idle_ms is not None and (now - self.last_active) * 1000 >= self.idle_ms


class WatermarkTracker:
    """The watermarks of every partition of a job (see the module docstring)."""

    def __init__(self, parts: list[PartitionClock], clock: Callable[[], float]) -> None:
        self.parts = parts
        self.clock = clock
        self.job_wm = NEG
        self.start_wm = NEG
        self._holding: set[int] = set()

    @property
    def watermark(self) -> int | None:
        return None if self.job_wm == NEG else self.job_wm

    @property
    def started_at(self) -> int | None:
        return None if self.start_wm == NEG else self.start_wm

    def begin(self, holding: set[int] | None = None) -> None:
        """A micro-batch starts: note the job watermark and which partitions hold it
        (``holding``: as recorded by an earlier run, when an epoch is replayed)."""
        now = self.clock()
        self.start_wm = self.job_wm
        self._holding = (
            {
                i
                for i, p in enumerate(self.parts)
                if not p.ended and p.event_time is not None and not p.idle(now)
            }
            if holding is None
            else holding
        )

    @property
    def holding(self) -> set[int]:
        """The partitions holding the watermark in this micro-batch (indexes into ``parts``)."""
        return self._holding

    def stamp(
        self, chunks: list[tuple[PartitionClock, pl.DataFrame]], ends: dict[int, int]
    ) -> list[pl.DataFrame | pl.LazyFrame]:
        """Add ``__rb_wm`` to each chunk with an event time (chunks in arrival order; ``ends``
        maps a partition's index to how many stamped rows arrived before it ended).

        When only one partition holds the watermark in this micro-batch (the common case of a
        single partition), the column is a lazy expression that fuses into the query of the
        step that consumes the rows; otherwise it is computed over the arrival sequence."""
        self._chunks = chunks
        index = {id(p): i for i, p in enumerate(self.parts)}
        timed = [(index[id(p)], df) for p, df in chunks if p.event_time is not None and df.height]
        out: list[pl.DataFrame | pl.LazyFrame] = [df for _, df in chunks]
        alone = self._alone(timed, ends)
        if alone is not None:
            k, df = alone
            out[k] = self._stamp_alone(self.parts[timed[0][0]], df)
        elif timed:
            seq = pl.concat(
                [
                    df.select(
                        event_time_expr(
                            self.parts[i].event_time or "", df.schema[self.parts[i].event_time or ""]
                        )
                        .fill_null(NEG)
                        .alias("t"),
                        pl.lit(i, pl.UInt32).alias("p"),
                    )
                    for i, df in timed
                ]
            )
            wm = seq.select(self._threshold(sorted({i for i, _ in timed}), ends).alias(WM)).get_column(WM)
            maxima = seq.group_by("p").agg(pl.col("t").max())
            for i, t in maxima.iter_rows():
                p = self.parts[i]
                if t != NEG:
                    p.max_t = t if p.max_t is None else max(p.max_t, t)
            offset = 0
            for k, (part, df) in enumerate(chunks):
                if part.event_time is None or not df.height:
                    continue
                out[k] = df.with_columns(wm.slice(offset, df.height))
                offset += df.height
        for i in ends:
            self.parts[i].ended = True
        self._advance()
        return out

    def _alone(
        self, timed: list[tuple[int, pl.DataFrame]], ends: dict[int, int]
    ) -> tuple[int, pl.DataFrame] | None:
        """The one chunk of the micro-batch, when nothing else can hold the watermark while
        its rows arrive and it has no rows without event time."""
        if len(timed) != 1 or ends:
            return None
        i, df = timed[0]
        if any(j != i for j in self._holding) or i not in self._holding:
            return None
        p = self.parts[i]
        if df.get_column(p.event_time or "").null_count():
            return None
        return next(k for k, (q, d) in enumerate(self._chunks) if d is df), df

    def _stamp_alone(self, p: PartitionClock, df: pl.DataFrame) -> pl.LazyFrame:
        et = p.event_time or ""
        t = event_time_expr(et, df.schema[et])
        start_max = NEG if p.max_t is None else p.max_t
        before = pl.max_horizontal(t.cum_max().shift(1).fill_null(start_max), pl.lit(start_max)) - p.delay
        thr = pl.max_horizontal(before, pl.lit(self.start_wm, pl.Int64)).cast(pl.Int64)
        col = df.get_column(et)
        top = col.max() if col.dtype.is_integer() else df.select(t.max()).item()
        top_us = int(top) * US if col.dtype.is_integer() else int(top)  # type: ignore[arg-type]
        p.max_t = top_us if p.max_t is None else max(p.max_t, top_us)
        return df.lazy().with_columns(thr.alias(WM))

    def _threshold(self, with_rows: list[int], ends: dict[int, int]) -> pl.Expr:
        row = pl.int_range(pl.len(), dtype=pl.Int64)
        t = pl.col("t")
        involved = set(with_rows) | set(ends)
        const = min((self.parts[i].wm for i in self._holding if i not in involved), default=INF)
        before: list[pl.Expr] = [pl.lit(const, pl.Int64)]
        for i in sorted(involved):
            p = self.parts[i]
            start = p.wm if i in self._holding else INF
            if ends.get(i) == 0:
                start = INF
            if i in with_rows:
                mine = t if len(with_rows) == 1 else pl.when(pl.col("p") == i).then(t)
                seen = mine.cum_max().forward_fill()
                cur = (
                    pl.when(seen.is_null())
                    .then(start)
                    .otherwise(
                        pl.max_horizontal(seen, pl.lit(p.max_t if p.max_t is not None else NEG)) - p.delay
                    )
                )
            else:
                cur = pl.lit(start, pl.Int64)
            if i in ends:
                cur = pl.when(row >= ends[i] - 1).then(pl.lit(INF)).otherwise(cur)
            before.append(cur.shift(1).fill_null(start))
        floor = pl.lit(self.start_wm, pl.Int64)
        return pl.max_horizontal(pl.min_horizontal(*before), floor).cast(pl.Int64)

    def _advance(self) -> None:
        now = self.clock()
        holding = [p for p in self.parts if not p.ended and p.event_time is not None and not p.idle(now)]
        if holding:
            self.job_wm = max(self.job_wm, min(p.wm for p in holding))

    def snapshot(self) -> dict[str, Any]:
        """What a checkpoint stores: the job watermark and each partition's maximum."""
        return {"job": self.job_wm, "max_t": {p.key: p.max_t for p in self.parts}}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from :meth:`snapshot` (partitions new since then start without events)."""
        self.job_wm = self.start_wm = int(snapshot["job"])
        seen = snapshot.get("max_t", {})
        for p in self.parts:
            p.max_t = seen.get(p.key)


def delay_us(max_delay_ms: int) -> int:
    """A watermark delay in µs."""
    return max_delay_ms * US
