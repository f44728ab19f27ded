"""The ``riverbed`` CLI: run, plan, demo, version; the examples end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from riverbed.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DAILY = str(EXAMPLES / "daily_revenue.py")
MINUTES = str(EXAMPLES / "minute_windows.py")
DAY_MS = 86_400_000
START_MS = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS + DAY_MS - 300_000  # 5 min before midnight


def sales(n: int = 4_000, seed: int = 3) -> pl.DataFrame:
    """Sales in arrival order: event time a little behind arrival, a few stragglers minutes late."""
    rng = np.random.default_rng(seed)
    arrival = START_MS + np.arange(n, dtype=np.int64) * 150  # 10 minutes, across midnight
    delay = rng.integers(0, 5_000, n)
    stragglers = rng.random(n) < 0.01
    delay[stragglers] = rng.integers(70_000, 120_000, stragglers.sum())
    return pl.DataFrame(
        {
            "event_id": np.arange(n, dtype=np.int64),
            "ts_ms": arrival - delay,
            "store_id": rng.integers(1, 20, n).astype(np.int32),
            "amount": np.round(rng.gamma(2.0, 10.0, n), 2) * np.where(rng.random(n) < 0.02, -1, 1),
        }
    )


def reference(df: pl.DataFrame, size_ms: int) -> pl.DataFrame:
    """Windowed revenue computed directly with Polars, for comparison."""
    return (
        df.with_columns(window_start=pl.col("ts_ms") // size_ms * size_ms)
        .group_by("store_id", "window_start")
        .agg(revenue=pl.col("amount").sum(), orders=pl.len().cast(pl.Int64))
        .with_columns(window_end=pl.col("window_start") + size_ms)
        .select("store_id", "window_start", "window_end", "revenue", "orders")
        .sort("store_id", "window_start")
    )


def same_rows(got: pl.DataFrame, expected: pl.DataFrame) -> None:
    assert got.columns == ["store_id", "window_start", "window_end", "revenue", "orders"]
    got = got.sort("store_id", "window_start")
    assert (
        got.select("store_id", "window_start", "window_end", "orders").rows()
        == expected.select("store_id", "window_start", "window_end", "orders").rows()
    )
    assert got["revenue"].to_list() == pytest.approx(expected["revenue"].to_list())


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, pl.DataFrame]:
    df = sales()
    path = tmp_path / "sales.parquet"
    df.write_parquet(path)
    return path, df


def invoke(runner: CliRunner, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_help(runner: CliRunner) -> None:
    code, out = invoke(runner, "--help")
    assert code == 0
    for command in ("run", "plan", "demo", "version"):
        assert command in out
    code, out = invoke(runner, "run", "--help")
    assert code == 0 and "--param" in out and "--mode" in out


def test_version(runner: CliRunner) -> None:
    code, out = invoke(runner, "version")
    assert code == 0 and "riverbed 0." in out


def test_run_daily_revenue_to_parquet(
    runner: CliRunner, data: tuple[Path, pl.DataFrame], tmp_path: Path
) -> None:
    path, df = data
    out = tmp_path / "daily.parquet"
    code, text = invoke(
        runner, "run", DAILY, "--mode", "batch", "-p", f"source={path}", "-p", f"sink={out}", "--no-progress"
    )
    assert code == 0, text
    assert "4,000 rows read" in text
    same_rows(pl.read_parquet(out), reference(df, DAY_MS))


def test_run_minute_windows_batch_has_no_late_events(
    runner: CliRunner, data: tuple[Path, pl.DataFrame], tmp_path: Path
) -> None:
    path, df = data
    code, text = invoke(
        runner,
        "run",
        MINUTES,
        "-p",
        f"source={path}",
        "-p",
        f"sink={tmp_path / 'w.duckdb'}#minutes",
        "-p",
        f"late={tmp_path / 'late.parquet'}",
        "--home",
        str(tmp_path / "home"),
    )
    assert code == 0, text
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        got = con.sql("SELECT * FROM minutes").pl()
    finally:
        con.close()
    same_rows(got, reference(df, 60_000))
    assert pl.read_parquet(tmp_path / "late.parquet").height == 0


def test_run_minute_windows_stream_sends_late_events_to_late(
    runner: CliRunner, data: tuple[Path, pl.DataFrame], tmp_path: Path
) -> None:
    path, df = data
    out, late = tmp_path / "minutes.parquet", tmp_path / "late.parquet"
    code, text = invoke(
        runner,
        "run",
        MINUTES,
        "--mode",
        "stream",
        "-p",
        f"source={path}",
        "-p",
        f"sink={out}",
        "-p",
        f"late={late}",
        "--home",
        str(tmp_path / "home"),
        "--max-batch-rows",
        "500",
        "--no-progress",
    )
    assert code == 0, text
    windows, dropped = pl.read_parquet(out), pl.read_parquet(late)
    # every event is either counted in a window or reported late, never both, never lost
    assert windows["orders"].sum() + dropped.height == df.height
    assert dropped.height > 0
    assert dropped.columns == df.columns
    # windows equal the reference over the on-time events
    on_time = df.join(dropped.select("event_id"), on="event_id", how="anti")
    same_rows(windows, reference(on_time, 60_000))
    # a late event is behind the watermark: its window ended 10 s before an earlier arrival
    max_seen = df.with_columns(seen=pl.col("ts_ms").cum_max()).select("event_id", "seen")
    late_check = dropped.join(max_seen, on="event_id").with_columns(
        end=pl.col("ts_ms") // 60_000 * 60_000 + 60_000
    )
    assert (late_check["end"] <= late_check["seen"] - 10_000).all()


def test_run_errors(runner: CliRunner, data: tuple[Path, pl.DataFrame], tmp_path: Path) -> None:
    path, _ = data
    cases = [
        ((DAILY,), "needs -p source=... -p sink=..."),
        ((DAILY, "-p", f"source={path}"), "needs -p sink="),
        ((DAILY, "-p", f"source={path}", "-p", "sink=x.parquet", "-p", "day=1"), "takes: source, sink"),
        ((DAILY, "-p", "source"), "NAME=VALUE"),
        ((DAILY, "-p", f"source={tmp_path / 'nope.parquet'}", "-p", "sink=x.parquet"), "sales.parquet"),
        ((DAILY, "--mode", "fast", "-p", f"source={path}", "-p", "sink=x.parquet"), "batch or stream"),
        ((str(tmp_path / "missing.py"),), "does not exist"),
    ]
    for args, message in cases:
        code, text = invoke(runner, "run", *args)
        assert code == 1, (args, text)
        assert message in text.replace("\n", ""), (args, text)
        assert "Traceback" not in text


def test_plan_text_and_json(runner: CliRunner, data: tuple[Path, pl.DataFrame], tmp_path: Path) -> None:
    path, _ = data
    args = ("-p", f"source={path}", "-p", f"sink={tmp_path / 'm.parquet'}", "-p", "late=console")
    code, text = invoke(runner, "plan", MINUTES, *args)
    assert code == 0, text
    assert "valid" in text and "tumbling(1m)" in text and "revenue: Float64" in text
    assert "event_id: Int64" in text  # the late step has the input's columns
    code, text = invoke(runner, "plan", MINUTES, *args, "--json")
    assert code == 0 and '"pipeline": "minute_windows"' in text
    assert not (tmp_path / "m.parquet").exists()  # plan runs nothing
    code, text = invoke(runner, "plan", DAILY, "-p", f"source={path}", "-p", "sink=x.parquet", "-p", "x=1")
    assert code == 1


def test_pipeline_object_and_file_colon_name(
    runner: CliRunner, data: tuple[Path, pl.DataFrame], tmp_path: Path
) -> None:
    path, df = data
    module = tmp_path / "jobs.py"
    module.write_text(
        "import polars as pl\nimport riverbed as rb\n\n"
        "refunds = rb.Pipeline('refunds')\n"
        f"refunds.read({str(path)!r}).filter(pl.col('amount') < 0).write({str(tmp_path / 'r.csv')!r})\n\n"
        "def big(source: str, threshold: float, sink: str = 'console') -> rb.Pipeline:\n"
        "    p = rb.Pipeline('big')\n"
        "    p.read(source).filter(pl.col('amount') > threshold).write(sink)\n"
        "    return p\n"
    )
    code, text = invoke(runner, "run", str(module))  # the module-level pipeline
    assert code == 0, text
    assert pl.read_csv(tmp_path / "r.csv").height == df.filter(pl.col("amount") < 0).height
    code, text = invoke(
        runner,
        "run",
        f"{module}:big",
        "-p",
        f"source={path}",
        "-p",
        "threshold=80.5",
        "-p",
        f"sink={tmp_path / 'b.parquet'}",
    )
    assert code == 0, text
    assert pl.read_parquet(tmp_path / "b.parquet").height == df.filter(pl.col("amount") > 80.5).height
    code, text = invoke(runner, "run", f"{module}:big", "-p", f"source={path}", "-p", "threshold=high")
    assert code == 1 and "expected float" in text
    code, text = invoke(runner, "run", str(module), "-p", "x=1")
    assert code == 1 and "pipeline object" in text


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RIVERBED_HOME"] = str(tmp_path / "home")
    return env


def test_demo_and_run_in_a_subprocess(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("riverbed")  # the console script of this install
    assert script.exists(), f"no riverbed script next to {sys.executable}: pip install -e ."
    riverbed = [str(script)]
    demo = subprocess.run(
        [*riverbed, "demo", "--dir", str(tmp_path / "demo"), "--events", "50000", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(tmp_path),
        cwd=tmp_path,
    )
    assert demo.returncode == 0, demo.stderr
    assert "Top 10 stores" in demo.stdout and "50,000 rows read" in demo.stdout
    con = duckdb.connect(str(tmp_path / "demo" / "warehouse.duckdb"), read_only=True)
    try:
        assert con.sql("SELECT count(*) FROM daily_store_revenue").fetchall()[0][0] > 0
    finally:
        con.close()

    df = sales()
    (tmp_path / "in").mkdir()
    df.head(2_000).write_parquet(tmp_path / "in" / "a.parquet")
    df.tail(2_000).write_parquet(tmp_path / "in" / "b.parquet")
    warehouse = tmp_path / "out" / "warehouse.duckdb"
    run = subprocess.run(
        [*riverbed, "run", DAILY, "-p", f"source={tmp_path / 'in'}/*.parquet", "-p", f"sink={warehouse}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(tmp_path),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "4,000 rows read" in run.stderr
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        got = con.sql("SELECT * FROM daily_revenue").pl()  # no #TABLE: the pipeline's name
    finally:
        con.close()
    same_rows(got, reference(df, DAY_MS))
