"""The logical plan: an immutable DAG of frozen nodes, validated before anything runs."""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from riverbed._errors import PlanError, RiverbedError
from riverbed._time import format_ms
from riverbed.aggregates import Agg
from riverbed.connectors.base import DEAD_LETTER_SCHEMA, Sink, Source, SourceContext
from riverbed.windows import WindowSpec, event_time_expr

Emit = Literal["final", "update"]


@dataclass(frozen=True)
class Watermark:
    """Bounded out-of-orderness: watermark = max event time seen - ``max_delay_ms``.

    ``idle_timeout_ms``: a partition with no events for that long (processing time) stops
    holding the job's watermark back.
    """

    max_delay_ms: int = 0
    idle_timeout_ms: int | None = None


@dataclass(frozen=True, eq=False)
class Node:
    """One step of the plan. ``id`` is the step's unique name."""

    id: str
    inputs: tuple[str, ...]

    @property
    def kind(self) -> str:
        return type(self).__name__.removesuffix("Node").lower()

    def describe(self) -> str:
        return self.kind


@dataclass(frozen=True, eq=False)
class ReadNode(Node):
    source: Source
    event_time: str | None = None
    watermark: Watermark | None = None

    def describe(self) -> str:
        et = f", event_time={self.event_time}" if self.event_time else ""
        if self.watermark is not None:
            et += f", watermark max_delay={format_ms(self.watermark.max_delay_ms)}"
            if self.watermark.idle_timeout_ms is not None:
                et += f" idle_timeout={format_ms(self.watermark.idle_timeout_ms)}"
        return f"read {self.source.describe()}{et}"


@dataclass(frozen=True, eq=False)
class FilterNode(Node):
    predicate: pl.Expr

    def describe(self) -> str:
        return f"filter {self.predicate}"


@dataclass(frozen=True, eq=False)
class WithColumnsNode(Node):
    exprs: tuple[pl.Expr, ...]

    def describe(self) -> str:
        return "with_columns " + ", ".join(str(e) for e in self.exprs)


@dataclass(frozen=True, eq=False)
class SelectNode(Node):
    exprs: tuple[pl.Expr, ...]

    def describe(self) -> str:
        return "select " + ", ".join(str(e) for e in self.exprs)


def where(fn: Callable[..., Any]) -> str:
    """'name at file:line' of a user function, for messages."""
    name = getattr(fn, "__qualname__", repr(fn))
    try:
        file = inspect.getsourcefile(fn)
        line = inspect.getsourcelines(fn)[1]
    except (OSError, TypeError):
        return name
    return f"{name} at {file}:{line}"


@dataclass(frozen=True, eq=False)
class MapBatchesNode(Node):
    fn: Callable[[pl.DataFrame], pl.DataFrame]
    schema: pl.Schema | None = None

    def describe(self) -> str:
        return f"map_batches {where(self.fn)}"


@dataclass(frozen=True, eq=False)
class MapRowsNode(Node):
    fn: Callable[[dict[str, Any]], dict[str, Any] | None]
    schema: pl.Schema | None = None

    def describe(self) -> str:
        return f"map_rows {where(self.fn)} (slow path: one Python call per row)"


@dataclass(frozen=True, eq=False)
class UnionNode(Node):
    pass


@dataclass(frozen=True, eq=False)
class WindowAggNode(Node):
    window: WindowSpec
    by: tuple[str, ...]
    aggs: tuple[tuple[str, Agg], ...]
    allowed_lateness_ms: int = 0
    emit: Emit = "final"

    def describe(self) -> str:
        aggs = ", ".join(f"{n}={a.describe()}" for n, a in self.aggs)
        by = f" by {', '.join(self.by)}" if self.by else ""
        late = f" allowed_lateness={format_ms(self.allowed_lateness_ms)}" if self.allowed_lateness_ms else ""
        return f"window {self.window.describe()}{by} agg {aggs} emit={self.emit}{late}"


@dataclass(frozen=True, eq=False)
class LateNode(Node):
    """The events a window step dropped as late (stream mode only; empty in batch)."""


@dataclass(frozen=True, eq=False)
class DeadLetterNode(Node):
    """The records a read step rejected."""


@dataclass(frozen=True, eq=False)
class DedupeNode(Node):
    key: tuple[str, ...]
    within_ms: int

    def describe(self) -> str:
        return f"dedupe by {', '.join(self.key)} within {self.within_ms}ms"


@dataclass(frozen=True, eq=False)
class LookupJoinNode(Node):
    table: Source
    on: tuple[str, ...]
    how: Literal["left", "inner"] = "left"

    def describe(self) -> str:
        return f"lookup join {self.table.describe()} on {', '.join(self.on)} ({self.how})"


@dataclass(frozen=True, eq=False)
class WriteNode(Node):
    sink: Sink

    def describe(self) -> str:
        return f"write {self.sink.describe()}"


@dataclass(frozen=True)
class Plan:
    """An immutable, topologically ordered DAG of steps."""

    name: str
    nodes: tuple[Node, ...]
    _index: dict[str, Node] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({n.id: n for n in self.nodes})

    def node(self, node_id: str) -> Node:
        return self._index[node_id]

    def consumers(self, node_id: str) -> list[Node]:
        return [n for n in self.nodes if node_id in n.inputs]

    def writes(self) -> list[WriteNode]:
        return [n for n in self.nodes if isinstance(n, WriteNode)]

    def event_time(self, node_id: str) -> str | None:
        """The event-time column of a step's output (carried from its read step)."""
        node = self.node(node_id)
        if isinstance(node, ReadNode):
            return node.event_time
        if isinstance(node, WindowAggNode):
            return "window_start"
        if isinstance(node, LateNode):  # the window's input events, with their own event time
            return self.event_time(self.node(node.inputs[0]).inputs[0])
        if isinstance(node, DeadLetterNode) or not node.inputs:
            return None
        return self.event_time(node.inputs[0])

    def explain(self) -> str:
        """Render the plan as indented text, one step per line."""
        lines = [f"pipeline {self.name!r}"]
        for n in self.nodes:
            src = f" <- {', '.join(n.inputs)}" if n.inputs else ""
            lines.append(f"  {n.id}: {n.describe()}{src}")
        return "\n".join(lines)

    def to_json(self) -> str:
        """The plan as JSON (for the CLI and dashboards)."""
        steps = [
            {"id": n.id, "kind": n.kind, "inputs": list(n.inputs), "description": n.describe()}
            for n in self.nodes
        ]
        return json.dumps({"pipeline": self.name, "steps": steps}, indent=2)


def _fmt_cols(schema: pl.Schema) -> str:
    return ", ".join(f"{k} ({v})" for k, v in schema.items())


def did_you_mean(names: list[str], schema: pl.Schema) -> str:
    """A hint naming the closest existing columns, or ''."""
    close = {n: difflib.get_close_matches(n, schema.names(), n=1) for n in names}
    hints = [f"{n!r} -> {c[0]!r}" for n, c in close.items() if c]
    return f"\n  did you mean: {', '.join(hints)}?" if hints else ""


def _probe(node: Node, schema: pl.Schema, build: Callable[[pl.LazyFrame], pl.LazyFrame]) -> pl.Schema:
    try:
        return build(pl.LazyFrame(schema=schema)).collect_schema()
    except pl.exceptions.ColumnNotFoundError as exc:
        first = str(exc).splitlines()[0]
        missing = re.findall(r'column "([^"]+)"', first) or re.findall(r"column '([^']+)'", first)
        first = first.split("; valid columns")[0]  # we list them below, with types
        raise PlanError(
            f"step {node.id!r} ({node.describe()}): {first}\n  columns available there: "
            f"{_fmt_cols(schema)}{did_you_mean(missing, schema)}"
        ) from None
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise PlanError(
            f"step {node.id!r} ({node.describe()}): {first}\n  columns available there: {_fmt_cols(schema)}"
        ) from None


def _union_schema(node: Node, inputs: list[tuple[str, pl.Schema]]) -> pl.Schema:
    """The schema a union gives at run time (columns by name, each type widened to fit every
    input); a column whose types only meet as text is an error, not a silent cast."""
    names = inputs[0][1].names()
    try:
        merged = pl.concat(
            [pl.LazyFrame(schema=s).select(names) for _, s in inputs], how="vertical_relaxed"
        ).collect_schema()
    except pl.exceptions.PolarsError:
        merged = None
    text = [c for c in names if any(s[c] != pl.String for _, s in inputs)]
    clash = names if merged is None else [c for c in text if merged[c] == pl.String]
    if clash:
        types = "\n".join(f"  {i}: " + ", ".join(f"{c} ({s[c]})" for c in clash) for i, s in inputs)
        raise PlanError(
            f"step {node.id!r}: union inputs disagree on the type of {', '.join(map(repr, clash))}:\n"
            f"{types}\n  hint: cast them to one type before the union, e.g. pl.col(...).cast(...)"
        )
    assert merged is not None
    return merged


def apply_stateless(node: Node, frame: pl.LazyFrame) -> pl.LazyFrame:
    """Apply filter / with_columns / select to a LazyFrame."""
    if isinstance(node, FilterNode):
        return frame.filter(node.predicate)
    if isinstance(node, WithColumnsNode):
        return frame.with_columns(*node.exprs)
    if isinstance(node, SelectNode):
        return frame.select(*node.exprs)
    raise TypeError(node)


def window_output_schema(node: WindowAggNode, schema: pl.Schema, et: str) -> pl.Schema:
    """Output schema of a window step: keys, window bounds, aggregates."""
    from riverbed.windows import T, from_ms_expr

    et_type = schema[et]
    probe = pl.LazyFrame(schema=schema).with_columns(event_time_expr(et, et_type).alias(T))
    out = probe.group_by(list(node.by)).agg(*(a.final(n) for n, a in node.aggs))
    out = out.with_columns(window_start=pl.lit(0, pl.Int64), window_end=pl.lit(0, pl.Int64))
    out = out.with_columns(
        from_ms_expr(pl.col("window_start"), et_type), from_ms_expr(pl.col("window_end"), et_type)
    )
    names = [*node.by, "window_start", "window_end", *(n for n, _ in node.aggs)]
    return out.select(names).collect_schema()


def resolve_schemas(plan: Plan, ctx: SourceContext) -> dict[str, pl.Schema | None]:
    """Compute every step's output schema, raising PlanError on the first invalid step.

    A step after a user function without a declared schema may be ``None`` (unknown until
    run time); validation then resumes at the next step whose schema is known.
    """
    out: dict[str, pl.Schema | None] = {}
    for node in plan.nodes:
        ins = [out[i] for i in node.inputs]
        first = ins[0] if ins else None
        if isinstance(node, ReadNode):
            try:
                schema: pl.Schema | None = node.source.schema(ctx)
            except RiverbedError:
                raise
            if node.event_time is not None and schema is not None:
                if node.event_time not in schema:
                    raise PlanError(
                        f"step {node.id!r}: event_time column {node.event_time!r} is not in "
                        f"{node.source.describe()}.\n  columns there: {_fmt_cols(schema)}"
                        f"{did_you_mean([node.event_time], schema)}"
                    )
                try:
                    event_time_expr(node.event_time, schema[node.event_time])
                except PlanError as exc:
                    raise PlanError(f"step {node.id!r} ({node.describe()}): {exc}") from None
            out[node.id] = schema
        elif isinstance(node, DeadLetterNode):
            out[node.id] = DEAD_LETTER_SCHEMA
        elif first is None:
            out[node.id] = None
        elif isinstance(node, FilterNode | WithColumnsNode | SelectNode):
            out[node.id] = _probe(node, first, functools.partial(apply_stateless, node))
        elif isinstance(node, MapBatchesNode | MapRowsNode):
            out[node.id] = node.schema
            if node.schema is None and isinstance(node, MapBatchesNode):
                try:
                    out[node.id] = node.fn(pl.DataFrame(schema=first)).schema
                except Exception:
                    out[node.id] = None
        elif isinstance(node, UnionNode):
            for other_id, other in zip(node.inputs[1:], ins[1:], strict=True):
                if other is not None and set(other.names()) != set(first.names()):
                    raise PlanError(
                        f"step {node.id!r}: union needs the same columns on every input.\n"
                        f"  {node.inputs[0]}: {_fmt_cols(first)}\n  {other_id}: {_fmt_cols(other)}"
                    )
            out[node.id] = _union_schema(node, [(i, s) for i, s in zip(node.inputs, ins, strict=True) if s])
        elif isinstance(node, WindowAggNode):
            et = plan.event_time(node.inputs[0])
            if et is None:
                raise PlanError(
                    f"step {node.id!r}: a window needs an event-time column.\n"
                    "  hint: p.read(source, event_time='ts')"
                )
            missing = [c for c in (*node.by, et) if c not in first]
            missing += [a.column for _, a in node.aggs if a.column and a.column not in first]
            if missing:
                raise PlanError(
                    f"step {node.id!r} ({node.describe()}): unknown column(s) "
                    f"{', '.join(map(repr, missing))}.\n  columns available there: "
                    f"{_fmt_cols(first)}{did_you_mean(missing, first)}"
                )
            out[node.id] = window_output_schema(node, first, et)
        elif isinstance(node, LateNode):
            # late events are the window step's *input* rows, not its output
            out[node.id] = out[plan.node(node.inputs[0]).inputs[0]]
        elif isinstance(node, DedupeNode):
            missing = [c for c in node.key if c not in first]
            if missing:
                raise PlanError(
                    f"step {node.id!r}: dedupe key {missing} not found; columns: {_fmt_cols(first)}"
                )
            out[node.id] = first
        elif isinstance(node, LookupJoinNode):
            table = node.table.schema(ctx)
            missing = [c for c in node.on if c not in first or c not in table]
            if missing:
                raise PlanError(
                    f"step {node.id!r}: join key(s) {missing} must be in both sides.\n"
                    f"  stream: {_fmt_cols(first)}\n  table: {_fmt_cols(table)}"
                )
            out[node.id] = (
                pl.LazyFrame(schema=first)
                .join(pl.LazyFrame(schema=table), on=list(node.on), how=node.how)
                .collect_schema()
            )
        elif isinstance(node, WriteNode):
            out[node.id] = first
        else:  # pragma: no cover - every node kind is handled above
            raise PlanError(f"unknown step kind {node.kind}")
    return out
