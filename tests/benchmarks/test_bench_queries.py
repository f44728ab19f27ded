"""Benchmark harness: the exact Q2 reference, result comparison, and q1/q2 end to end."""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` lives at the repo root, next to `src`
    sys.path.insert(0, str(ROOT))

from benchmarks import _common, gen, q1, q2  # noqa: E402

N = 20_000


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-data")


def naive_stream(df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Q2's stream semantics, one event at a time, in plain Python."""
    watermark = -math.inf
    windows: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0])
    late = 0
    for ts, store, amount in df.select("ts_ms", "store_id", "amount").iter_rows():
        start = ts // q2.WINDOW_MS * q2.WINDOW_MS
        if start + q2.WINDOW_MS + q2.ALLOWED_LATENESS_MS <= watermark:
            late += 1
        elif amount > 0:
            acc = windows[(store, start)]
            acc[0] += amount
            acc[1] += 1
        watermark = max(watermark, ts - q2.MAX_DELAY_MS)
    rows = [
        (store, start, start + q2.WINDOW_MS, revenue, orders)
        for (store, start), (revenue, orders) in windows.items()
    ]
    frame = pl.DataFrame(rows, schema=_common.RESULT_SCHEMA, orient="row")
    return frame, late


def test_q2_reference_matches_naive_event_loop(data_dir: Path) -> None:
    path = gen.dataset(N, data_dir=data_dir)
    expected, late = naive_stream(pl.read_parquet(path))
    assert late > 0  # the data does exercise lateness
    assert _common.compare(expected, q2.run_reference(path)) is None
    assert q2.count_late(path)[0] == late


def test_q2_reference_on_a_hand_made_case(tmp_path: Path) -> None:
    ts = [60_000, 75_000, 125_000, 59_999, 115_000, 60_001]
    # watermark before each event: -inf, 50_000, 65_000, 115_000, 115_000, 115_000, so only
    # 59_999 is late (its window ends at 60_000 <= 115_000); -32.0 is filtered out
    df = pl.DataFrame(
        {
            "event_id": range(len(ts)),
            "ts_ms": ts,
            "store_id": [1] * len(ts),
            "product_id": [0] * len(ts),
            "amount": [1.0, 2.0, 4.0, 8.0, 16.0, -32.0],
        },
        schema=gen.SCHEMA,
    )
    path = tmp_path / "hand.parquet"
    df.write_parquet(path)
    got = _common.normalize(q2.run_reference(path))
    assert got.rows() == [(1, 60_000, 120_000, 19.0, 3), (1, 120_000, 180_000, 4.0, 1)]
    assert q2.count_late(path) == (1, 1)


def test_q1_polars_and_duckdb_agree(data_dir: Path) -> None:
    path = gen.dataset(N, data_dir=data_dir)
    a = q1.run_polars(path)
    assert _common.compare(a, q1.run_duckdb(path)) is None
    df = pl.read_parquet(path).filter(pl.col("amount") > 0)
    assert a["orders"].sum() == df.height
    assert a["revenue"].sum() == pytest.approx(df["amount"].sum())


def test_compare_finds_differences() -> None:
    base = pl.DataFrame(
        {
            "store_id": [1, 2, 3],
            "window_start": [0, 0, 60_000],
            "window_end": [60_000, 60_000, 120_000],
            "revenue": [10.0, 20.5, 1e7],
            "orders": [1, 2, 3],
        }
    )
    assert _common.compare(base, base.reverse()) is None
    jitter = base.with_columns(revenue=pl.col("revenue") * (1 + 1e-12))
    assert _common.compare(base, jitter) is None
    as_datetime = base.with_columns(
        pl.from_epoch("window_start", time_unit="ms"), pl.col("orders").cast(pl.UInt32)
    )
    assert _common.compare(base, as_datetime) is None

    changed = base.with_columns(revenue=pl.col("revenue") + pl.Series([0.0, 0.01, 0.0]))
    assert "1 windows differ" in (_common.compare(base, changed) or "")
    assert "row count" in (_common.compare(base, base.head(2)) or "")
    assert "duplicate" in (_common.compare(base, pl.concat([base, base.tail(1)])) or "")
    moved = base.with_columns(window_start=pl.Series([0, 0, 0]))
    assert "only in expected: 1" in (_common.compare(base, moved) or "")


def test_q1_end_to_end(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--events", str(N), "--repeat", "1", "--data-dir", str(data_dir)]
    assert q1.main([*args, "--no-riverbed"]) == 0
    assert "results identical (polars, polars streaming, duckdb)" in capsys.readouterr().out
    rc = q1.main(args)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "results identical (polars, polars streaming, duckdb, riverbed)" in out
    assert "riverbed/duckdb" in out


def test_q2_end_to_end(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--events", str(N), "--repeat", "1", "--data-dir", str(data_dir)]
    rc = q2.main(args)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "results identical (polars reference, riverbed stream)" in out
    assert "peak RSS" in out


@pytest.mark.parametrize("broken", [False, True])
def test_q2_harness_with_a_stand_in_for_riverbed(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    broken: bool,
) -> None:
    """The reporting and checking path of q2, whether or not the stream executor exists."""

    def fake_run(rb: object, path: Path, home: Path, options: dict[str, object]):
        frame = q2.run_reference(path)
        return (frame.head(frame.height - 1) if broken else frame), q2.count_late(path)[1]

    monkeypatch.setattr(q2, "load_riverbed", lambda: (object(), ""))
    monkeypatch.setattr(q2, "run_riverbed", fake_run)
    args = ["--events", str(N), "--repeat", "2", "--data-dir", str(data_dir), "--in-process"]
    rc = q2.main(args)
    out = capsys.readouterr().out
    assert "riverbed/polars" in out
    assert "peak RSS" in out
    if broken:
        assert rc == 1
        assert "MISMATCH" in out
    else:
        assert rc == 0, out
        assert "results identical" in out
        assert "note:" not in out
