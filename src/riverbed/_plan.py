"""The logical plan: an immutable DAG of frozen step definitions.

A node is pure definition: what a step does, never how an executor runs it (that is its
operator, in :mod:`riverbed.operators`). Each node's id is stable: the step's ``name=`` or a
digest of the node kind and its *own* parameters (never its position or its inputs), so
inserting or removing a stateless step upstream leaves the ids of windows, dedupes and sinks
(and with them checkpoints and sinks' epoch records) unchanged.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import polars as pl

from riverbed._time import format_ms
from riverbed.aggregates import Agg
from riverbed.connectors.base import Sink, Source
from riverbed.windows import WindowSpec

Emit = Literal["final", "update"]


@dataclass(frozen=True)
class Watermark:
    """Bounded out-of-orderness: watermark = max event time seen - ``max_delay_ms``.

    ``idle_timeout_ms``: a partition with no events for that long (processing time) stops
    holding the job's watermark back.
    """

    max_delay_ms: int = 0
    idle_timeout_ms: int | None = None


def where(fn: Callable[..., Any]) -> str:
    """'name at file:line' of a user function, for messages."""
    name = getattr(fn, "__qualname__", repr(fn))
    try:
        file = inspect.getsourcefile(fn)
        line = inspect.getsourcelines(fn)[1]
    except (OSError, TypeError):
        return name
    return f"{name} at {file}:{line}"


def fn_identity(fn: Callable[..., Any]) -> str:
    """A user function's stable identity: module and qualified name (not its file line)."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def digest(*parts: object) -> str:
    """A short stable digest of some parameters.

    Examples
    --------
    >>> digest("window", "tumbling(1m)") == digest("window", "tumbling(1m)")
    True
    """
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


@dataclass(frozen=True, eq=False)
class Node:
    """One step of the plan. ``id`` is the step's stable, unique name."""

    id: str
    inputs: tuple[str, ...]

    port: ClassVar[str] = "out"
    """Which output of its (first) input step a node consumes: ``out``, or a side output."""

    @property
    def kind(self) -> str:
        return type(self).__name__.removesuffix("Node").lower()

    def describe(self) -> str:
        return self.kind

    def params(self) -> tuple[object, ...]:
        """The node's own parameters, from which its id is derived."""
        return ()


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

    def params(self) -> tuple[object, ...]:
        return (self.source.identity(), self.event_time)


@dataclass(frozen=True, eq=False)
class FilterNode(Node):
    predicate: pl.Expr

    def describe(self) -> str:
        return f"filter {self.predicate}"

    def params(self) -> tuple[object, ...]:
        return (str(self.predicate),)


@dataclass(frozen=True, eq=False)
class WithColumnsNode(Node):
    exprs: tuple[pl.Expr, ...]

    def describe(self) -> str:
        return "with_columns " + ", ".join(str(e) for e in self.exprs)

    def params(self) -> tuple[object, ...]:
        return tuple(str(e) for e in self.exprs)


@dataclass(frozen=True, eq=False)
class SelectNode(Node):
    exprs: tuple[pl.Expr, ...]

    def describe(self) -> str:
        return "select " + ", ".join(str(e) for e in self.exprs)

    def params(self) -> tuple[object, ...]:
        return tuple(str(e) for e in self.exprs)


@dataclass(frozen=True, eq=False)
class MapBatchesNode(Node):
    fn: Callable[[pl.DataFrame], pl.DataFrame]
    schema: pl.Schema | None = None

    def describe(self) -> str:
        return f"map_batches {where(self.fn)}"

    def params(self) -> tuple[object, ...]:
        return (fn_identity(self.fn), self.schema)


@dataclass(frozen=True, eq=False)
class MapRowsNode(Node):
    fn: Callable[[dict[str, Any]], dict[str, Any] | None]
    schema: pl.Schema | None = None

    def describe(self) -> str:
        return f"map_rows {where(self.fn)} (slow path: one Python call per row)"

    def params(self) -> tuple[object, ...]:
        return (fn_identity(self.fn), self.schema)


@dataclass(frozen=True, eq=False)
class UnionNode(Node):
    def params(self) -> tuple[object, ...]:
        return (len(self.inputs),)


@dataclass(frozen=True, eq=False)
class WindowAggNode(Node):
    window: WindowSpec
    by: tuple[str, ...]
    aggs: tuple[tuple[str, Agg], ...]
    allowed_lateness_ms: int = 0
    emit: Emit = "final"

    @property
    def kind(self) -> str:
        return "window"

    def describe(self) -> str:
        aggs = ", ".join(f"{n}={a.describe()}" for n, a in self.aggs)
        by = f" by {', '.join(self.by)}" if self.by else ""
        late = f" allowed_lateness={format_ms(self.allowed_lateness_ms)}" if self.allowed_lateness_ms else ""
        return f"window {self.window.describe()}{by} agg {aggs} emit={self.emit}{late}"

    def params(self) -> tuple[object, ...]:
        aggs = tuple((n, a.describe()) for n, a in self.aggs)
        return (self.window.describe(), self.by, aggs, self.allowed_lateness_ms, self.emit)


@dataclass(frozen=True, eq=False)
class LateNode(Node):
    """The events a window or dedupe step dropped as late (stream mode; empty in batch)."""

    port: ClassVar[str] = "late"


@dataclass(frozen=True, eq=False)
class DeadLetterNode(Node):
    """The records a read step rejected."""

    port: ClassVar[str] = "dead"


@dataclass(frozen=True, eq=False)
class DedupeNode(Node):
    key: tuple[str, ...]
    within_ms: int

    def describe(self) -> str:
        return f"dedupe by {', '.join(self.key)} within {format_ms(self.within_ms)}"

    def params(self) -> tuple[object, ...]:
        return (self.key, self.within_ms)


@dataclass(frozen=True, eq=False)
class LookupJoinNode(Node):
    table: Source
    on: tuple[str, ...]
    how: Literal["left", "inner"] = "left"

    def describe(self) -> str:
        return f"lookup join {self.table.describe()} on {', '.join(self.on)} ({self.how})"

    def params(self) -> tuple[object, ...]:
        return (self.table.identity(), self.on, self.how)


@dataclass(frozen=True, eq=False)
class WriteNode(Node):
    sink: Sink

    def describe(self) -> str:
        return f"write {self.sink.describe()}"

    def params(self) -> tuple[object, ...]:
        return (self.sink.identity(),)


def node_id(kind: str, params: tuple[object, ...], name: str | None, inputs: tuple[str, ...]) -> str:
    """A step's id: its ``name``, else ``KIND_DIGEST`` of its own parameters. Side outputs
    (late events, dead letters) are named after the step that produces them."""
    if name is not None:
        return name
    if kind in ("late", "deadletter"):
        return f"{inputs[0]}.{'late' if kind == 'late' else 'dead_letters'}"
    return f"{kind}_{digest(kind, *params)}"


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

    def reads(self) -> list[ReadNode]:
        return [n for n in self.nodes if isinstance(n, ReadNode)]

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


def fmt_cols(schema: pl.Schema) -> str:
    """``a (Int64), b (String)`` for messages."""
    return ", ".join(f"{k} ({v})" for k, v in schema.items()) or "(none)"


def did_you_mean(names: list[str], schema: pl.Schema) -> str:
    """A hint naming the closest existing columns, or ''."""
    close = {n: difflib.get_close_matches(n, schema.names(), n=1) for n in names}
    hints = [f"{n!r} -> {c[0]!r}" for n, c in close.items() if c]
    return f"\n  did you mean: {', '.join(hints)}?" if hints else ""
