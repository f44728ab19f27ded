"""Stateless row operators: filter, with_columns, select, union, lookup join, write, and the
side-output steps (late events, dead letters). Their stream runtime is their batch form run
on each micro-batch (see :class:`~riverbed.operators.base.StatelessRuntime`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from riverbed._cols import WM, is_hidden
from riverbed._errors import PlanError
from riverbed._plan import (
    DeadLetterNode,
    FilterNode,
    LateNode,
    LookupJoinNode,
    SelectNode,
    UnionNode,
    WithColumnsNode,
    WriteNode,
    fmt_cols,
)
from riverbed.operators.base import (
    Cols,
    Frame,
    Operator,
    Outputs,
    Runtime,
    StepContext,
    Tick,
    carried,
    operator,
    pass_key,
)


def roots(exprs: tuple[pl.Expr, ...]) -> Cols:
    """Columns some expressions read (None: every column, e.g. ``pl.all()`` or a regex)."""
    names: set[str] = set()
    for e in exprs:
        if e.meta.has_multiple_outputs() or e.meta.is_regex_projection():
            return None
        names.update(e.meta.root_names())
    return names


def outputs(exprs: tuple[pl.Expr, ...]) -> set[str]:
    """Columns some expressions write."""
    return {e.meta.output_name(raise_if_undetermined=False) or "" for e in exprs}


class ExprOp(Operator):
    """An operator made of Polars expressions over one input."""

    def exprs(self) -> tuple[pl.Expr, ...]:
        raise NotImplementedError

    def apply(self, lf: pl.LazyFrame, carry: tuple[str, ...]) -> pl.LazyFrame:
        raise NotImplementedError

    def output_schema(self, inputs: list[pl.Schema], ctx: StepContext) -> pl.Schema | None:
        schema = inputs[0]
        used = roots(self.exprs()) or set()
        missing = sorted(c for c in used if c not in schema)
        if missing:
            raise self.missing(missing, schema)
        try:
            return self.apply(pl.LazyFrame(schema=schema), ()).collect_schema()
        except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
            first = str(exc).splitlines()[0]
            raise self.fail(f"{first}\n  columns available there: {fmt_cols(schema)}") from None

    def lower(self, inputs: list[pl.LazyFrame], ctx: StepContext) -> Outputs:
        return Outputs(self.apply(inputs[0], carried(inputs[0])))

    def update_key(self, keys: list[tuple[str, ...] | None], ctx: StepContext) -> tuple[str, ...] | None:
        return pass_key(self, keys, ctx)


@operator(FilterNode)
class Filter(ExprOp):
    """Keep rows where a predicate holds. Supports: batch, stream."""

    node: FilterNode

    def update_key(self, keys: list[tuple[str, ...] | None], ctx: StepContext) -> tuple[str, ...] | None:
        key = pass_key(self, keys, ctx)
        used = roots(self.exprs())
        if key is not None and (used is None or not used <= set(key)):
            raise PlanError(
                f"step {self.id!r} ({self.node.describe()}) filters the rows of an emit='update' "
                "window on more than its key: a window that passed once and fails after an "
                "update would keep its old row in the sink.\n  hint: filter before the window, "
                f"filter only on {list(key)}, or use emit='final'"
            )
        return key

    def exprs(self) -> tuple[pl.Expr, ...]:
        return (self.node.predicate,)

    def apply(self, lf: pl.LazyFrame, carry: tuple[str, ...]) -> pl.LazyFrame:
        return lf.filter(self.node.predicate)

    def needs(self, downstream: Cols, ctx: StepContext) -> Cols:
        used = roots(self.exprs())
        return None if downstream is None or used is None else downstream | used


@operator(WithColumnsNode)
class WithColumns(ExprOp):
    """Add or replace columns. Supports: batch, stream."""

    node: WithColumnsNode

    def exprs(self) -> tuple[pl.Expr, ...]:
        return self.node.exprs

    def apply(self, lf: pl.LazyFrame, carry: tuple[str, ...]) -> pl.LazyFrame:
        return lf.with_columns(*self.node.exprs)

    def needs(self, downstream: Cols, ctx: StepContext) -> Cols:
        used = roots(self.exprs())
        if downstream is None or used is None:
            return None
        return (downstream - outputs(self.exprs())) | used


@operator(SelectNode)
class Select(ExprOp):
    """Keep or compute exactly some columns. Supports: batch, stream."""

    node: SelectNode

    def exprs(self) -> tuple[pl.Expr, ...]:
        return self.node.exprs

    def apply(self, lf: pl.LazyFrame, carry: tuple[str, ...]) -> pl.LazyFrame:
        return lf.select(*self.node.exprs, *carry)

    def needs(self, downstream: Cols, ctx: StepContext) -> Cols:
        return roots(self.exprs())


@operator(UnionNode)
class Union(Operator):
    """Rows of several inputs, columns matched by name, types widened to fit every input.

    Supports: batch, stream.
    """

    node: UnionNode

    def output_schema(self, inputs: list[pl.Schema], ctx: StepContext) -> pl.Schema | None:
        first = inputs[0]
        for other_id, other in zip(self.node.inputs[1:], inputs[1:], strict=True):
            if set(other.names()) != set(first.names()):
                raise PlanError(
                    f"step {self.id!r}: union needs the same columns on every input.\n"
                    f"  {self.node.inputs[0]}: {fmt_cols(first)}\n  {other_id}: {fmt_cols(other)}"
                )
        names = first.names()
        try:
            merged: pl.Schema | None = pl.concat(
                [pl.LazyFrame(schema=s).select(names) for s in inputs], how="vertical_relaxed"
            ).collect_schema()
        except pl.exceptions.PolarsError:
            merged = None
        text = [c for c in names if any(s[c] != pl.String for s in inputs)]
        clash = names if merged is None else [c for c in text if merged[c] == pl.String]
        if clash:
            types = "\n".join(
                f"  {i}: " + ", ".join(f"{c} ({s[c]})" for c in clash)
                for i, s in zip(self.node.inputs, inputs, strict=True)
            )
            raise PlanError(
                f"step {self.id!r}: union inputs disagree on the type of {', '.join(map(repr, clash))}:\n"
                f"{types}\n  hint: cast them to one type before the union, e.g. pl.col(...).cast(...)"
            )
        return merged

    def needs(self, downstream: Cols, ctx: StepContext) -> Cols:
        return downstream

    def spark_form(self) -> str:
        return "union"

    def lower(self, inputs: list[pl.LazyFrame], ctx: StepContext) -> Outputs:
        cols = [c for c in inputs[0].collect_schema().names() if not is_hidden(c)]
        if any(carried(f) for f in inputs):  # stream mode: keep each row's watermark
            cols.append(WM)
            inputs = [f if carried(f) else f.with_columns(pl.lit(None, pl.Int64).alias(WM)) for f in inputs]
        return Outputs(pl.concat([f.select(cols) for f in inputs], how="vertical_relaxed"))


@operator(LookupJoinNode)
class Lookup(Operator):
    """Join each event with a table loaded once at start. Supports: batch, stream."""

    node: LookupJoinNode

    def __init__(self, node: LookupJoinNode) -> None:
        super().__init__(node)
        self._table: pl.DataFrame | None = None

    def table(self, ctx: StepContext) -> pl.DataFrame:
        if self._table is None:
            lf, _ = self.node.table.read_all(ctx.source_ctx)
            self._table = lf.collect()
        return self._table

    def output_schema(self, inputs: list[pl.Schema], ctx: StepContext) -> pl.Schema | None:
        first = inputs[0]
        table = self.node.table.schema(ctx.source_ctx)
        missing = [c for c in self.node.on if c not in first or c not in table]
        if missing:
            raise PlanError(
                f"step {self.id!r}: join key(s) {missing} must be in both sides.\n"
                f"  stream: {fmt_cols(first)}\n  table: {fmt_cols(table)}"
            )
        on = list(self.node.on)
        return (
            pl.LazyFrame(schema=first)
            .join(pl.LazyFrame(schema=table), on=on, how=self.node.how)
            .collect_schema()
        )

    def needs(self, downstream: Cols, ctx: StepContext) -> Cols:
        return None if downstream is None else downstream | set(self.node.on)

    def update_key(self, keys: list[tuple[str, ...] | None], ctx: StepContext) -> tuple[str, ...] | None:
        return pass_key(self, keys, ctx)

    def spark_prepare(self, ctx: StepContext) -> None:
        self.table(ctx)  # loaded once on the driver, shipped to Spark's workers with the step

    def lower(self, inputs: list[pl.LazyFrame], ctx: StepContext) -> Outputs:
        table = self.table(ctx).lazy()
        on = list(self.node.on)
        return Outputs(inputs[0].join(table, on=on, how=self.node.how, maintain_order="left"))


@operator(WriteNode)
class Write(Operator):
    """Send rows to a sink; the executor owns the sink's writer and its commits.

    Supports: batch, stream.
    """

    node: WriteNode

    def output_schema(self, inputs: list[pl.Schema], ctx: StepContext) -> pl.Schema | None:
        need = [c for c in self.node.sink.required_columns() if c not in inputs[0]]
        if need:
            raise self.missing(need, inputs[0], f"\n  hint: {self.node.sink.describe()} keys rows by them")
        return inputs[0]

    def check(self, ctx: StepContext) -> None:
        caps = self.node.sink.capabilities
        if ctx.mode == "stream" and not caps.unbounded:
            raise PlanError(
                f"step {self.id!r}: {self.node.sink.describe()} cannot take an unbounded stream.\n"
                "  hint: run in batch mode, or write to a sink that supports stream mode"
            )

    def update_key(self, keys: list[tuple[str, ...] | None], ctx: StepContext) -> tuple[str, ...] | None:
        key = pass_key(self, keys, ctx)
        sink = self.node.sink
        if key is not None and not sink.capabilities.upsert:
            raise PlanError(
                f"step {self.id!r}: the window before it emits updates (emit='update'), but "
                f"{sink.describe()} cannot replace rows, so every update would be appended.\n"
                "  hint: write to a table that upserts (rb.duckdb(...), rb.sqlite(...), "
                "rb.postgres(...)), or use emit='final'"
            )
        return key

    def lower(self, inputs: list[pl.LazyFrame], ctx: StepContext) -> Outputs:
        return Outputs(inputs[0])


class SideOutput(Operator):
    """The side output ``port`` of another step, as a stream of its own."""

    def needs(self, downstream: Cols, ctx: StepContext) -> Cols:
        return None

    def update_key(self, keys: list[tuple[str, ...] | None], ctx: StepContext) -> tuple[str, ...] | None:
        return None  # late events and dead letters are plain rows

    def lower(self, inputs: list[pl.LazyFrame], ctx: StepContext) -> Outputs:
        return Outputs(inputs[0])


class _SideRuntime(Runtime):
    def process(self, inputs: list[Frame], tick: Tick) -> Outputs:
        return Outputs(inputs[0])


def _side(node_type: type[LateNode] | type[DeadLetterNode]) -> Callable[[Any], Operator]:
    @operator(node_type)
    class _Side(SideOutput):
        def build(self, ctx: StepContext, resume: bytes | None) -> Runtime:
            return _SideRuntime()

    return _Side


LateOp = _side(LateNode)
DeadLetterOp = _side(DeadLetterNode)
