"""The embedded log: append and read throughput, next to plain Arrow IPC files.

Usage::

    python -m benchmarks.log --events 10000000 [--partitions 4] [--batch-rows 100000]
                             [--key store_id] [--no-fsync] [--repeat 1]

Events are the benchmark's sales events (``event_id`` int64, ``ts_ms`` int64, ``store_id``
int32, ``product_id`` int32, ``amount`` float64) from ``benchmarks.gen.generate`` when it is
there, else from a NumPy fallback with the same schema. They are appended in batches of
``--batch-rows`` rows (each append stores one Arrow IPC blob per partition it touches, in one
SQLite transaction, fsynced unless ``--no-fsync``), then every partition is read back from
offset 0 through :meth:`Topic.read` and through the ``LogSource`` connector.

The baseline writes the same batches to one Arrow IPC stream file and reads it back
(memory-mapped): the format's speed on this disk with no log around it.

Exit status: 0 when every run read back exactly the events it appended, 1 otherwise.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from benchmarks._common import SRC_DIR, fmt_bytes, print_table

if str(SRC_DIR) not in sys.path and SRC_DIR.is_dir():
    sys.path.insert(0, str(SRC_DIR))  # running from a checkout without installing

SCHEMA = pl.Schema(
    {
        "event_id": pl.Int64,
        "ts_ms": pl.Int64,
        "store_id": pl.Int32,
        "product_id": pl.Int32,
        "amount": pl.Float64,
    }
)


def load_events(n_events: int, seed: int) -> pl.DataFrame:
    """The benchmark events, from ``benchmarks.gen`` when present, else generated here."""
    try:
        from benchmarks.gen import generate
    except ImportError:
        rng = np.random.default_rng(seed)
        start = 1_700_000_000_000
        return pl.DataFrame(
            {
                "event_id": np.arange(n_events, dtype=np.int64),
                "ts_ms": start + np.arange(n_events, dtype=np.int64) - rng.integers(0, 5_000, n_events),
                "store_id": rng.zipf(1.5, n_events).clip(1, 10_000).astype(np.int32),
                "product_id": rng.integers(1, 50_000, n_events, dtype=np.int32),
                "amount": np.round(rng.gamma(2.0, 12.0, n_events), 2),
            },
            schema=SCHEMA,
        )
    return generate(n_events, seed=seed).select(list(SCHEMA)).cast(dict(SCHEMA))


@dataclass
class Result:
    """One timed phase: its name, best wall time over the runs, rows it moved."""

    name: str
    seconds: list[float]
    rows: int
    note: str = ""

    @property
    def best(self) -> float:
        return min(self.seconds)


@dataclass
class Checks:
    """What every run must read back: row count and the sum of ``event_id``."""

    rows: int
    id_sum: int
    failures: list[str]

    def check(self, what: str, df_rows: int, id_sum: int) -> None:
        if (df_rows, id_sum) != (self.rows, self.id_sum):
            self.failures.append(
                f"{what}: read {df_rows:,} rows (id sum {id_sum}), "
                f"appended {self.rows:,} (id sum {self.id_sum})"
            )


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    gc.collect()
    t0 = time.perf_counter()
    rows = fn()
    return time.perf_counter() - t0, rows


# -- the embedded log ---------------------------------------------------------------------------


def bench_embedded_log(batches: list[pl.DataFrame], args: argparse.Namespace, checks: Checks) -> list[Result]:
    from riverbed.connectors.base import SourceContext
    from riverbed.connectors.log import LogSource
    from riverbed.eventlog import Log

    append_s: list[float] = []
    read_s: list[float] = []
    source_s: list[float] = []
    stored = 0
    for _ in range(args.repeat):
        home = Path(tempfile.mkdtemp(prefix="rb-log-bench-", dir=args.tmp))
        try:
            with Log(home, durable=not args.no_fsync) as log:
                topic = log.create_topic("events", partitions=args.partitions)

                def append() -> int:
                    for batch in batches:
                        topic.append(batch, key=args.key)  # noqa: B023 - run right away
                    return checks.rows

                seconds, _ = timed(append)
                append_s.append(seconds)
                stored = topic.describe().size_bytes

            with Log(home) as log:  # a fresh open, as a consumer process would
                topic = log.topic("events")

                def read() -> int:
                    rows, id_sum = 0, 0
                    for p, end in topic.end_offsets().items():  # noqa: B023
                        offset = 0
                        while offset < end:
                            df = topic.read(p, offset, args.read_rows)  # noqa: B023
                            offset += df.height
                            rows += df.height
                            id_sum += int(df["event_id"].sum())
                    checks.check("Topic.read", rows, id_sum)
                    return rows

                seconds, _ = timed(read)
                read_s.append(seconds)

            def read_source() -> int:
                src = LogSource("events")
                ctx = SourceContext(mode="batch", home=home)  # noqa: B023
                rows, id_sum = 0, 0
                for part in src.partitions(ctx):
                    reader = src.open(part, None, ctx)
                    while (df := reader.next_batch(args.read_rows, 0.0)) is not None:
                        rows += df.height
                        id_sum += int(df["event_id"].sum())
                    reader.close()
                checks.check("LogSource", rows, id_sum)
                return rows

            seconds, _ = timed(read_source)
            source_s.append(seconds)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    how = f"{args.partitions} partitions, " + (f"key {args.key}" if args.key else "round-robin")
    sync = "no fsync" if args.no_fsync else "fsync per append"
    return [
        Result("log append", append_s, checks.rows, f"{how}, {sync}, {fmt_bytes(stored)} stored"),
        Result("log read (Topic.read)", read_s, checks.rows, f"{args.read_rows:,} rows per read"),
        Result("log read (LogSource)", source_s, checks.rows, "batch-mode readers"),
    ]


# -- baseline: plain Arrow IPC file -------------------------------------------------------------


def bench_ipc_file(batches: list[pl.DataFrame], args: argparse.Namespace, checks: Checks) -> list[Result]:
    write_s: list[float] = []
    read_s: list[float] = []
    for _ in range(args.repeat):
        directory = Path(tempfile.mkdtemp(prefix="rb-ipc-bench-", dir=args.tmp))
        path = directory / "events.arrows"
        try:

            def write() -> int:
                with pa.OSFile(str(path), "wb") as sink:  # noqa: B023
                    writer = pa.ipc.new_stream(sink, batches[0].to_arrow().schema)
                    for batch in batches:
                        writer.write_table(batch.to_arrow())
                    writer.close()
                    if not args.no_fsync:
                        sink.flush()
                        os.fsync(sink.fileno())
                return checks.rows

            seconds, _ = timed(write)
            write_s.append(seconds)

            def read() -> int:
                with pa.memory_map(str(path)) as source:  # noqa: B023
                    table = pa.ipc.open_stream(source).read_all()
                    df = pl.from_arrow(table, rechunk=False)
                    assert isinstance(df, pl.DataFrame)
                    checks.check("IPC file", df.height, int(df["event_id"].sum()))
                    return df.height

            seconds, _ = timed(read)
            read_s.append(seconds)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    return [
        Result("baseline: IPC file write", write_s, checks.rows, "one file, fsync once"),
        Result("baseline: IPC file read", read_s, checks.rows, "memory-mapped"),
    ]


# -- main ---------------------------------------------------------------------------------------


# -- Kafka ----------------------------------------------------------------------------------------


def bench_kafka_section(
    batches: list[pl.DataFrame], args: argparse.Namespace, checks: Checks
) -> list[Result]:
    """The same events through KafkaSink and KafkaSource (broker on loopback), side by side."""
    from benchmarks.kafka_bench import bench_kafka

    df = pl.concat(batches)
    try:
        r = bench_kafka(df, args.kafka_bootstrap, partitions=args.partitions, key=args.key, raw=False)
    except RuntimeError as exc:  # bench_kafka checks row count and checksum itself
        checks.failures.append(f"kafka: {exc}")
        return []
    checks.check("kafka (KafkaSource)", r["events"], int(df["event_id"].sum()))
    note = f"{r['broker']}, {args.partitions} partitions, JSON values"
    return [
        Result("kafka append (KafkaSink)", [r["write_s"]], r["events"], note),
        Result("kafka read (KafkaSource)", [r["read_s"]], r["events"], note),
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.log", description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000, help="number of events")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--partitions", type=int, default=4, help="topic partitions")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="rows per append")
    parser.add_argument("--read-rows", type=int, default=1_000_000, help="max rows per read")
    parser.add_argument("--key", default=None, help="route by this column (default round-robin)")
    parser.add_argument("--no-fsync", action="store_true", help="Log(durable=False)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per phase; best is shown")
    parser.add_argument("--no-kafka", action="store_true", help="skip the Kafka phases")
    parser.add_argument(
        "--kafka-bootstrap",
        default=None,
        help="a Kafka to use (default: start the Kafka-compatible tansu broker on 127.0.0.1)",
    )
    parser.add_argument("--tmp", default=None, help="directory for the data (default: $TMPDIR)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    events = load_events(args.events, args.seed)
    batches = [events.slice(i, args.batch_rows) for i in range(0, events.height, args.batch_rows)]
    checks = Checks(events.height, int(events["event_id"].sum()), [])
    print(
        f"{events.height:,} events ({fmt_bytes(events.estimated_size())} in memory) in "
        f"{len(batches):,} batches of {args.batch_rows:,} rows; generated in "
        f"{time.perf_counter() - t0:.1f} s\n"
    )

    results: list[Result] = []
    results += bench_embedded_log(batches, args, checks)
    results += bench_ipc_file(batches, args, checks)

    if not args.no_kafka:
        results += bench_kafka_section(batches, args, checks)

    rows = [
        [r.name, f"{r.best:.3f}", ", ".join(f"{s:.3f}" for s in r.seconds), f"{r.rows / r.best:,.0f}", r.note]
        for r in results
    ]
    print_table(("phase", "best s", "runs s", "events/s", "notes"), rows)
    if checks.failures:
        print("\nMISMATCH:\n  " + "\n  ".join(checks.failures))
        return 1
    print(f"\nevery phase read back all {checks.rows:,} events (row count and event_id sum)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
