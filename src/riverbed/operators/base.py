"""What an operator is: one node kind, defined once, with everything either executor needs.

An :class:`Operator` wraps a plan node (the definition) and gives

* ``output_schema`` / ``side_schemas`` / ``event_time``: what comes out (validation);
* ``needs``: the input columns it reads, given what later steps read (projection pushdown);
* ``lower``: its batch form, LazyFrames in, LazyFrame out (also what a Spark driver reuses);
* ``build``: its stream runtime, from the step's context plus resume state; the runtime's
  ``process`` handles one micro-batch and ``snapshot`` returns what a checkpoint stores.

Stateless operators get their runtime for free (:class:`StatelessRuntime` runs ``lower`` on
each micro-batch, carrying riverbed's hidden watermark column). Keyed-state operators own their
state. Late events and dead letters are *side outputs* of the step that makes them (ports
``late`` and ``dead``), so executors need no per-kind code: they loop over operators.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import polars as pl

from riverbed._cols import WM
from riverbed._errors import PlanError
from riverbed._plan import Node, Plan, did_you_mean, fmt_cols
from riverbed.connectors.base import SourceContext

Frame = pl.DataFrame | pl.LazyFrame
Cols = set[str] | None
"""A set of column names; None means every column."""


@dataclass
class StepContext:
    """What an operator may know about its step when it is lowered or built."""

    plan: Plan
    node: Node
    mode: str = "batch"
    home: Path = field(default_factory=lambda: Path(".riverbed"))
    source_ctx: SourceContext = field(default_factory=SourceContext)
    inputs: list[pl.Schema | None] = field(default_factory=list)
    """The resolved schema of each input (None: unknown until rows arrive)."""
    event_time: str | None = None
    """The event-time column of the (first) input, if there is one."""
    output: pl.Schema | None = None
    """The step's resolved output schema (None: unknown until rows arrive)."""

    @property
    def step(self) -> str:
        return self.node.id


@dataclass
class Tick:
    """The moment a micro-batch is processed: the job watermark before and after it."""

    watermark: int | None
    """The job watermark after this micro-batch's rows (µs; None: no event yet)."""
    start_watermark: int | None
    """The job watermark when the micro-batch started."""
    final: bool = False
    """Bounded input ended: flush every open window."""


@dataclass
class Outputs:
    """What a step produced: its main output and side outputs by port."""

    out: Frame
    sides: dict[str, Frame] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    """Figures of this micro-batch, e.g. ``late`` (events dropped as late)."""


class Runtime:
    """A step's stream runtime: one call of :meth:`process` per micro-batch."""

    def process(self, inputs: list[Frame], tick: Tick) -> Outputs:
        raise NotImplementedError

    def snapshot(self) -> bytes | None:
        """What a checkpoint stores for this step (None: stateless)."""
        return None

    def figures(self) -> dict[str, int]:
        """Live figures: ``open_windows``, ``state_bytes`` ... (empty when stateless)."""
        return {}


N = TypeVar("N", bound=Node)


class Operator:
    """Base of every operator; see the module docstring."""

    node: Node
    stateful: ClassVar[bool] = False
    ports: ClassVar[tuple[str, ...]] = ()
    """Side outputs this operator produces, besides ``out``."""

    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def id(self) -> str:
        return self.node.id

    # -- definition ----------------------------------------------------------------------
    def event_time(self, inputs: list[str | None]) -> str | None:
        """The event-time column of the output, from the inputs' event-time columns."""
        return inputs[0] if inputs else None

    def output_schema(self, inputs: list[pl.Schema], ctx: StepContext) -> pl.Schema | None:
        """The output schema from known input schemas; raise PlanError when invalid."""
        return inputs[0]

    def side_schemas(self, inputs: list[pl.Schema | None], ctx: StepContext) -> dict[str, pl.Schema | None]:
        """Schemas of the side outputs."""
        return {}

    def needs(self, downstream: Cols, ctx: StepContext) -> Cols:
        """Columns this step reads from its input(s), given those later steps read."""
        return None

    def update_key(self, keys: list[tuple[str, ...] | None], ctx: StepContext) -> tuple[str, ...] | None:
        """The upsert key of this step's output when it carries a window's ``emit="update"``
        rows (each replaces the earlier version with the same key), else None.

        By default a step cannot follow such a window: it would treat updates as new rows.
        """
        key = next((k for k in keys if k is not None), None)
        if key is None:
            return None
        raise PlanError(
            f"step {self.id!r} ({self.node.describe()}) follows a window with emit='update', whose "
            "rows replace earlier versions of the same window; this step would treat them as new rows.\n"
            "  hint: write the window's output directly (with_columns/select are fine), or "
            "use emit='final'"
        )

    def check(self, ctx: StepContext) -> None:
        """Extra checks at validation (capabilities, options); raise PlanError."""

    # -- batch ---------------------------------------------------------------------------
    def lower(self, inputs: list[pl.LazyFrame], ctx: StepContext) -> Outputs:
        """The batch form over whole inputs."""
        raise NotImplementedError

    # -- stream --------------------------------------------------------------------------
    def build(self, ctx: StepContext, resume: bytes | None) -> Runtime:
        """The stream runtime, from the step's context and its checkpointed state."""
        return StatelessRuntime(self, ctx)

    # -- Spark (batch) -------------------------------------------------------------------
    def spark_form(self) -> str:
        """How the Spark engine runs this step (see :mod:`riverbed.executors.spark`):
        ``map``: its ``lower`` on each Arrow batch, fused with its neighbours in one
        ``mapInArrow``; ``read``; ``union``; ``aggregate``: a partial aggregate per batch
        (``spark_partial``), merged per key (``spark_merge``), finished (``spark_finish``);
        ``group``: its ``lower`` on all rows of each key (``spark_keys``), in arrival order."""
        return "map"

    def spark_keys(self) -> list[str]:
        """The columns whose rows a ``group`` or ``aggregate`` step needs together."""
        return []

    def spark_prepare(self, ctx: StepContext) -> None:
        """Load on the driver what the step's ``lower`` needs (it is then shipped by value)."""

    def spark_read(self, spark: Any, columns: list[str]) -> Any:
        """Form ``read``: the step's rows as a Spark DataFrame of ``columns``."""
        raise NotImplementedError

    def spark_rows(self, df: pl.DataFrame) -> tuple[pl.DataFrame, int]:
        """Form ``read``: the rows read that go on, and how many were rejected."""
        raise NotImplementedError

    def spark_partial(self, lf: pl.LazyFrame, ctx: StepContext) -> pl.LazyFrame:
        """Form ``aggregate``: partial state per key over some rows."""
        raise NotImplementedError

    def spark_merge(self, partial: Any, functions: Any) -> Any | None:
        """Form ``aggregate``: Spark's own merge of partial states, or None if it has none."""
        raise NotImplementedError

    def merge_partials(self, partial: pl.LazyFrame) -> pl.LazyFrame:
        """Form ``aggregate``: riverbed's merge of partial states (all of a key's rows)."""
        raise NotImplementedError

    def spark_finish(self, merged: pl.LazyFrame, ctx: StepContext) -> pl.LazyFrame:
        """Form ``aggregate``: the output rows from merged states."""
        raise NotImplementedError

    def fail(self, message: str) -> PlanError:
        """A PlanError naming this step."""
        return PlanError(f"step {self.id!r} ({self.node.describe()}): {message}")

    def missing(self, names: list[str], schema: pl.Schema, hint: str = "") -> PlanError:
        """A PlanError for unknown columns, listing what exists and the closest names."""
        return self.fail(
            f"unknown column(s) {', '.join(map(repr, names))}.\n  columns available there: "
            f"{fmt_cols(schema)}{did_you_mean(names, schema)}{hint}"
        )


def pass_key(op: Operator, keys: list[tuple[str, ...] | None], ctx: StepContext) -> tuple[str, ...] | None:
    """``update_key`` of a step that passes rows through one by one: the key, if it survives."""
    key = keys[0] if len(keys) == 1 else None
    if key is None:
        return Operator.update_key(op, keys, ctx)
    lost = [k for k in key if ctx.output is not None and k not in ctx.output]
    if lost:
        raise PlanError(
            f"step {op.id!r} drops the key column(s) {lost} of an emit='update' window; a sink needs "
            f"them to replace updated windows.\n  hint: keep {list(key)}"
        )
    return key


class StatelessRuntime(Runtime):
    """The runtime of a stateless operator: its batch form on each micro-batch, lazily, with
    the hidden watermark column carried through."""

    def __init__(self, op: Operator, ctx: StepContext) -> None:
        self.op = op
        self.ctx = ctx

    def process(self, inputs: list[Frame], tick: Tick) -> Outputs:
        lazy = [f.lazy() for f in inputs]
        return self.op.lower(lazy, self.ctx)


def carried(lf: pl.LazyFrame) -> tuple[str, ...]:
    """The hidden columns a stateless step must carry (the watermark, in stream mode)."""
    return (WM,) if WM in lf.collect_schema().names() else ()


_REGISTRY: dict[type[Node], Callable[[Any], Operator]] = {}


def operator(node_type: type[N]) -> Callable[[type[Operator]], type[Operator]]:
    """Register an operator class for a node kind (the one place a kind is mapped)."""

    def register(cls: type[Operator]) -> type[Operator]:
        _REGISTRY[node_type] = cls
        return cls

    return register


def operator_for(node: Node) -> Operator:
    """The operator of a plan node."""
    try:
        make = _REGISTRY[type(node)]
    except KeyError:
        raise PlanError(f"step {node.id!r}: no operator for step kind {node.kind!r}") from None
    return make(node)
