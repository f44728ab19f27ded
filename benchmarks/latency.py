"""Emit latency of a stream job: ``python -m benchmarks.latency [--rate 100000] [--seconds 10]``.

A writer process appends sales events as JSON lines to a file at a fixed rate (in 5 ms
ticks), with event time = wall time minus 0-150 ms. riverbed tails the file in stream mode
and computes per-store revenue in 200 ms tumbling windows with ``max_delay=200ms``.

For each window we take the moment its *closing watermark arrived*: the write time of the
first event whose time minus ``max_delay`` reached the window's end. Latency is the wall time
at which riverbed emitted the window minus that moment. We report p50/p99/max over windows.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl

WINDOW_MS = 200
MAX_DELAY_MS = 200
TICK_S = 0.005


def writer(path: str, rate: int, seconds: float, log_path: str, ready: mp.Event) -> None:  # type: ignore[valid-type]
    """Append ``rate`` events/s for ``seconds``; log (write wall time ms, max ts so far)."""
    rng = np.random.default_rng(1)
    per_tick = max(int(rate * TICK_S), 1)
    ready.wait()
    start = time.time()
    ticks = int(seconds / TICK_S)
    log: list[tuple[float, int]] = []
    max_ts = -(2**62)
    next_id = 0
    with open(path, "ab", buffering=0) as fh:
        for i in range(ticks):
            target = start + i * TICK_S
            delay = target - time.time()
            if delay > 0:
                time.sleep(delay)
            now_ms = int(time.time() * 1000)
            ts = now_ms - rng.integers(0, 150, per_tick)
            chunk = pl.DataFrame(
                {
                    "event_id": np.arange(next_id, next_id + per_tick),
                    "ts_ms": ts,
                    "store_id": rng.integers(0, 1000, per_tick).astype(np.int32),
                    "amount": np.round(rng.gamma(2.0, 10.0, per_tick), 2),
                }
            )
            next_id += per_tick
            data = chunk.write_ndjson().encode()
            fh.write(data)
            max_ts = max(max_ts, int(ts.max()))
            log.append((time.time() * 1000, max_ts))
    pl.DataFrame(log, schema=["written_ms", "max_ts"], orient="row").write_parquet(log_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=100_000, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the writer runs")
    parser.add_argument("--max-wait", default="10ms", help="riverbed's micro-batch wait bound")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import riverbed as rb

    with tempfile.TemporaryDirectory(prefix="rb-latency-") as tmp:
        path = os.path.join(tmp, "events.jsonl")
        log_path = os.path.join(tmp, "writes.parquet")
        Path(path).touch()
        ready = mp.Event()
        proc = mp.Process(target=writer, args=(path, args.rate, args.seconds, log_path, ready))
        proc.start()

        emitted: list[tuple[int, float]] = []  # (window_end, emitted wall ms)

        def on_batch(stats: object, outputs: dict[str, pl.DataFrame]) -> None:
            now_ms = time.time() * 1000
            for frame in outputs.values():
                if "window_end" in frame.columns and frame.height:
                    for end in frame["window_end"].unique().to_list():
                        emitted.append((int(end), now_ms))

        p = rb.Pipeline("latency")
        out = rb.testing.collect()
        schema = {"event_id": pl.Int64, "ts_ms": pl.Int64, "store_id": pl.Int32, "amount": pl.Float64}
        (
            p.read(
                rb.files(path, tail=True, schema=schema),
                event_time="ts_ms",
                watermark=rb.watermark(max_delay=f"{MAX_DELAY_MS}ms"),
            )
            .window(rb.tumbling(f"{WINDOW_MS}ms"), by="store_id")
            .agg(revenue=rb.sum("amount"), orders=rb.count())
            .write(out)
        )
        stop = threading.Event()

        def stopper() -> None:
            proc.join()
            time.sleep(3 * MAX_DELAY_MS / 1000)
            stop.set()

        threading.Thread(target=stopper, daemon=True).start()
        ready.set()
        result = p.run("stream", progress=False, max_wait=args.max_wait, stop=stop, on_batch=on_batch)
        writes = pl.read_parquet(log_path)

    # closing watermark of window end E arrives with the first write where max_ts - delay >= E
    first_emit = (
        pl.DataFrame(emitted, schema=["window_end", "emitted_ms"], orient="row")
        .group_by("window_end")
        .agg(pl.col("emitted_ms").min())
        .sort("window_end")
    )
    closes = writes.with_columns(wm=pl.col("max_ts") - MAX_DELAY_MS).sort("wm")
    joined = first_emit.join_asof(
        closes.select("wm", "written_ms"), left_on="window_end", right_on="wm", strategy="forward"
    ).drop_nulls("written_ms")
    lat = (joined["emitted_ms"] - joined["written_ms"]).to_numpy()
    events = result.total_read
    print(
        f"latency: {args.rate:,} events/s for {args.seconds:g}s through a tailed JSONL file; "
        f"{WINDOW_MS} ms tumbling windows per store, max_delay {MAX_DELAY_MS} ms, max_wait {args.max_wait}"
    )
    print(
        f"events read: {events:,}; windows measured: {len(lat):,}; micro-batches: "
        f"{result.stats.get('batches')}"
    )
    if len(lat) == 0:
        print("no window closed while the writer ran")
        return 1
    p50, p99 = np.percentile(lat, [50, 99])
    print(
        f"emit latency after the closing watermark arrived: p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms, max {lat.max():.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
