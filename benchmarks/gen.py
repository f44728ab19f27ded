"""Deterministic generator of sales events for the benchmarks.

Events come in **arrival order**. Arrival time advances one millisecond per event (about
1,000 events per simulated second), starting at ``start_ms``. Each event's event time
``ts_ms`` is 0-5 s behind its arrival; about 0.1% of events are up to 2 minutes behind, so
under a watermark with ``max_delay="10s"`` a small share of them is late for 1-minute windows.

``store_id`` is Zipf-distributed over 10,000 stores (a few hot keys, a long tail);
``amount`` is mostly positive, with about 2% refunds (< 0) and 1% zero amounts.

Usage::

    python -m benchmarks.gen --events 10000000 --out /tmp/sales.parquet
    python -m benchmarks.gen --events 10000000 --out /tmp/sales --files 8   # 8 files, in order

From Python::

    from benchmarks.gen import dataset, generate
    df = generate(1_000_000, seed=0)       # a polars DataFrame
    path = dataset(10_000_000)             # benchmarks/data/sales_10000000_0.parquet, cached
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from riverbed._gen import (  # the generator ships in the package (`riverbed gen`)
    DAY_MS,
    DEFAULT_START_MS,
    N_PRODUCTS,
    N_STORES,
    NORMAL_MAX_DELAY_MS,
    REFUND_SHARE,
    SCHEMA,
    STRAGGLER_MAX_DELAY_MS,
    STRAGGLER_SHARE,
    ZERO_SHARE,
    ZIPF_EXPONENT,
    _write_atomic,
    generate,
    write,
)

__all__ = [
    "DAY_MS",
    "DEFAULT_START_MS",
    "N_PRODUCTS",
    "N_STORES",
    "NORMAL_MAX_DELAY_MS",
    "REFUND_SHARE",
    "SCHEMA",
    "STRAGGLER_MAX_DELAY_MS",
    "STRAGGLER_SHARE",
    "ZERO_SHARE",
    "ZIPF_EXPONENT",
    "dataset",
    "generate",
    "main",
    "write",
]

DATA_DIR = Path(__file__).resolve().parent / "data"


def dataset(n_events: int, seed: int = 0, *, data_dir: Path | None = None) -> Path:
    """Return the path of a cached Parquet file of ``generate(n_events, seed)``.

    The file is ``benchmarks/data/sales_{n_events}_{seed}.parquet`` (or under ``data_dir``);
    it is written once and reused.
    """
    path = (data_dir or DATA_DIR) / f"sales_{n_events}_{seed}.parquet"
    if not path.exists():
        _write_atomic(generate(n_events, seed), path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gen", description="Generate sales events as Parquet."
    )
    parser.add_argument("--events", type=int, required=True, help="number of events")
    parser.add_argument("--out", type=Path, required=True, help="output file (or dir if --files>1)")
    parser.add_argument("--files", type=int, default=1, help="split into K files, arrival order")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.events < 0 or args.files < 1:
        parser.error("--events must be >= 0 and --files >= 1")
    paths = write(generate(args.events, args.seed), args.out, args.files)
    where = paths[0] if len(paths) == 1 else f"{args.out} ({len(paths)} files)"
    print(f"wrote {args.events:,} events to {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
