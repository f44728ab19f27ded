"""Dedupe: drop an event when the previous arrival of its key is within ``within`` of it in
event time (``|t - t_previous| < within``). Null keys are a key like any other.

Stream mode keeps, per key, the event time of its previous arrival, and forgets a key once
``t_previous + 2 * within <= watermark``. So that no duplicate can slip through a forgotten
key, an event is *late* when ``t + within <= watermark at its arrival``: it is dropped, counted
and sent to the step's ``late()`` (it still counts as its key's previous arrival). An on-time
event then always finds the state it needs, so the output never depends on micro-batch size,
and with nothing late it equals batch mode's. Example, ``within="10s"`` and watermark delay 0:
``a@0s, b@20s, a@5s`` — ``a@5s`` arrives when the watermark is 20 s; ``5 + 10 <= 20``, so it is
late (batch mode drops it too, as a duplicate of ``a@0s``).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from riverbed._cols import KEEP, LATE, SEEN, WM, T
from riverbed._errors import PlanError
from riverbed._plan import DedupeNode
from riverbed.operators._state import decode, encode
from riverbed.operators.base import Cols, Frame, Operator, Outputs, Runtime, StepContext, Tick, operator
from riverbed.windows import US, event_time_expr


@operator(DedupeNode)
class Dedupe(Operator):
    """Drop repeats of a key within some event time. Supports: batch, stream."""

    node: DedupeNode
    stateful = True
    ports = ("late",)

    def output_schema(self, inputs: list[pl.Schema], ctx: StepContext) -> pl.Schema | None:
        first = inputs[0]
        if ctx.event_time is None:
            raise PlanError(
                f"step {self.id!r}: dedupe needs an event-time column.\n"
                "  hint: p.read(source, event_time='ts')"
            )
        missing = [c for c in (*self.node.key, ctx.event_time) if c not in first]
        if missing:
            raise self.missing(missing, first)
        return first

    def side_schemas(self, inputs: list[pl.Schema | None], ctx: StepContext) -> dict[str, pl.Schema | None]:
        return {"late": inputs[0]}

    def needs(self, downstream: Cols, ctx: StepContext) -> Cols:
        if downstream is None:
            return None
        return downstream | set(self.node.key) | ({ctx.event_time} if ctx.event_time else set())

    def _t(self, schema: pl.Schema, ctx: StepContext) -> pl.Expr:
        et = ctx.event_time
        if et is None or et not in schema:
            raise PlanError(f"step {self.id!r}: dedupe needs its event-time column {et!r}")
        return event_time_expr(et, schema[et])

    def lower(self, inputs: list[pl.LazyFrame], ctx: StepContext) -> Outputs:
        lf = inputs[0]
        schema = lf.collect_schema()
        t = self._t(schema, ctx)
        prev = t.shift(1).over(list(self.node.key))
        kept = lf.filter(((t - prev).abs() >= self.node.within_ms * US) | prev.is_null())
        return Outputs(kept, {"late": pl.LazyFrame(schema=schema)})

    def spark_form(self) -> str:
        return "group"  # its batch form on each key's rows, in arrival order

    def spark_keys(self) -> list[str]:
        return list(self.node.key)

    def build(self, ctx: StepContext, resume: bytes | None) -> Runtime:
        seen = decode(resume).get("seen") if resume else None
        return DedupeRuntime(self, ctx, seen)


class DedupeRuntime(Runtime):
    """Per key, the event time of its previous arrival (µs)."""

    def __init__(self, op: Dedupe, ctx: StepContext, seen: pl.DataFrame | None) -> None:
        self.op = op
        self.ctx = ctx
        self.keys = list(op.node.key)
        self.within = op.node.within_ms * US
        self.seen = seen

    def process(self, inputs: list[Frame], tick: Tick) -> Outputs:
        frame = inputs[0]
        df = frame.collect() if isinstance(frame, pl.LazyFrame) else frame
        if df.width == 0:
            return Outputs(df, {"late": df})
        rows = df.with_columns(self.op._t(df.schema, self.ctx).alias(T))
        if self.seen is not None and self.seen.height:
            rows = rows.join(self.seen, on=self.keys, how="left", maintain_order="left", nulls_equal=True)
        else:
            rows = rows.with_columns(pl.lit(None, pl.Int64).alias(SEEN))
        prev = pl.col(T).shift(1).over(self.keys).fill_null(pl.col(SEEN))
        keep = prev.is_null() | ((pl.col(T) - prev).abs() >= self.within)
        late = pl.col(T) + self.within <= pl.col(WM)
        flagged = rows.with_columns(keep.alias(KEEP), late.fill_null(False).alias(LATE))
        last = flagged.group_by(self.keys).agg(pl.col(T).last().alias(SEEN))
        merged = last
        if self.seen is not None and self.seen.height:
            both = pl.concat([self.seen, last], how="vertical_relaxed")
            merged = both.group_by(self.keys, maintain_order=True).agg(pl.col(SEEN).last())
        if tick.watermark is not None:
            merged = merged.filter(pl.col(SEEN) + 2 * self.within > tick.watermark)
        self.seen = merged
        hidden = [T, SEEN, KEEP, LATE]
        is_late = pl.col(LATE)
        out = flagged.filter(pl.col(KEEP) & ~is_late).drop(hidden)
        late_rows = flagged.filter(is_late).drop(hidden)
        return Outputs(out, {"late": late_rows}, {"late": late_rows.height})

    def snapshot(self) -> bytes | None:
        return encode({"seen": self.seen})

    def figures(self) -> dict[str, Any]:
        return {"state_bytes": 0 if self.seen is None else int(self.seen.estimated_size())}
