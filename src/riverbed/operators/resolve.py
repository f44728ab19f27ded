"""Validation: one pass over the plan's operators, before anything runs.

Resolves every step's output schema and event-time column, checks capabilities (an
``emit="update"`` window into a sink that cannot upsert, an unbounded source in batch mode,
a sink that cannot take a stream), and works out which columns each read step must deliver
(projection pushdown). The executors run what this returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from riverbed._errors import PlanError
from riverbed._plan import Plan
from riverbed.connectors.base import SourceContext
from riverbed.operators import dedupe, read, session, transform, udf, window
from riverbed.operators.base import Cols, Operator, StepContext, operator_for

Port = tuple[str, str]


@dataclass
class Resolved:
    """A validated plan: each step's operator and context, schemas and event time by port."""

    plan: Plan
    mode: str
    ops: dict[str, Operator] = field(default_factory=dict)
    contexts: dict[str, StepContext] = field(default_factory=dict)
    schemas: dict[Port, pl.Schema | None] = field(default_factory=dict)
    event_times: dict[Port, str | None] = field(default_factory=dict)
    update_keys: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    """Per step: the key of an ``emit="update"`` stream (rows replace rows with that key)."""

    def inputs(self, node_id: str) -> list[Port]:
        node = self.plan.node(node_id)
        return [(i, node.port) for i in node.inputs]

    def schema(self, node_id: str) -> pl.Schema | None:
        return self.schemas[(node_id, "out")]

    def needed_columns(self, node_id: str) -> Cols:
        """Columns of a step's output that later steps read (None: all of them)."""
        need: set[str] = set()
        for consumer in self.plan.consumers(node_id):
            if consumer.port != "out":
                continue
            got = self.ops[consumer.id].needs(self.needed_columns(consumer.id), self.contexts[consumer.id])
            if got is None:
                return None
            need |= got
        et = self.event_times[(node_id, "out")]
        return need | ({et} if et else set())


def resolve(plan: Plan, source_ctx: SourceContext, mode: str, home: Path) -> Resolved:
    """Validate ``plan`` for ``mode``; raise :class:`PlanError` naming the first bad step."""
    if not plan.writes():
        raise PlanError(f"pipeline {plan.name!r} writes nowhere.\n  hint: add .write(rb.sink('out.parquet'))")
    res = Resolved(plan, mode)
    for node in plan.nodes:
        op = operator_for(node)
        ports = res.inputs(node.id)
        schemas = [res.schemas[p] for p in ports]
        ets = [res.event_times[p] for p in ports]
        ctx = StepContext(plan, node, mode, home, source_ctx, schemas, ets[0] if ets else None)
        op.check(ctx)
        source_ctx.step = node.id
        if any(s is None for s in schemas):
            out = None  # after a user function with no declared schema: known at run time
        else:
            out = op.output_schema([s for s in schemas if s is not None], ctx)
        ctx.output = out
        res.ops[node.id] = op
        res.contexts[node.id] = ctx
        res.schemas[(node.id, "out")] = out
        res.event_times[(node.id, "out")] = op.event_time(ets)
        for port, schema in op.side_schemas(schemas, ctx).items():
            res.schemas[(node.id, port)] = schema
            res.event_times[(node.id, port)] = ets[0] if port == "late" and ets else None
        res.update_keys[node.id] = op.update_key([res.update_keys[i] for i in node.inputs], ctx)
    return res


__all__ = ["Resolved", "resolve", "read", "session", "transform", "udf", "window", "dedupe"]
