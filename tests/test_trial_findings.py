"""Regression tests for defects found by trying riverbed as a new user (each failed before)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import polars as pl
import pytest

import riverbed as rb
from riverbed.testing import collect, source


def test_sqlite_stores_nested_values_as_json(tmp_path: Path) -> None:
    p = rb.Pipeline("nested")
    ev = pl.DataFrame({"ts": [0, 1], "tags": [["a", "b"], None], "s": [{"x": 1}, {"x": 2}]})
    p.read(source([ev]), event_time="ts").write(f"{tmp_path / 'o.sqlite'}#t")
    p.run(progress=False, home=tmp_path)
    rows = sqlite3.connect(tmp_path / "o.sqlite").execute("SELECT tags, s FROM t ORDER BY ts").fetchall()
    assert rows == [('["a","b"]', '{"x":1}'), (None, '{"x":2}')]


def test_a_filter_on_aggregates_after_an_update_window_is_refused() -> None:
    p = rb.Pipeline("uf")
    w = p.read(source([pl.DataFrame({"k": [1], "ts": [0]})]), event_time="ts").window(
        rb.tumbling("1m"), by="k", emit="update"
    )
    w.agg(n=rb.count()).filter(pl.col("n") < 2).write(collect())
    with pytest.raises(rb.PlanError, match="filters the rows of an emit='update'"):
        p.validate()
    p2 = rb.Pipeline("uf2")  # a filter on the key is fine: a window's key never changes
    w2 = p2.read(source([pl.DataFrame({"k": [1], "ts": [0]})]), event_time="ts")
    w2.window(rb.tumbling("1m"), by="k", emit="update").agg(n=rb.count()).filter(pl.col("k") > 0).write(
        collect()
    )
    p2.validate()


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_a_null_event_time_fails_under_on_error_fail_in_both_modes(mode: str, tmp_path: Path) -> None:
    pl.DataFrame({"ts": [0, None, 1000], "v": [1, 2, 3]}).write_parquet(tmp_path / "n.parquet")
    p = rb.Pipeline("nt")
    p.read(str(tmp_path / "n.parquet"), event_time="ts").write(collect())
    with pytest.raises(rb.RecordError, match="ts"):
        p.run(mode, progress=False, home=tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", ["full", "outer", "cross", "right"])
def test_lookup_takes_left_or_inner_only(how: str) -> None:
    p = rb.Pipeline("lk")
    s = p.read(source([pl.DataFrame({"k": [1]})]))
    with pytest.raises(rb.PlanError, match=r"'left'.*'inner'"):
        s.lookup(source([pl.DataFrame({"k": [1], "x": [2]})], name="t"), on="k", how=how)  # type: ignore[arg-type]


def test_a_broken_user_aggregate_is_a_plan_error_before_running() -> None:
    bad = rb.aggregate(
        partial={"s": pl.col("v").sum()}, merge=lambda s: {"z": s["s"].sum()}, finish=lambda s: s["s"]
    )
    p = rb.Pipeline("ua")
    p.read(source([pl.DataFrame({"ts": [0], "v": [1]})]), event_time="ts").window(rb.tumbling(10)).agg(
        x=bad
    ).write(collect())
    with pytest.raises(rb.PlanError, match="does not work"):
        p.validate()


def test_watermark_takes_a_duration_and_refuses_other_things() -> None:
    p = rb.Pipeline("wm")
    s = p.read(source([pl.DataFrame({"ts": [0]})]), event_time="ts", watermark="10s")
    assert p.plan().node(s.node_id).watermark == rb.watermark(max_delay="10s")  # type: ignore[attr-defined]
    with pytest.raises(rb.PlanError, match="watermark="):
        p.read(source([pl.DataFrame({"ts": [1]})]), event_time="ts", watermark=[1])  # type: ignore[arg-type]


def test_window_arguments_are_checked() -> None:
    p = rb.Pipeline("args")
    s = p.read(source([pl.DataFrame({"k": [1], "ts": [0]})]), event_time="ts")
    with pytest.raises(rb.PlanError, match="window spec"):
        s.window("1m")  # type: ignore[arg-type]
    with pytest.raises(rb.PlanError, match="column names"):
        s.window(rb.tumbling("1m"), by=pl.col("k"))  # type: ignore[arg-type]
    with pytest.raises(rb.PlanError, match="already an output column"):
        s.window(rb.tumbling("1m"), by="k").agg(window_start=rb.count())


def test_max_batch_rows_none_means_no_row_limit() -> None:
    p = rb.Pipeline("nolimit")
    out = collect()
    p.read(source([pl.DataFrame({"ts": [0, 1]})]), event_time="ts").write(out)
    p.run("stream", progress=False, max_batch_rows=None)
    assert out.frame().height == 2


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_parquet_files_whose_types_differ_name_the_file(mode: str, tmp_path: Path) -> None:
    (tmp_path / "g").mkdir()
    pl.DataFrame({"k": [1, 2], "ts": [0, 1]}).write_parquet(tmp_path / "g" / "a.parquet")
    pl.DataFrame({"k": ["x"], "ts": [2]}).write_parquet(tmp_path / "g" / "b.parquet")
    p = rb.Pipeline("mix")
    p.read(str(tmp_path / "g" / "*.parquet"), event_time="ts").write(collect())
    with pytest.raises(rb.SourceError, match=r"b\.parquet: column 'k' is String here but Int64"):
        p.run(mode, progress=False, home=tmp_path)  # type: ignore[arg-type]
