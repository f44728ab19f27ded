"""Window aggregation: tumbling, sliding and session windows, per key, over event time.

Batch form: one ``group_by`` over the whole input. Stream form: partial aggregates per open
window, held columnar and merged every micro-batch (one fused query per micro-batch for
fixed windows: stamp, split late rows, aggregate, fold, emit).

Lateness is judged per row against the watermark at that row's arrival (hidden column
``__rb_wm``), so it does not depend on micro-batch size:

* fixed windows: a window is late when ``window_end + allowed_lateness <= watermark``; an event
  is late (dropped, counted, sent to ``late()``) when *all* its windows are late. An event of a
  sliding window that is late for only some of its windows is dropped from those and counted
  in ``late_assignments``.
* sessions: see :mod:`riverbed.operators.session`.

Null keys form their own group, as in ``group_by`` (state joins match nulls).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from riverbed._cols import CLOSE, END, LATE, RIGHT, SID, WM, T
from riverbed._errors import PlanError
from riverbed._plan import WindowAggNode
from riverbed.aggregates import (
    aggregate_frame,
    combine_exprs,
    finish_expr,
    merge_exprs,
    partial_exprs,
    state_names,
)
from riverbed.operators._state import decode, encode
from riverbed.operators.base import Cols, Frame, Operator, Outputs, Runtime, StepContext, Tick, operator
from riverbed.windows import (
    US,
    Session,
    Sliding,
    Tumbling,
    assign_windows,
    bound_type,
    event_time_expr,
    from_us_expr,
    window_end_expr,
    window_start_expr,
)

START = "window_start"
ENDC = "window_end"


@operator(WindowAggNode)
class Window(Operator):
    """Aggregate events per key and event-time window. Supports: batch, stream."""

    node: WindowAggNode
    stateful = True
    ports = ("late",)

    def event_time(self, inputs: list[str | None]) -> str | None:
        return START

    def _columns(self, et: str | None) -> list[str]:
        cols = [*self.node.by, *(c for _, a in self.node.aggs for c in a.inputs())]
        return cols + ([et] if et else [])

    def check_columns(self, schema: pl.Schema, et: str | None) -> str:
        """The event-time column, after checking every column this step reads is there."""
        if et is None:
            raise PlanError(
                f"step {self.id!r}: a window needs an event-time column.\n"
                "  hint: p.read(source, event_time='ts')"
            )
        missing = [c for c in self._columns(et) if c not in schema]
        if missing:
            raise self.missing(
                missing,
                schema,
                "\n  hint: a map_rows/map_batches step before it may drop them; declare its schema=",
            )
        event_time_expr(et, schema[et])
        return et

    def output_schema(self, inputs: list[pl.Schema], ctx: StepContext) -> pl.Schema | None:
        schema = inputs[0]
        et = self.check_columns(schema, ctx.event_time)
        probe = pl.LazyFrame(schema=schema).with_columns(event_time_expr(et, schema[et]).alias(T))
        self._probe_merge(probe)
        try:
            out = aggregate_frame(probe, list(self.node.by), self.node.aggs).collect_schema()
        except pl.exceptions.PolarsError as exc:
            raise self.fail(f"aggregates do not fit the columns: {str(exc).splitlines()[0]}") from None
        bt = bound_type(schema[et])
        return pl.Schema(
            [
                *((k, schema[k]) for k in self.node.by),
                (START, bt),
                (ENDC, bt),
                *((n, out[n]) for n, _ in self.node.aggs),
            ]
        )

    def side_schemas(self, inputs: list[pl.Schema | None], ctx: StepContext) -> dict[str, pl.Schema | None]:
        return {"late": inputs[0]}

    def _probe_merge(self, probe: pl.LazyFrame) -> None:
        """Run every aggregate's partial -> merge -> finish on no rows, so a mistake in a user
        aggregate is a PlanError now, not an error once a window spans micro-batches."""
        keys = list(self.node.by)
        for name, agg in self.node.aggs:
            try:
                state = probe.group_by(keys).agg(*partial_exprs(name, agg))
                merged = state.group_by(keys).agg(*merge_exprs(name, agg))
                merged.with_columns(finish_expr(name, agg)).collect_schema()
            except Exception as exc:  # a user's expressions: any mistake, named
                raise self.fail(
                    f"aggregate {name}={agg.describe()} does not work: {type(exc).__name__}: {exc}\n"
                    "  hint: merge must return every state column of partial, and finish may "
                    "read only those"
                ) from None

    def needs(self, downstream: Cols, ctx: StepContext) -> Cols:
        if any(c.port == "late" for c in ctx.plan.consumers(self.id)):
            return None  # late events are written whole
        return set(self._columns(ctx.event_time))

    def update_key(self, keys: list[tuple[str, ...] | None], ctx: StepContext) -> tuple[str, ...] | None:
        Operator.update_key(self, keys, ctx)  # a window cannot follow another's updates
        return (*self.node.by, START) if self.node.emit == "update" else None

    def check(self, ctx: StepContext) -> None:
        if isinstance(self.node.window, Session) and self.node.emit == "update":
            raise self.fail(
                "emit='update' is not available for session windows (a session's start moves when "
                "sessions merge).\n  hint: emit='final'"
            )

    # -- batch -------------------------------------------------------------------------
    def lower(self, inputs: list[pl.LazyFrame], ctx: StepContext) -> Outputs:
        lf = inputs[0]
        schema = lf.collect_schema()
        et = self.check_columns(schema, ctx.event_time)
        et_type = schema[et]
        by = list(self.node.by)
        lf = lf.with_columns(event_time_expr(et, et_type).alias(T))
        spec = self.node.window
        if isinstance(spec, Session):
            gap = spec.gap_ms * US
            lf = lf.sort([*by, T], maintain_order=True, nulls_last=True)
            prev = pl.col(T).shift(1).over(by) if by else pl.col(T).shift(1)
            new = (pl.col(T) - prev >= gap).fill_null(True).cast(pl.Int64)
            sid = new.cum_sum().over(by) if by else new.cum_sum()
            bounds = (pl.col(T).min().alias(START), (pl.col(T).max() + gap).alias(END))
            out = aggregate_frame(lf.with_columns(sid.alias(SID)), [*by, SID], self.node.aggs, bounds)
        else:
            assigned = assign_windows(lf, spec)
            out = aggregate_frame(assigned, [*by, START], self.node.aggs).with_columns(
                window_end_expr(spec).alias(END)
            )
        late = pl.LazyFrame(schema=inputs[0].collect_schema())
        return Outputs(finish_frame(out, self.node, et_type), {"late": late})

    # -- stream ------------------------------------------------------------------------
    def build(self, ctx: StepContext, resume: bytes | None) -> Runtime:
        from riverbed.operators.session import SessionState

        state = decode(resume) if resume else {}
        if isinstance(self.node.window, Session):
            return WindowRuntime(self, ctx, SessionState(self.node, state))
        return WindowRuntime(self, ctx, FixedState(self.node, state))

    # -- Spark (batch) -----------------------------------------------------------------
    def spark_form(self) -> str:
        # a session's bounds depend on all of its key's events: its batch form per key
        return "group" if isinstance(self.node.window, Session) else "aggregate"

    def spark_keys(self) -> list[str]:
        if isinstance(self.node.window, Session):
            return list(self.node.by)
        return [*self.node.by, START]

    def spark_partial(self, lf: pl.LazyFrame, ctx: StepContext) -> pl.LazyFrame:
        """Partial state per key and window (``window_start`` in µs) over some rows."""
        spec = self.node.window
        assert isinstance(spec, Tumbling | Sliding)
        et = self.check_columns(lf.collect_schema(), ctx.event_time)
        timed = lf.with_columns(event_time_expr(et, lf.collect_schema()[et]).alias(T))
        return (
            assign_windows(timed, spec)
            .group_by(self.spark_keys())
            .agg(*(e for n, a in self.node.aggs for e in partial_exprs(n, a)))
        )

    def spark_merge(self, partial: Any, functions: Any) -> Any | None:
        """Spark's own ``groupBy(keys).agg`` over partial states, when every state column
        merges by sum, min or max (count, sum, min, max, mean, and user aggregates made of
        those); None when some state needs riverbed's merge (first, last, count_distinct)."""
        spark_fns = {"sum": functions.sum, "min": functions.min, "max": functions.max}
        cols = []
        for name, agg in self.node.aggs:
            for state, expr in zip(state_names(name, agg), merge_exprs(name, agg), strict=True):
                found = next((f for f in spark_fns if expr.meta.eq(getattr(pl.col(state), f)())), None)
                if found is None:
                    return None
                cols.append(spark_fns[found](functions.col(f"`{state}`")).alias(state))
        return partial.groupBy(*[f"`{k}`" for k in self.spark_keys()]).agg(*cols)

    def merge_partials(self, partial: pl.LazyFrame) -> pl.LazyFrame:
        """riverbed's merge of partial states (rows of one or more keys)."""
        return partial.group_by(self.spark_keys()).agg(
            *(e for n, a in self.node.aggs for e in merge_exprs(n, a))
        )

    def spark_finish(self, merged: pl.LazyFrame, ctx: StepContext) -> pl.LazyFrame:
        """The step's output rows from merged state (the same columns as ``lower``)."""
        spec = self.node.window
        assert isinstance(spec, Tumbling | Sliding) and ctx.inputs[0] is not None
        et_type = ctx.inputs[0][self.check_columns(ctx.inputs[0], ctx.event_time)]
        done = merged.with_columns(
            window_end_expr(spec).alias(END), *(finish_expr(n, a) for n, a in self.node.aggs)
        )
        return finish_frame(done, self.node, et_type)


def finish_frame(out: pl.LazyFrame, node: WindowAggNode, et_type: pl.DataType) -> pl.LazyFrame:
    """Final output columns: keys, bounds in the event-time type, aggregates; sorted."""
    by = list(node.by)
    return out.sort([START, *by], nulls_last=True).select(
        *by,
        from_us_expr(pl.col(START), et_type).alias(START),
        from_us_expr(pl.col(END), et_type).alias(ENDC),
        *(n for n, _ in node.aggs),
    )


class KeyedWindows:
    """Open windows of one step (the state a checkpoint stores)."""

    def __init__(self, node: WindowAggNode) -> None:
        self.node = node
        self.by = list(node.by)
        self.keys = [*self.by, START]
        self.lateness = node.allowed_lateness_ms * US
        self.state: pl.DataFrame | None = None

    def process(self, rows: pl.LazyFrame, tick: Tick) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
        """Add rows (with ``__rb_t`` and ``__rb_wm``); return (emitted, late rows, counts)."""
        raise NotImplementedError

    def emit_only(self, tick: Tick) -> pl.DataFrame:
        """Emit what the watermark closes when no rows arrived."""
        raise NotImplementedError

    def frames(self) -> dict[str, pl.DataFrame | None]:
        return {"state": self.state}

    def finish(self, out: pl.LazyFrame, et_type: pl.DataType) -> pl.DataFrame:
        with_results = out.with_columns(*(finish_expr(n, a) for n, a in self.node.aggs))
        return finish_frame(with_results, self.node, et_type).collect()

    def merge_all(self, frames: list[pl.DataFrame]) -> pl.DataFrame:
        """Merge partial states of the same windows by concatenation and ``merge``."""
        both = pl.concat(frames, how="vertical_relaxed")
        return both.group_by(self.keys, maintain_order=True).agg(
            *(e for n, a in self.node.aggs for e in merge_exprs(n, a))
        )


class FixedState(KeyedWindows):
    """Tumbling and sliding windows."""

    def __init__(self, node: WindowAggNode, snap: dict[str, pl.DataFrame | None]) -> None:
        super().__init__(node)
        spec = node.window
        assert isinstance(spec, Tumbling | Sliding)
        self.spec = spec
        self.size = spec.size_ms * US
        self.state = snap.get("state")
        combine = [combine_exprs(n, a, RIGHT) for n, a in node.aggs]
        self.combine = None if any(c is None for c in combine) else [e for c in combine for e in c or []]

    def process(self, rows: pl.LazyFrame, tick: Tick) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
        closes = self.size + self.lateness
        if isinstance(self.spec, Tumbling):  # one window per event: assign it once
            flagged = rows.with_columns(window_start_expr(self.spec, pl.col(T)).alias(START))
            flagged = flagged.with_columns((pl.col(START) + closes <= pl.col(WM)).alias(LATE))
            late_q = flagged.filter(pl.col(LATE)).drop(START, T, LATE)
            assigned = flagged.filter(~pl.col(LATE))
        else:  # an event is late when its last window is
            last = window_start_expr(self.spec, pl.col(T))
            flagged = rows.with_columns((last + closes <= pl.col(WM)).alias(LATE))
            late_q = flagged.filter(pl.col(LATE)).drop(T, LATE)
            assigned = assign_windows(flagged.filter(~pl.col(LATE)), self.spec)
        queries = [late_q]
        if isinstance(self.spec, Sliding):  # drop the late windows of events on time for others
            partly = pl.col(START) + closes <= pl.col(WM)
            queries.append(assigned.select(partly.sum().alias("n")))
            assigned = assigned.filter(~partly)
        partial_q = assigned.group_by(self.keys).agg(
            *(e for n, a in self.node.aggs for e in partial_exprs(n, a))
        )
        found = pl.collect_all([partial_q, *queries])
        partial, late = found[0], found[1]
        counts = {"late": late.height}
        if len(found) > 2:
            counts["late_assignments"] = int(found[2]["n"][0] or 0)
        return self._fold_and_emit(partial, tick), late, counts

    def emit_only(self, tick: Tick) -> pl.DataFrame:
        return self._fold_and_emit(None, tick)

    def _fold(self, partial: pl.DataFrame) -> pl.DataFrame:
        if self.state is None or self.state.height == 0:
            return partial
        if self.combine is None:
            return self.merge_all([self.state, partial])
        # only windows the state can hold need the join: newer ones are simply appended
        newest = self.state.get_column(START).max()
        overlap = partial.get_column(START) <= newest
        old, new = partial.filter(overlap), partial.filter(~overlap)
        merged = self.state
        if old.height:
            merged = self.state.join(
                old, on=self.keys, how="full", coalesce=True, suffix=RIGHT, nulls_equal=True
            ).select(*self.keys, *self.combine)
        if new.height:
            merged = pl.concat([merged, new], how="vertical_relaxed")
        return merged

    def _fold_and_emit(self, partial: pl.DataFrame | None, tick: Tick) -> pl.DataFrame:
        merged = self.state if partial is None else self._fold(partial)
        if merged is None:
            return pl.DataFrame()
        end = pl.col(START) + self.size
        if tick.final:
            close: pl.Expr = pl.lit(True)
        elif tick.watermark is None:
            close = pl.lit(False)
        else:
            close = end + self.lateness <= tick.watermark
        flagged = merged.with_columns(close.alias(CLOSE))
        self.state = flagged.filter(~pl.col(CLOSE)).drop(CLOSE)
        if self.node.emit == "final":
            out = flagged.filter(pl.col(CLOSE))
        elif partial is None:
            return flagged.clear().drop(CLOSE)
        else:
            out = flagged.join(partial.select(self.keys), on=self.keys, how="semi", nulls_equal=True)
        return out.drop(CLOSE).with_columns(end.alias(END))


class WindowRuntime(Runtime):
    """Stream runtime of a window step: learns the event-time type, runs the keyed state."""

    def __init__(self, op: Window, ctx: StepContext, windows: KeyedWindows) -> None:
        self.op = op
        self.ctx = ctx
        self.windows = windows
        self.et_type: pl.DataType | None = None
        schema = ctx.inputs[0] if ctx.inputs else None
        if schema is not None and ctx.event_time is not None and ctx.event_time in schema:
            self.et_type = schema[ctx.event_time]

    def process(self, inputs: list[Frame], tick: Tick) -> Outputs:
        rows = inputs[0]
        known = not (isinstance(rows, pl.DataFrame) and rows.width == 0)
        if known:
            schema = rows.lazy().collect_schema()
            et = self.op.check_columns(schema, self.ctx.event_time)
            self.et_type = schema[et]
        if self.et_type is None:  # nothing has reached this window yet
            return Outputs(pl.DataFrame(), {"late": pl.DataFrame()})
        et_type = self.et_type
        if known:
            et = self.ctx.event_time or ""
            lf = rows.lazy().with_columns(event_time_expr(et, et_type).alias(T))
            state, late, counts = self.windows.process(lf, tick)
        else:
            state, late, counts = self.windows.emit_only(tick), pl.DataFrame(), {}
        out = (
            self.windows.finish(state.lazy(), et_type)
            if state.width
            else pl.DataFrame(schema=self.ctx.output)
        )
        return Outputs(out.with_columns(pl.lit(tick.watermark, pl.Int64).alias(WM)), {"late": late}, counts)

    def snapshot(self) -> bytes | None:
        return encode(self.windows.frames())

    def figures(self) -> dict[str, Any]:
        state = self.windows.state
        return {
            "open_windows": 0 if state is None else state.height,
            "state_bytes": 0 if state is None else int(state.estimated_size()),
        }
