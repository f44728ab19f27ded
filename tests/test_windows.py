"""Window assignment in batch mode against naive pure-Python references.

For random events (one or two key columns, ties, negative times, out of order), every
(key, window) row of the batch executor equals the reference computed by looping over the
events one at a time.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import riverbed as rb

Event = tuple[str, int, int, int]  # k1, k2, t, v
Row = tuple[Any, ...]

events_st = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 1),
        st.integers(-50_000, 50_000),
        st.integers(-100, 100),
    ),
    min_size=1,
    max_size=60,
)
BY_ST = st.sampled_from([(), ("k1",), ("k1", "k2")])


def frame(events: list[Event]) -> pl.DataFrame:
    return pl.DataFrame(
        events,
        schema={"k1": pl.String, "k2": pl.Int64, "t": pl.Int64, "v": pl.Int64},
        orient="row",
    )


def run_window(events: list[Event], spec: Any, by: tuple[str, ...]) -> list[Row]:
    p = rb.Pipeline("w")
    out = rb.testing.collect()
    (
        p.read(rb.testing.source([frame(events)]), event_time="t")
        .window(spec, by=list(by))
        .agg(n=rb.count(), total=rb.sum("v"), first=rb.first("v"), last=rb.last("v"))
        .write(out)
    )
    p.run(mode="batch", progress=False)
    df = out.frame()
    assert df.columns == [*by, "window_start", "window_end", "n", "total", "first", "last"]
    return sorted(df.rows())


def key_of(e: Event, by: tuple[str, ...]) -> tuple[Any, ...]:
    named = {"k1": e[0], "k2": e[1]}
    return tuple(named[c] for c in by)


def summarise(
    members: dict[tuple[Any, ...], list[int]],
    events: list[Event],
    ends: dict[tuple[Any, ...], int],
) -> list[Row]:
    """(key..., start, end, count, sum, first, last) from window -> event indexes (arrival)."""
    rows = []
    for wkey, idx in members.items():
        evs = [events[i] for i in idx]  # in arrival order
        t_min = min(e[2] for e in evs)
        t_max = max(e[2] for e in evs)
        first = min(e[3] for e in evs if e[2] == t_min)  # ties: the smallest value
        last = max(e[3] for e in evs if e[2] == t_max)  # ties: the largest value
        rows.append((*wkey, ends[wkey], len(evs), sum(e[3] for e in evs), first, last))
    return sorted(rows)


def ref_fixed(events: list[Event], by: tuple[str, ...], size: int, every: int, off: int) -> list[Row]:
    """Fixed-size windows (tumbling when every == size): loop over the candidate starts."""
    members: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    ends: dict[tuple[Any, ...], int] = {}
    for i, e in enumerate(events):
        t = e[2]
        k_lo = (t - off - size) // every - 1
        k_hi = (t - off) // every + 1
        for k in range(k_lo, k_hi + 1):
            start = off + k * every
            if start <= t < start + size:
                wkey = (*key_of(e, by), start)
                members[wkey].append(i)
                ends[wkey] = start + size
    return summarise(members, events, ends)


def ref_session(events: list[Event], by: tuple[str, ...], gap: int) -> list[Row]:
    """Sessions: an event at t opens [t, t+gap); overlapping intervals of one key merge."""
    per_key: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, e in enumerate(events):
        per_key[key_of(e, by)].append(i)
    members: dict[tuple[Any, ...], list[int]] = {}
    ends: dict[tuple[Any, ...], int] = {}
    for key, idx in per_key.items():
        sessions: list[list[int]] = []  # [start, end, *indexes]
        for i in sorted(idx, key=lambda j: events[j][2]):
            t = events[i][2]
            if sessions and t < sessions[-1][1]:
                sessions[-1][1] = max(sessions[-1][1], t + gap)
                sessions[-1].append(i)
            else:
                sessions.append([t, t + gap, i])
        for s in sessions:
            wkey = (*key, s[0])
            members[wkey] = sorted(s[2:])  # arrival order
            ends[wkey] = s[1]
    return summarise(members, events, ends)


@settings(max_examples=150, deadline=None)
@given(
    events=events_st,
    by=BY_ST,
    size=st.integers(1, 20_000),
    offset=st.integers(-30_000, 30_000),
)
def test_tumbling_matches_reference(events: list[Event], by: tuple[str, ...], size: int, offset: int) -> None:
    spec = rb.tumbling(size, offset=offset)
    expected = ref_fixed(events, by, size, size, offset % size)
    assert run_window(events, spec, by) == expected


@settings(max_examples=150, deadline=None)
@given(
    events=events_st,
    by=BY_ST,
    every=st.integers(1, 10_000),
    factor=st.integers(1, 5),
    extra=st.integers(0, 999),
    offset=st.integers(-30_000, 30_000),
)
def test_sliding_puts_an_event_in_every_covering_window(
    events: list[Event], by: tuple[str, ...], every: int, factor: int, extra: int, offset: int
) -> None:
    size = every * factor + (extra % every if factor < 5 else 0)
    spec = rb.sliding(size, every=every, offset=offset)
    expected = ref_fixed(events, by, size, every, offset % every)
    assert run_window(events, spec, by) == expected


@settings(max_examples=150, deadline=None)
@given(events=events_st, by=BY_ST, gap=st.integers(1, 20_000))
def test_session_matches_reference(events: list[Event], by: tuple[str, ...], gap: int) -> None:
    assert run_window(events, rb.session(gap), by) == ref_session(events, by, gap)


def test_session_semantics_by_example() -> None:
    # gap 10: [0,10) and [5,15) overlap -> one session [0, 15); 15 touches 15 -> new session
    events: list[Event] = [("a", 0, 0, 1), ("a", 0, 5, 2), ("a", 0, 15, 3), ("b", 0, 3, 4)]
    rows = run_window(events, rb.session(10), ("k1",))
    assert rows == [("a", 0, 15, 2, 3, 1, 2), ("a", 15, 25, 1, 3, 3, 3), ("b", 3, 13, 1, 4, 4, 4)]


def test_windows_are_half_open_and_epoch_aligned() -> None:
    events: list[Event] = [("a", 0, 59_999, 1), ("a", 0, 60_000, 2), ("a", 0, -1, 3)]
    rows = run_window(events, rb.tumbling("1m"), ())
    assert [r[:3] for r in rows] == [(-60_000, 0, 1), (0, 60_000, 1), (60_000, 120_000, 1)]
    shifted = run_window(events, rb.tumbling("1m", offset="30s"), ())
    assert [r[:3] for r in shifted] == [(-30_000, 30_000, 1), (30_000, 90_000, 2)]


def run_typed(df: pl.DataFrame, spec: Any) -> pl.DataFrame:
    p = rb.Pipeline("typed")
    out = rb.testing.collect()
    p.read(rb.testing.source([df]), event_time="ts").window(spec, by="k").agg(n=rb.count()).write(out)
    p.run(progress=False)
    return out.frame().sort("k", "window_start")


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
def test_datetime_event_time_gives_datetime_bounds(unit: str) -> None:
    ts = [datetime(2026, 1, 1, 10, 0, 30), datetime(2026, 1, 1, 10, 1, 5)]
    df = pl.DataFrame({"k": [1, 1], "ts": ts}).with_columns(pl.col("ts").cast(pl.Datetime(unit)))
    out = run_typed(df, rb.tumbling("1m"))
    assert out.schema["window_start"] == pl.Datetime(unit)
    assert out["window_start"].to_list() == [
        datetime(2026, 1, 1, 10, 0),
        datetime(2026, 1, 1, 10, 1),
    ]
    assert out["window_end"].to_list() == [datetime(2026, 1, 1, 10, 1), datetime(2026, 1, 1, 10, 2)]


def test_timezone_aware_event_time_keeps_its_zone() -> None:
    ts = [datetime(2026, 1, 1, 23, 30, tzinfo=UTC)]
    df = pl.DataFrame({"k": [1], "ts": ts}).with_columns(pl.col("ts").dt.convert_time_zone("Europe/Paris"))
    out = run_typed(df, rb.tumbling("1d"))
    assert out.schema["window_start"] == pl.Datetime("us", "Europe/Paris")
    # windows are aligned to the UTC epoch, whatever zone the column is displayed in
    start = out["window_start"][0]
    assert start.astimezone(UTC) == datetime(2026, 1, 1, tzinfo=UTC)


def test_date_event_time() -> None:
    df = pl.DataFrame({"k": [1, 1, 1], "ts": [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 2)]})
    out = run_typed(df, rb.tumbling("1d"))
    assert out["n"].to_list() == [1, 2]
    assert out["window_start"].dt.date().to_list() == [date(2026, 1, 1), date(2026, 1, 2)]


@pytest.mark.parametrize("spec", [rb.tumbling("1m"), rb.sliding("1m", every="20s"), rb.session("30s")])
@pytest.mark.parametrize(
    "ts_type", [pl.Int64, pl.Int32, pl.Datetime("ms"), pl.Datetime("ns", "UTC"), pl.Date], ids=str
)
def test_validated_schema_is_the_output_schema(spec: Any, ts_type: pl.DataType) -> None:
    df = pl.DataFrame({"k": ["a", "b"], "ts": [0, 86_400_000], "v": [1.5, 2.0]})
    if ts_type == pl.Date:
        df = df.with_columns(pl.from_epoch("ts", "ms").dt.date())
    elif isinstance(ts_type, pl.Datetime):
        df = df.with_columns(pl.from_epoch("ts", "ms").cast(ts_type))
    else:
        df = df.with_columns(pl.col("ts").cast(ts_type))
    p = rb.Pipeline("schema")
    out = rb.testing.collect()
    w = p.read(rb.testing.source([df]), event_time="ts").window(spec, by="k")
    s = w.agg(n=rb.count(), m=rb.mean("v"), f=rb.first("ts"), d=rb.count_distinct("k")).write(out)
    expected = p.validate()[s.node_id]
    p.run(progress=False)
    assert out.frame().schema == expected
