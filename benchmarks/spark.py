"""riverbed on Spark against the same query written as a plain Spark DataFrame, same session.

Q1 (daily revenue per store, see ``benchmarks/q1.py``) over generated sales events in
Parquet. Both sides read the file with Spark, run in the same SparkSession and collect the
result to the driver; one warm-up run each (Python workers, JIT), then the best of
``--repeat``. Needs ``riverbed[spark]`` and Java::

    python -m benchmarks.spark --events 10000000 --master 'local[2]'
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks._common import (
    TIMING_HEADERS,
    add_common_args,
    best_of,
    compare,
    load_riverbed,
    print_table,
    timing_rows,
)
from benchmarks.gen import dataset
from benchmarks.q1 import run_polars

DAY_MS = 86_400_000


def run_plain_spark(spark: Any, path: Path) -> pl.DataFrame:
    """Q1 written directly against Spark's DataFrame API."""
    from pyspark.sql import functions as F

    df = (
        spark.read.parquet(str(path))
        .filter(F.col("amount") > 0)
        .withColumn("window_start", F.floor(F.col("ts_ms") / DAY_MS) * DAY_MS)
        .groupBy("store_id", "window_start")
        .agg(F.sum("amount").alias("revenue"), F.count(F.lit(1)).alias("orders"))
        .withColumn("window_end", F.col("window_start") + DAY_MS)
    )
    got = pl.from_arrow(df.toArrow())
    assert isinstance(got, pl.DataFrame)
    return got


def run_riverbed_spark(spark: Any, path: Path, home: Path) -> pl.DataFrame:
    """Q1 as a riverbed pipeline, run with ``engine="spark"`` in the same session."""
    rb, why = load_riverbed()
    if rb is None:
        raise RuntimeError(why)
    from riverbed.testing import collect

    p = rb.Pipeline("daily_revenue")
    out = collect()
    (
        p.read(rb.files(str(path)), event_time="ts_ms")
        .filter(pl.col("amount") > 0)
        .window(rb.tumbling("1d"), by="store_id")
        .agg(revenue=rb.sum("amount"), orders=rb.count())
        .write(out)
    )
    p.run(mode="batch", engine="spark", spark_session=spark, progress=False, home=home)
    return out.frame()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spark", description=__doc__)
    add_common_args(parser)
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    args = parser.parse_args(argv)

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import pyspark
        from pyspark.sql import SparkSession

        spark = (
            SparkSession.builder.master(args.master)
            .appName("riverbed-bench")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.memory", "2g")
            .getOrCreate()
        )
    spark.sparkContext.setLogLevel("ERROR")
    path = dataset(args.events, args.seed, data_dir=args.data_dir)
    size_mib = path.stat().st_size / 2**20
    print(f"Q1 on Spark: {args.events:,} events, {path} ({size_mib:,.1f} MiB), master {args.master}")
    print(f"best of {args.repeat} after one warm-up run each; pyspark {pyspark.__version__}")

    expected = run_polars(path)
    with tempfile.TemporaryDirectory(prefix="rb-spark-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        home = Path(tmp)
        run_plain_spark(spark, path)
        run_riverbed_spark(spark, path, home)
        t_sp, got_sp = best_of("plain spark", lambda: run_plain_spark(spark, path), args.repeat)
        t_rb, got_rb = best_of(
            "riverbed on spark", lambda: run_riverbed_spark(spark, path, home), args.repeat
        )
    spark.stop()

    print()
    print_table(TIMING_HEADERS, timing_rows([t_sp, t_rb], args.events))
    print()
    print(f"riverbed-on-spark / plain spark: {t_rb.best / t_sp.best:.2f}x")
    failures = [
        f"{name} differs from polars:\n{diff}"
        for name, got in (("plain spark", got_sp), ("riverbed on spark", got_rb))
        if (diff := compare(expected, got)) is not None
    ]
    for failure in failures:
        print(f"MISMATCH: {failure}")
    if not failures:
        print(f"results identical (polars, plain spark, riverbed on spark): {expected.height:,} windows")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
