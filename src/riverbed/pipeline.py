"""The user-facing API: ``Pipeline`` and ``Stream``.

Building a pipeline only adds steps to a plan; nothing runs until :meth:`Pipeline.run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from riverbed._errors import PlanError
from riverbed._plan import (
    DeadLetterNode,
    DedupeNode,
    Emit,
    FilterNode,
    LateNode,
    LookupJoinNode,
    MapBatchesNode,
    MapRowsNode,
    Node,
    Plan,
    ReadNode,
    SelectNode,
    UnionNode,
    Watermark,
    WindowAggNode,
    WithColumnsNode,
    WriteNode,
    node_id,
)
from riverbed._time import Duration, to_ms
from riverbed.aggregates import Agg
from riverbed.connectors.base import Endpoint, Sink, Source, sink_of, source_of
from riverbed.windows import Session, Sliding, Tumbling, WindowSpec

if TYPE_CHECKING:
    from riverbed.executors.result import RunResult


def watermark(max_delay: Duration = 0, *, idle_timeout: Duration | None = None) -> Watermark:
    """Bounded out-of-orderness watermark: max event time seen minus ``max_delay``.

    Parameters
    ----------
    max_delay
        How far behind the newest event an event may arrive and still count as on time.
    idle_timeout
        A partition with no events for this long (wall time) stops holding the watermark back.

    Examples
    --------
    >>> watermark(max_delay="10s")
    Watermark(max_delay_ms=10000, idle_timeout_ms=None)
    """
    delay = to_ms(max_delay, what="max_delay")
    if delay < 0:
        raise PlanError(f"max_delay must be >= 0, got {max_delay!r}")
    idle = None if idle_timeout is None else to_ms(idle_timeout, what="idle_timeout")
    return Watermark(delay, idle)


class Pipeline:
    """A named pipeline: a DAG of steps from sources to sinks, run as batch or stream.

    Examples
    --------
    >>> import polars as pl, riverbed as rb
    >>> p = rb.Pipeline("demo")
    >>> s = p.read(rb.testing.source([pl.DataFrame({"x": [1, -2, 3]})]))
    >>> out = rb.testing.collect()
    >>> _ = s.filter(pl.col("x") > 0).write(out)
    >>> _ = p.run(mode="batch", progress=False)
    >>> out.frame()["x"].to_list()
    [1, 3]
    """

    def __init__(self, name: str) -> None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise PlanError(f"pipeline name must be letters, digits, '_' or '-'; got {name!r}")
        self.name = name
        self._nodes: list[Node] = []

    # -- building ----------------------------------------------------------------------
    def _add(self, node_type: type[Node], inputs: tuple[str, ...], name: str | None = None, **kw: Any) -> str:
        """Add a step; its id is ``name`` or a digest of its own parameters (never its position)."""
        if name is not None and (not name or not name.replace("_", "").replace("-", "").isalnum()):
            raise PlanError(f"step name must be letters, digits, '_' or '-'; got {name!r}")
        probe = node_type(id="", inputs=inputs, **kw)
        step_id = node_id(probe.kind, probe.params(), name, inputs)
        clash = next((n for n in self._nodes if n.id == step_id), None)
        if clash is not None:
            raise PlanError(
                f"two steps would get the id {step_id!r}: {clash.describe()!r} and {probe.describe()!r}.\n"
                f"  hint: give one of them a name, e.g. .{probe.kind}(..., name='{probe.kind}_2')"
            )
        self._nodes.append(node_type(id=step_id, inputs=inputs, **kw))
        return step_id

    def read(
        self,
        source: Source | Endpoint | str,
        *,
        event_time: str | None = None,
        watermark: Watermark | Duration | None = None,
        name: str | None = None,
    ) -> Stream:
        """Add a source: a connector (``rb.files(...)``) or a URI string.

        Parameters
        ----------
        source
            A source connector or a URI understood by :func:`riverbed.source`.
        event_time
            Column holding each event's time (int epoch milliseconds, Datetime or Date).
            Needed by windows.
        watermark
            Watermark strategy for stream mode (default: ``watermark(max_delay=0)``); a
            duration such as ``"10s"`` means ``rb.watermark(max_delay="10s")``.
        name
            The step's id (default: derived from the source and event-time column).
        """
        from riverbed.connectors import resolve_source

        src = resolve_source(source) if isinstance(source, str) else source_of(source)
        if not isinstance(src, Source):
            raise PlanError(f"read() takes a source connector or a URI string, got {source!r}")
        if watermark is not None and not isinstance(watermark, Watermark):
            if isinstance(watermark, str | int | timedelta) and not isinstance(watermark, bool):
                watermark = globals()["watermark"](max_delay=watermark)  # a duration: max_delay
            else:
                raise PlanError(
                    f"watermark= takes rb.watermark(max_delay=...) or a duration, got {watermark!r}"
                )
        if watermark is not None and event_time is None:
            raise PlanError("a watermark needs an event_time column: p.read(..., event_time='ts')")
        step = self._add(ReadNode, (), name, source=src, event_time=event_time, watermark=watermark)
        return Stream(self, step)

    # -- plan --------------------------------------------------------------------------
    def plan(self) -> Plan:
        """The immutable plan built so far."""
        return Plan(self.name, tuple(self._nodes))

    def explain(self) -> str:
        """The plan as text."""
        return self.plan().explain()

    def to_json(self) -> str:
        """The plan as JSON."""
        return self.plan().to_json()

    def validate(
        self, *, home: str | Path | None = None, mode: Literal["batch", "stream"] = "batch"
    ) -> dict[str, pl.Schema | None]:
        """Resolve every step's schema and check the plan for ``mode``; raise
        :class:`PlanError` naming the first bad step."""
        from riverbed._home import resolve_home
        from riverbed.connectors.base import SourceContext
        from riverbed.operators import resolve

        resolved = resolve_home(home)
        res = resolve(
            self.plan(), SourceContext(mode=mode, home=resolved, pipeline=self.name), mode, resolved
        )
        return {n.id: res.schema(n.id) for n in self.plan().nodes}

    # -- running -----------------------------------------------------------------------
    def run(
        self,
        mode: Literal["batch", "stream"] = "batch",
        *,
        progress: bool | None = None,
        home: str | Path | None = None,
        engine: Literal["polars", "spark"] = "polars",
        **options: Any,
    ) -> RunResult:
        """Run the pipeline.

        Parameters
        ----------
        mode
            ``"batch"``: read the bounded input as a whole (no watermark, nothing late).
            ``"stream"``: micro-batches in arrival order with event-time watermarks.
        progress
            Show a progress display (default: when stderr is a terminal).
        home
            riverbed's data directory (default ``$RIVERBED_HOME`` or ``./.riverbed``).
        **options
            Stream options (:class:`riverbed.executors.options.StreamOptions`):
            ``max_batch_rows``, ``max_wait``, ``commit_interval``, ``stop``, ``stop_after``,
            ``live``, ``clock``, ``on_batch``, ``observer`` (a
            :class:`riverbed.observe.JobObserver`; also taken in batch mode),
            ``checkpoint_dir``, ``checkpoint_interval``, ``stop_at_end``, ``retry_timeout``
            (see the README's "Fault tolerance").
        engine
            Batch mode: ``"polars"`` (one machine) or ``"spark"`` (Apache Spark, options
            ``spark_master`` — ``local[N]``, a master or Spark Connect URL — or
            ``spark_session``; needs ``riverbed[spark]``, see
            :mod:`riverbed.executors.spark`).
        """
        from riverbed._home import resolve_home

        resolved = resolve_home(home)
        if engine not in ("polars", "spark"):
            raise PlanError(f"engine must be 'polars' or 'spark', got {engine!r}")
        if engine == "spark":
            if mode != "batch":
                raise PlanError(
                    "engine='spark' runs batch mode only.\n  hint: mode='batch', or engine='polars' to stream"
                )
            from riverbed.executors import spark

            known = {"spark_master": "master", "spark_session": "session", "collect_limit": "collect_limit"}
            unknown = sorted(set(options) - {*known, "observer"})
            if unknown:
                raise PlanError(f"the Spark engine takes no options {unknown}; it takes {sorted(known)}")
            kw = {known[k]: v for k, v in options.items() if k in known}
            spark_opts = spark.SparkOptions(home=resolved, observer=options.get("observer"), **kw)
            return spark.run(self.plan(), spark_opts)
        if mode == "batch":
            observer = options.pop("observer", None)
            if options:
                raise PlanError(f"batch mode takes no options {sorted(options)}")
            from riverbed.executors import batch
            from riverbed.executors.options import BatchOptions

            return batch.run(self.plan(), BatchOptions(progress=progress, home=resolved, observer=observer))
        if mode == "stream":
            from riverbed.executors import stream
            from riverbed.executors.options import StreamOptions

            opts = StreamOptions.build(progress=progress, home=resolved, **options)
            return stream.run(self.plan(), opts)
        raise PlanError(f"mode must be 'batch' or 'stream', got {mode!r}")

    def with_sinks(self, replace: Callable[[WriteNode], Sink]) -> Pipeline:
        """A copy of this pipeline whose every write goes to ``replace(write_step)``.

        Used by :func:`riverbed.testing.assert_same_results` to capture outputs.
        """
        copy = Pipeline(self.name)
        copy._nodes = [
            WriteNode(id=n.id, inputs=n.inputs, sink=replace(n)) if isinstance(n, WriteNode) else n
            for n in self._nodes
        ]
        return copy

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={len(self._nodes)})"


@dataclass(frozen=True)
class Stream:
    """A handle on one step's output. Methods add steps and return new handles.

    Supports: batch, stream.
    """

    pipeline: Pipeline
    node_id: str

    def _then(self, node_type: type[Node], name: str | None = None, **kw: Any) -> Stream:
        return Stream(self.pipeline, self.pipeline._add(node_type, (self.node_id,), name, **kw))

    def filter(self, predicate: pl.Expr, *, name: str | None = None) -> Stream:
        """Keep rows where the Polars expression is true.

        Supports: batch, stream.

        Examples
        --------
        >>> import polars as pl, riverbed as rb
        >>> p = rb.Pipeline("f")
        >>> s = p.read(rb.testing.source([pl.DataFrame({"x": [1, 2]})])).filter(pl.col("x") > 1)
        """
        if not isinstance(predicate, pl.Expr):
            raise PlanError(f"filter takes a Polars expression, got {type(predicate).__name__}")
        return self._then(FilterNode, name, predicate=predicate)

    def with_columns(self, *exprs: pl.Expr, name: str | None = None, **named: pl.Expr | Any) -> Stream:
        """Add or replace columns from Polars expressions.

        Supports: batch, stream.

        Examples
        --------
        >>> import polars as pl, riverbed as rb
        >>> p = rb.Pipeline("w")
        >>> s = p.read(rb.testing.source([pl.DataFrame({"x": [1]})]))
        >>> s = s.with_columns(y=pl.col("x") * 2)
        """
        all_exprs = (
            *exprs,
            *(pl.lit(v).alias(k) if not isinstance(v, pl.Expr) else v.alias(k) for k, v in named.items()),
        )
        return self._then(WithColumnsNode, name, exprs=tuple(all_exprs))

    def select(self, *exprs: pl.Expr | str, name: str | None = None, **named: pl.Expr) -> Stream:
        """Keep or compute exactly these columns.

        Supports: batch, stream.

        Examples
        --------
        >>> import polars as pl, riverbed as rb
        >>> p = rb.Pipeline("s")
        >>> s = p.read(rb.testing.source([pl.DataFrame({"x": [1], "y": [2]})])).select("x")
        """
        all_exprs = (
            *(pl.col(e) if isinstance(e, str) else e for e in exprs),
            *(v.alias(k) for k, v in named.items()),
        )
        return self._then(SelectNode, name, exprs=tuple(all_exprs))

    def map_batches(
        self, fn: Callable[[pl.DataFrame], pl.DataFrame], *, schema: Any = None, name: str | None = None
    ) -> Stream:
        """Apply a DataFrame -> DataFrame function to each micro-batch.

        The function must treat rows independently (its result on a concatenation must be the
        concatenation of its results), or batch and stream results will differ. ``schema``
        declares the output schema; otherwise it is found by calling ``fn`` on an empty frame.

        In stream mode the frame also carries riverbed's column ``__rb_wm`` (the watermark
        each row is judged against). Row-wise code (``filter``, ``with_columns``) keeps it and
        lateness stays exact; if the function drops it and changes the number of rows, rows
        are judged against the watermark at the start of their micro-batch.

        Supports: batch, stream.
        """
        return self._then(
            MapBatchesNode, name, fn=fn, schema=pl.Schema(schema) if schema is not None else None
        )

    def map_rows(
        self,
        fn: Callable[[dict[str, Any]], dict[str, Any] | None],
        *,
        schema: Any = None,
        name: str | None = None,
    ) -> Stream:
        """Apply a Python function to each row (dict -> dict, or None to drop the row).

        This is the documented slow path: one Python call per row. Prefer Polars expressions.

        Supports: batch, stream.
        """
        return self._then(MapRowsNode, name, fn=fn, schema=pl.Schema(schema) if schema is not None else None)

    def union(self, *others: Stream, name: str | None = None) -> Stream:
        """Merge streams with the same columns (in any order).

        Supports: batch, stream.
        """
        for o in others:
            if o.pipeline is not self.pipeline:
                raise PlanError("union: all streams must belong to the same pipeline")
        inputs = (self.node_id, *(o.node_id for o in others))
        return Stream(self.pipeline, self.pipeline._add(UnionNode, inputs, name))

    def window(
        self,
        spec: WindowSpec,
        *,
        by: str | list[str] | tuple[str, ...] | None = None,
        allowed_lateness: Duration = 0,
        emit: Emit = "final",
        name: str | None = None,
    ) -> Windowed:
        """Group events into event-time windows, per key; follow with ``.agg(...)``.

        Parameters
        ----------
        spec
            ``rb.tumbling(size)``, ``rb.sliding(size, every)`` or ``rb.session(gap)``.
        by
            Key column(s); windows are kept per key.
        allowed_lateness
            Stream mode: keep a window open this long past its end for late events.
        emit
            Stream mode: ``"final"`` emits each window once when the watermark passes its end;
            ``"update"`` re-emits changed windows every micro-batch (sinks upsert by key).
        name
            The step's id (default: derived from the window, keys and aggregates), which
            checkpoints and sinks' epoch records are keyed by.

        Supports: batch, stream.

        Examples
        --------
        >>> import polars as pl, riverbed as rb
        >>> p = rb.Pipeline("win")
        >>> ev = pl.DataFrame({"k": ["a", "a", "b"], "ts": [0, 61_000, 5_000], "v": [1, 2, 3]})
        >>> s = p.read(rb.testing.source([ev]), event_time="ts")
        >>> out = rb.testing.collect()
        >>> _ = s.window(rb.tumbling("1m"), by="k").agg(total=rb.sum("v")).write(out)
        >>> _ = p.run(progress=False)
        >>> out.frame().sort("k", "window_start").rows()
        [('a', 0, 60000, 1), ('a', 60000, 120000, 2), ('b', 0, 60000, 3)]
        """
        if not isinstance(spec, Tumbling | Sliding | Session):
            raise PlanError(
                f"window() takes a window spec such as rb.tumbling('1m'), rb.sliding('10m', "
                f"every='1m') or rb.session('30m'); got {spec!r}"
            )
        if isinstance(by, pl.Expr):
            raise PlanError(f"window(by=...) takes column names (str), got the expression {by}")
        keys = (by,) if isinstance(by, str) else tuple(by or ())
        if not all(isinstance(k, str) for k in keys):
            raise PlanError(f"window(by=...) takes column names (str), got {by!r}")
        if emit not in ("final", "update"):
            raise PlanError(f"emit must be 'final' or 'update', got {emit!r}")
        lateness = to_ms(allowed_lateness, what="allowed_lateness")
        return Windowed(self, spec, keys, lateness, emit, name)

    def dedupe(self, key: str | list[str], *, within: Duration, name: str | None = None) -> LateAware:
        """Drop events whose key was already seen within ``within`` of event time.

        Supports: batch, stream.
        """
        keys = (key,) if isinstance(key, str) else tuple(key)
        s = self._then(DedupeNode, name, key=keys, within_ms=to_ms(within, what="within"))
        return LateAware(s.pipeline, s.node_id)

    def lookup(
        self,
        table: Source | str,
        *,
        on: str | list[str],
        how: Literal["left", "inner"] = "left",
        name: str | None = None,
    ) -> Stream:
        """Join each event with a table (a file or a database table) loaded at start.

        Supports: batch, stream.
        """
        from riverbed.connectors import resolve_source

        if how not in ("left", "inner"):
            raise PlanError(
                f"lookup(how={how!r}): a lookup keeps each event once, so how is 'left' (events "
                "without a match keep nulls) or 'inner' (they are dropped)"
            )
        src = resolve_source(table) if isinstance(table, str) else source_of(table)
        keys = (on,) if isinstance(on, str) else tuple(on)
        return self._then(LookupJoinNode, name, table=src, on=keys, how=how)

    def dead_letters(self) -> Stream:
        """Records this read step rejected (bad rows), with source, position, field, error, raw.

        Supports: batch, stream.
        """
        node = self.pipeline.plan().node(self.node_id)
        if not isinstance(node, ReadNode):
            raise PlanError(f"dead_letters() is for a read step; {self.node_id!r} is a {node.kind}")
        return self._then(DeadLetterNode)

    def write(self, sink: Sink | Endpoint | str, *, name: str | None = None) -> Stream:
        """Send this stream to a sink (connector or URI). Returns the stream, so writes chain.

        Supports: batch, stream.
        """
        from riverbed.connectors import resolve_sink

        snk = resolve_sink(sink, pipeline=self.pipeline.name) if isinstance(sink, str) else sink_of(sink)
        if not isinstance(snk, Sink):
            raise PlanError(f"write() takes a sink connector or a URI string, got {sink!r}")
        self._then(WriteNode, name, sink=snk)
        return self


@dataclass(frozen=True)
class Windowed:
    """A stream grouped into windows, waiting for ``.agg(...)``."""

    stream: Stream
    spec: WindowSpec
    by: tuple[str, ...]
    allowed_lateness_ms: int
    emit: Emit
    name: str | None = None

    def agg(self, **aggs: Agg) -> WindowedStream:
        """Aggregate each window: ``.agg(revenue=rb.sum("amount"), orders=rb.count())``.

        Output columns: the keys, ``window_start``, ``window_end``, then the aggregates.
        """
        if not aggs:
            raise PlanError("agg() needs at least one aggregate, e.g. .agg(n=rb.count())")
        for name, a in aggs.items():
            if not isinstance(a, Agg):
                raise PlanError(f"agg {name}=: expected an aggregate like rb.sum('col'), got {a!r}")
            if name in ("window_start", "window_end", *self.by):
                raise PlanError(
                    f"agg {name}=: {name!r} is already an output column of the window "
                    "(keys, window_start, window_end); pick another name"
                )
        s = self.stream._then(
            WindowAggNode,
            self.name,
            window=self.spec,
            by=self.by,
            aggs=tuple(aggs.items()),
            allowed_lateness_ms=self.allowed_lateness_ms,
            emit=self.emit,
        )
        return WindowedStream(s.pipeline, s.node_id)


@dataclass(frozen=True)
class LateAware(Stream):
    """The output of a step that can drop events as late (a window, a dedupe)."""

    def late(self) -> Stream:
        """Events this step dropped as late (stream mode; always empty in batch mode).

        Supports: stream (batch mode: always empty).
        """
        return self._then(LateNode)


@dataclass(frozen=True)
class WindowedStream(LateAware):
    """The output of a window aggregation; ``late()`` gives the events it dropped as late."""
