"""The batch executor: lowers the plan to Polars LazyFrames and runs them in one go.

Bounded input is seen as a whole: no watermark, nothing is late. Every sink's LazyFrame is
collected together (``pl.collect_all``) so shared steps run once.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from riverbed._errors import PlanError, RiverbedError, SinkError, SourceError
from riverbed._plan import (
    DeadLetterNode,
    DedupeNode,
    FilterNode,
    LateNode,
    LookupJoinNode,
    MapBatchesNode,
    MapRowsNode,
    Plan,
    ReadNode,
    SelectNode,
    UnionNode,
    WindowAggNode,
    WithColumnsNode,
    WriteNode,
    apply_stateless,
    resolve_schemas,
)
from riverbed._progress import Progress
from riverbed.connectors.base import DEAD_LETTER_SCHEMA, SinkContext, Source, SourceContext
from riverbed.executors._ops import apply_map_batches, apply_map_rows
from riverbed.executors.result import RunResult
from riverbed.pipeline import Pipeline
from riverbed.windows import (
    Session,
    T,
    assign_windows,
    event_time_expr,
    from_ms_expr,
    window_end_expr,
)


def read_all(source: Source, ctx: SourceContext) -> tuple[pl.LazyFrame, pl.DataFrame | None]:
    """The whole bounded input of a source, through its fast path or its readers."""
    fast = source.scan(ctx)
    if fast is not None:
        return fast
    frames: list[pl.DataFrame] = []
    dead: list[pl.DataFrame] = []
    for part in source.partitions(ctx):
        reader = source.open(part, None, ctx)
        try:
            while (batch := reader.next_batch(1_000_000, 1.0)) is not None:
                frames.append(batch)
                letters = reader.drain_dead_letters()
                if letters is not None:
                    dead.append(letters)
        finally:
            reader.close()
    schema = source.schema(ctx)
    data = pl.concat([f for f in frames if f.height] or [pl.DataFrame(schema=schema)], how="vertical_relaxed")
    return data.lazy(), (pl.concat(dead) if dead else None)


def window_aggregate(lf: pl.LazyFrame, node: WindowAggNode, et: str, et_type: pl.DataType) -> pl.LazyFrame:
    """All windows of a window step over the whole input (batch semantics)."""
    by = list(node.by)
    finals = [a.final(name) for name, a in node.aggs]
    lf = lf.with_columns(event_time_expr(et, et_type).alias(T))
    spec = node.window
    if isinstance(spec, Session):
        lf = lf.sort([*by, T], maintain_order=True)
        prev = pl.col(T).shift(1).over(by) if by else pl.col(T).shift(1)
        new = (pl.col(T) - prev >= spec.gap_ms).fill_null(True)
        sid = new.cast(pl.Int64).cum_sum().over(by) if by else new.cast(pl.Int64).cum_sum()
        out = (
            lf.with_columns(__rb_sid=sid)
            .group_by([*by, "__rb_sid"])
            .agg(
                pl.col(T).min().alias("window_start"),
                (pl.col(T).max() + spec.gap_ms).alias("window_end"),
                *finals,
            )
        )
    else:
        out = (
            assign_windows(lf, spec)
            .group_by([*by, "window_start"])
            .agg(*finals)
            .with_columns(window_end=window_end_expr(spec))
        )
    names = [n for n, _ in node.aggs]
    return out.sort(["window_start", *by]).select(
        *by,
        from_ms_expr(pl.col("window_start"), et_type).alias("window_start"),
        from_ms_expr(pl.col("window_end"), et_type).alias("window_end"),
        *names,
    )


def _split_null_event_time(node: ReadNode, lf: pl.LazyFrame) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Rows with an event time, and dead letters for those without one (as stream mode does:
    an event with no time belongs to no window)."""
    assert node.event_time is not None
    t = pl.col(node.event_time)
    letters = lf.filter(t.is_null()).select(
        source=pl.lit(node.source.describe()),
        position=pl.lit("batch"),
        field=pl.lit(node.event_time),
        error=pl.lit(f"event-time column {node.event_time!r} is null"),
        raw=pl.struct(pl.all()).struct.json_encode(),
    )
    return lf.filter(t.is_not_null()), letters


def _check_window_columns(node: WindowAggNode, et: str, schema: pl.Schema) -> None:
    """Columns a window step needs, checked again once the schema is known at run time
    (validation cannot see through map_rows/map_batches without a declared schema)."""
    missing = [c for c in (*node.by, et) if c not in schema]
    missing += [a.column for _, a in node.aggs if a.column and a.column not in schema]
    if missing:
        cols = ", ".join(f"{k} ({v})" for k, v in schema.items())
        raise PlanError(
            f"step {node.id!r} ({node.describe()}): unknown column(s) "
            f"{', '.join(map(repr, missing))}.\n  columns available there: {cols or '(none)'}\n"
            "  hint: a map_rows/map_batches step before it may drop them; declare its schema="
        )
    event_time_expr(et, schema[et])


def dedupe(lf: pl.LazyFrame, node: DedupeNode, et: str, et_type: pl.DataType) -> pl.LazyFrame:
    """Drop an event when the previous arrival of its key is within ``within`` of event time."""
    t = event_time_expr(et, et_type)
    prev = t.shift(1).over(list(node.key))
    return lf.filter(((t - prev).abs() >= node.within_ms) | prev.is_null())


def run_batch(pipeline: Pipeline, *, progress: bool | None, home: Path) -> RunResult:
    """Run ``pipeline`` over its bounded inputs."""
    started = time.perf_counter()
    plan: Plan = pipeline.plan()
    if not plan.writes():
        raise PlanError(f"pipeline {plan.name!r} writes nowhere.\n  hint: add .write(rb.sink('out.parquet'))")
    result = RunResult(plan.name, "batch")
    with Progress(progress) as prog:
        ctx = SourceContext(
            mode="batch", home=home, pipeline=plan.name, progress=prog if prog.enabled else None
        )
        resolve_schemas(plan, ctx)
        frames: dict[str, pl.LazyFrame] = {}
        dead: dict[str, pl.DataFrame | None] = {}
        no_time: dict[str, pl.LazyFrame] = {}  # rows without an event time: dead letters
        raw: dict[str, pl.LazyFrame] = {}  # each read step's rows before that split
        for node in plan.nodes:
            inputs = [frames[i] for i in node.inputs]
            if isinstance(node, ReadNode):
                ctx.step = node.id
                frames[node.id], dead[node.id] = read_all(node.source, ctx)
                raw[node.id] = frames[node.id]
                known = getattr(node.source, "null_count", lambda _: None)(node.event_time)
                if node.event_time is not None and known != 0:
                    frames[node.id], no_time[node.id] = _split_null_event_time(node, frames[node.id])
            elif isinstance(node, FilterNode | WithColumnsNode | SelectNode):
                frames[node.id] = apply_stateless(node, inputs[0])
            elif isinstance(node, MapBatchesNode):
                frames[node.id] = apply_map_batches(node, inputs[0].collect()).lazy()
            elif isinstance(node, MapRowsNode):
                frames[node.id] = apply_map_rows(node, inputs[0].collect()).lazy()
            elif isinstance(node, UnionNode):
                cols = inputs[0].collect_schema().names()
                frames[node.id] = pl.concat([f.select(cols) for f in inputs], how="vertical_relaxed")
            elif isinstance(node, WindowAggNode):
                et = plan.event_time(node.inputs[0])
                assert et is not None
                schema = inputs[0].collect_schema()
                _check_window_columns(node, et, schema)
                frames[node.id] = window_aggregate(inputs[0], node, et, schema[et])
            elif isinstance(node, LateNode):
                window_input = frames[plan.node(node.inputs[0]).inputs[0]]
                frames[node.id] = pl.LazyFrame(schema=window_input.collect_schema())
            elif isinstance(node, DeadLetterNode):
                letters = dead.get(node.inputs[0])
                parsed = letters.lazy() if letters is not None else pl.LazyFrame(schema=DEAD_LETTER_SCHEMA)
                untimed = no_time.get(node.inputs[0])
                frames[node.id] = parsed if untimed is None else pl.concat([parsed, untimed])
            elif isinstance(node, DedupeNode):
                et = plan.event_time(node.inputs[0])
                if et is None:
                    raise PlanError(f"step {node.id!r}: dedupe needs an event_time column")
                et_type = inputs[0].collect_schema()[et]
                frames[node.id] = dedupe(inputs[0], node, et, et_type)
            elif isinstance(node, LookupJoinNode):
                table, _ = read_all(node.table, ctx)
                frames[node.id] = inputs[0].join(table, on=list(node.on), how=node.how, maintain_order="left")
            elif isinstance(node, WriteNode):
                frames[node.id] = inputs[0]

        writes = plan.writes()
        reads = [n for n in plan.nodes if isinstance(n, ReadNode)]
        # rows read and rows without an event time, counted from one column only
        counts = [
            raw[r.id].select(
                pl.len().alias("n"),
                (pl.col(r.event_time or "").null_count() if r.id in no_time else pl.lit(0)).alias("nulls"),
            )
            for r in reads
        ]
        spinner = prog.task("run query", total=None)
        try:
            outs = pl.collect_all([frames[w.id] for w in writes] + counts, engine="streaming")
            untimed_ids = [r.id for r, c in zip(reads, outs[len(writes) :], strict=True) if c["nulls"][0]]
            rejected_rows = pl.collect_all([no_time[i] for i in untimed_ids]) if untimed_ids else []
        except pl.exceptions.PolarsError as exc:
            raise SourceError(f"pipeline {plan.name!r} failed: {exc}") from exc
        spinner.finish()
        for read_id, rejected in zip(untimed_ids, rejected_rows, strict=True):
            earlier = dead.get(read_id)
            dead[read_id] = rejected if earlier is None else pl.concat([earlier, rejected])
        for r, counted in zip(reads, outs[len(writes) :], strict=True):
            letters = dead.get(r.id)
            n_dead = 0 if letters is None else letters.height
            result.rows_read[r.id] = int(counted["n"][0]) - int(counted["nulls"][0]) + n_dead
            if n_dead:
                result.dead_letters[r.id] = n_dead
        consumed = {n.inputs[0] for n in plan.nodes if isinstance(n, DeadLetterNode)}
        for r in reads:
            letters = dead.get(r.id)
            if letters is not None and r.id not in consumed:
                target = home / "dead_letters" / plan.name / f"{r.id}.jsonl"
                target.parent.mkdir(parents=True, exist_ok=True)
                letters.write_ndjson(target)
                result.notes.append(
                    f"{letters.height} record(s) rejected by {r.id} written to {target} "
                    "(attach .dead_letters().write(...) to send them elsewhere)"
                )
        for w, df in zip(writes, outs[: len(writes)], strict=True):
            task = prog.task(f"write {w.sink.describe()}", total=1)
            sctx = SinkContext(mode="batch", home=home, pipeline=plan.name, step=w.id)
            try:
                writer = w.sink.open(sctx)
                try:
                    writer.write(df)
                    writer.commit(0)
                finally:
                    writer.close()
            except RiverbedError:
                raise
            except Exception as exc:  # a driver or writer error: name the step and the sink
                raise SinkError(
                    f"step {w.id!r}: cannot write to {w.sink.describe()}: {type(exc).__name__}: {exc}"
                ) from exc
            task.advance(1)
            result.rows_written[w.id] = df.height
            result.outputs[w.id] = w.sink.describe()
    result.elapsed_s = time.perf_counter() - started
    return result
