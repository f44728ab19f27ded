"""The Spark engine for batch runs: the same operators, run by Apache Spark.

A thin driver, like :mod:`riverbed.executors.batch`; it knows forms, not step kinds (each
operator says its form with ``spark_form()``, see :class:`riverbed.operators.Operator`):

* a run of ``map`` steps (filter, with_columns, select, map_batches, lookup joins, writes ...)
  plus the *partial* half of the next window aggregation becomes one ``mapInArrow`` that runs
  the operators' own Polars ``lower`` on the Arrow batches of each Spark partition;
* the final merge of a window is Spark's ``groupBy(keys).agg`` where every state column merges
  by sum/min/max (count, sum, min, max, mean, user aggregates made of those); where it does
  not (first, last, count_distinct), partial states are repartitioned by key and merged by
  riverbed's own ``merge`` expressions, one ``mapInArrow`` call per partition (a vectorized
  ``applyInArrow``: one Polars query per partition instead of one Python call per key);
* ``group`` steps (session windows, dedupe) run their batch form over the rows of each key
  the same way, sorted back into arrival order (the order Spark reads the input in: for one
  file, the file's order);
* sources are read by Spark (Parquet, CSV, JSON lines; local or ``s3a://``), others refused;
* file sinks are written by Spark; other sinks get the rows collected to the driver and
  written by riverbed's own sink (up to ``collect_limit`` rows).

Rows counts come back through Spark accumulators (not on Spark Connect, which has none).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from riverbed._cols import IDX
from riverbed._errors import MissingExtraError, PlanError, SinkError
from riverbed._plan import Plan
from riverbed.connectors.base import SourceContext
from riverbed.executors import _spark_io as io
from riverbed.executors._spark_types import arrow_schema, ddl, to_riverbed, to_spark
from riverbed.executors.result import RunResult
from riverbed.operators import Operator, StepContext, resolve
from riverbed.operators.resolve import Resolved

Step = Callable[[pl.LazyFrame], pl.LazyFrame]
_PANDAS_3 = "PySpark does not yet fully support pandas >= 3.0.0"


@dataclass(frozen=True)
class SparkOptions:
    """Options of a batch run on Spark.

    Examples
    --------
    >>> SparkOptions(master="local[2]").master
    'local[2]'
    """

    master: str | None = None
    """``local[N]``, a cluster master URL (``spark://host:7077``, ``yarn``) or a Spark Connect
    URL (``sc://host:15002``); default ``$RIVERBED_SPARK_MASTER``, else the active session,
    else ``local[*]``."""
    session: Any = None
    """A SparkSession to use as it is (then ``master`` is ignored)."""
    home: Path = Path(".riverbed")
    collect_limit: int = 5_000_000
    """Most rows collected to the driver for a sink Spark cannot write itself."""
    observer: Any = None


@dataclass
class Pending:
    """A Spark DataFrame plus Polars steps still to run on its batches (fused later)."""

    df: Any
    schema: pl.Schema
    """riverbed's schema of ``df``'s columns."""
    steps: tuple[Step, ...] = ()
    out: pl.Schema = field(default_factory=pl.Schema)
    """The schema after ``steps``."""
    whole: bool = False
    """Run the steps once over each Spark partition (aggregations) rather than per batch."""
    merged: bool = False
    """``df`` holds merged aggregates: collecting it for the driver is cheap, so the steps
    of a sink collected there run on the driver (one Python stage less on Spark)."""

    def then(self, step: Step, out: pl.Schema, *, whole: bool = False) -> Pending:
        return replace(self, steps=(*self.steps, step), out=out, whole=self.whole or whole)


def _pyspark() -> Any:
    try:
        import pyspark.sql
    except ImportError:
        raise MissingExtraError("pyspark", "spark") from None
    return pyspark.sql


def session(opts: SparkOptions) -> Any:
    """The SparkSession a run uses (workers run this interpreter, riverbed reaches them)."""
    sql = _pyspark()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # else workers run `python3`
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if opts.session is not None:
        return opts.session
    master = opts.master or os.environ.get("RIVERBED_SPARK_MASTER")
    if master is None and (active := sql.SparkSession.getActiveSession()) is not None:
        return active
    builder = sql.SparkSession.builder.appName("riverbed")
    if master is not None and master.startswith("sc://"):
        spark = builder.remote(master).getOrCreate()
        io.ship_riverbed(spark, connect=True)
        return spark
    spark = (
        builder.master(master or "local[*]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")  # Spark's warnings would bury riverbed's summary
    if not (master or "local").startswith("local"):
        io.ship_riverbed(spark, connect=False)
    return spark


def run(plan: Plan, opts: SparkOptions) -> RunResult:
    """Run ``plan`` over its bounded inputs on Spark."""
    started = time.perf_counter()
    result = RunResult(plan.name, "batch (spark)")
    ctx = SourceContext(mode="batch", home=opts.home, pipeline=plan.name)
    res = resolve(plan, ctx, "batch", opts.home)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PANDAS_3, category=FutureWarning)
        spark = session(opts)
        driver = _Driver(spark, res, opts, result)
        driver.lower_all()
        driver.write_all()
    result.elapsed_s = time.perf_counter() - started
    if opts.observer is not None:  # the run's figures, once, for the status file and metrics
        steps = {
            k: {"rows_in": v, "rows_out": v} for k, v in {**result.rows_read, **result.rows_written}.items()
        }
        opts.observer.on_batch(
            {
                "events": result.total_read,
                "events_per_s": result.total_read / max(result.elapsed_s, 1e-9),
                "batch_rows": result.total_read,
                "batch_seconds": result.elapsed_s,
                "late": 0,
                "dead_letters": result.total_dead,
            },
            steps,
        )
    return result


class _Driver:
    def __init__(self, spark: Any, res: Resolved, opts: SparkOptions, result: RunResult) -> None:
        self.spark, self.res, self.opts, self.result = spark, res, opts, result
        self.plan = res.plan
        self.frames: dict[tuple[str, str], Pending] = {}
        self.counters: dict[str, Any] = {}
        self.connect = not hasattr(spark, "sparkContext") or "connect" in type(spark).__module__

    def counter(self, name: str) -> Any:
        if self.connect:
            return None
        self.counters[name] = self.counters.get(name) or self.spark.sparkContext.accumulator(0)
        return self.counters[name]

    def schema(self, node_id: str, port: str = "out") -> pl.Schema:
        got = self.res.schemas[(node_id, port)]
        if got is None:
            raise PlanError(
                f"step {node_id!r}: its output columns are known only when rows arrive; the Spark "
                "engine needs them before.\n  hint: declare schema= on map_batches/map_rows"
            )
        return got

    # -- planning ----------------------------------------------------------------------
    def lower_all(self) -> None:
        for node in self.plan.nodes:
            op, ctx = self.res.ops[node.id], self.light(node.id)
            form = op.spark_form()
            op.spark_prepare(self.res.contexts[node.id])
            ins = []
            for port in self.res.inputs(node.id):
                if port[1] == "dead":
                    raise PlanError(
                        f"step {node.id!r}: dead letters are not a stream on the Spark engine (rows "
                        "without an event time are counted and dropped).\n  hint: run on the Polars "
                        "engine to route them"
                    )
                ins.append(self.frames[port])
            out = self.schema(node.id)
            if form == "read":
                self.frames[(node.id, "out")] = self.read(op, ctx)
            elif form == "union":  # the columns every input still has (reads keep only used ones)
                out = pl.Schema({k: v for k, v in out.items() if all(k in p.out for p in ins)})
                parts = [self.materialize(p, node.id, out) for p in ins]
                df = parts[0]
                for other in parts[1:]:
                    df = df.unionByName(other)
                self.frames[(node.id, "out")] = Pending(df, out, out=out)
            elif form == "aggregate":
                self.frames[(node.id, "out")] = self.aggregate(op, ctx, ins[0], out)
            elif form == "group":
                self.frames[(node.id, "out")] = self.group(op, ctx, ins[0], out)
            else:
                step = _mapped(op, ctx)
                self.frames[(node.id, "out")] = ins[0].then(step, _probe(step, ins[0].out, out))
            used = {c.port for c in self.plan.consumers(node.id)}
            for side_port in used & set(op.ports) - {"dead"}:  # batch mode: nothing is late
                side = self.schema(node.id, side_port)
                empty = self.spark.createDataFrame([], ddl(side, f"step {node.id!r}"))
                self.frames[(node.id, side_port)] = Pending(empty, side, out=side)

    def light(self, node_id: str) -> StepContext:
        """The step's context without what cannot travel to workers (progress, the driver's
        source context)."""
        return replace(self.res.contexts[node_id], source_ctx=SourceContext())

    def read(self, op: Operator, ctx: StepContext) -> Pending:
        full = self.schema(op.id)
        need = self.res.needed_columns(op.id)
        cols = [c for c in full.names() if need is None or c in need]
        schema = pl.Schema({c: full[c] for c in cols})
        df = op.spark_read(self.spark, cols)
        self.result.rows_read[op.id] = 0
        rows = _read_rows(op, self.counter(f"read:{op.id}"), self.counter(f"dead:{op.id}"))
        return Pending(df, schema, (rows,), schema)

    def materialize(self, p: Pending, step: str, schema: pl.Schema | None = None) -> Any:
        """``p`` as a Spark DataFrame of ``schema`` (default: its own), its steps in one
        ``mapInArrow``."""
        out = schema or p.out
        if not p.steps and out == p.schema:
            return p.df
        where = f"step {step!r}"
        fn = _map_fn(p.schema, p.steps, out, arrow_schema(out, where), p.whole)
        return p.df.mapInArrow(fn, ddl(out, where))

    def aggregate(self, op: Operator, ctx: StepContext, p: Pending, out: pl.Schema) -> Pending:
        partial_step: Step = lambda lf: op.spark_partial(lf, ctx)  # noqa: E731
        partial_schema = partial_step(pl.LazyFrame(schema=p.out)).collect_schema()
        partial = self.materialize(p.then(partial_step, partial_schema, whole=True), op.id)
        from pyspark.sql import functions

        merged = op.spark_merge(partial, functions)
        if merged is None:  # riverbed's own merge over each key's partial states
            merge: Step = op.merge_partials
            keyed = partial.repartition(*[f"`{k}`" for k in op.spark_keys()])
            fn = _map_fn(partial_schema, (merge,), partial_schema, arrow_schema(partial_schema, op.id), True)
            merged = keyed.mapInArrow(fn, ddl(partial_schema, op.id))
        finish: Step = lambda lf: op.spark_finish(lf, ctx)  # noqa: E731
        return Pending(merged, partial_schema, merged=True).then(finish, out)

    def group(self, op: Operator, ctx: StepContext, p: Pending, out: pl.Schema) -> Pending:
        """``op``'s batch form over all rows of each key at once: rows are sent to the
        partition of their key and sorted back into arrival order there."""
        keys = op.spark_keys()
        wide = pl.Schema([*p.out.items(), (IDX, pl.Int64())])
        df = self.materialize(p.then(_number, wide, whole=True), op.id)
        keyed = (df.repartition(*[f"`{k}`" for k in keys]) if keys else df.coalesce(1)).sortWithinPartitions(
            IDX
        )
        step: Step = lambda lf: op.lower([lf.drop(IDX)], ctx).out.lazy()  # noqa: E731
        return Pending(keyed, wide, (step,), _probe(step, wide, out), whole=True)

    def collect(self, df: Any, step: str, where: str, schema: pl.Schema) -> pl.DataFrame:
        """Rows of ``df`` on the driver, up to ``collect_limit``."""
        rows = df.toArrow()
        if rows.num_rows > self.opts.collect_limit:
            raise SinkError(
                f"step {step!r}: {where} is not a sink Spark writes, and {rows.num_rows:,} rows (more "
                f"than collect_limit={self.opts.collect_limit:,}) would be collected to the driver to "
                "write it.\n  hint: write Parquet files (rb.file_sink('out/dir/', format='parquet')), "
                "or raise collect_limit"
            )
        return to_riverbed(rows, schema)

    # -- writing -----------------------------------------------------------------------
    def write_all(self) -> None:
        for w in self.plan.writes():
            schema = self.schema(w.id)
            pending = self.frames[(w.id, "out")]
            where = w.sink.describe()
            self.result.outputs[w.id] = where
            timed = time.perf_counter()
            written: int | None = None
            if io.spark_writes(w.sink):
                counted = pending.then(_counting(self.counter(f"write:{w.id}")), schema)
                io.write_files(self.materialize(counted, w.id), w.sink, w.id)
            else:
                if pending.merged:  # finish on the driver
                    got = _run(pending.steps, self.collect(pending.df, w.id, where, pending.schema))
                else:
                    got = self.collect(self.materialize(pending, w.id, schema), w.id, where, schema)
                frame = got.select([pl.col(k).cast(v) for k, v in schema.items()])
                io.write_collected(self.plan, w, schema, frame, self.opts.home)
                written = frame.height
                self.result.notes.append(f"{w.id}: {written:,} row(s) collected to the driver for {where}")
            if self.opts.observer is not None:
                self.opts.observer.on_step_timing(w.id, time.perf_counter() - timed)
            acc = self.counters.get(f"write:{w.id}")
            self.result.rows_written[w.id] = int(acc.value) if acc is not None else written or 0
        for r in self.plan.reads():
            acc, dead = self.counters.get(f"read:{r.id}"), self.counters.get(f"dead:{r.id}")
            self.result.rows_read[r.id] = 0 if acc is None else int(acc.value)
            if dead is not None and dead.value:
                self.result.dead_letters[r.id] = int(dead.value)
                self.result.notes.append(
                    f"{int(dead.value)} record(s) of {r.id} without an event time dropped (Spark engine)"
                )


# -- what runs on Spark's workers (shipped by value) -------------------------------------------
def _probe(step: Step, schema: pl.Schema, resolved: pl.Schema) -> pl.Schema:
    """The columns ``step`` gives over ``schema`` (which may lack columns no later step
    reads), with the types validation resolved."""
    try:
        got = step(pl.LazyFrame(schema=schema)).collect_schema()
    except Exception:  # a user function that does not take an empty frame
        return resolved
    return pl.Schema({k: resolved.get(k, v) for k, v in got.items()})


def _mapped(op: Operator, ctx: StepContext) -> Step:
    return lambda lf: op.lower([lf], ctx).out.lazy()


def _read_rows(op: Operator, rows: Any, dead: Any) -> Step:
    def step(lf: pl.LazyFrame) -> pl.LazyFrame:
        df = lf.collect()
        kept, n_dead = op.spark_rows(df)
        if rows is not None:
            rows.add(df.height)
            dead.add(n_dead)
        return kept.lazy()

    return step


def _counting(acc: Any) -> Step:
    def step(lf: pl.LazyFrame) -> pl.LazyFrame:
        if acc is None:
            return lf
        df = lf.collect()
        acc.add(df.height)
        return df.lazy()

    return step


def _number(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Number rows in arrival order: Spark partition, then position in it."""
    from pyspark import TaskContext

    task = TaskContext.get()
    base = (task.partitionId() if task is not None else 0) << 40
    return lf.with_row_index(IDX).select(pl.exclude(IDX), pl.col(IDX).cast(pl.Int64) + base)


def _run(steps: tuple[Step, ...], frame: pl.DataFrame) -> pl.DataFrame:
    lf = frame.lazy()
    for s in steps:
        lf = s(lf)
    return lf.collect()


def _map_fn(
    schema: pl.Schema, steps: tuple[Step, ...], out: pl.Schema, target: pa.Schema, whole: bool
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        if whole:  # one partial aggregate per Spark partition, not per Arrow batch
            received = list(batches)
            if not received:
                return
            frame = to_riverbed(pa.Table.from_batches(received), schema)
            yield from to_spark(_run(steps, frame), out, target).to_batches()
            return
        for b in batches:
            got = _run(steps, to_riverbed(b, schema))
            if got.height:
                yield from to_spark(got, out, target).to_batches()

    return fn
