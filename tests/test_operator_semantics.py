"""Regression tests for the semantics fixed with the operator layer (issue: one operator
layer). Each failed before the fix."""

from __future__ import annotations

import datetime as dt
import pickle
from typing import Any

import polars as pl
import pytest

import riverbed as rb
from riverbed import _errors
from riverbed.testing import ResultsDiffer, assert_same_results, collect, source

SIZES = [1, 2, 3, 1000]


def run(p: rb.Pipeline, mode: str, size: int | None = None) -> rb.RunResult:
    if mode == "batch":
        return p.run("batch", progress=False)
    return p.run("stream", progress=False, max_batch_rows=size or 10**9)


# -- null window keys ------------------------------------------------------------------------
@pytest.mark.parametrize("emit", ["final", "update"])
def test_null_window_keys_form_one_group(emit: str) -> None:
    ev = pl.DataFrame({"k": [None, "a", None, None], "ts": [0, 1, 2, 3], "v": [1, 2, 3, 4]})
    results = []
    for mode, size in [("batch", None), *(("stream", s) for s in SIZES)]:
        p = rb.Pipeline("nullkeys")
        out = collect()
        src = source([ev], name="ev")
        p.read(src, event_time="ts").window(rb.tumbling("1s"), by="k", emit=emit).agg(  # type: ignore[arg-type]
            n=rb.count(), s=rb.sum("v")
        ).write(out)
        run(p, mode, size)
        got = out.frame()
        if emit == "update" and mode == "stream":
            got = got.unique(subset=["k", "window_start"], keep="last", maintain_order=True)
        results.append(sorted(got.select("k", "n", "s").rows(), key=str))
    assert all(r == [("a", 1, 2), (None, 3, 8)] or r == [(None, 3, 8), ("a", 1, 2)] for r in results), results


# -- dedupe ----------------------------------------------------------------------------------
def test_dedupe_never_lets_a_duplicate_through_behind_the_watermark() -> None:
    ev = pl.DataFrame({"k": ["a", "b", "a"], "ts": [0, 20, 5]})
    for size in SIZES:
        p = rb.Pipeline("dd")
        out, late = collect(), collect()
        d = p.read(source([ev]), event_time="ts").dedupe("k", within=10)
        d.write(out)
        d.late().write(late)
        result = run(p, "stream", size)
        assert sorted(out.frame().rows()) == [("a", 0), ("b", 20)], size
        assert late.frame().rows() == [("a", 5)]
        assert sum(result.late.values()) == 1


def test_dedupe_null_keys_match_across_micro_batches() -> None:
    ev = pl.DataFrame({"k": [None, None, None], "ts": [0, 1, 50]}, schema={"k": pl.String, "ts": pl.Int64})
    for size in SIZES:
        p = rb.Pipeline("ddn")
        out = collect()
        p.read(source([ev]), event_time="ts", watermark=rb.watermark(max_delay=100)).dedupe(
            "k", within=10
        ).write(out)
        run(p, "stream", size)
        assert out.frame()["ts"].to_list() == [0, 50], size


# -- window bound types ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [pl.Int16, pl.Int32, pl.UInt64])
def test_integer_event_times_give_int64_bounds_in_both_modes(dtype: pl.DataType) -> None:
    ev = pl.DataFrame({"ts": [0, 1500, 32_000]}, schema={"ts": dtype})
    for mode in ("batch", "stream"):
        for spec in (rb.tumbling("1m"), rb.tumbling("1d", offset="1h"), rb.sliding("10s", every="5s")):
            p = rb.Pipeline("ints")
            out = collect()
            p.read(source([ev]), event_time="ts").window(spec).agg(n=rb.count()).write(out)
            assert p.validate()[p.plan().nodes[1].id]["window_start"] == pl.Int64  # type: ignore[index]
            run(p, mode)
            assert out.frame().schema["window_start"] == pl.Int64, mode
            assert out.frame().schema["window_end"] == pl.Int64, mode


def test_date_event_time_gives_datetime_bounds_in_both_modes() -> None:
    ev = pl.DataFrame({"d": [dt.date(2024, 1, 1), dt.date(2024, 1, 2)]})
    schemas = []
    for mode in ("batch", "stream"):
        p = rb.Pipeline("date")
        out = collect()
        p.read(source([ev]), event_time="d").window(rb.tumbling("1d")).agg(n=rb.count()).write(out)
        run(p, mode)
        schemas.append(out.frame().schema["window_start"])
    assert schemas == [pl.Datetime("us"), pl.Datetime("us")]


def test_sub_millisecond_event_times_are_not_truncated() -> None:
    base = dt.datetime(2024, 1, 1)
    ts = [base + dt.timedelta(microseconds=us) for us in (100, 300, 200)]  # one ms, out of order
    ev = pl.DataFrame({"ts": ts, "v": [1, 3, 2]})
    for mode, size in [("batch", None), ("stream", 1)]:
        p = rb.Pipeline("us")
        out = collect()
        w = p.read(source([ev]), event_time="ts", watermark=rb.watermark(max_delay=0))
        w.window(rb.tumbling("1s")).agg(f=rb.first("v"), l=rb.last("v")).write(out)
        result = run(p, mode, size)
        assert out.frame().select("f", "l").rows() == [(1, 3)], mode
        assert result.total_late == 0


# -- map_batches ---------------------------------------------------------------------------------
def test_map_batches_sees_the_same_columns_in_both_modes() -> None:
    seen: list[list[str]] = []

    def spy(df: pl.DataFrame) -> pl.DataFrame:
        seen.append(df.columns)
        return df

    ev = pl.DataFrame({"ts": [0, 1, 2], "v": [1, 2, 3]})
    for mode in ("batch", "stream"):
        p = rb.Pipeline("cols")
        p.read(source([ev]), event_time="ts").map_batches(spy).write(collect())
        run(p, mode)
    assert {tuple(c) for c in seen if c} == {("ts", "v")}


def test_map_batches_that_reorders_rows_keeps_watermarks_with_their_rows() -> None:
    # ts 100 arrives first and pushes the watermark; ts 5 arrives second and is late for
    # [0, 10). A function that reverses the rows must not make ts 5 on time.
    ev = pl.DataFrame({"ts": [100, 5], "v": [1, 2]})
    for size in (1, 1000):
        p = rb.Pipeline("rev")
        out = collect()
        s = p.read(source([ev]), event_time="ts").map_batches(lambda df: df.reverse())
        s.window(rb.tumbling(10)).agg(n=rb.count()).write(out)
        result = run(p, "stream", size)
        assert result.total_late == 1, size
        assert out.frame()["window_start"].to_list() == [100]


# -- sliding windows -------------------------------------------------------------------------------
def test_sliding_windows_count_events_late_for_some_of_their_windows() -> None:
    ev = pl.DataFrame({"ts": [0, 12, 6]})  # 6 is late for [0, 10) but on time for [5, 15)
    p = rb.Pipeline("slide")
    out = collect()
    p.read(source([ev]), event_time="ts").window(rb.sliding(10, every=5)).agg(n=rb.count()).write(out)
    result = run(p, "stream", 1)
    assert result.total_late == 0
    assert result.stats["late_assignments"] == {p.plan().nodes[1].id: 1}
    with pytest.raises(ResultsDiffer, match="late for some of their windows"):
        assert_same_results(p, batch_sizes=[1])


# -- several partitions ------------------------------------------------------------------------------
def test_a_partition_that_ends_holds_the_watermark_until_its_last_row() -> None:
    a, b = pl.DataFrame({"ts": [5000, 0]}), pl.DataFrame({"ts": [10]})
    lates = set()
    for size in SIZES:
        p = rb.Pipeline("parts")
        out = collect()
        src = source(sequence=[(0, a), (1, b)])
        p.read(src, event_time="ts").window(rb.tumbling(1000)).agg(n=rb.count()).write(out)
        lates.add(run(p, "stream", size).total_late)
    # partition 1 has seen nothing while partition 0 delivers 5000 and 0: nothing is late
    assert lates == {0}


def test_pinned_interleaving_gives_the_same_results_at_any_batch_size() -> None:
    p0 = [pl.DataFrame({"k": [i % 2], "ts": [t]}) for i, t in enumerate([0, 40, 15, 90, 30])]
    p1 = [pl.DataFrame({"k": [i % 2], "ts": [t]}) for i, t in enumerate([10, 60, 5, 70])]
    seq = [
        (0, p0[0]),
        (1, p1[0]),
        (0, p0[1]),
        (0, p0[2]),
        (1, p1[1]),
        (1, p1[2]),
        (0, p0[3]),
        (1, p1[3]),
        (0, p0[4]),
    ]
    results = set()
    for size in SIZES:
        p = rb.Pipeline("pin")
        out = collect()
        p.read(source(sequence=seq), event_time="ts").window(rb.tumbling(20), by="k").agg(n=rb.count()).write(
            out
        )
        r = run(p, "stream", size)
        results.add((r.total_late, tuple(sorted(out.frame().rows()))))
    assert len(results) == 1, results


def test_first_and_last_ties_across_partitions_agree_in_both_modes() -> None:
    a = pl.DataFrame({"ts": [0, 1], "v": [5, 1]})
    b = pl.DataFrame({"ts": [0, 1], "v": [3, 9]})
    p = rb.Pipeline("ties")
    p.read(source(partitions=[[a], [b]]), event_time="ts", watermark=rb.watermark(max_delay=10)).window(
        rb.tumbling(1000)
    ).agg(f=rb.first("v"), l=rb.last("v")).write(collect())
    out = assert_same_results(p, batch_sizes=[1, 2, None])
    assert out[p.plan().writes()[0].id].select("f", "l").rows() == [(3, 9)]


# -- sessions ------------------------------------------------------------------------------------------
def test_session_event_tied_with_the_newest_is_not_late() -> None:
    ev = pl.DataFrame({"ts": [0, 100, 100]})
    p = rb.Pipeline("tie")
    out = collect()
    p.read(source([ev]), event_time="ts").window(rb.session(10)).agg(n=rb.count()).write(out)
    result = run(p, "stream", 1)
    assert result.total_late == 0
    assert out.frame()["n"].to_list() == [1, 2]


def test_session_event_may_join_an_open_session_behind_the_watermark() -> None:
    # gap 10 s: a@0 (session [0,10) closes at wm 10), a@30 pushes wm to 30, a@25 joins [30,40)
    ev = pl.DataFrame({"k": ["a", "a", "a", "a"], "ts": [0, 30_000, 25_000, 5_000]})
    for size in SIZES:
        p = rb.Pipeline("sess")
        out, late = collect(), collect()
        w = p.read(source([ev]), event_time="ts").window(rb.session("10s"), by="k").agg(n=rb.count())
        w.write(out)
        w.late().write(late)
        run(p, "stream", size)
        assert out.frame().select("window_start", "window_end", "n").rows() == [
            (0, 10_000, 1),
            (25_000, 40_000, 2),
        ], size
        assert late.frame()["ts"].to_list() == [5_000]


# -- aggregates ----------------------------------------------------------------------------------------
def test_sum_over_only_nulls_is_zero_in_both_modes() -> None:
    ev = pl.DataFrame({"ts": [0, 1], "v": [None, None]}, schema={"ts": pl.Int64, "v": pl.Int64})
    for mode in ("batch", "stream"):
        p = rb.Pipeline("nulls")
        out = collect()
        p.read(source([ev]), event_time="ts").window(rb.tumbling(10)).agg(
            s=rb.sum("v"), m=rb.mean("v")
        ).write(out)
        run(p, mode)
        assert out.frame().select("s", "m").rows() == [(0, None)], mode


# -- stable ids ----------------------------------------------------------------------------------------
def _stateful_ids(extra_filter: bool) -> list[str]:
    p = rb.Pipeline("ids")
    s = p.read(source([pl.DataFrame({"k": [1], "ts": [0], "v": [1]})]), event_time="ts")
    if extra_filter:
        s = s.filter(pl.col("v") > 0).with_columns(w=pl.col("v") * 2)
    w = s.dedupe("k", within="1s").window(rb.tumbling("1m"), by="k").agg(n=rb.count())
    w.write(rb.sink("out.parquet"))
    return [n.id for n in p.plan().nodes if n.kind in ("window", "dedupe", "write", "read")]


def test_inserting_a_stateless_step_upstream_keeps_stateful_ids() -> None:
    assert _stateful_ids(False) == _stateful_ids(True)


def test_two_steps_with_the_same_id_are_refused_with_a_hint() -> None:
    p = rb.Pipeline("dup")
    s = p.read(source([pl.DataFrame({"x": [1]})]))
    s.filter(pl.col("x") > 0).write(collect())
    with pytest.raises(rb.PlanError, match="name="):
        s.filter(pl.col("x") > 0)
    s.filter(pl.col("x") > 0, name="second").write(collect())


def test_named_steps_use_their_name() -> None:
    p = rb.Pipeline("named")
    w = p.read(source([pl.DataFrame({"ts": [0]})]), event_time="ts", name="events")
    w.window(rb.tumbling("1s"), name="per_second").agg(n=rb.count()).write(collect(), name="out")
    assert [n.id for n in p.plan().nodes] == ["events", "per_second", "out"]


# -- capabilities -------------------------------------------------------------------------------------
def test_update_emit_into_a_sink_that_cannot_upsert_is_a_plan_error(tmp_path: Any) -> None:
    p = rb.Pipeline("upd")
    p.read(source([pl.DataFrame({"ts": [0]})]), event_time="ts").window(rb.tumbling("1s"), emit="update").agg(
        n=rb.count()
    ).write(rb.sink(str(tmp_path / "out.jsonl")))
    with pytest.raises(rb.PlanError, match="cannot replace rows") as err:
        p.run("stream", progress=False, home=tmp_path)
    assert "emit='final'" in str(err.value) and "write_" in str(err.value)


def test_an_unbounded_source_in_batch_mode_is_a_plan_error(tmp_path: Any) -> None:
    (tmp_path / "in.jsonl").write_text('{"ts": 0}\n')
    p = rb.Pipeline("tail")
    p.read(rb.files(str(tmp_path / "in.jsonl"), tail=True), event_time="ts").write(collect())
    with pytest.raises(rb.PlanError, match="never ends"):
        p.run("batch", progress=False, home=tmp_path)


# -- errors ------------------------------------------------------------------------------------------
ERRORS = [
    _errors.RiverbedError("x"),
    _errors.PlanError("x"),
    _errors.ConfigError("x"),
    _errors.SourceError("x"),
    _errors.SinkError("x"),
    _errors.TransientError("x"),
    _errors.SourceUnavailable("x"),
    _errors.SinkUnavailable("x"),
    _errors.UserFunctionError("x"),
    _errors.RecordError("bad", source="f.csv", position="line 3", field="ts", raw="a,b"),
    _errors.MissingExtraError("psycopg", "postgres"),
]


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: type(e).__name__)
def test_every_error_round_trips_through_pickle(err: Exception) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.__dict__ == err.__dict__


def test_transient_and_terminal_are_mixins() -> None:
    assert isinstance(_errors.SinkUnavailable("x"), _errors.SinkError)
    assert isinstance(_errors.SinkUnavailable("x"), _errors.Transient)
    assert isinstance(_errors.RecordError("x", source="s", position="p"), _errors.Terminal)
    assert not isinstance(_errors.SinkError("x"), _errors.Transient)
