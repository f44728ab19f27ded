"""Decomposable aggregates: count, sum, min, max, mean, first, last, count_distinct.

Each aggregate is a frozen spec that knows three forms:

* ``final``: one expression computing the result over all rows of a group (batch mode);
* ``partial`` + ``merge`` + ``finish``: partial state per micro-batch, merged with earlier
  state, turned into the result when a window is emitted (stream mode; also across
  partitions). Partial results merge in any grouping, which is what makes stream results
  independent of micro-batch size.

``first``/``last`` pick the value at the earliest/latest *event time*; ties go to the
earliest/latest arrival.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

from riverbed.windows import T

AggKind = Literal["count", "sum", "min", "max", "mean", "first", "last", "count_distinct"]


@dataclass(frozen=True)
class Agg:
    """One aggregate over ``column`` (``None`` only for ``count``: count rows)."""

    kind: AggKind
    column: str | None = None

    def describe(self) -> str:
        return f"{self.kind}({self.column or ''})"

    # -- batch --------------------------------------------------------------------------
    def final(self, name: str) -> pl.Expr:
        """The aggregate over a whole group (needs ``__rb_t`` for first/last)."""
        c = pl.col(self.column) if self.column else None
        t = pl.col(T)
        match self.kind:
            case "count":
                out = pl.len() if c is None else c.count()
                return out.cast(pl.Int64).alias(name)
            case "sum":
                assert c is not None
                return c.sum().alias(name)
            case "min":
                assert c is not None
                return c.min().alias(name)
            case "max":
                assert c is not None
                return c.max().alias(name)
            case "mean":
                assert c is not None
                return c.mean().alias(name)
            case "first":
                assert c is not None
                return c.filter(t == t.min()).first().alias(name)
            case "last":
                assert c is not None
                return c.filter(t == t.max()).last().alias(name)
            case "count_distinct":
                assert c is not None
                return c.drop_nulls().n_unique().cast(pl.Int64).alias(name)

    # -- stream: partial state --------------------------------------------------------
    def state_columns(self, name: str) -> list[str]:
        """Names of this aggregate's partial-state columns."""
        match self.kind:
            case "mean":
                return [f"{name}__sum", f"{name}__n"]
            case "first" | "last":
                return [f"{name}__v", f"{name}__t"]
            case _:
                return [f"{name}__s"]

    def partial(self, name: str) -> list[pl.Expr]:
        """Partial state over some rows of a group."""
        cols = self.state_columns(name)
        c = pl.col(self.column) if self.column else None
        t = pl.col(T)
        match self.kind:
            case "mean":
                assert c is not None
                return [c.sum().alias(cols[0]), c.count().cast(pl.Int64).alias(cols[1])]
            case "first":
                assert c is not None
                return [c.filter(t == t.min()).first().alias(cols[0]), t.min().alias(cols[1])]
            case "last":
                assert c is not None
                return [c.filter(t == t.max()).last().alias(cols[0]), t.max().alias(cols[1])]
            case "count_distinct":
                assert c is not None
                return [c.drop_nulls().unique().alias(cols[0])]
            case _:
                return [self.final(cols[0])]

    def merge(self, name: str) -> list[pl.Expr]:
        """Merge partial states (rows in arrival order) within a group."""
        cols = self.state_columns(name)
        s = pl.col(cols[0])
        match self.kind:
            case "count" | "sum":
                return [s.sum().alias(cols[0])]
            case "min":
                return [s.min().alias(cols[0])]
            case "max":
                return [s.max().alias(cols[0])]
            case "mean":
                return [s.sum().alias(cols[0]), pl.col(cols[1]).sum().alias(cols[1])]
            case "first":
                t = pl.col(cols[1])
                return [s.filter(t == t.min()).first().alias(cols[0]), t.min().alias(cols[1])]
            case "last":
                t = pl.col(cols[1])
                return [s.filter(t == t.max()).last().alias(cols[0]), t.max().alias(cols[1])]
            case "count_distinct":
                flat = s.list.explode(keep_nulls=False, empty_as_null=False)
                return [flat.drop_nulls().unique().alias(cols[0])]

    def combine(self, name: str, suffix: str = "__r") -> list[pl.Expr]:
        """Merge two partial states side by side: the columns of this aggregate (earlier
        rows) and the same columns with ``suffix`` (later rows), as after a full join.

        Either side may be null (a window only one side has).
        """
        out = []
        cols = self.state_columns(name)
        match self.kind:
            case "count" | "sum" | "mean":
                for c in cols:
                    out.append(pl.sum_horizontal(pl.col(c), pl.col(c + suffix)).alias(c))
            case "min":
                out.append(pl.min_horizontal(pl.col(cols[0]), pl.col(cols[0] + suffix)).alias(cols[0]))
            case "max":
                out.append(pl.max_horizontal(pl.col(cols[0]), pl.col(cols[0] + suffix)).alias(cols[0]))
            case "first" | "last":
                v, t = cols
                lt, rt = pl.col(t), pl.col(t + suffix)
                later_wins = (rt < lt) if self.kind == "first" else (rt >= lt)
                take_right = lt.is_null() | (rt.is_not_null() & later_wins)
                out.append(pl.when(take_right).then(pl.col(v + suffix)).otherwise(pl.col(v)).alias(v))
                out.append(pl.when(take_right).then(rt).otherwise(lt).alias(t))
            case "count_distinct":
                left, right = pl.col(cols[0]), pl.col(cols[0] + suffix)
                out.append(
                    pl.when(left.is_null())
                    .then(right)
                    .when(right.is_null())
                    .then(left)
                    .otherwise(pl.concat_list(left, right).list.unique())
                    .alias(cols[0])
                )
        return out

    def finish(self, name: str) -> pl.Expr:
        """The result from merged state."""
        cols = self.state_columns(name)
        s = pl.col(cols[0])
        match self.kind:
            case "mean":
                n = pl.col(cols[1])
                return pl.when(n > 0).then(s / n).otherwise(None).cast(pl.Float64).alias(name)
            case "count_distinct":
                return s.list.len().cast(pl.Int64).alias(name)
            case _:
                return s.alias(name)


def count(column: str | None = None) -> Agg:
    """Count rows (or non-null values of ``column``).

    Examples
    --------
    >>> count()
    Agg(kind='count', column=None)
    """
    return Agg("count", column)


def sum(column: str) -> Agg:
    """Sum of ``column`` (nulls ignored).

    Examples
    --------
    >>> sum("amount")
    Agg(kind='sum', column='amount')
    """
    return Agg("sum", column)


def min(column: str) -> Agg:
    """Smallest value of ``column``.

    Examples
    --------
    >>> min("amount").describe()
    'min(amount)'
    """
    return Agg("min", column)


def max(column: str) -> Agg:
    """Largest value of ``column``.

    Examples
    --------
    >>> max("amount").describe()
    'max(amount)'
    """
    return Agg("max", column)


def mean(column: str) -> Agg:
    """Arithmetic mean of ``column`` (nulls ignored); kept as sum and count while open.

    Examples
    --------
    >>> mean("amount").kind
    'mean'
    """
    return Agg("mean", column)


def first(column: str) -> Agg:
    """Value of ``column`` at the earliest event time (ties: earliest arrival).

    Examples
    --------
    >>> first("price").kind
    'first'
    """
    return Agg("first", column)


def last(column: str) -> Agg:
    """Value of ``column`` at the latest event time (ties: latest arrival).

    Examples
    --------
    >>> last("price").kind
    'last'
    """
    return Agg("last", column)


def count_distinct(column: str) -> Agg:
    """Number of distinct non-null values of ``column``.

    Examples
    --------
    >>> count_distinct("user_id").kind
    'count_distinct'
    """
    return Agg("count_distinct", column)
