"""Q2: stream revenue per store in 1-minute windows, riverbed stream mode vs a Polars reference.

Usage::

    python -m benchmarks.q2 --events 10000000 [--repeat 3] [--in-process]

The reference is one vectorized Polars query computing the *exact* result of the stream job
over the events in arrival order (file order) as one partition: per-store 1-minute tumbling
windows, watermark ``max_delay=10s``, no allowed lateness, emit-final mode.

* the watermark before event ``i`` is ``max(ts_ms of events 0..i-1) - 10s`` (``-inf`` for the
  first event): the watermark advances *after* each event, over every event the source reads;
* event ``i`` is late iff ``window_end(i) + allowed_lateness <= watermark_before(i)``; late
  events are dropped;
* the ``amount > 0`` filter runs after the source, so it does not change the watermark;
* at the end of the bounded input all open windows are flushed, so the result is every
  remaining event grouped by ``store_id, window_start``.

riverbed runs in a fresh child process by default, so that its peak RSS (from
``resource.getrusage``) is its own and not that of the reference or the data generator.

Exit status: 0 results identical, 1 they differ, 2 riverbed's stream mode is not available.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import polars as pl

from benchmarks._common import (
    TIMING_HEADERS,
    Timing,
    add_common_args,
    best_of,
    compare,
    fmt_bytes,
    load_riverbed,
    peak_rss_bytes,
    print_table,
    timing_rows,
)
from benchmarks.gen import dataset

WINDOW_MS = 60_000
MAX_DELAY_MS = 10_000
ALLOWED_LATENESS_MS = 0


def _flag_late(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Add ``window_start`` and ``late`` (bool) to events in arrival order."""
    ts = pl.col("ts_ms")
    watermark_before = ts.cum_max().shift(1) - MAX_DELAY_MS  # null for the first event
    window_start = (ts // WINDOW_MS) * WINDOW_MS
    late = (window_start + WINDOW_MS + ALLOWED_LATENESS_MS <= watermark_before).fill_null(False)
    return lf.with_columns(window_start=window_start, late=late)


def run_reference(
    path: Path,
    *,
    engine: Literal["auto", "streaming"] = "auto",
    watermark_after_filter: bool = False,
) -> pl.DataFrame:
    """The exact emit-final stream result, as one vectorized Polars query.

    ``engine`` is Polars' engine (the streaming engine is timed too, for reference).

    ``watermark_after_filter=True`` computes the watermark over the events that pass
    ``amount > 0`` only; it is not the semantics we hold riverbed to, but tells a mismatch
    caused by where the watermark is taken apart from other mismatches.
    """
    lf = pl.scan_parquet(path)
    if watermark_after_filter:
        lf = _flag_late(lf.filter(pl.col("amount") > 0))
    else:
        lf = _flag_late(lf).filter(pl.col("amount") > 0)
    return (
        lf.filter(~pl.col("late"))
        .group_by("store_id", "window_start")
        .agg(revenue=pl.col("amount").sum(), orders=pl.len())
        .with_columns(window_end=pl.col("window_start") + WINDOW_MS)
        .collect(engine=engine)
    )


def count_late(path: Path) -> tuple[int, int]:
    """Return (late events, late events with ``amount > 0``, i.e. dropped from windows)."""
    row = (
        _flag_late(pl.scan_parquet(path))
        .select(
            late=pl.col("late").sum(),
            dropped=(pl.col("late") & (pl.col("amount") > 0)).sum(),
        )
        .collect()
        .row(0)
    )
    return int(row[0]), int(row[1])


def run_riverbed(rb: ModuleType, path: Path, home: Path, options: dict[str, Any]) -> tuple[pl.DataFrame, int]:
    """Run the pipeline with riverbed's stream executor; return its rows and late count.

    ``home`` must be a fresh riverbed home: a checkpoint left by an earlier run of the same
    pipeline would make the run resume instead of starting over.
    """
    from riverbed.testing import collect

    p = rb.Pipeline("minute_revenue")
    sales = p.read(rb.files(str(path)), event_time="ts_ms", watermark=rb.watermark(max_delay="10s"))
    out = collect()
    (
        sales.filter(pl.col("amount") > 0)
        .window(rb.tumbling("1m"), by="store_id")
        .agg(revenue=rb.sum("amount"), orders=rb.count())
        .write(out)
    )
    result = p.run(mode="stream", progress=False, home=home, **options)
    return out.frame(), int(getattr(result, "total_late", -1))


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, NotImplementedError):
        return True
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith("riverbed."):
        return True  # e.g. riverbed.executors.stream not written yet
    text = str(exc).lower()
    return "stream" in text and any(
        s in text for s in ("not implemented", "not available", "not supported", "not yet")
    )


def riverbed_runs(path: Path, repeat: int, out_path: Path | None, options: dict[str, Any]) -> dict[str, Any]:
    """Time riverbed's stream mode ``repeat`` times; runs in the child process by default.

    Returns a picklable dict: ``status`` ("ok" or "unavailable"), ``why``, ``seconds``,
    ``rows``, ``baseline_rss`` (after imports), ``peak_rss``. The last result is written to
    ``out_path`` (Parquet) when given, else returned under ``frame``.
    """
    rb, why = load_riverbed()
    if rb is None:
        return {"status": "unavailable", "why": why}
    baseline = peak_rss_bytes()
    seconds = []
    result: pl.DataFrame | None = None
    with tempfile.TemporaryDirectory(prefix="rb-q2-home-") as tmp:
        for i in range(max(repeat, 1)):
            result = None
            gc.collect()
            t0 = time.perf_counter()
            try:
                result, late = run_riverbed(rb, path, Path(tmp) / f"home{i}", options)
            except Exception as exc:
                if _is_unavailable(exc):
                    return {"status": "unavailable", "why": f"{type(exc).__name__}: {exc}"}
                raise
            seconds.append(time.perf_counter() - t0)
    assert result is not None
    info: dict[str, Any] = {
        "status": "ok",
        "seconds": seconds,
        "rows": result.height,
        "late": late,
        "baseline_rss": baseline,
        "peak_rss": peak_rss_bytes(),
    }
    if out_path is not None:
        result.write_parquet(out_path)
    else:
        info["frame"] = result
    return info


def _start_worker(stack: contextlib.ExitStack) -> ProcessPoolExecutor:
    """Start the child process now, while this process is still small.

    On Linux a child's ``ru_maxrss`` starts at its parent's RSS at fork time (it survives the
    exec of a spawn), so the child must be started before the reference fills this process.
    """
    ctx = multiprocessing.get_context("spawn")
    pool = stack.enter_context(ProcessPoolExecutor(1, mp_context=ctx))
    pool.submit(os.getpid).result()
    return pool


def _riverbed_isolated(
    pool: ProcessPoolExecutor, path: Path, repeat: int, options: dict[str, Any]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rb-q2-") as tmp:
        out_path = Path(tmp) / "riverbed.parquet"
        info = pool.submit(riverbed_runs, path, repeat, out_path, options).result()
        if info["status"] == "ok":
            info["frame"] = pl.read_parquet(out_path)
        return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.q2",
        description="Stream revenue per store in 1-minute windows (watermark 10s).",
    )
    add_common_args(parser)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run riverbed in this process (peak RSS then includes the reference)",
    )
    parser.add_argument(
        "--max-batch-rows",
        type=int,
        default=None,
        help="stream executor micro-batch size (default: riverbed's own)",
    )
    args = parser.parse_args(argv)
    options = {} if args.max_batch_rows is None else {"max_batch_rows": args.max_batch_rows}

    stack = contextlib.ExitStack()
    with stack:
        pool = None if args.in_process else _start_worker(stack)
        return _run(args, options, pool)


def _run(args: argparse.Namespace, options: dict[str, Any], pool: ProcessPoolExecutor | None) -> int:
    path = dataset(args.events, args.seed, data_dir=args.data_dir)
    size_mib = path.stat().st_size / 2**20
    print(f"Q2 stream 1-minute revenue: {args.events:,} events, {path} ({size_mib:,.1f} MiB)")
    print(f"watermark max_delay={MAX_DELAY_MS} ms, allowed lateness 0, emit final, 1 partition")
    print(f"best of {args.repeat}; polars {pl.__version__}; stream options: {options or 'defaults'}")

    t_ref, expected = best_of("polars (exact reference)", lambda: run_reference(path), args.repeat)
    t_ps, got_ps = best_of("polars streaming", lambda: run_reference(path, engine="streaming"), args.repeat)
    if (diff := compare(expected, got_ps)) is not None:
        print(f"MISMATCH: polars streaming engine differs from the in-memory engine:\n{diff}")
        return 1
    late, dropped = count_late(path)
    print(f"late events: {late:,} ({dropped:,} with amount > 0 dropped from windows)")

    if pool is None:
        info = riverbed_runs(path, args.repeat, None, options)
    else:
        info = _riverbed_isolated(pool, path, args.repeat, options)

    if info["status"] != "ok":
        print()
        print_table(TIMING_HEADERS, timing_rows([t_ref, t_ps], args.events))
        print()
        print(f"riverbed stream mode: not available: {info['why']}")
        return 2

    got: pl.DataFrame = info["frame"]
    t_rb = Timing("riverbed stream", info["seconds"], got.height)
    print()
    print_table(TIMING_HEADERS, timing_rows([t_ref, t_ps, t_rb], args.events))
    print()
    print(f"riverbed/polars: {t_rb.best / t_ref.best:.2f}x")
    print(f"riverbed/polars streaming: {t_rb.best / t_ps.best:.2f}x")
    where = "child process" if pool is not None else "this process, incl. reference"
    print(
        f"riverbed peak RSS ({where}): {fmt_bytes(info['peak_rss'])} "
        f"(after imports: {fmt_bytes(info['baseline_rss'])})"
    )

    if info["late"] != dropped:
        print(
            f"note: riverbed reports {info['late']:,} late events; the reference drops "
            f"{dropped:,} from windows ({late:,} late before the amount > 0 filter)"
        )

    print()
    diff = compare(expected, got)
    if diff is None:
        print(f"results identical (polars reference, riverbed stream): {expected.height:,} windows")
        return 0
    print(f"MISMATCH: riverbed stream differs from the exact reference:\n{diff}")
    if compare(run_reference(path, watermark_after_filter=True), got) is None:
        print(
            "hint: riverbed matches a watermark taken *after* filter(amount > 0); the reference "
            "advances the watermark over every event the source reads"
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
