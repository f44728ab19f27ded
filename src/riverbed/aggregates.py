"""Decomposable aggregates, built in and user-defined, all written the same way.

An aggregate is a frozen value with three Polars-expression parts:

* ``partial``: named *state columns* computed over some rows of a group (``group_by`` context);
* ``merge``: the same state columns computed over several partial states of one group (rows
  of partial state, in arrival order) — so partial results merge across micro-batches,
  partitions and machines, in any grouping;
* ``finish``: the result from merged state (row context).

Batch mode runs ``partial`` then ``finish`` (or a direct ``final`` form when an aggregate has
one, e.g. ``count_distinct``); stream mode keeps partial state per open window and merges it
every micro-batch. Two optional parts make the built-ins fast: ``final`` (one expression over
a whole group) and ``combine`` (merge two states side by side, after a join).

Rules the built-ins follow in both modes:

* ``sum`` over only null values is ``0`` (Polars' rule; SQL would give NULL); ``mean``,
  ``min`` and ``max`` over only nulls are null; ``count(col)`` counts non-null values.
* ``first``/``last`` take the value at the earliest/latest *event time*; ties between events
  with the same time go to the smallest (``first``) or largest (``last``) non-null value, so
  the result never depends on arrival order, partitions or micro-batch size.

A user-defined aggregate (a weighted mean)::

    wmean = rb.aggregate(
        partial={"sw": (pl.col("price") * pl.col("qty")).sum(), "w": pl.col("qty").sum()},
        merge=lambda s: {"sw": s["sw"].sum(), "w": s["w"].sum()},
        finish=lambda s: s["sw"] / s["w"],
        name="wmean(price, qty)",
    )
    stream.window(rb.tumbling("1m")).agg(avg_price=wmean)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import polars as pl

from riverbed._cols import T
from riverbed._errors import PlanError

State = Mapping[str, pl.Expr]
"""State columns by their local names (``"sw"``, ``"w"``), as expressions."""


@dataclass(frozen=True)
class Agg:
    """Base of every aggregate. Subclasses define ``partial``, ``merge`` and ``finish`` over
    *local* state names; riverbed namespaces them per output column (``revenue__s``).

    Supports: batch, stream.
    """

    def describe(self) -> str:
        """A short description for plans."""
        return type(self).__name__.lower()

    def inputs(self) -> tuple[str, ...]:
        """The input columns this aggregate reads (for validation and projection pushdown)."""
        return ()

    @property
    def column(self) -> str | None:
        """The one input column, if the aggregate reads exactly one."""
        ins = self.inputs()
        return ins[0] if len(ins) == 1 else None

    # -- to define ----------------------------------------------------------------------
    def partial(self) -> dict[str, pl.Expr]:
        """State columns over raw rows of one group (the event time is in ``__rb_t``)."""
        raise NotImplementedError

    def merge(self, s: State) -> dict[str, pl.Expr]:
        """State columns over several partial states of one group (rows in arrival order)."""
        raise NotImplementedError

    def finish(self, s: State) -> pl.Expr:
        """The result from merged state (row context)."""
        raise NotImplementedError

    # -- optional fast paths -------------------------------------------------------------
    def final(self) -> pl.Expr | None:
        """One expression over a whole group (batch mode), or None to use partial + finish."""
        return None

    def combine(self, left: State, right: State) -> dict[str, pl.Expr] | None:
        """Merge two states side by side (either side may be null), or None if not defined."""
        return None


# -- namespaced forms used by the operators ------------------------------------------------
def state_names(name: str, agg: Agg) -> list[str]:
    """The state columns of output ``name``."""
    return [f"{name}__{k}" for k in agg.partial()]


def _state(name: str, agg: Agg, suffix: str = "") -> dict[str, pl.Expr]:
    return {k: pl.col(f"{name}__{k}{suffix}") for k in agg.partial()}


def partial_exprs(name: str, agg: Agg) -> list[pl.Expr]:
    """Partial state of output ``name`` over raw rows."""
    return [e.alias(f"{name}__{k}") for k, e in agg.partial().items()]


def merge_exprs(name: str, agg: Agg) -> list[pl.Expr]:
    """Merged state of output ``name`` over rows of partial state."""
    return [e.alias(f"{name}__{k}") for k, e in agg.merge(_state(name, agg)).items()]


def combine_exprs(name: str, agg: Agg, suffix: str) -> list[pl.Expr] | None:
    """Side-by-side merge of state columns and the same columns with ``suffix``, or None."""
    out = agg.combine(_state(name, agg), _state(name, agg, suffix))
    return None if out is None else [e.alias(f"{name}__{k}") for k, e in out.items()]


def finish_expr(name: str, agg: Agg) -> pl.Expr:
    """The result column ``name`` from merged state."""
    return agg.finish(_state(name, agg)).alias(name)


def aggregate_frame(
    lf: pl.LazyFrame,
    keys: list[str],
    aggs: tuple[tuple[str, Agg], ...],
    extra: tuple[pl.Expr, ...] = (),
) -> pl.LazyFrame:
    """Batch form: every group's results (keys, ``extra`` aggregations, then the aggregates),
    using direct forms where every aggregate has one."""
    direct = {n: a.final() for n, a in aggs}
    names = [n for n, _ in aggs]
    extra_names = [e.meta.output_name() for e in extra]
    if all(e is not None for e in direct.values()):
        return lf.group_by(keys).agg(*extra, *(e.alias(n) for n, e in direct.items() if e is not None))
    parts = [e for n, a in aggs for e in partial_exprs(n, a)]
    return (
        lf.group_by(keys)
        .agg(*extra, *parts)
        .with_columns(*(finish_expr(n, a) for n, a in aggs))
        .select(*keys, *extra_names, *names)
    )


# -- built-ins -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Count(Agg):
    """Rows (or non-null values of ``col``) per group."""

    col: str | None = None

    def describe(self) -> str:
        return f"count({self.col or ''})"

    def inputs(self) -> tuple[str, ...]:
        return (self.col,) if self.col else ()

    def final(self) -> pl.Expr:
        return (pl.len() if self.col is None else pl.col(self.col).count()).cast(pl.Int64)

    def partial(self) -> dict[str, pl.Expr]:
        return {"s": self.final()}

    def merge(self, s: State) -> dict[str, pl.Expr]:
        return {"s": s["s"].sum()}

    def combine(self, left: State, right: State) -> dict[str, pl.Expr]:
        return {"s": pl.sum_horizontal(left["s"], right["s"])}

    def finish(self, s: State) -> pl.Expr:
        return s["s"]


@dataclass(frozen=True)
class _OneColumn(Agg):
    col: str = ""
    kind: ClassVar[str] = ""

    def describe(self) -> str:
        return f"{self.kind or type(self).__name__.lower()}({self.col})"

    def inputs(self) -> tuple[str, ...]:
        return (self.col,)


@dataclass(frozen=True)
class Sum(_OneColumn):
    """Sum per group; nulls are skipped, and a group of only nulls sums to 0."""

    def final(self) -> pl.Expr:
        return pl.col(self.col).sum()

    def partial(self) -> dict[str, pl.Expr]:
        return {"s": self.final()}

    def merge(self, s: State) -> dict[str, pl.Expr]:
        return {"s": s["s"].sum()}

    def combine(self, left: State, right: State) -> dict[str, pl.Expr]:
        return {"s": pl.sum_horizontal(left["s"], right["s"])}

    def finish(self, s: State) -> pl.Expr:
        return s["s"]


@dataclass(frozen=True)
class Min(_OneColumn):
    """Smallest non-null value per group."""

    def final(self) -> pl.Expr:
        return pl.col(self.col).min()

    def partial(self) -> dict[str, pl.Expr]:
        return {"s": self.final()}

    def merge(self, s: State) -> dict[str, pl.Expr]:
        return {"s": s["s"].min()}

    def combine(self, left: State, right: State) -> dict[str, pl.Expr]:
        return {"s": pl.min_horizontal(left["s"], right["s"])}

    def finish(self, s: State) -> pl.Expr:
        return s["s"]


@dataclass(frozen=True)
class Max(_OneColumn):
    """Largest non-null value per group."""

    def final(self) -> pl.Expr:
        return pl.col(self.col).max()

    def partial(self) -> dict[str, pl.Expr]:
        return {"s": self.final()}

    def merge(self, s: State) -> dict[str, pl.Expr]:
        return {"s": s["s"].max()}

    def combine(self, left: State, right: State) -> dict[str, pl.Expr]:
        return {"s": pl.max_horizontal(left["s"], right["s"])}

    def finish(self, s: State) -> pl.Expr:
        return s["s"]


@dataclass(frozen=True)
class Mean(_OneColumn):
    """Arithmetic mean of non-null values; kept as sum and count while a window is open."""

    def partial(self) -> dict[str, pl.Expr]:
        c = pl.col(self.col)
        return {"sum": c.sum(), "n": c.count().cast(pl.Int64)}

    def merge(self, s: State) -> dict[str, pl.Expr]:
        return {"sum": s["sum"].sum(), "n": s["n"].sum()}

    def combine(self, left: State, right: State) -> dict[str, pl.Expr]:
        return {k: pl.sum_horizontal(left[k], right[k]) for k in ("sum", "n")}

    def finish(self, s: State) -> pl.Expr:
        return pl.when(s["n"] > 0).then(s["sum"] / s["n"]).otherwise(None).cast(pl.Float64)


@dataclass(frozen=True)
class First(_OneColumn):
    """Value at the earliest event time; ties go to the smallest non-null value."""

    def final(self) -> pl.Expr:
        t = pl.col(T)
        return pl.col(self.col).filter(t == t.min()).min()

    def partial(self) -> dict[str, pl.Expr]:
        return {"v": self.final(), "t": pl.col(T).min()}

    def merge(self, s: State) -> dict[str, pl.Expr]:
        return {"v": s["v"].filter(s["t"] == s["t"].min()).min(), "t": s["t"].min()}

    def combine(self, left: State, right: State) -> dict[str, pl.Expr]:
        return _pick(left, right, earliest=True)

    def finish(self, s: State) -> pl.Expr:
        return s["v"]


@dataclass(frozen=True)
class Last(_OneColumn):
    """Value at the latest event time; ties go to the largest non-null value."""

    def final(self) -> pl.Expr:
        t = pl.col(T)
        return pl.col(self.col).filter(t == t.max()).max()

    def partial(self) -> dict[str, pl.Expr]:
        return {"v": self.final(), "t": pl.col(T).max()}

    def merge(self, s: State) -> dict[str, pl.Expr]:
        return {"v": s["v"].filter(s["t"] == s["t"].max()).max(), "t": s["t"].max()}

    def combine(self, left: State, right: State) -> dict[str, pl.Expr]:
        return _pick(left, right, earliest=False)

    def finish(self, s: State) -> pl.Expr:
        return s["v"]


def _pick(left: State, right: State, *, earliest: bool) -> dict[str, pl.Expr]:
    lt, rt, lv, rv = left["t"], right["t"], left["v"], right["v"]
    right_wins = (rt < lt) if earliest else (rt > lt)
    left_wins = (lt < rt) if earliest else (lt > rt)
    tie = pl.min_horizontal(lv, rv) if earliest else pl.max_horizontal(lv, rv)
    v = (
        pl.when(lt.is_null())
        .then(rv)
        .when(rt.is_null())
        .then(lv)
        .when(right_wins)
        .then(rv)
        .when(left_wins)
        .then(lv)
        .otherwise(tie)
    )
    t = pl.min_horizontal(lt, rt) if earliest else pl.max_horizontal(lt, rt)
    return {"v": v, "t": t}


@dataclass(frozen=True)
class CountDistinct(_OneColumn):
    """Number of distinct non-null values; kept as the set of values while a window is open."""

    kind: ClassVar[str] = "count_distinct"

    def final(self) -> pl.Expr:
        return pl.col(self.col).drop_nulls().n_unique().cast(pl.Int64)

    def partial(self) -> dict[str, pl.Expr]:
        return {"s": pl.col(self.col).drop_nulls().unique()}

    def merge(self, s: State) -> dict[str, pl.Expr]:
        flat = s["s"].list.explode(keep_nulls=False, empty_as_null=False)
        return {"s": flat.drop_nulls().unique()}

    def combine(self, left: State, right: State) -> dict[str, pl.Expr]:
        lft, rgt = left["s"], right["s"]
        both = pl.concat_list(lft, rgt).list.unique()
        return {"s": pl.when(lft.is_null()).then(rgt).when(rgt.is_null()).then(lft).otherwise(both)}

    def finish(self, s: State) -> pl.Expr:
        return s["s"].list.len().cast(pl.Int64)


@dataclass(frozen=True)
class UserAgg(Agg):
    """An aggregate defined by the user with :func:`aggregate`."""

    partial_exprs: tuple[tuple[str, pl.Expr], ...] = ()
    merge_fn: Callable[[State], Mapping[str, pl.Expr]] = field(default=lambda s: {}, compare=False)
    finish_fn: Callable[[State], pl.Expr] = field(default=lambda s: pl.lit(None), compare=False)
    label: str = "aggregate"
    reads: tuple[str, ...] = ()

    def describe(self) -> str:
        return self.label

    def inputs(self) -> tuple[str, ...]:
        return self.reads

    def partial(self) -> dict[str, pl.Expr]:
        return dict(self.partial_exprs)

    def merge(self, s: State) -> dict[str, pl.Expr]:
        out = dict(self.merge_fn(s))
        if set(out) != set(s):
            raise PlanError(
                f"aggregate {self.label}: merge must return every state column {sorted(s)}, got {sorted(out)}"
            )
        return out

    def finish(self, s: State) -> pl.Expr:
        return self.finish_fn(s)


def aggregate(
    partial: Mapping[str, pl.Expr],
    merge: Callable[[State], Mapping[str, pl.Expr]],
    finish: Callable[[State], pl.Expr],
    *,
    name: str | None = None,
) -> UserAgg:
    """Define a decomposable aggregate from Polars expressions.

    Parameters
    ----------
    partial
        State columns over some rows of a group, by local name: ``{"sw": (pl.col("p") *
        pl.col("q")).sum(), "w": pl.col("q").sum()}``.
    merge
        ``state -> {name: expr}``: the same state columns over several partial states of a
        group (``state[name]`` is the column of earlier partial states). It must not depend
        on how rows were grouped into partial states.
    finish
        ``state -> expr``: the result from merged state (row context).
    name
        How plans show it (also part of the step's id).

    Supports: batch, stream.

    Examples
    --------
    >>> import polars as pl, riverbed as rb
    >>> wmean = rb.aggregate(
    ...     partial={"sw": (pl.col("p") * pl.col("q")).sum(), "w": pl.col("q").sum()},
    ...     merge=lambda s: {"sw": s["sw"].sum(), "w": s["w"].sum()},
    ...     finish=lambda s: s["sw"] / s["w"],
    ...     name="wmean(p, q)",
    ... )
    >>> ev = pl.DataFrame({"ts": [0, 1, 2], "p": [10.0, 20.0, 40.0], "q": [1, 1, 2]})
    >>> p = rb.Pipeline("wm")
    >>> out = rb.testing.collect()
    >>> _ = p.read(rb.testing.source([ev]), event_time="ts").window(rb.tumbling("1s")).agg(
    ...     avg=wmean).write(out)
    >>> _ = p.run(progress=False)
    >>> out.frame()["avg"].to_list()
    [27.5]
    """
    if not partial:
        raise PlanError("aggregate(partial=...) needs at least one state column")
    for k, e in partial.items():
        if not isinstance(e, pl.Expr) or not k.isidentifier():
            raise PlanError(f"aggregate: partial[{k!r}] must be a Polars expression under a plain name")
    reads = sorted({r for e in partial.values() for r in e.meta.root_names() if r != T})
    label = name or f"aggregate({', '.join(reads)})"
    return UserAgg(tuple(partial.items()), merge, finish, label, tuple(reads))


# -- constructors -------------------------------------------------------------------------------
def count(column: str | None = None) -> Agg:
    """Count rows (or non-null values of ``column``).

    Examples
    --------
    >>> count().describe()
    'count()'
    """
    return Count(column)


def sum(column: str) -> Agg:
    """Sum of ``column`` (nulls skipped; only nulls give 0, as in Polars).

    Examples
    --------
    >>> sum("amount").describe()
    'sum(amount)'
    """
    return Sum(column)


def min(column: str) -> Agg:
    """Smallest value of ``column``.

    Examples
    --------
    >>> min("amount").describe()
    'min(amount)'
    """
    return Min(column)


def max(column: str) -> Agg:
    """Largest value of ``column``.

    Examples
    --------
    >>> max("amount").describe()
    'max(amount)'
    """
    return Max(column)


def mean(column: str) -> Agg:
    """Arithmetic mean of ``column`` (nulls ignored); kept as sum and count while open.

    Examples
    --------
    >>> mean("amount").describe()
    'mean(amount)'
    """
    return Mean(column)


def first(column: str) -> Agg:
    """Value of ``column`` at the earliest event time (ties: the smallest value).

    Examples
    --------
    >>> first("price").describe()
    'first(price)'
    """
    return First(column)


def last(column: str) -> Agg:
    """Value of ``column`` at the latest event time (ties: the largest value).

    Examples
    --------
    >>> last("price").describe()
    'last(price)'
    """
    return Last(column)


def count_distinct(column: str) -> Agg:
    """Number of distinct non-null values of ``column``.

    Examples
    --------
    >>> count_distinct("user_id").describe()
    'count_distinct(user_id)'
    """
    return CountDistinct(column)


__all__ = [
    "Agg",
    "Count",
    "CountDistinct",
    "First",
    "Last",
    "Max",
    "Mean",
    "Min",
    "Sum",
    "UserAgg",
    "aggregate",
    "count",
    "count_distinct",
    "first",
    "last",
    "max",
    "mean",
    "min",
    "sum",
]
