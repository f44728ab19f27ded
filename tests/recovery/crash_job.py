"""The pipeline of the crash test: the embedded log into every exactly-once sink, with a
window, its late output and dead letters. The harness (``tests/recovery/harness.py``) runs it
with ``riverbed run tests/recovery/crash_job.py --mode stream --checkpoint-dir ...
--stop-at-end -p out=DIR [-p pg=URL]``."""

from __future__ import annotations

import polars as pl

import riverbed as rb


def pipeline(out: str, pg: str = "", table: str = "crash_windows") -> rb.Pipeline:
    p = rb.Pipeline("crash")
    events = p.read(rb.log("events"), event_time="ts", watermark=rb.watermark(max_delay="2s"), name="events")
    good = events.filter(pl.col("amount") >= 0).with_columns(double=pl.col("amount") * 2, name="good")
    w = good.window(rb.tumbling("10s"), by="store", name="per_store").agg(
        n=rb.count(), total=rb.sum("amount")
    )
    w.write(rb.file_sink(f"{out}/windows/", format="parquet"), name="w_files")
    w.write(rb.file_sink(f"{out}/windows.jsonl"), name="w_jsonl")
    w.write(rb.duckdb(f"{out}/out.duckdb", table="windows", mode="append"), name="w_duck")
    w.write(rb.sqlite(f"{out}/out.sqlite", table="windows", mode="append"), name="w_sqlite")
    w.write(rb.log("windows_out"), name="w_log")
    if pg:
        w.write(rb.postgres(pg, table=table, mode="replace"), name="w_pg")
    w.late().write(rb.file_sink(f"{out}/late/", format="parquet"), name="late_files")
    events.dead_letters().write(
        rb.sqlite(f"{out}/out.sqlite", table="dead", mode="append"), name="dead_sqlite"
    )
    good.write(rb.file_sink(f"{out}/rows.csv"), name="rows_csv")
    return p
