"""The stream executor: a micro-batch loop with exact event-time watermarks.

Each turn pulls a micro-batch from every partition (bounded by ``max_batch_rows`` and
``max_wait``), stamps each row with the watermark at its arrival (a vectorized cumulative max
per partition), runs the steps in plan order, emits windows the job watermark has passed,
writes, and commits sinks every ``commit_interval``. Bounded sources end the job with a
flush of every open window; unbounded ones run until ``stop`` is set, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from riverbed._errors import PlanError
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
from riverbed._time import Duration, to_ms
from riverbed.connectors.base import (
    DEAD_LETTER_SCHEMA,
    SinkContext,
    SinkWriter,
    SourceContext,
    SourceReader,
)
from riverbed.executors._ops import apply_map_batches, apply_map_rows
from riverbed.executors._projection import needed_columns
from riverbed.executors._window_state import WM, WindowState
from riverbed.executors.batch import read_all
from riverbed.executors.result import RunResult
from riverbed.pipeline import Pipeline
from riverbed.windows import Session, event_time_expr

NEG = -(2**62)
"""The watermark before any event: minus infinity as an int64."""


@dataclass
class StreamStats:
    """Live figures of a running stream job."""

    events: int = 0
    batches: int = 0
    watermark: int | None = None
    open_windows: int = 0
    state_bytes: int = 0
    late: int = 0
    dead_letters: int = 0
    started: float = field(default_factory=time.monotonic)
    last_batch_rows: int = 0
    ended: bool = False

    @property
    def events_per_s(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.events / elapsed if elapsed > 0 else 0.0

    def watermark_delay_s(self) -> float | None:
        """How far the watermark is behind wall-clock time (for epoch-ms event times)."""
        if self.watermark is None:
            return None
        return time.time() - self.watermark / 1000


@dataclass
class _Partition:
    read: ReadNode
    name: str
    reader: SourceReader
    delay: int
    idle_ms: int | None
    max_t: int | None = None
    last_active: float = 0.0
    ended: bool = False

    @property
    def wm(self) -> int:
        return NEG if self.max_t is None else self.max_t - self.delay


def _hidden(df: pl.DataFrame, keep: str | None = None) -> pl.DataFrame:
    """Drop riverbed's internal ``__rb_*`` columns (but ``keep``)."""
    return df.drop([c for c in df.columns if c.startswith("__rb_") and c != keep])


class _Job:
    """One run of a pipeline in stream mode."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        home: Path,
        max_batch_rows: int,
        max_wait_ms: int,
        commit_interval_ms: int,
        clock: Callable[[], float],
        on_batch: Callable[[StreamStats, dict[str, pl.DataFrame]], None] | None,
    ) -> None:
        self.plan: Plan = pipeline.plan()
        if not self.plan.writes():
            raise PlanError(f"pipeline {self.plan.name!r} writes nowhere")
        self.home = home
        self.max_rows = max_batch_rows
        self.max_wait = max_wait_ms / 1000
        self.commit_interval = commit_interval_ms / 1000
        self.clock = clock
        self.on_batch = on_batch
        self.ctx = SourceContext(mode="stream", home=home, pipeline=self.plan.name)
        self.schemas = resolve_schemas(self.plan, self.ctx)
        self.stats = StreamStats()
        self.result = RunResult(self.plan.name, "stream")
        self.job_wm = NEG
        self.parts: list[_Partition] = []
        self.windows: dict[str, WindowState] = {}
        self.dedupe: dict[str, pl.DataFrame] = {}
        self.tables: dict[str, pl.DataFrame] = {}
        self.writers: dict[str, SinkWriter] = {}
        self.map_schemas: dict[str, pl.Schema] = {}
        self.epoch = 0
        self.last_commit = time.monotonic()
        self.consumers = {n.id: len(self.plan.consumers(n.id)) for n in self.plan.nodes}
        self._open()

    # -- set-up -----------------------------------------------------------------------
    def _et(self, node_id: str, frame: pl.LazyFrame | pl.DataFrame | None = None) -> tuple[str, pl.DataType]:
        """The event-time column after ``node_id`` and its type: from the plan's schemas, or,
        after a user function with no declared schema, from the rows themselves."""
        et = self.plan.event_time(node_id)
        schema = self.schemas.get(node_id)
        if schema is None and frame is not None and not _unknown(frame):
            schema = frame.lazy().collect_schema()
        if et is None or schema is None or et not in schema:
            names = ", ".join(schema.names()) if schema is not None else "unknown"
            raise PlanError(
                f"step {node_id!r}: the event-time column {et!r} is not among its columns "
                f"({names}).\n  hint: keep it in select()/map_rows(), or declare schema= on "
                "map_rows/map_batches"
            )
        return et, schema[et]

    def _window(self, node: WindowAggNode, frame: pl.LazyFrame | pl.DataFrame) -> WindowState:
        """The window step's state, built when the event-time type is first known."""
        if node.id not in self.windows:
            et, et_type = self._et(node.inputs[0], frame)
            self.windows[node.id] = WindowState(node, et, et_type)
        return self.windows[node.id]

    def _open(self) -> None:
        now = self.clock()
        for node in self.plan.nodes:
            if isinstance(node, ReadNode):
                wm = node.watermark
                self.ctx.step = node.id
                needed = needed_columns(self.plan, node.id)
                self.ctx.columns = sorted(needed) if needed is not None else None
                for part in node.source.partitions(self.ctx):
                    reader = node.source.open(part, None, self.ctx)
                    self.parts.append(
                        _Partition(
                            node,
                            part,
                            reader,
                            delay=wm.max_delay_ms if wm else 0,
                            idle_ms=wm.idle_timeout_ms if wm else None,
                            last_active=now,
                        )
                    )
            elif isinstance(node, WindowAggNode):
                if isinstance(node.window, Session) and node.emit == "update":
                    raise PlanError(
                        f"step {node.id!r}: emit='update' is not available for session windows "
                        "(a session's start moves when sessions merge).\n  hint: emit='final'"
                    )
                if self.schemas.get(node.inputs[0]) is not None:
                    self._window(node, pl.DataFrame())
            elif isinstance(node, LookupJoinNode):
                table, _ = read_all(node.table, SourceContext(mode="batch", home=self.home))
                self.tables[node.id] = table.collect()
            elif isinstance(node, WriteNode):
                key: tuple[str, ...] = ()
                emit = "append"
                src = self.plan.node(node.inputs[0])
                if isinstance(src, WindowAggNode) and src.emit == "update":
                    key, emit = (*src.by, "window_start"), "update"
                sctx = SinkContext(
                    mode="stream",
                    home=self.home,
                    pipeline=self.plan.name,
                    step=node.id,
                    key=key,
                    emit=emit,  # type: ignore[arg-type]
                )
                self.writers[node.id] = node.sink.open(sctx)
                self.result.outputs[node.id] = node.sink.describe()
                self.result.rows_written[node.id] = 0

    # -- watermarks -------------------------------------------------------------------
    def _active(self, now: float) -> list[_Partition]:
        """Partitions that hold the watermark: not ended, not idle, with event time."""
        out = []
        for p in self.parts:
            if p.ended or p.read.event_time is None:
                continue
            if p.idle_ms is not None and (now - p.last_active) * 1000 >= p.idle_ms:
                continue
            out.append(p)
        return out

    def _advance_job_wm(self, now: float) -> None:
        active = self._active(now)
        if active:
            self.job_wm = max(self.job_wm, min(p.wm for p in active))

    def _stamp(self, p: _Partition, df: pl.DataFrame, others: int) -> pl.LazyFrame:
        """Add ``__rb_wm``: the watermark each row is judged against (before it arrived).

        Lazy, so it fuses into the query of the step that consumes the rows.
        """
        et = p.read.event_time
        assert et is not None
        t = event_time_expr(et, df.schema[et])
        if df.get_column(et).null_count():
            self._dead(p.read.id, df.filter(t.is_null()), f"event-time column {et!r} is null", p)
            df = df.filter(t.is_not_null())
        if df.height == 0:
            return df.lazy().with_columns(pl.lit(self.job_wm, pl.Int64).alias(WM))
        start_max = NEG if p.max_t is None else p.max_t
        cm = t.cum_max()
        before = pl.max_horizontal(cm.shift(1).fill_null(start_max), pl.lit(start_max)) - p.delay
        thr = pl.max_horizontal(pl.min_horizontal(before, pl.lit(others)), pl.lit(self.job_wm))
        col = df.get_column(et)
        batch_max = int(col.max() if col.dtype.is_integer() else df.select(t.max()).item())  # type: ignore[arg-type]
        p.max_t = batch_max if p.max_t is None else max(p.max_t, batch_max)
        return df.lazy().with_columns(thr.cast(pl.Int64).alias(WM))

    def _dead(self, read_id: str, rows: pl.DataFrame, error: str, p: _Partition) -> None:
        letters = rows.select(
            source=pl.lit(p.read.source.describe()),
            position=pl.lit(f"partition {p.name}"),
            field=pl.lit(p.read.event_time),
            error=pl.lit(error),
            raw=pl.struct(pl.all()).struct.json_encode(),
        )
        self._add_dead(read_id, letters)

    def _add_dead(self, read_id: str, letters: pl.DataFrame) -> None:
        self.pending_dead.setdefault(read_id, []).append(letters)
        self.result.dead_letters[read_id] = self.result.dead_letters.get(read_id, 0) + letters.height
        self.stats.dead_letters += letters.height

    # -- pulling ----------------------------------------------------------------------
    def _pull(self) -> None:
        """One micro-batch from the partitions, bounded by rows and wait time."""
        rows = 0
        started = time.monotonic()
        live = [p for p in self.parts if not p.ended]
        if not live:
            return
        # start each pull at the next partition, so a busy one cannot starve the others
        self._turn = (getattr(self, "_turn", -1) + 1) % len(live)
        live = live[self._turn :] + live[: self._turn]
        first_rows_at: float | None = None
        while rows < self.max_rows:
            budget = (
                self.max_wait if first_rows_at is None else self.max_wait - (time.monotonic() - first_rows_at)
            )
            if budget <= 0:
                break
            per_reader = budget if len(live) == 1 else min(budget, 0.005)
            progressed = False
            for p in live:
                if p.ended:
                    continue
                batch = p.reader.next_batch(self.max_rows - rows, per_reader)
                letters = p.reader.drain_dead_letters()
                if letters is not None and letters.height:
                    self._add_dead(p.read.id, letters)  # rejected records were read too
                    self.result.rows_read[p.read.id] = (
                        self.result.rows_read.get(p.read.id, 0) + letters.height
                    )
                if batch is None:
                    p.ended = True
                    continue
                if batch.height:
                    self.result.rows_read[p.read.id] = self.result.rows_read.get(p.read.id, 0) + batch.height
                    progressed = True
                    p.last_active = self.clock()
                    rows += batch.height
                    self._pulled.append((p, batch))
                    if first_rows_at is None:
                        first_rows_at = time.monotonic()
                if rows >= self.max_rows:
                    break
            live = [p for p in live if not p.ended]
            if not live:
                break
            waited = time.monotonic() - started
            if not progressed and first_rows_at is None and waited >= self.max_wait:
                break

    # -- one micro-batch through the plan ---------------------------------------------
    def step(self) -> bool:
        """Run one micro-batch. Returns False when the job has finished."""
        self.pending_dead: dict[str, list[pl.DataFrame]] = {}
        self._pulled: list[tuple[_Partition, pl.DataFrame]] = []
        start_wms = {id(p): p.wm for p in self.parts}
        self.start_job_wm = self.job_wm
        self._pull()
        now = self.clock()
        active = self._active(now)
        inputs: dict[str, list[pl.DataFrame | pl.LazyFrame]] = {}
        for p, batch in self._pulled:
            if p.read.event_time is None:
                inputs.setdefault(p.read.id, []).append(batch)
                continue
            others = min((start_wms[id(o)] for o in active if o is not p), default=2**62)
            inputs.setdefault(p.read.id, []).append(self._stamp(p, batch, others))
        self._advance_job_wm(now)
        final = all(p.ended for p in self.parts)
        rows_in = sum(b.height for _, b in self._pulled)
        self.stats.events += rows_in
        self.stats.last_batch_rows = rows_in
        idle = not rows_in and not final and not self.pending_dead and self.job_wm == self.start_job_wm
        outputs: dict[str, pl.DataFrame] = {}
        if not idle:  # nothing arrived and the watermark did not move: nothing to compute
            self.stats.batches += 1
            outputs = self._run_plan(inputs, final)
        self.stats.watermark = None if self.job_wm == NEG else self.job_wm
        self.stats.open_windows = sum(w.open_windows for w in self.windows.values())
        self.stats.state_bytes = sum(w.state_bytes for w in self.windows.values()) + sum(
            int(d.estimated_size()) for d in self.dedupe.values()
        )
        if final or time.monotonic() - self.last_commit >= self.commit_interval:
            self.commit()
        if self.on_batch is not None:
            self.on_batch(self.stats, outputs)
        self.stats.ended = final
        return not final

    def _run_plan(
        self, inputs: dict[str, list[pl.DataFrame | pl.LazyFrame]], final: bool
    ) -> dict[str, pl.DataFrame]:
        """Run one micro-batch through the steps. Stateless steps stay lazy and fuse into the
        query of the next step that needs rows (a window, a user function, a write)."""
        out: dict[str, pl.LazyFrame | pl.DataFrame] = {}
        written: dict[str, pl.DataFrame] = {}
        late_of: dict[str, pl.DataFrame] = {}

        def rows(node_id: str) -> pl.DataFrame:
            frame = out[node_id]
            if isinstance(frame, pl.LazyFrame):
                frame = frame.collect()
                out[node_id] = frame
            return frame

        for node in self.plan.nodes:
            schema = self.schemas.get(node.id)
            src_id = node.inputs[0] if node.inputs else ""
            if node.inputs and all(_unknown(out[i]) for i in node.inputs):
                # no rows and no known columns (a user function emptied every batch so far)
                if isinstance(node, WindowAggNode):
                    out[src_id] = pl.DataFrame()
                elif not isinstance(node, LateNode | DeadLetterNode):
                    out[node.id] = pl.DataFrame()
                    continue
            if isinstance(node, ReadNode):
                frames = inputs.get(node.id, [])
                if frames:
                    lazy = [f.lazy() for f in frames]
                    out[node.id] = pl.concat(lazy, how="vertical_relaxed") if len(lazy) > 1 else lazy[0]
                else:
                    df = pl.DataFrame(schema=schema)
                    if node.event_time is not None:
                        df = df.with_columns(pl.lit(None, pl.Int64).alias(WM))
                    out[node.id] = df
                self.result.rows_read.setdefault(node.id, 0)
            elif isinstance(node, FilterNode | WithColumnsNode):
                out[node.id] = apply_stateless(node, out[src_id].lazy())
            elif isinstance(node, SelectNode):
                keep_wm = WM in out[src_id].lazy().collect_schema().names()
                exprs = (*node.exprs, pl.col(WM)) if keep_wm else node.exprs
                out[node.id] = out[src_id].lazy().select(*exprs)
            elif isinstance(node, MapBatchesNode | MapRowsNode):
                src = rows(src_id)
                origin: list[int] = []
                if not src.height:
                    df = pl.DataFrame()
                elif isinstance(node, MapBatchesNode):  # sees __rb_wm: a filter keeps it
                    df = apply_map_batches(node, _hidden(src, keep=WM))
                else:
                    df = apply_map_rows(node, _hidden(src), origin)
                if df.height:
                    self.map_schemas[node.id] = df.schema
                else:  # a batch the function emptied: the columns it gives when it gives rows
                    known = node.schema or self.map_schemas.get(node.id) or schema
                    df = pl.DataFrame(schema=known) if known is not None else pl.DataFrame()
                if WM in src.columns:
                    df = df.with_columns(self._carry_watermark(node, src, df, origin))
                out[node.id] = df
            elif isinstance(node, UnionNode):
                cols = out[src_id].lazy().collect_schema().names()
                out[node.id] = pl.concat(
                    [out[i].lazy().select(cols) for i in node.inputs], how="vertical_relaxed"
                )
            elif isinstance(node, WindowAggNode):
                wm = None if self.job_wm == NEG else self.job_wm
                if node.id not in self.windows and _unknown(out[src_id]):
                    out[node.id] = pl.DataFrame()  # nothing has reached this window yet
                    continue
                emitted = self._window(node, out[src_id]).process(out[src_id], wm, final=final)
                windows = emitted.windows
                if windows.width == 0:
                    windows = pl.DataFrame(schema=schema)
                out[node.id] = windows.with_columns(pl.lit(self.job_wm, pl.Int64).alias(WM))
                late_of[node.id] = emitted.late
                n_late = emitted.late.height
                if n_late:
                    self.result.late[node.id] = self.result.late.get(node.id, 0) + n_late
                    self.stats.late += n_late
            elif isinstance(node, LateNode):
                out[node.id] = late_of.get(src_id, pl.DataFrame())
            elif isinstance(node, DeadLetterNode):
                letters = self.pending_dead.pop(src_id, [])
                out[node.id] = pl.concat(letters) if letters else pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
            elif isinstance(node, DedupeNode):
                out[node.id] = self._dedupe(node, rows(src_id))
            elif isinstance(node, LookupJoinNode):
                out[node.id] = (
                    out[src_id]
                    .lazy()
                    .join(self.tables[node.id].lazy(), on=list(node.on), how=node.how, maintain_order="left")
                )
            elif isinstance(node, WriteNode):
                df = _hidden(rows(src_id))
                self.writers[node.id].write(df)
                self.result.rows_written[node.id] += df.height
                written[node.id] = df
            if self.consumers.get(node.id, 0) > 1 and isinstance(out.get(node.id), pl.LazyFrame):
                rows(node.id)  # shared by several steps: compute once
        for read_id, letters in self.pending_dead.items():  # not consumed by a dead-letter step
            if letters:
                self._spill_dead(read_id, pl.concat(letters))
        emitted_windows = {k: v for k, v in out.items() if isinstance(v, pl.DataFrame) and k in self.windows}
        return {**emitted_windows, **written}

    def _carry_watermark(
        self, node: MapBatchesNode | MapRowsNode, src: pl.DataFrame, df: pl.DataFrame, origin: list[int]
    ) -> pl.Series:
        """Each output row of a user function keeps the watermark of the row it came from:
        map_rows knows its origin; map_batches keeps them when it keeps the rows in order
        (same height). Otherwise rows are judged against the job watermark at the start of
        the micro-batch, which never makes an on-time event late."""
        if isinstance(node, MapRowsNode) and len(origin) == df.height:
            return src[WM].gather(origin)
        if isinstance(node, MapBatchesNode):
            if WM in df.columns and df[WM].dtype == pl.Int64 and df[WM].null_count() == 0:
                return df[WM]
            if df.height == src.height:
                return src[WM]
        return pl.repeat(self.start_job_wm, df.height, dtype=pl.Int64, eager=True).alias(WM)

    def _spill_dead(self, read_id: str, letters: pl.DataFrame) -> None:
        target = self.home / "dead_letters" / self.plan.name / f"{read_id}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "ab") as fh:
            letters.write_ndjson(fh)
        note = f"records rejected by {read_id} appended to {target}"
        if note not in self.result.notes:
            self.result.notes.append(note)

    def _dedupe(self, node: DedupeNode, df: pl.DataFrame) -> pl.DataFrame:
        et, et_type = self._et(node.inputs[0], df)
        keys = list(node.key)
        seen = self.dedupe.get(node.id)
        t = event_time_expr(et, et_type)
        rows = df.with_columns(t.alias("__rb_t"))
        if seen is not None and seen.height:
            rows = rows.join(seen, on=keys, how="left", maintain_order="left")
        else:
            rows = rows.with_columns(pl.lit(None, pl.Int64).alias("__rb_seen"))
        prev = pl.col("__rb_t").shift(1).over(keys).fill_null(pl.col("__rb_seen"))
        keep = prev.is_null() | ((pl.col("__rb_t") - prev).abs() >= node.within_ms)
        flagged = rows.with_columns(__rb_keep=keep)
        last = flagged.group_by(keys).agg(pl.col("__rb_t").last().alias("__rb_seen"))
        merged = (
            last if seen is None else pl.concat([seen, last]).group_by(keys).agg(pl.col("__rb_seen").last())
        )
        if self.job_wm != NEG:
            merged = merged.filter(pl.col("__rb_seen") + node.within_ms > self.job_wm)
        self.dedupe[node.id] = merged
        return flagged.filter(pl.col("__rb_keep")).drop("__rb_t", "__rb_seen", "__rb_keep")

    # -- commit / close ---------------------------------------------------------------
    def commit(self) -> None:
        for writer in self.writers.values():
            writer.commit(self.epoch)
        self.epoch += 1
        self.last_commit = time.monotonic()

    def close(self) -> None:
        for p in self.parts:
            p.reader.close()
        for writer in self.writers.values():
            writer.close()


def _unknown(frame: pl.LazyFrame | pl.DataFrame) -> bool:
    return isinstance(frame, pl.DataFrame) and frame.width == 0


def run_stream(
    pipeline: Pipeline,
    *,
    progress: bool | None = None,
    home: Path,
    max_batch_rows: int = 250_000,
    max_wait: Duration = "10ms",
    commit_interval: Duration = "500ms",
    stop: threading.Event | None = None,
    stop_after: Duration | None = None,
    live: bool = False,
    clock: Callable[[], float] = time.monotonic,
    on_batch: Callable[[StreamStats, dict[str, pl.DataFrame]], None] | None = None,
) -> RunResult:
    """Run ``pipeline`` as a stream job until its bounded inputs end or it is stopped.

    Parameters
    ----------
    max_batch_rows, max_wait
        A micro-batch closes at this many rows or this long after its first row arrived.
    commit_interval
        How often sinks commit (and, later, checkpoints are taken).
    stop
        Set this event to stop the job cleanly (SIGINT/SIGTERM do the same from the CLI).
    stop_after
        Stop after this much wall time (for unbounded sources in scripts and tests).
    live
        Show live figures in the terminal (events/s, watermark, open windows, late events).
    clock
        Processing-time clock used for idle timeouts (``riverbed.testing.ManualClock``).
    on_batch
        Called after every micro-batch with the live figures and each step's output.
    """
    if max_batch_rows < 1:
        raise PlanError(f"max_batch_rows must be >= 1, got {max_batch_rows}")
    started = time.perf_counter()
    stop = stop or threading.Event()
    job = _Job(
        pipeline,
        home=home,
        max_batch_rows=max_batch_rows,
        max_wait_ms=to_ms(max_wait, what="max_wait"),
        commit_interval_ms=to_ms(commit_interval, what="commit_interval"),
        clock=clock,
        on_batch=on_batch,
    )
    deadline = None if stop_after is None else time.monotonic() + to_ms(stop_after) / 1000
    restore: list[tuple[signal.Signals, Any]] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            restore.append((sig, signal.signal(sig, lambda *_: stop.set())))
    display = None
    if live:
        from riverbed.executors._live import LiveDisplay

        display = LiveDisplay(job.stats, job.plan.name)
        display.start()
    try:
        while not stop.is_set():
            if not job.step():
                break
            if display is not None:
                display.refresh()
            if deadline is not None and time.monotonic() >= deadline:
                break
        else:
            job.result.notes.append("stopped on request; windows still open were not emitted")
        if not job.stats.ended:
            job.commit()
    finally:
        if display is not None:
            display.stop()
        for sig, handler in restore:
            signal.signal(sig, handler)
        job.close()
    job.result.elapsed_s = time.perf_counter() - started
    job.result.stats = {
        "batches": job.stats.batches,
        "events_per_s": job.stats.events / max(job.result.elapsed_s, 1e-9),
        "watermark": job.stats.watermark,
        "open_windows": job.stats.open_windows,
        "state_bytes": job.stats.state_bytes,
    }
    return job.result
