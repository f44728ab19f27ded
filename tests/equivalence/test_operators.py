"""Every operator, both executors: stream == batch when nothing is late, whatever the
micro-batch size and however the input frames are split (hypothesis)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import riverbed as rb
from riverbed.testing import assert_same_results, collect, source

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCHEMA = {"k": pl.Int64, "ts": pl.Int64, "v": pl.Int64}
NO_LATE = rb.watermark(max_delay=10_000)  # far more than any disorder below: nothing is late

WMEAN = rb.aggregate(
    partial={"sw": (pl.col("v") * pl.col("k")).sum(), "w": pl.col("k").sum()},
    merge=lambda s: {"sw": s["sw"].sum(), "w": s["w"].sum()},
    finish=lambda s: pl.when(s["w"] != 0).then(s["sw"] / s["w"]),
    name="wmean(v, k)",
)


@st.composite
def split_events(draw: Any) -> list[pl.DataFrame]:
    """Events (some keys null, times out of order) cut into 1..4 frames at random points."""
    n = draw(st.integers(1, 40))
    clock, rows = 0, []
    for _ in range(n):
        clock += draw(st.integers(0, 30))
        rows.append(
            {
                "k": draw(st.one_of(st.none(), st.integers(0, 2))),
                "ts": clock - draw(st.integers(0, 40)),
                "v": draw(st.one_of(st.none(), st.integers(-5, 5))),
            }
        )
    df = pl.DataFrame(rows, schema=SCHEMA)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    bounds = [0, *cuts, n]
    return [df.slice(a, b - a) for a, b in itertools.pairwise(bounds)]


def check(build: Callable[[rb.Pipeline, list[pl.DataFrame]], None], frames: list[pl.DataFrame]) -> None:
    """Same rows in batch and stream (sizes 1, 3, all), and the same for the input whole."""
    outs = []
    for parts in (frames, [pl.concat(frames)]):
        p = rb.Pipeline("eq")
        build(p, parts)
        got = assert_same_results(p, batch_sizes=[1, 3, None])
        outs.append([got[w.id] for w in p.plan().writes()])
    for a, b in zip(*outs, strict=True):
        assert a.equals(b, null_equal=True)


def read(p: rb.Pipeline, frames: list[pl.DataFrame], name: str = "ev") -> rb.Stream:
    return p.read(source(frames, name=name), event_time="ts", watermark=NO_LATE)


AGGS: dict[str, Any] = {
    "n": rb.count(),
    "s": rb.sum("v"),
    "f": rb.first("v"),
    "l": rb.last("v"),
    "d": rb.count_distinct("v"),
    "m": rb.mean("v"),
    "w": WMEAN,
}


@SETTINGS
@given(frames=split_events())
def test_stateless_steps(frames: list[pl.DataFrame]) -> None:
    def build(p: rb.Pipeline, parts: list[pl.DataFrame]) -> None:
        s = read(p, parts).filter(pl.col("v").is_null() | (pl.col("v") != 0)).with_columns(x=pl.col("v") * 2)
        s.select("k", "ts", "x").write(collect())

    check(build, frames)


@SETTINGS
@given(frames=split_events(), within=st.integers(1, 60))
def test_dedupe(frames: list[pl.DataFrame], within: int) -> None:
    check(lambda p, parts: read(p, parts).dedupe("k", within=within).write(collect()), frames)


@SETTINGS
@given(frames=split_events(), kind=st.sampled_from(["tumbling", "sliding", "session"]))
def test_windows_with_null_keys_and_a_user_aggregate(frames: list[pl.DataFrame], kind: str) -> None:
    spec = {"tumbling": rb.tumbling(50), "sliding": rb.sliding(50, every=20), "session": rb.session(25)}[kind]
    check(lambda p, parts: read(p, parts).window(spec, by="k").agg(**AGGS).write(collect()), frames)


@SETTINGS
@given(frames=split_events(), other=split_events())
def test_union_then_window(frames: list[pl.DataFrame], other: list[pl.DataFrame]) -> None:
    def build(p: rb.Pipeline, parts: list[pl.DataFrame]) -> None:
        u = read(p, parts).union(read(p, other, name="other"))
        u.window(rb.tumbling(50), by="k").agg(n=rb.count(), s=rb.sum("v")).write(collect())

    check(build, frames)


@SETTINGS
@given(frames=split_events())
def test_lookup_then_window(frames: list[pl.DataFrame]) -> None:
    table = pl.DataFrame({"k": [0, 1], "region": ["n", "s"]})

    def build(p: rb.Pipeline, parts: list[pl.DataFrame]) -> None:
        s = read(p, parts).lookup(source([table], name="regions"), on="k")
        s.window(rb.tumbling(50), by="region").agg(n=rb.count()).write(collect())

    check(build, frames)


def _double(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(v=pl.col("v") * 2).filter(pl.col("k").is_not_null())


def _label(row: dict[str, Any]) -> dict[str, Any] | None:
    return None if row["v"] is None else {**row, "v": row["v"] + 1}


@SETTINGS
@given(frames=split_events())
def test_user_functions_then_window(frames: list[pl.DataFrame]) -> None:
    def build(p: rb.Pipeline, parts: list[pl.DataFrame]) -> None:
        s = read(p, parts).map_batches(_double).map_rows(_label, schema=SCHEMA)
        s.window(rb.tumbling(50), by="k").agg(n=rb.count(), s=rb.sum("v")).write(collect())

    check(build, frames)
