"""A watched directory with a backlog of many small files: how fast the files source takes them.

Writes N small CSV files (two rows each), then reads them through the stream reader of
``rb.files(DIR, watch=True, schema=...)`` until every row has arrived.

Usage::

    python -m benchmarks.watch_files --files 10000
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

import riverbed as rb
from riverbed.connectors.base import SourceContext


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.watch_files", description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.files):
            Path(tmp, f"f{i:06d}.csv").write_text(
                f"id,ts\n{2 * i},2024-05-01T09:00:00Z\n{2 * i + 1},2024-05-01T09:00:01Z\n"
            )
        schema = {"id": pl.Int64, "ts": pl.Datetime("us", "UTC")}
        src = dataclasses.replace(rb.files(tmp, watch=True, schema=schema), poll_interval=0.0)
        reader = src.open("0", None, SourceContext(mode="stream"))
        started, rows = time.perf_counter(), 0
        while rows < 2 * args.files:
            batch = reader.next_batch(250_000, 0.01)
            rows += batch.height if batch is not None else 0
        elapsed = time.perf_counter() - started
    print(
        f"{args.files:,} files ({rows:,} rows) read in {elapsed:.2f} s: {args.files / elapsed:,.0f} files/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
