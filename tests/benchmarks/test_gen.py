"""The benchmark data generator: deterministic, the promised shape, skew, lateness."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` lives at the repo root, next to `src`
    sys.path.insert(0, str(ROOT))

from benchmarks import gen  # noqa: E402

N = 200_000


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return gen.generate(N, seed=7)


def test_schema_and_arrival_order(events: pl.DataFrame) -> None:
    assert events.schema == gen.SCHEMA
    assert events.height == N
    assert events["event_id"].to_list() == list(range(N))


def test_deterministic_per_seed(events: pl.DataFrame) -> None:
    assert gen.generate(N, seed=7).equals(events)
    assert not gen.generate(N, seed=8).equals(events)
    assert gen.generate(0).height == 0


def test_event_time_lags_arrival() -> None:
    start = gen.DEFAULT_START_MS + 12_345
    df = gen.generate(N, seed=1, start_ms=start)
    delay = (start + df["event_id"]) - df["ts_ms"]
    assert delay.min() >= 0
    assert delay.max() <= gen.STRAGGLER_MAX_DELAY_MS
    share_over_5s = (delay > gen.NORMAL_MAX_DELAY_MS).mean()
    assert 0 < share_over_5s < 0.002


def test_start_is_midnight() -> None:
    assert gen.DEFAULT_START_MS % gen.DAY_MS == 0


def test_store_ids_skewed(events: pl.DataFrame) -> None:
    stores = events["store_id"]
    assert stores.min() >= 0
    assert stores.max() < gen.N_STORES
    assert stores.n_unique() > 5_000
    top_share = stores.value_counts(sort=True)["count"][0] / N
    assert top_share > 0.05  # hot key
    assert events["product_id"].min() >= 0


def test_amounts_mostly_positive(events: pl.DataFrame) -> None:
    amount = events["amount"]
    assert 0.01 < (amount < 0).mean() < 0.04
    assert 0.003 < (amount == 0).mean() < 0.02
    assert (amount > 0).mean() > 0.95


def test_small_share_late_under_10s_watermark(events: pl.DataFrame) -> None:
    watermark = events["ts_ms"].cum_max().shift(1) - 10_000
    window_end = (events["ts_ms"] // 60_000) * 60_000 + 60_000
    late = (window_end <= watermark).fill_null(False)
    assert 0 < late.sum() < 0.002 * N


def test_vectorized_enough_for_a_million_rows() -> None:
    # not a timing assertion: just that a larger size works and keeps its invariants
    df = gen.generate(1_000_000, seed=3)
    assert df.height == 1_000_000
    assert np.all(np.diff(df["event_id"].to_numpy()) == 1)


def test_write_split_files_in_arrival_order(tmp_path: Path, events: pl.DataFrame) -> None:
    paths = gen.write(events, tmp_path / "parts", files=3)
    assert [p.name for p in paths] == [f"part-0000{i}.parquet" for i in range(3)]
    assert sorted(paths) == paths
    back = pl.concat([pl.read_parquet(p) for p in paths])
    assert back.equals(events)


def test_cli_one_file_and_k_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sales.parquet"
    assert gen.main(["--events", "5000", "--out", str(out), "--seed", "2"]) == 0
    assert pl.read_parquet(out).equals(gen.generate(5000, seed=2))
    assert gen.main(["--events", "5000", "--out", str(tmp_path / "d"), "--files", "4"]) == 0
    parts = sorted((tmp_path / "d").glob("*.parquet"))
    assert len(parts) == 4
    assert pl.concat([pl.read_parquet(p) for p in parts]).equals(gen.generate(5000))
    assert "wrote 5,000 events" in capsys.readouterr().out


def test_dataset_is_cached(tmp_path: Path) -> None:
    path = gen.dataset(3000, seed=5, data_dir=tmp_path)
    assert path == tmp_path / "sales_3000_5.parquet"
    stamp = path.stat().st_mtime_ns
    assert gen.dataset(3000, seed=5, data_dir=tmp_path) == path
    assert path.stat().st_mtime_ns == stamp
    assert pl.read_parquet(path).equals(gen.generate(3000, seed=5))
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind
