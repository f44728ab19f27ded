"""``riverbed demo``: a day of synthetic sales and the end-of-day report, as a batch job."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

DAY_MS = 86_400_000
DEMO_DAY = datetime(2026, 11, 23, tzinfo=UTC)
REGIONS = ["north", "south", "east", "west", "central"]


def generate_day(directory: Path, events: int, seed: int = 7) -> list[Path]:
    """Write one deterministic day of sales as 24 hourly Parquet files; return their paths."""
    rng = np.random.default_rng(seed)
    start = int(DEMO_DAY.timestamp() * 1000)
    # busier in the afternoon: event times drawn from a smooth daily curve
    hours = np.arange(24)
    weight = 0.3 + np.exp(-((hours - 15) ** 2) / 18.0)
    per_hour = rng.multinomial(events, weight / weight.sum())
    stores = 500
    popularity = 1.0 / np.arange(1, stores + 1) ** 0.8
    popularity /= popularity.sum()
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("sales-*.parquet"):
        old.unlink()
    paths = []
    next_id = 0
    for hour, n in enumerate(per_hour):
        ts = np.sort(start + hour * 3_600_000 + rng.integers(0, 3_600_000, n))
        store = rng.choice(stores, size=n, p=popularity).astype(np.int32) + 1
        amount = np.round(rng.gamma(2.0, 12.0, n), 2)
        amount[rng.random(n) < 0.01] *= -1  # refunds
        df = pl.DataFrame(
            {
                "event_id": np.arange(next_id, next_id + n, dtype=np.int64),
                "ts": pl.Series(ts, dtype=pl.Int64).cast(pl.Datetime("ms")),
                "store_id": store,
                "region": pl.Series([REGIONS[s % 5] for s in range(stores + 1)])
                .gather(store)
                .cast(pl.Categorical),
                "product_id": rng.integers(1, 5_000, n).astype(np.int32),
                "amount": amount,
            }
        )
        path = directory / f"sales-{hour:02d}.parquet"
        df.write_parquet(path)
        paths.append(path)
        next_id += n
    return paths


def build_report(data: Path, warehouse: Path) -> object:
    """The end-of-day report: daily revenue per store, hourly revenue per region."""
    import riverbed as rb

    p = rb.Pipeline("end_of_day")
    sales = p.read(rb.files(str(data / "*.parquet")), event_time="ts", name="sales")
    paid = sales.filter(pl.col("amount") > 0)
    (
        paid.window(rb.tumbling("1d"), by="store_id")
        .agg(
            revenue=rb.sum("amount"),
            orders=rb.count(),
            avg_ticket=rb.mean("amount"),
            products=rb.count_distinct("product_id"),
        )
        .write(rb.duckdb(warehouse, table="daily_store_revenue"), name="daily_store_revenue")
    )
    (
        paid.with_columns(pl.col("region").cast(pl.String))
        .window(rb.tumbling("1h"), by="region")
        .agg(revenue=rb.sum("amount"), orders=rb.count())
        .write(rb.duckdb(warehouse, table="hourly_region_revenue"), name="hourly_region_revenue")
    )
    (
        sales.filter(pl.col("amount") <= 0)
        .select("event_id", "ts", "store_id", "amount")
        .write(rb.file_sink(warehouse.parent / "refunds.parquet"), name="refunds")
    )
    return p


def run_demo(directory: Path, *, events: int, progress: bool | None, console: Console) -> None:
    """Generate, run, and print the top stores."""
    import duckdb

    started = time.perf_counter()
    data = directory / "sales"
    warehouse = directory / "warehouse.duckdb"
    console.print(
        f"[bold]riverbed demo[/]: generating {events:,} sales events for {DEMO_DAY:%Y-%m-%d} in {data}/ ...",
        highlight=False,
    )
    generate_day(data, events)
    pipeline = build_report(data, warehouse)
    result = pipeline.run(mode="batch", progress=progress)  # type: ignore[attr-defined]
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        top = con.execute(
            "SELECT store_id, revenue, orders, avg_ticket, products FROM daily_store_revenue "
            "ORDER BY revenue DESC LIMIT 10"
        ).fetchall()
    finally:
        con.close()
    table = Table(title=f"Top 10 stores on {DEMO_DAY:%Y-%m-%d}")
    for col in ("store", "revenue", "orders", "avg ticket", "products"):
        table.add_column(col, justify="right")
    for store, revenue, orders, avg, products in top:
        table.add_row(str(store), f"{revenue:,.2f}", f"{orders:,}", f"{avg:,.2f}", f"{products:,}")
    console.print(table)
    console.print(result.summary(), highlight=False)
    console.print(
        f"\nOutputs: DuckDB {warehouse} (tables daily_store_revenue, hourly_region_revenue), "
        f"{directory / 'refunds.parquet'}.\n"
        f"Query them: python -c \"import duckdb; print(duckdb.connect('{warehouse}')"
        ".sql('FROM daily_store_revenue ORDER BY revenue DESC LIMIT 5'))\"\n"
        f"Demo finished in {time.perf_counter() - started:.1f}s.",
        highlight=False,
    )
