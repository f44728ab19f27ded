"""Revenue per store per minute, as events arrive: 1-minute tumbling windows with a watermark.

The watermark trails the newest event time seen by 10 seconds (``max_delay="10s"``) and no
lateness is allowed, so in stream mode a window is emitted once the watermark passes its end,
and an event that arrives after that is *late*: it is left out of its window and, with
``-p late=URI``, written there instead (in batch mode nothing is late).

Input: sales events with ``ts_ms`` (event time, epoch milliseconds), ``store_id``, ``amount``.
Output: ``store_id, window_start, window_end, revenue, orders`` per store and minute.

Run it (``riverbed gen --events 1000000 --out data/sales.parquet`` makes data)::

    riverbed run examples/minute_windows.py --mode stream \\
        -p source=data/sales.parquet \\
        -p sink=out/warehouse.duckdb#minute_revenue \\
        -p late=out/late.parquet

    riverbed run examples/minute_windows.py --mode batch \\
        -p source=data/sales.parquet -p sink=out/minutes/
"""

from __future__ import annotations

import riverbed as rb


def pipeline(source: str, sink: str, late: str | None = None) -> rb.Pipeline:
    """Revenue and orders per ``store_id`` per minute of ``ts_ms``; late events to ``late``."""
    p = rb.Pipeline("minute_windows")
    sales = p.read(source, event_time="ts_ms", watermark=rb.watermark(max_delay="10s"), name="sales")
    windowed = (
        sales.window(rb.tumbling("1m"), by="store_id", allowed_lateness=0, name="per_minute")
        .agg(revenue=rb.sum("amount"), orders=rb.count())
        .write(sink, name="minutes")
    )
    if late is not None:
        windowed.late().write(late, name="late_events")
    return p
