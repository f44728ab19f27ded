"""Aggregates against naive references, and partial -> merge -> finish == final.

The second property is what stream mode relies on: a window's state is built from partial
states of micro-batches (in arrival order), merged, and finished when the window is emitted.
Whatever the split of the rows into micro-batches, the result must equal ``final`` over all
rows at once.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import riverbed as rb
from riverbed._cols import T
from riverbed.aggregates import Agg, aggregate_frame, finish_expr, merge_exprs, partial_exprs

KINDS = ["count", "sum", "min", "max", "mean", "first", "last", "count_distinct"]
ROW = tuple[str, int, int | None, str | None]  # key, t, int value, str value

rows_st = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.integers(0, 6),  # few distinct times: plenty of first/last ties
        st.one_of(st.none(), st.integers(-20, 20)),
        st.one_of(st.none(), st.sampled_from(["x", "y", "z", ""])),
    ),
    min_size=0,
    max_size=40,
)


def to_frame(rows: list[ROW]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"k": pl.String, T: pl.Int64, "i": pl.Int64, "s": pl.String}, orient="row"
    )


def aggs_for(column: str) -> dict[str, Agg]:
    out: dict[str, Agg] = {"n_rows": rb.count(), "n": rb.count(column)}
    for kind in KINDS[1:]:
        if column == "s" and kind in ("sum", "mean"):
            continue
        out[kind] = getattr(rb, kind)(column)
    return out


def naive(kind: str, values: list[Any], times: list[int], column_count: bool = True) -> Any:
    """One aggregate over one group's rows (in arrival order), computed by looping."""
    present = [v for v in values if v is not None]
    if kind == "count":
        return len(present) if column_count else len(values)
    if kind == "sum":
        total = 0
        for v in present:
            total += v
        return total
    if kind in ("min", "max"):
        best = None
        for v in present:
            if best is None or (v < best if kind == "min" else v > best):
                best = v
        return best
    if kind == "mean":
        return None if not present else sum(present) / len(present)
    if kind in ("first", "last"):  # ties: the smallest (first) or largest (last) non-null value
        edge = min(times) if kind == "first" else max(times)
        tied = [v for v, t in zip(values, times, strict=True) if t == edge and v is not None]
        if not tied:
            return None
        return min(tied) if kind == "first" else max(tied)
    if kind == "count_distinct":
        seen: list[Any] = []
        for v in present:
            if v not in seen:
                seen.append(v)
        return len(seen)
    raise AssertionError(kind)


def reference(rows: list[ROW], column: str) -> dict[str, dict[str, Any]]:
    idx = {"i": 2, "s": 3}[column]
    groups: dict[str, list[ROW]] = {}
    for r in rows:
        groups.setdefault(r[0], []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for key, g in groups.items():
        values = [r[idx] for r in g]
        times = [r[1] for r in g]
        res = {}
        for name, a in aggs_for(column).items():
            kind = "count" if name.startswith("n") else name
            res[name] = naive(kind, values, times, column_count=a.inputs() != ())
        out[key] = res
    return out


def as_dict(df: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {r.pop("k"): r for r in df.to_dicts()}


def same(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            x, y = a[key][name], b[key][name]
            if isinstance(x, float) or isinstance(y, float):
                assert x is not None and y is not None, (key, name, x, y)
                assert math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12), (key, name, x, y)
            else:
                assert x == y, (key, name, x, y)


def final(df: pl.DataFrame, aggs: dict[str, Agg]) -> pl.DataFrame:
    return aggregate_frame(df.lazy(), ["k"], tuple(aggs.items())).collect()


def partial(df: pl.DataFrame, aggs: dict[str, Agg]) -> pl.DataFrame:
    return df.group_by("k", maintain_order=True).agg(
        *(e for n, a in aggs.items() for e in partial_exprs(n, a))
    )


def merge(states: list[pl.DataFrame], aggs: dict[str, Agg]) -> pl.DataFrame:
    both = pl.concat(states, how="vertical")
    return both.group_by("k", maintain_order=True).agg(
        *(e for n, a in aggs.items() for e in merge_exprs(n, a))
    )


def finish(state: pl.DataFrame, aggs: dict[str, Agg]) -> pl.DataFrame:
    return state.select("k", *(finish_expr(n, a) for n, a in aggs.items()))


@pytest.mark.parametrize("column", ["i", "s"])
@settings(max_examples=100, deadline=None)
@given(rows=rows_st)
def test_final_matches_naive_reference(column: str, rows: list[ROW]) -> None:
    df = to_frame(rows)
    same(as_dict(final(df, aggs_for(column))), reference(rows, column))


def splits(n: int) -> st.SearchStrategy[list[int]]:
    """Sorted cut points in [0, n] (repeats give empty micro-batches)."""
    return st.lists(st.integers(0, n), max_size=6).map(sorted)


@pytest.mark.parametrize("column", ["i", "s"])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_partial_merge_finish_equals_final_for_any_split(column: str, data: st.DataObject) -> None:
    rows = data.draw(rows_st.filter(bool), label="rows")
    df = to_frame(rows)
    aggs = aggs_for(column)
    cuts = data.draw(splits(df.height), label="cuts")
    bounds = [0, *cuts, df.height]
    chunks = [df.slice(lo, hi - lo) for lo, hi in itertools.pairwise(bounds)]
    states = [partial(c, aggs) for c in chunks]
    # merge in a random (arrival-order preserving) tree: merged states merge again
    while len(states) > 1:
        i = data.draw(st.integers(0, len(states) - 2), label="merge at")
        j = data.draw(st.integers(i + 2, len(states)), label="merge to")
        states[i:j] = [merge(states[i:j], aggs)]
    merged = merge(states, aggs)  # a single state merged with nothing is still valid
    got = finish(merged, aggs)
    same(as_dict(got), as_dict(final(df, aggs)))
    same(as_dict(got), reference(rows, column))


def test_result_types() -> None:
    df = to_frame([("a", 1, 2, "x"), ("a", 2, None, None)])
    out = final(df, aggs_for("i"))
    assert out.schema["n_rows"] == pl.Int64
    assert out.schema["n"] == pl.Int64
    assert out.schema["count_distinct"] == pl.Int64
    assert out.schema["mean"] == pl.Float64
    assert out.schema["sum"] == pl.Int64
    fin = finish(merge([partial(df, aggs_for("i"))], aggs_for("i")), aggs_for("i"))
    assert fin.schema == out.select(fin.columns).schema


def test_all_null_group() -> None:
    df = to_frame([("a", 1, None, None), ("a", 1, None, None)])
    got = as_dict(final(df, aggs_for("i")))["a"]
    assert got == {
        "n_rows": 2,
        "n": 0,
        "sum": 0,
        "min": None,
        "max": None,
        "mean": None,
        "first": None,
        "last": None,
        "count_distinct": 0,
    }


def test_first_last_ties_go_to_the_smallest_and_largest_value() -> None:
    df = to_frame([("a", 5, 1, None), ("a", 3, 2, None), ("a", 3, 3, None), ("a", 5, 4, None)])
    got = as_dict(final(df, {"f": rb.first("i"), "l": rb.last("i")}))["a"]
    assert got == {"f": 2, "l": 4}


def test_describe() -> None:
    assert rb.count().describe() == "count()"
    assert rb.sum("amount").describe() == "sum(amount)"
    assert rb.count_distinct("u").describe() == "count_distinct(u)"
