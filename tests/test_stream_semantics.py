"""Stream-mode semantics against the pure-Python reference model (hypothesis).

(1) stream == batch on the same events when nothing is late, for every window kind and
aggregate; (2) identical output for micro-batch sizes 1, 2, 7, 1000 and unbounded;
(3) windows emitted + late events account for every input event exactly once.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import riverbed as rb
from riverbed.testing import assert_same_results, collect, source
from tests.reference_model import run_reference

AGGS: dict[str, tuple[str, str | None]] = {
    "n": ("count", None),
    "nv": ("count", "v"),
    "total": ("sum", "v"),
    "lo": ("min", "v"),
    "hi": ("max", "v"),
    "avg": ("mean", "v"),
    "first_v": ("first", "v"),
    "last_v": ("last", "v"),
    "distinct_v": ("count_distinct", "v"),
}
RB_AGGS = {
    name: (getattr(rb, kind)(col) if col else getattr(rb, kind)()) for name, (kind, col) in AGGS.items()
}
WINDOWS = {
    "tumbling": (rb.tumbling(10), ("tumbling", 10, 10)),
    "sliding": (rb.sliding(10, every=5), ("sliding", 10, 5)),
    "session": (rb.session(4), ("session", 4, 0)),
}
SCHEMA = {"k": pl.Int64, "ts": pl.Int64, "v": pl.Int64}
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def event_streams(draw: Any, max_jitter: int = 12) -> list[dict[str, Any]]:
    """Events in arrival order: time mostly moves forward, some arrive out of order."""
    n = draw(st.integers(1, 60))
    clock = 0
    events = []
    for _ in range(n):
        clock += draw(st.integers(0, 4))
        jitter = draw(st.integers(0, max_jitter))
        events.append(
            {
                "k": draw(st.integers(0, 2)),
                "ts": clock - jitter,
                "v": draw(st.one_of(st.none(), st.integers(-5, 5))),
            }
        )
    return events


def build(
    events: list[dict[str, Any]], window: str, *, delay: int, lateness: int = 0, emit: str = "final"
) -> tuple[rb.Pipeline, Any, Any]:
    p = rb.Pipeline("semantics")
    frame = pl.DataFrame(events, schema=SCHEMA)
    win = (
        p.read(source([frame]), event_time="ts", watermark=rb.watermark(max_delay=delay))
        .window(WINDOWS[window][0], by="k", allowed_lateness=lateness, emit=emit)  # type: ignore[arg-type]
        .agg(**RB_AGGS)
    )
    out, late = collect("out"), collect("late")
    win.write(out)
    win.late().write(late)
    return p, out, late


def canonical(df: pl.DataFrame) -> pl.DataFrame:
    cols = ["k", "window_start", "window_end", *AGGS]
    if df.height == 0:
        return pl.DataFrame(schema={c: pl.Int64 for c in cols}).with_columns(pl.col("avg").cast(pl.Float64))
    return df.select(cols).sort("k", "window_start")


def reference_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = {
        "k": pl.Int64,
        "window_start": pl.Int64,
        "window_end": pl.Int64,
        **{n: (pl.Float64 if n == "avg" else pl.Int64) for n in AGGS},
    }
    return canonical(pl.DataFrame(rows, schema=schema))


@pytest.mark.parametrize("window", list(WINDOWS))
@SETTINGS
@given(
    events=event_streams(),
    delay=st.integers(0, 15),
    lateness=st.integers(0, 6),
    size=st.sampled_from([1, 2, 7, 1000, None]),
)
def test_stream_matches_reference_model(
    window: str, events: list[dict[str, Any]], delay: int, lateness: int, size: int | None
) -> None:
    p, out, late = build(events, window, delay=delay, lateness=lateness)
    p.run("stream", progress=False, max_batch_rows=size or 10**9)
    rows, late_ref = run_reference(
        events, window=WINDOWS[window][1], by=["k"], aggs=AGGS, max_delay=delay, lateness=lateness
    )
    assert_frame_equal(canonical(out.frame()), reference_frame(rows), check_exact=False)
    got_late = late.frame()
    assert got_late.height == len(late_ref)
    if late_ref:
        assert got_late.select("k", "ts", "v").rows() == [(e["k"], e["ts"], e["v"]) for e in late_ref]


@pytest.mark.parametrize("window", list(WINDOWS))
@SETTINGS
@given(events=event_streams(max_jitter=12))
def test_stream_equals_batch_when_nothing_is_late(window: str, events: list[dict[str, Any]]) -> None:
    # a max_delay larger than any disorder makes every event on time
    rows, late = run_reference(events, window=WINDOWS[window][1], by=["k"], aggs=AGGS, max_delay=20)
    assert not late
    p, _, _ = build(events, window, delay=20)
    outputs = assert_same_results(p, batch_sizes=[1, 7, None])
    assert_frame_equal(canonical(outputs[next(iter(outputs))]), reference_frame(rows), check_exact=False)


@pytest.mark.parametrize("window", list(WINDOWS))
@SETTINGS
@given(events=event_streams(), delay=st.integers(0, 6))
def test_output_independent_of_micro_batch_size(
    window: str, events: list[dict[str, Any]], delay: int
) -> None:
    results = []
    for size in (1, 2, 7, 1000, None):
        p, out, late = build(events, window, delay=delay)
        p.run("stream", progress=False, max_batch_rows=size or 10**9)
        results.append((canonical(out.frame()), late.frame().select("k", "ts", "v").rows()))
    for frame, late_rows in results[1:]:
        assert_frame_equal(frame, results[0][0], check_exact=False)
        assert late_rows == results[0][1]


@SETTINGS
@given(events=event_streams(), delay=st.integers(0, 6), size=st.sampled_from([1, 3, None]))
def test_every_event_counted_once(events: list[dict[str, Any]], delay: int, size: int | None) -> None:
    for window in ("tumbling", "session"):
        p, out, late = build(events, window, delay=delay)
        result = p.run("stream", progress=False, max_batch_rows=size or 10**9)
        counted = out.frame()["n"].sum() if out.frame().height else 0
        assert counted + late.frame().height == len(events)
        assert result.total_late == late.frame().height
        assert result.total_read == len(events)


@SETTINGS
@given(events=event_streams(), delay=st.integers(0, 6))
def test_update_mode_converges_to_final(events: list[dict[str, Any]], delay: int) -> None:
    p_final, out_final, _ = build(events, "tumbling", delay=delay)
    p_final.run("stream", progress=False, max_batch_rows=3)
    p_upd, out_upd, _ = build(events, "tumbling", delay=delay, emit="update")
    p_upd.run("stream", progress=False, max_batch_rows=3)
    latest = out_upd.frame()
    if latest.height:
        latest = latest.unique(subset=["k", "window_start"], keep="last", maintain_order=True)
    assert_frame_equal(canonical(latest), canonical(out_final.frame()), check_exact=False)


@SETTINGS
@given(events=event_streams(), delay=st.integers(0, 6))
def test_user_functions_keep_lateness_exact(events: list[dict[str, Any]], delay: int) -> None:
    """map_batches (row-wise, dropping rows) and map_rows before a window give the same
    windows and late events as the equivalent filter step, at every micro-batch size."""
    for size in (1, 3, None):
        results = []
        for variant in ("filter", "map_batches", "map_rows"):
            p = rb.Pipeline("fns")
            s = p.read(
                source([pl.DataFrame(events, schema=SCHEMA)]),
                event_time="ts",
                watermark=rb.watermark(max_delay=delay),
            )
            drop = (pl.col("v") % 3 == 0).fill_null(False)
            if variant == "filter":
                s = s.filter(~drop)
            elif variant == "map_batches":
                s = s.map_batches(lambda df, d=drop: df.filter(~d))
            else:
                s = s.map_rows(lambda r: None if r["v"] is not None and r["v"] % 3 == 0 else r, schema=SCHEMA)
            out, late = collect(), collect()
            win = s.window(rb.tumbling(10), by="k").agg(**RB_AGGS)
            win.write(out)
            win.late().write(late)
            p.run("stream", progress=False, max_batch_rows=size or 10**9)
            results.append((canonical(out.frame()), late.frame().height))
        for frame, n_late in results[1:]:
            assert_frame_equal(frame, results[0][0], check_exact=False)
            assert n_late == results[0][1]
