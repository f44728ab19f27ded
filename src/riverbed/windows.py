"""Window specifications: tumbling, sliding and session windows over event time.

Windows are half-open intervals ``[window_start, window_end)`` in event time, aligned to the
Unix epoch plus an optional offset. Specs are frozen dataclasses; the executors turn them into
vectorized Polars expressions.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from riverbed._cols import T
from riverbed._errors import PlanError
from riverbed._time import Duration, format_ms, to_ms


@dataclass(frozen=True)
class Tumbling:
    """Fixed-size, non-overlapping windows: each event belongs to exactly one."""

    size_ms: int
    offset_ms: int = 0

    def describe(self) -> str:
        off = f", offset={format_ms(self.offset_ms)}" if self.offset_ms else ""
        return f"tumbling({format_ms(self.size_ms)}{off})"


@dataclass(frozen=True)
class Sliding:
    """Windows of ``size`` starting every ``every``: an event is in every window covering it."""

    size_ms: int
    every_ms: int
    offset_ms: int = 0

    def describe(self) -> str:
        off = f", offset={format_ms(self.offset_ms)}" if self.offset_ms else ""
        return f"sliding({format_ms(self.size_ms)}, every={format_ms(self.every_ms)}{off})"


@dataclass(frozen=True)
class Session:
    """Per-key windows of activity, closed by ``gap`` of inactivity.

    An event at ``t`` opens the interval ``[t, t + gap)``; overlapping intervals of the same
    key merge. A session's ``window_end`` is its last event time plus ``gap``.
    """

    gap_ms: int

    def describe(self) -> str:
        return f"session(gap={format_ms(self.gap_ms)})"


WindowSpec = Tumbling | Sliding | Session


def tumbling(size: Duration, *, offset: Duration = 0) -> Tumbling:
    """Fixed, non-overlapping windows of ``size``, aligned to the epoch plus ``offset``.

    Examples
    --------
    >>> tumbling("1m")
    Tumbling(size_ms=60000, offset_ms=0)
    """
    size_ms = to_ms(size, what="tumbling size")
    if size_ms <= 0:
        raise PlanError(f"tumbling size must be positive, got {size!r}")
    return Tumbling(size_ms, to_ms(offset, what="tumbling offset") % size_ms)


def sliding(size: Duration, every: Duration, *, offset: Duration = 0) -> Sliding:
    """Windows of ``size`` that start every ``every`` (hopping windows).

    Examples
    --------
    >>> sliding("10m", every="5m")
    Sliding(size_ms=600000, every_ms=300000, offset_ms=0)
    """
    size_ms = to_ms(size, what="sliding size")
    every_ms = to_ms(every, what="sliding every")
    if size_ms <= 0 or every_ms <= 0:
        raise PlanError(f"sliding size and every must be positive, got {size!r}, {every!r}")
    if every_ms > size_ms:
        raise PlanError(
            f"sliding every={every!r} is larger than size={size!r}: events between windows "
            "would belong to none.\n  hint: use every <= size, or tumbling(size)"
        )
    return Sliding(size_ms, every_ms, to_ms(offset, what="sliding offset") % every_ms)


def session(gap: Duration) -> Session:
    """Per-key sessions closed by ``gap`` of inactivity.

    Examples
    --------
    >>> session("30m")
    Session(gap_ms=1800000)
    """
    gap_ms = to_ms(gap, what="session gap")
    if gap_ms <= 0:
        raise PlanError(f"session gap must be positive, got {gap!r}")
    return Session(gap_ms)


US = 1000
"""Microseconds per millisecond: specs hold milliseconds, event time is compared in µs."""


def window_start_expr(spec: Tumbling | Sliding, t: pl.Expr) -> pl.Expr:
    """The start of the (last) window containing ``t`` (int64 epoch µs)."""
    step = (spec.size_ms if isinstance(spec, Tumbling) else spec.every_ms) * US
    off = spec.offset_ms * US
    return ((t - off) // step) * step + off


def assign_windows(df: pl.LazyFrame | pl.DataFrame, spec: Tumbling | Sliding) -> pl.LazyFrame:
    """Add ``window_start`` (int64 µs) to each row; sliding windows repeat the row per window.

    The frame must hold the event time in the internal column ``__rb_t`` (µs).
    """
    lf = df.lazy()
    t = pl.col(T)
    last = window_start_expr(spec, t)
    if isinstance(spec, Tumbling):
        return lf.with_columns(window_start=last)
    # starts s with s <= t < s + size, aligned to every: from first (> t - size) to last
    first = window_start_expr(spec, t - spec.size_ms * US) + spec.every_ms * US
    return lf.with_columns(
        window_start=pl.int_ranges(first, last + 1, spec.every_ms * US, dtype=pl.Int64)
    ).explode("window_start")


def window_end_expr(spec: Tumbling | Sliding) -> pl.Expr:
    """``window_end`` (µs) from ``window_start`` for fixed-size windows."""
    return pl.col("window_start") + spec.size_ms * US


def event_time_expr(column: str, dtype: pl.DataType) -> pl.Expr:
    """An expression turning the event-time column into int64 epoch microseconds.

    Integer event times are epoch milliseconds; Datetime keeps its resolution down to the
    microsecond (nanoseconds are truncated for comparisons, never in the data itself).

    Examples
    --------
    >>> pl.DataFrame({"ts": [1, 2]}).select(event_time_expr("ts", pl.Int64))["ts"].to_list()
    [1000, 2000]
    """
    col = pl.col(column)
    if dtype.is_integer():
        return col.cast(pl.Int64) * US
    if isinstance(dtype, pl.Datetime):
        return col.dt.epoch("us")
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.epoch("us")
    target = "pl.Int64" if dtype.is_float() else "pl.Datetime('ms')"
    raise PlanError(
        f"event-time column {column!r} has type {dtype}; expected an integer (epoch "
        "milliseconds), Datetime or Date.\n  hint: declare its type on the source, e.g. "
        f"rb.files(..., schema={{..., {column!r}: {target}}}), which converts it as it reads"
    )


def bound_type(dtype: pl.DataType) -> pl.DataType:
    """The type of ``window_start``/``window_end`` for an event-time column of ``dtype``:
    Int64 epoch milliseconds for any integer type (a window may end past a small type's
    range, or start before 0 with an offset), the column's own type for Datetime, and
    Datetime (µs) for Date, whose windows may start inside a day.

    Examples
    --------
    >>> bound_type(pl.Int32), bound_type(pl.Date)
    (Int64, Datetime(time_unit='us', time_zone=None))
    """
    if dtype.is_integer():
        return pl.Int64()
    return pl.Datetime("us") if dtype == pl.Date else dtype


def from_us_expr(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Turn int64 epoch µs back into the window-bound type for event time of ``dtype``."""
    if dtype.is_integer():
        return expr // US
    if isinstance(dtype, pl.Datetime):
        out = pl.from_epoch(expr, time_unit="us").cast(pl.Datetime(dtype.time_unit or "us"))
        if dtype.time_zone:
            out = out.dt.replace_time_zone("UTC").dt.convert_time_zone(dtype.time_zone)
        return out
    return pl.from_epoch(expr, time_unit="us")  # Date event time -> Datetime(us) bounds
