"""The cost of fault tolerance: q2 with and without checkpoints every second (same run,
alternating), and the time to resume from a checkpoint holding many open windows.

Usage::

    python -m benchmarks.checkpoint [--events 5000000] [--repeat 2] [--windows 1000000]

Prints q2's throughput without and with ``checkpoint_dir`` (interval 1 s) and the slowdown,
then the size of a checkpoint with ``--windows`` open windows and the time a job takes to
resume from it (load, check, rebuild state and readers) and to write one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.gen import dataset
from benchmarks.q2 import run_riverbed


def q2_cost(events: int, repeat: int) -> tuple[float, float]:
    """Best events/s of q2 without, then with, checkpoints every 1 s (runs alternate)."""
    import riverbed as rb

    path = dataset(events)
    best: dict[bool, float] = {False: 0.0, True: 0.0}
    for _ in range(repeat):
        for with_ckpt in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                opts: dict[str, Any] = {}
                if with_ckpt:
                    opts = {"checkpoint_dir": os.path.join(tmp, "ckpt"), "checkpoint_interval": "1s"}
                started = time.perf_counter()
                run_riverbed(rb, path, Path(tmp) / "home", opts)
                best[with_ckpt] = max(best[with_ckpt], events / (time.perf_counter() - started))
    return best[False], best[True]


def resume_time(windows: int) -> tuple[int, float, float]:
    """(checkpoint bytes, seconds to resume, seconds to write one) with ``windows`` open."""
    import riverbed as rb
    from riverbed.eventlog import Log
    from riverbed.executors.options import StreamOptions
    from riverbed.executors.stream import StreamJob

    with tempfile.TemporaryDirectory() as tmp:
        home, ckpt = Path(tmp) / "home", os.path.join(tmp, "ckpt")
        t0 = 1_700_000_000_000
        df = pl.DataFrame({"key": pl.int_range(0, windows, eager=True), "ts": t0, "v": 1})
        with Log(home) as log:
            log.create_topic("events", 1).append(df)
        p = rb.Pipeline("open_windows")
        p.read(rb.log("events"), event_time="ts", name="events").window(
            rb.tumbling("1h"), by="key", name="w"
        ).agg(n=rb.count(), total=rb.sum("v")).write(
            rb.sqlite(os.path.join(tmp, "o.sqlite"), table="w"), name="out"
        )
        stop = threading.Event()

        def on_batch(stats: Any, outputs: Any) -> None:
            if stats.events >= windows:
                stop.set()

        p.run("stream", home=home, checkpoint_dir=ckpt, stop=stop, on_batch=on_batch)
        size = sum(f.stat().st_size for f in Path(ckpt, "checkpoints").iterdir())
        opts = StreamOptions.build(home=home, checkpoint_dir=ckpt)
        started = time.perf_counter()
        job = StreamJob(p.plan(), opts)
        resumed = time.perf_counter() - started
        try:
            assert job.stats.open_windows == 0 and job.runtimes["w"].figures()["open_windows"] == windows
            job.dirty = True
            started = time.perf_counter()
            job._checkpoint()
            written = time.perf_counter() - started
        finally:
            job.close()
        return size, resumed, written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.checkpoint", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--windows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    without, with_ckpt = q2_cost(args.events, args.repeat)
    print(f"q2 ({args.events:,} events, best of {args.repeat}):")
    print(f"  without checkpoints: {without:,.0f} events/s")
    print(
        f"  checkpoint every 1s: {with_ckpt:,.0f} events/s ({(1 - with_ckpt / without) * 100:+.1f}% slower)"
    )
    size, resumed, written = resume_time(args.windows)
    print(f"checkpoint with {args.windows:,} open windows: {size / 1e6:.1f} MB")
    print(f"  resume (load, check, rebuild state, open readers): {resumed:.2f} s")
    print(f"  write one checkpoint: {written:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
