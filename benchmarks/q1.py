"""Q1: batch daily revenue per store, riverbed vs plain Polars vs DuckDB on the same Parquet file.

Usage::

    python -m benchmarks.q1 --events 10000000 [--repeat 3] [--no-riverbed]

All engines read the same cached file (see :func:`benchmarks.gen.dataset`) in the same run;
each is timed best of ``--repeat``. Results are checked to be identical (revenue within a
float tolerance); the exit status is 1 if they differ, 2 if riverbed is not available.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path
from typing import Literal

import duckdb
import polars as pl

from benchmarks._common import (
    TIMING_HEADERS,
    Timing,
    add_common_args,
    best_of,
    compare,
    load_riverbed,
    print_table,
    timing_rows,
)
from benchmarks.gen import dataset

DAY_MS = 86_400_000


def run_polars(path: Path, engine: Literal["auto", "streaming"] = "auto") -> pl.DataFrame:
    """The query in plain Polars; ``engine="streaming"`` is what riverbed's batch mode uses."""
    return (
        pl.scan_parquet(path)
        .filter(pl.col("amount") > 0)
        .with_columns(window_start=(pl.col("ts_ms") // DAY_MS) * DAY_MS)
        .group_by("store_id", "window_start")
        .agg(revenue=pl.col("amount").sum(), orders=pl.len())
        .with_columns(window_end=pl.col("window_start") + DAY_MS)
        .collect(engine=engine)
    )


DUCKDB_SQL = f"""
SELECT store_id,
       window_start,
       window_start + {DAY_MS} AS window_end,
       sum(amount) AS revenue,
       count(*) AS orders
FROM (
    SELECT store_id, amount, (ts_ms // {DAY_MS}) * {DAY_MS} AS window_start
    FROM read_parquet($path)
    WHERE amount > 0
)
GROUP BY store_id, window_start
"""


def run_duckdb(path: Path) -> pl.DataFrame:
    with duckdb.connect() as con:
        return con.sql(DUCKDB_SQL, params={"path": str(path)}).pl()


def run_riverbed(path: Path, home: Path) -> pl.DataFrame:
    """Run the pipeline with riverbed's batch executor; ``home`` is a fresh riverbed home."""
    rb, why = load_riverbed()
    if rb is None:
        raise RuntimeError(why)
    from riverbed.testing import collect

    p = rb.Pipeline("daily_revenue")
    sales = p.read(rb.files(str(path)), event_time="ts_ms")
    out = collect()
    (
        sales.filter(pl.col("amount") > 0)
        .window(rb.tumbling("1d"), by="store_id")
        .agg(revenue=rb.sum("amount"), orders=rb.count())
        .write(out)
    )
    p.run(mode="batch", progress=False, home=home)
    return out.frame()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.q1", description="Batch daily revenue per store."
    )
    add_common_args(parser)
    parser.add_argument("--no-riverbed", action="store_true", help="time Polars and DuckDB only")
    args = parser.parse_args(argv)

    path = dataset(args.events, args.seed, data_dir=args.data_dir)
    size_mib = path.stat().st_size / 2**20
    print(f"Q1 batch daily revenue: {args.events:,} events, {path} ({size_mib:,.1f} MiB)")
    print(f"best of {args.repeat}; polars {pl.__version__}, duckdb {duckdb.__version__}")

    rb = None
    if not args.no_riverbed:
        rb, why = load_riverbed()
        if rb is None:
            print(f"riverbed: not available: {why}")

    timings: list[Timing] = []
    t_pl, expected = best_of("polars", lambda: run_polars(path), args.repeat)
    timings.append(t_pl)
    t_ps, got_ps = best_of("polars streaming", lambda: run_polars(path, engine="streaming"), args.repeat)
    timings.append(t_ps)
    t_dd, got_dd = best_of("duckdb", lambda: run_duckdb(path), args.repeat)
    timings.append(t_dd)
    failures = []
    if (diff := compare(expected, got_ps)) is not None:
        failures.append(f"polars streaming differs from polars:\n{diff}")
    if (diff := compare(expected, got_dd)) is not None:
        failures.append(f"duckdb differs from polars:\n{diff}")
    t_rb = None
    if rb is not None:
        with tempfile.TemporaryDirectory(prefix="rb-q1-") as tmp:
            homes = (Path(tmp) / f"home{i}" for i in itertools.count())
            t_rb, got_rb = best_of("riverbed", lambda: run_riverbed(path, next(homes)), args.repeat)
        timings.append(t_rb)
        if (diff := compare(expected, got_rb)) is not None:
            failures.append(f"riverbed differs from polars:\n{diff}")

    print()
    print_table(TIMING_HEADERS, timing_rows(timings, args.events))
    if t_rb is not None:
        print()
        print(f"riverbed/polars: {t_rb.best / t_pl.best:.2f}x")
        print(f"riverbed/polars streaming: {t_rb.best / t_ps.best:.2f}x")
        print(f"riverbed/duckdb: {t_rb.best / t_dd.best:.2f}x")

    print()
    if failures:
        for failure in failures:
            print(f"MISMATCH: {failure}")
        return 1
    checked = "polars, polars streaming, duckdb" + (", riverbed" if rb is not None else "")
    print(f"results identical ({checked}): {expected.height:,} windows")
    return 0 if rb is not None or args.no_riverbed else 2


if __name__ == "__main__":
    sys.exit(main())
