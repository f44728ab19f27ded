"""Kafka connector throughput: rows through KafkaSink into a fresh topic, then back through
KafkaSource in batch mode, against the raw confluent-kafka client on the same broker.

Usage::

    python -m benchmarks.kafka_bench --events 1000000 [--partitions 1] [--bootstrap HOST:PORT]

Without ``--bootstrap`` (or ``RIVERBED_KAFKA_BOOTSTRAP``) a throwaway tansu broker is started
on a free 127.0.0.1 port (``riverbed._testing.tansu``) and stopped at the end. The figures
include JSON encoding and decoding; the "raw" rows are the client alone producing
pre-encoded values and collecting the consumed value bytes, the floor riverbed adds to.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import polars as pl

from benchmarks._common import SRC_DIR, print_table

if str(SRC_DIR) not in sys.path and SRC_DIR.is_dir():
    sys.path.insert(0, str(SRC_DIR))  # running from a checkout without installing

from riverbed._testing.tansu import start_tansu
from riverbed.connectors.base import SinkContext, SourceContext
from riverbed.connectors.kafka import kafka_sink, kafka_source

WRITE_ROWS = 100_000  # rows per KafkaWriter.write call (one micro-batch)
READ_ROWS = 100_000  # max_rows per KafkaReader.next_batch call


def _delete_topic(bootstrap: str, topic: str) -> None:
    """Drop a benchmark topic (frees the broker's memory before the next phase)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    with contextlib.suppress(Exception):
        admin.delete_topics([topic], operation_timeout=30)[topic].result(30)


@contextlib.contextmanager
def _broker(bootstrap: str | None) -> Iterator[tuple[str, str]]:
    if bootstrap:
        yield bootstrap, "given"
        return
    broker = start_tansu()
    try:
        yield broker.bootstrap, "tansu (started)"
    finally:
        broker.stop()


def _write(df: pl.DataFrame, bootstrap: str, topic: str, **options: Any) -> float:
    writer = kafka_sink(topic, bootstrap=bootstrap, **options).open(SinkContext())
    try:
        t0 = time.perf_counter()
        for chunk in df.iter_slices(WRITE_ROWS):
            writer.write(chunk)
        writer.commit(0)
        return time.perf_counter() - t0
    finally:
        writer.close()


def _read(df: pl.DataFrame, bootstrap: str, topic: str) -> tuple[float, int, int, float]:
    """Seconds, rows, dead letters, and a checksum of the first numeric column."""
    source = kafka_source(topic, bootstrap=bootstrap, schema=df.schema)
    ctx = SourceContext(mode="batch", pipeline="bench")
    rows = dead = 0
    check = 0.0
    numeric = next((c for c, t in df.schema.items() if t.is_numeric()), None)
    t0 = time.perf_counter()
    for partition in source.partitions(ctx):
        reader = source.open(partition, None, ctx)
        try:
            while (batch := reader.next_batch(READ_ROWS, 1.0)) is not None:
                rows += batch.height
                if numeric is not None and batch.height:
                    check += float(batch.get_column(numeric).sum())
                if (d := reader.drain_dead_letters()) is not None:
                    dead += d.height
        finally:
            reader.close()
    return time.perf_counter() - t0, rows, dead, check


def _raw(df: pl.DataFrame, bootstrap: str, topic: str, partitions: int) -> tuple[float, float]:
    """The client alone: produce JSON lines (encoding not timed), collect consumed values."""
    import confluent_kafka as ck

    kafka_sink(topic, bootstrap=bootstrap, create_partitions=partitions).ensure_topic()
    producer = ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "delivery.report.only.error": True,
        }
    )
    write_s = 0.0
    for chunk in df.iter_slices(WRITE_ROWS):
        buffer = io.BytesIO()
        chunk.write_ndjson(buffer)  # encoding is not timed: the client alone
        lines = buffer.getvalue().split(b"\n")[:-1]
        t0 = time.perf_counter()
        for value in lines:
            try:
                producer.produce(topic, value)
            except BufferError:
                producer.poll(0.1)
                producer.produce(topic, value)
        write_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    if producer.flush(300):
        raise RuntimeError("raw producer did not flush")
    write_s += time.perf_counter() - t0
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-raw",
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 10,  # the same fetch settings as KafkaSource
            "queued.min.messages": 200_000,
            "fetch.wait.max.ms": 100,
        }
    )
    consumer.assign([ck.TopicPartition(topic, p, 0) for p in range(partitions)])
    got = 0
    t0 = time.perf_counter()
    while got < df.height:
        msgs = consumer.consume(READ_ROWS, 0) or consumer.consume(1, 5.0)
        if not msgs:
            raise RuntimeError(f"raw consumer stalled at {got} of {df.height}")
        values = [m.value() for m in msgs if m.error() is None]
        got += len(values)
    read_s = time.perf_counter() - t0
    consumer.close()
    return write_s, read_s


def bench_kafka(
    df: pl.DataFrame,
    bootstrap: str | None = None,
    *,
    partitions: int = 1,
    key: str | None = None,
    idempotent: bool = True,
    raw: bool = True,
) -> dict[str, Any]:
    """Append ``df`` through KafkaSink into a fresh topic, read it back through KafkaSource.

    Returns events/s both ways (``write_events_per_s``, ``read_events_per_s``), the seconds,
    and, with ``raw=True``, the same for the bare confluent-kafka client. Starts tansu when
    ``bootstrap`` is None. Raises if the rows read back differ in number or checksum.
    """
    n = df.height
    with _broker(bootstrap) as (address, broker):
        topic = f"bench-{uuid.uuid4().hex[:12]}"
        gc.collect()
        write_s = _write(df, address, topic, key=key, create_partitions=partitions, idempotent=idempotent)
        gc.collect()
        read_s, rows, dead, check = _read(df, address, topic)
        numeric = next((c for c, t in df.schema.items() if t.is_numeric()), None)
        expected = float(df.get_column(numeric).sum()) if numeric is not None else 0.0
        if rows != n or dead or abs(check - expected) > 1e-6 * max(1.0, abs(expected)):
            raise RuntimeError(
                f"read back {rows:,} rows ({dead:,} dead letters, checksum {check}) for {n:,} "
                f"written (checksum {expected})"
            )
        result: dict[str, Any] = {
            "events": n,
            "broker": broker,
            "bootstrap": address,
            "partitions": partitions,
            "idempotent": idempotent,
            "write_s": write_s,
            "read_s": read_s,
            "write_events_per_s": n / write_s,
            "read_events_per_s": n / read_s,
        }
        _delete_topic(address, topic)
        if raw:
            gc.collect()
            raw_write_s, raw_read_s = _raw(df, address, f"{topic}-raw", partitions)
            _delete_topic(address, f"{topic}-raw")
            result.update(
                raw_write_s=raw_write_s,
                raw_read_s=raw_read_s,
                raw_write_events_per_s=n / raw_write_s,
                raw_read_events_per_s=n / raw_read_s,
            )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--key", default=None, help="key column, e.g. store_id")
    parser.add_argument("--no-idempotence", action="store_true")
    parser.add_argument("--no-raw", action="store_true", help="skip the bare-client baseline")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the best of each is shown")
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("RIVERBED_KAFKA_BOOTSTRAP") or None,
        help="HOST:PORT of a running broker (default: start tansu)",
    )
    args = parser.parse_args(argv)
    from benchmarks.gen import generate

    df = generate(args.events, seed=args.seed)
    runs = []
    with _broker(args.bootstrap) as (address, broker):
        for _ in range(max(args.repeat, 1)):
            run = bench_kafka(
                df,
                address,
                partitions=args.partitions,
                key=args.key,
                idempotent=not args.no_idempotence,
                raw=not args.no_raw,
            )
            run["broker"] = broker
            runs.append(run)
    r = dict(runs[0])
    for name in [k for k in r if k.endswith("_s") and not k.endswith("per_s")]:
        r[name] = min(run[name] for run in runs)
        r[name.removesuffix("_s") + "_events_per_s"] = r["events"] / r[name]
    print(
        f"{r['events']:,} events, {df.width} columns, {r['partitions']} partition(s), "
        f"broker: {r['broker']} at {r['bootstrap']}, idempotent producer: {r['idempotent']}, "
        f"best of {len(runs)}"
    )
    rows = [
        ["riverbed KafkaSink (write)", f"{r['write_s']:.2f}", f"{r['write_events_per_s']:,.0f}"],
        ["riverbed KafkaSource (read)", f"{r['read_s']:.2f}", f"{r['read_events_per_s']:,.0f}"],
    ]
    if "raw_write_s" in r:
        rows += [
            ["raw client produce", f"{r['raw_write_s']:.2f}", f"{r['raw_write_events_per_s']:,.0f}"],
            ["raw client consume", f"{r['raw_read_s']:.2f}", f"{r['raw_read_events_per_s']:,.0f}"],
        ]
    print_table(("path", "s", "events/s"), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
