"""Daily revenue per store: a 1-day tumbling window over each sale's event time.

Input: sales events with ``ts_ms`` (event time, epoch milliseconds), ``store_id`` and
``amount`` (CSV, JSON lines or Parquet; one file, a glob or a directory; local or s3://...).
Output: one row per store and day with ``store_id, window_start, window_end, revenue, orders``.

Run it (``-p`` values are passed to :func:`pipeline`)::

    riverbed gen --events 1000000 --out data/sales.parquet   # some data first
    riverbed run examples/daily_revenue.py --mode batch \\
        -p source=data/sales.parquet \\
        -p sink=out/warehouse.duckdb#daily_revenue

    riverbed plan examples/daily_revenue.py -p source=data/sales.parquet -p sink=out/daily.parquet

The sink may be any riverbed URI: ``out/daily.parquet``, ``out/daily/`` (part files),
``out/warehouse.duckdb#daily_revenue``, ``out/app.sqlite#daily_revenue``, ``console`` or
``s3://bucket/reports/daily.parquet``. The same pipeline also runs with ``--mode stream``; it
declares no watermark, so there the default ``max_delay=0`` applies and out-of-order events
are late (see ``minute_windows.py`` for a watermark).
"""

from __future__ import annotations

import riverbed as rb


def pipeline(source: str, sink: str) -> rb.Pipeline:
    """Revenue (sum of ``amount``) and orders (count) per ``store_id`` per day of ``ts_ms``."""
    p = rb.Pipeline("daily_revenue")
    sales = p.read(source, event_time="ts_ms", name="sales")
    (
        sales.window(rb.tumbling("1d"), by="store_id", name="per_day")
        .agg(revenue=rb.sum("amount"), orders=rb.count())
        .write(sink, name="daily")
    )
    return p
