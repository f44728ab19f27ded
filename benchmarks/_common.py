"""Helpers shared by the benchmark scripts: timing, result comparison, printing, riverbed import."""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import polars as pl

T = TypeVar("T")

KEYS = ("store_id", "window_start")
RESULT_SCHEMA = pl.Schema(
    {
        "store_id": pl.Int64,
        "window_start": pl.Int64,
        "window_end": pl.Int64,
        "revenue": pl.Float64,
        "orders": pl.Int64,
    }
)
SRC_DIR = Path(__file__).resolve().parents[1] / "src"


# -- timing -------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall-clock seconds of each repetition of one engine."""

    name: str
    seconds: list[float]
    rows: int = 0

    @property
    def best(self) -> float:
        return min(self.seconds)


def best_of(name: str, fn: Callable[[], T], repeat: int) -> tuple[Timing, T]:
    """Run ``fn`` ``repeat`` times; return the timings and the result of the last run."""
    seconds = []
    result: T | None = None
    for _ in range(max(repeat, 1)):
        result = None  # let the previous result go before the next run
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t0)
    assert result is not None
    rows = result.height if isinstance(result, pl.DataFrame) else 0
    return Timing(name, seconds, rows), result


def peak_rss_bytes(who: int = resource.RUSAGE_SELF) -> int:
    """Peak resident set size of this process (or of its finished children), in bytes."""
    peak = resource.getrusage(who).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# -- printing -----------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a plain, right-aligned text table (first column left-aligned)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def timing_rows(timings: Sequence[Timing], n_events: int) -> list[list[str]]:
    """Rows ``engine, best s, runs, events/s, rows`` for :func:`print_table`."""
    out = []
    for t in timings:
        runs = ", ".join(f"{s:.3f}" for s in t.seconds)
        rate = n_events / t.best if t.best > 0 else float("inf")
        out.append([t.name, f"{t.best:.3f}", runs, f"{rate:,.0f}", f"{t.rows:,}"])
    return out


TIMING_HEADERS = ("engine", "best s", "runs s", "events/s", "rows")


# -- results ------------------------------------------------------------------------------------


def normalize(df: pl.DataFrame) -> pl.DataFrame:
    """Bring a window-aggregate result to one schema and order for comparison.

    Datetime window bounds become int64 epoch ms; integer columns become int64; rows are
    sorted by ``store_id, window_start``.
    """
    missing = [c for c in RESULT_SCHEMA if c not in df.columns]
    if missing:
        raise ValueError(f"result lacks columns {missing}; it has {df.columns}")
    exprs = []
    for name, dtype in RESULT_SCHEMA.items():
        col = pl.col(name)
        if isinstance(df.schema[name], pl.Datetime):
            col = col.dt.epoch("ms")
        exprs.append(col.cast(dtype))
    return df.select(exprs).sort(KEYS)


def compare(
    expected: pl.DataFrame,
    actual: pl.DataFrame,
    *,
    rtol: float = 1e-9,
    atol: float = 1e-6,
) -> str | None:
    """Compare two window-aggregate results; return ``None`` if equal, else what differs.

    Keys, window bounds and counts must match exactly; ``revenue`` within
    ``atol + rtol * |expected|``.
    """
    a = normalize(expected)
    b = normalize(actual)
    problems = []
    if a.height != b.height:
        problems.append(f"row count: expected {a.height:,}, got {b.height:,}")
    for name, frame in (("expected", a), ("actual", b)):
        dupes = frame.height - frame.select(KEYS).unique().height
        if dupes:
            problems.append(f"{name} has {dupes:,} duplicate (store_id, window_start) rows")
    joined = a.join(b, on=list(KEYS), how="full", suffix="_got", coalesce=True, nulls_equal=True)
    only_expected = joined.filter(pl.col("orders_got").is_null()).height
    only_actual = joined.filter(pl.col("orders").is_null()).height
    if only_expected or only_actual:
        problems.append(f"windows only in expected: {only_expected:,}, only in actual: {only_actual:,}")
    both = joined.drop_nulls(["orders", "orders_got"])
    bad = both.filter(
        (pl.col("window_end") != pl.col("window_end_got"))
        | (pl.col("orders") != pl.col("orders_got"))
        | ((pl.col("revenue") - pl.col("revenue_got")).abs() > atol + rtol * pl.col("revenue").abs())
    )
    if bad.height:
        problems.append(f"{bad.height:,} windows differ, e.g.:\n{bad.head(5)}")
    if problems:
        sample = joined.filter(pl.col("orders").is_null() | pl.col("orders_got").is_null())
        if sample.height:
            problems.append(f"unmatched windows, e.g.:\n{sample.head(5)}")
        return "\n".join(problems)
    return None


# -- riverbed -----------------------------------------------------------------------------------


def load_riverbed() -> tuple[ModuleType | None, str]:
    """Import riverbed with the public API the benchmarks need; return (module, why-not)."""
    try:
        import riverbed as rb
    except ImportError:
        if str(SRC_DIR) not in sys.path and SRC_DIR.is_dir():
            sys.path.insert(0, str(SRC_DIR))  # running from a checkout without installing
        try:
            import riverbed as rb
        except ImportError as exc:
            return None, f"cannot import riverbed ({exc})"
    needed = ["Pipeline", "files", "tumbling", "sum", "count", "watermark"]
    missing = [name for name in needed if not hasattr(rb, name)]
    if missing:
        return None, f"riverbed has no {', '.join(missing)} yet"
    try:
        import riverbed.testing
    except ImportError as exc:
        return None, f"cannot import riverbed.testing ({exc})"
    return rb, ""


def add_common_args(parser: argparse.ArgumentParser, *, repeat: int = 3) -> None:
    parser.add_argument("--events", type=int, default=10_000_000, help="number of events")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--repeat", type=int, default=repeat, help="repetitions; best is kept")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where cached datasets live (default benchmarks/data)",
    )
