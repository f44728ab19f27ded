"""Overhead of observing a stream job (status file + Prometheus) on the Q2 pipeline.

Usage::

    python -m benchmarks.observe_overhead --events 5000000 [--repeat 5] [--max-batch-rows N]

Runs Q2 (1-minute windows per store over a Parquet file, stream mode) alternately without and
with a :class:`riverbed.observe.JobObserver` serving metrics, passed to the executor as
``observer=`` as ``riverbed run --metrics-port`` does, and prints the best time of each and
their ratio. The target is at most 3% overhead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.gen import dataset
from benchmarks.q2 import run_riverbed


def _once(path: Path, observed: bool, options: dict[str, Any]) -> float:
    import riverbed as rb
    from riverbed.observe import JobObserver

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        opts = dict(options)
        observer = None
        if observed:
            plan = '{"pipeline": "minute_revenue", "steps": []}'
            observer = JobObserver(home, "minute_revenue", "stream", plan, metrics_port=0)
            observer.on_start()
            opts["observer"] = observer
        started = time.perf_counter()
        run_riverbed(rb, path, home, opts)
        elapsed = time.perf_counter() - started
        if observer is not None:
            observer.on_end("finished")
        return elapsed


def main(argv: list[str] | None = None) -> int:
    """Run the comparison."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.observe_overhead")
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--max-batch-rows", type=int, default=None)
    args = parser.parse_args(argv)
    path = dataset(args.events)
    options: dict[str, Any] = {}
    if args.max_batch_rows:
        options["max_batch_rows"] = args.max_batch_rows
    _once(path, False, options)  # warm up: page cache, imports
    plain: list[float] = []
    observed: list[float] = []
    for _ in range(args.repeat):
        plain.append(_once(path, False, options))
        observed.append(_once(path, True, options))
    best_plain, best_observed = min(plain), min(observed)
    print(f"events: {args.events:,}  repeat: {args.repeat}  options: {options or 'defaults'}")
    print(f"plain     best {best_plain:.3f}s  all {', '.join(f'{t:.3f}' for t in plain)}")
    print(f"observed  best {best_observed:.3f}s  all {', '.join(f'{t:.3f}' for t in observed)}")
    print(f"overhead  {100 * (best_observed / best_plain - 1):+.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
