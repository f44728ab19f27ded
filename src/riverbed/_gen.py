"""Deterministic sales events, the data the README's examples and the benchmarks use
(``riverbed gen``; ``python -m benchmarks.gen`` in the repository).

Events come in **arrival order**. Arrival time advances one millisecond per event (about
1,000 events per simulated second), starting at ``start_ms``. Each event's event time
``ts_ms`` is 0-5 s behind its arrival; about 0.1% of events are up to 2 minutes behind, so
under a watermark with ``max_delay="10s"`` a small share of them is late for 1-minute windows.

``store_id`` is Zipf-distributed over 10,000 stores (a few hot keys, a long tail);
``amount`` is mostly positive, with about 2% refunds (< 0) and 1% zero amounts.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

DAY_MS = 86_400_000
DEFAULT_START_MS = 1_700_000_000_000 - (1_700_000_000_000 % DAY_MS)
"""Midnight UTC of 2023-11-14, so daily windows line up with the start of the data."""

N_STORES = 10_000
N_PRODUCTS = 50_000
ZIPF_EXPONENT = 1.0
NORMAL_MAX_DELAY_MS = 5_000
STRAGGLER_SHARE = 0.001
STRAGGLER_MAX_DELAY_MS = 120_000
REFUND_SHARE = 0.02
ZERO_SHARE = 0.01

SCHEMA = pl.Schema(
    {
        "event_id": pl.Int64,
        "ts_ms": pl.Int64,
        "store_id": pl.Int32,
        "product_id": pl.Int32,
        "amount": pl.Float64,
    }
)


def _zipf_cdf(n_keys: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n_keys + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return cdf


def generate(n_events: int, seed: int = 0, start_ms: int = DEFAULT_START_MS) -> pl.DataFrame:
    """Generate ``n_events`` sales events in arrival order.

    Parameters
    ----------
    n_events
        Number of events (rows).
    seed
        Seed of the random generator; the same arguments always give the same frame.
    start_ms
        Arrival time (epoch milliseconds) of the first event.

    Returns
    -------
    polars.DataFrame
        Columns ``event_id`` (int64, 0..n-1 in arrival order), ``ts_ms`` (int64 epoch ms),
        ``store_id`` (int32), ``product_id`` (int32), ``amount`` (float64).

    Examples
    --------
    >>> from riverbed._gen import generate
    >>> df = generate(1000, seed=1)
    >>> df.columns
    ['event_id', 'ts_ms', 'store_id', 'product_id', 'amount']
    >>> df.height, df["event_id"].is_sorted()
    (1000, True)
    """
    if n_events < 0:
        raise ValueError(f"n_events must be >= 0, got {n_events}")
    rng = np.random.default_rng(seed)
    event_id = np.arange(n_events, dtype=np.int64)
    arrival_ms = start_ms + event_id

    # Event time lags arrival: 0-5 s for most, up to 2 min for a few stragglers.
    delay = rng.integers(0, NORMAL_MAX_DELAY_MS + 1, size=n_events, dtype=np.int64)
    stragglers = rng.random(n_events) < STRAGGLER_SHARE
    delay[stragglers] = rng.integers(
        0, STRAGGLER_MAX_DELAY_MS + 1, size=int(stragglers.sum()), dtype=np.int64
    )
    ts_ms = arrival_ms - delay

    # Zipf-like store popularity; a fixed permutation so hot stores are not simply 0, 1, 2.
    rank = np.searchsorted(_zipf_cdf(N_STORES, ZIPF_EXPONENT), rng.random(n_events), side="right")
    np.minimum(rank, N_STORES - 1, out=rank)
    store_of_rank = rng.permutation(N_STORES).astype(np.int32)
    store_id = store_of_rank[rank]

    product_id = rng.integers(0, N_PRODUCTS, size=n_events, dtype=np.int32)

    # Amounts in cents: log-normal around 20.00, some refunds (< 0) and some zeros.
    cents = np.maximum(np.rint(rng.lognormal(mean=np.log(2_000.0), sigma=1.0, size=n_events)), 1)
    kind = rng.random(n_events)
    cents[kind < REFUND_SHARE] *= -1
    cents[(kind >= REFUND_SHARE) & (kind < REFUND_SHARE + ZERO_SHARE)] = 0
    amount = cents / 100.0

    return pl.DataFrame(
        {
            "event_id": event_id,
            "ts_ms": ts_ms,
            "store_id": store_id,
            "product_id": product_id,
            "amount": amount,
        },
        schema=SCHEMA,
    )


def _write_atomic(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df.write_csv(tmp)
        elif suffix in (".jsonl", ".ndjson", ".json"):
            df.write_ndjson(tmp)
        else:
            df.write_parquet(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write(df: pl.DataFrame, out: Path, files: int = 1) -> list[Path]:
    """Write ``df`` as Parquet: one file at ``out``, or ``files`` files in directory ``out``.

    With several files the rows are split in arrival order into ``part-00000.parquet``,
    ``part-00001.parquet``, ... so that reading them in name order gives the arrival order.
    """
    if files < 1:
        raise ValueError(f"files must be >= 1, got {files}")
    if files == 1:
        _write_atomic(df, out)
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, df.height, files + 1).astype(np.int64)
    paths = []
    for i in range(files):
        part = out / f"part-{i:05d}.parquet"
        _write_atomic(df.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])), part)
        paths.append(part)
    return paths
