"""The stream executor: a thin micro-batch driver over the operators.

Each turn pulls a micro-batch from every partition (bounded by ``max_batch_rows`` and
``max_wait``), stamps each row with the watermark at its arrival
(:mod:`riverbed.executors._watermarks`), runs every step's runtime in plan order, writes what
reaches the sinks, and commits them every ``commit_interval``. Bounded sources end the job
with a flush of every open window; unbounded ones run until stopped (``stop``, Ctrl-C,
SIGTERM). The driver knows no step kind: operators carry their behaviour.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from riverbed._cols import WM, visible
from riverbed._faults import kill_point
from riverbed._plan import Plan, digest
from riverbed.connectors.base import DEAD_LETTER_SCHEMA, SinkContext, SinkWriter, SourceContext
from riverbed.connectors.files_sink import FileSink
from riverbed.executors._checkpoint import Checkpoint, CheckpointError, CheckpointStore, check_layouts
from riverbed.executors._replay import _done, _json, recover
from riverbed.executors._retry import retry
from riverbed.executors._watermarks import PartitionClock, WatermarkTracker, delay_us
from riverbed.executors.options import StreamOptions
from riverbed.executors.result import RunResult
from riverbed.operators import Runtime, Tick, resolve
from riverbed.operators.base import Frame
from riverbed.windows import US


@dataclass
class StreamStats:
    """Live figures of a running stream job."""

    events: int = 0
    batches: int = 0
    watermark: int | None = None
    """The job watermark in epoch milliseconds (None before the first event)."""
    open_windows: int = 0
    state_bytes: int = 0
    late: int = 0
    dead_letters: int = 0
    started: float = field(default_factory=time.monotonic)
    last_batch_rows: int = 0
    ended: bool = False
    steps: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per step: ``rows_out`` so far (and its runtime's figures)."""

    @property
    def events_per_s(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.events / elapsed if elapsed > 0 else 0.0

    def watermark_delay_s(self) -> float | None:
        """How far the watermark is behind wall-clock time (for epoch-ms event times)."""
        if self.watermark is None:
            return None
        return time.time() - self.watermark / 1000


def _unknown(frame: Frame) -> bool:
    """No rows and no known columns (a user function emptied every batch so far)."""
    return isinstance(frame, pl.DataFrame) and frame.width == 0


class StreamJob:
    """One run of a plan in stream mode."""

    def __init__(self, plan: Plan, opts: StreamOptions) -> None:
        self.plan = plan
        self.opts = opts
        self.ctx = SourceContext(mode="stream", home=opts.home, pipeline=plan.name)
        self.res = resolve(plan, self.ctx, "stream", opts.home)
        self.stats = StreamStats()
        self.result = RunResult(plan.name, "stream")
        self.consumers = {n.id: len(plan.consumers(n.id)) for n in plan.nodes}
        self.dead_consumed = {n.inputs[0] for n in plan.nodes if n.port == "dead"}
        self.epoch = 0
        self.last_commit = time.monotonic()
        self._observed = 0.0
        self._lag_at = 0.0
        self._lags: dict[str, int] = {}
        self.parts: list[PartitionClock] = []
        self.writers: dict[str, SinkWriter] = {}
        self.sink_ctx: dict[str, SinkContext] = {}
        self.spills: dict[str, SinkWriter] = {}
        self._turn = -1
        self.retry_s = opts.retry_timeout_ms / 1000
        # checkpoints: the store, the job's record, the newest checkpoint, this epoch's log
        self.store = None if opts.checkpoint_dir is None else CheckpointStore(opts.checkpoint_dir)
        self.job: dict[str, Any] = {"first_epoch": 0, "job_id": None, "ends": None}
        self.ckpt: Checkpoint | None = None
        self.batches: list[dict[str, Any]] = []
        self.replaying = False
        self.skip: set[str] = set()
        self.dirty = False
        self.runtimes: dict[str, Runtime] = {}
        try:
            self._load_checkpoint()
            self.runtimes = {
                n.id: self.res.ops[n.id].build(
                    self.res.contexts[n.id], self.ckpt.states.get(n.id) if self.ckpt else None
                )
                for n in plan.nodes
            }
            self._open_sources()
            self._open_sinks()
            self._start_epochs()
        except BaseException:
            self.close()
            raise
        self.tracker = WatermarkTracker(self.parts, opts.clock)
        if self.ckpt is not None:
            self.tracker.restore(self.ckpt.watermarks)
        self.index = {p.key: i for i, p in enumerate(self.parts)}

    # -- checkpoints ----------------------------------------------------------------------
    def _layouts(self) -> dict[str, str]:
        """A digest of each stateful step's definition: what its snapshot's layout depends on."""
        return {n.id: digest(n.kind, *n.params()) for n in self.plan.nodes if self.res.ops[n.id].stateful}

    def _load_checkpoint(self) -> None:
        if self.store is None:
            return
        self.store.lock()
        job = self.store.read_job()
        if job is not None:
            if job.get("pipeline") != self.plan.name:
                raise CheckpointError(
                    f"checkpoint {self.store.url!r} belongs to pipeline {job.get('pipeline')!r}, "
                    f"not {self.plan.name!r}.\n  hint: give each pipeline its own --checkpoint-dir"
                )
            self.job = job
            self.ckpt = self.store.latest()
        else:
            self.job = {
                "pipeline": self.plan.name,
                "job_id": uuid.uuid4().hex,
                "first_epoch": 0,
                "ends": None,
            }
        if self.ckpt is not None:
            check_layouts(self.ckpt, self._layouts(), self.store.url)
            self.result.notes.append(f"resumed from the checkpoint of epoch {self.ckpt.epoch}")

    def _start_epochs(self) -> None:
        """Fix the job's first epoch (and end positions) at its first start; set the epoch."""
        if self.store is not None and self.store.read_job() is None:
            committed = [w.last_committed_epoch() for w in self.writers.values()]
            self.job["first_epoch"] = 1 + max((e for e in committed if e is not None), default=-1)
            self.job["ends"] = self._ends() if self.opts.stop_at_end else None
            self.store.write_job(self.job)
        elif self.opts.stop_at_end and self.job.get("ends") is None:
            self.job["ends"] = self._ends()  # first run with stop_at_end: the end is now
            if self.store is not None:
                self.store.write_job(self.job)
        self.epoch = self.ckpt.epoch + 1 if self.ckpt is not None else int(self.job["first_epoch"])
        for ctx in self.sink_ctx.values():
            ctx.first_epoch = int(self.job["first_epoch"])
            ctx.job_id = self.job["job_id"]
        for writer in self.writers.values():
            writer.begin_epoch(self.epoch)
        ends = self.job.get("ends") if self.opts.stop_at_end else None
        if ends is not None:
            for p in self.parts:
                if p.key in ends:
                    p.reader.stop_at(ends[p.key])

    def _ends(self) -> dict[str, Any]:
        ends = {p.key: p.reader.end_position() for p in self.parts}
        unknown = [k for k, v in ends.items() if v is None]
        if unknown:
            raise CheckpointError(
                f"stop_at_end: partition(s) {unknown} cannot tell where their input ends.\n"
                "  hint: use stop_after= for these sources, or read bounded input"
            )
        return ends

    # -- set-up -------------------------------------------------------------------------
    def _open_sources(self) -> None:
        now = self.opts.clock()
        for node in self.plan.reads():
            wm = node.watermark
            self.ctx.step = node.id
            self.ctx.event_time = node.event_time
            needed = self.res.needed_columns(node.id)
            self.ctx.columns = sorted(needed) if needed is not None else None
            positions = self.ckpt.positions if self.ckpt is not None else {}
            for part in node.source.partitions(self.ctx):
                reader = node.source.open(part, positions.get(f"{node.id}/{part}"), self.ctx)
                clock = PartitionClock(
                    node.id,
                    part,
                    reader,
                    node.event_time,
                    delay_us(wm.max_delay_ms if wm else 0),
                    wm.idle_timeout_ms if wm else None,
                    last_active=now,
                )
                self.parts.append(clock)
            self.result.rows_read[node.id] = 0

    def _open_sinks(self) -> None:
        for node in self.plan.writes():
            key = self.res.update_keys[node.inputs[0]]
            sctx = SinkContext(
                mode="stream",
                home=self.opts.home,
                pipeline=self.plan.name,
                step=node.id,
                key=key or (),
                emit="update" if key else "append",
                schema=self.res.schema(node.id),
                job_id=self.job["job_id"],
            )
            self.sink_ctx[node.id] = sctx
            self.writers[node.id] = node.sink.open(sctx)
            self.result.outputs[node.id] = node.sink.describe()
            self.result.rows_written[node.id] = 0

    # -- pulling ------------------------------------------------------------------------
    def _pull(
        self,
    ) -> tuple[list[tuple[PartitionClock, pl.DataFrame]], dict[int, int], dict[str, list[pl.DataFrame]]]:
        """One micro-batch from the partitions, in arrival order, bounded by rows and wait."""
        self.pulls: list[list[Any]] = []
        chunks: list[tuple[PartitionClock, pl.DataFrame]] = []
        ends: dict[int, int] = {}
        dead: dict[str, list[pl.DataFrame]] = {}
        index = {id(p): i for i, p in enumerate(self.parts)}
        live = [p for p in self.parts if not p.ended]
        if not live:
            return chunks, ends, dead
        # start each pull at the next partition, so a busy one cannot starve the others
        self._turn = (self._turn + 1) % len(live)
        live = live[self._turn :] + live[: self._turn]
        max_rows, max_wait = self.opts.max_batch_rows, self.opts.max_wait_ms / 1000
        rows = timed = 0
        started = time.monotonic()
        first_rows_at: float | None = None
        while rows < max_rows and live:
            budget = max_wait if first_rows_at is None else max_wait - (time.monotonic() - first_rows_at)
            if budget <= 0:
                break
            per_reader = budget if len(live) == 1 else min(budget, 0.005)
            progressed = False
            for p in live:
                batch = self._next(p, max_rows - rows, per_reader)
                letters = p.reader.drain_dead_letters()
                if letters is not None and letters.height:
                    dead.setdefault(p.read_id, []).append(letters)
                if batch is None:
                    ends[index[id(p)]] = timed
                    continue
                if batch.height:
                    progressed = True
                    p.last_active = self.opts.clock()
                    rows += batch.height
                    timed += batch.height if p.event_time is not None else 0
                    chunks.append((p, batch))
                    if self.store is not None:  # the offset log: what this pull took
                        self.pulls.append([p.key, batch.height, _json(p.reader.snapshot())])
                    first_rows_at = first_rows_at or time.monotonic()
                if rows >= max_rows:
                    break
            live = [p for p in live if index[id(p)] not in ends]
            if not progressed and first_rows_at is None and time.monotonic() - started >= max_wait:
                break
        return chunks, ends, dead

    # -- one micro-batch ----------------------------------------------------------------
    def step(self) -> bool:
        """Run one micro-batch. Returns False when the job has finished."""
        started = time.perf_counter()
        self.tracker.begin()
        chunks, ends, dead = self._pull()
        return self._process(started, chunks, ends, dead)

    def _next(self, p: PartitionClock, max_rows: int, timeout: float) -> pl.DataFrame | None:
        return retry(lambda: p.reader.next_batch(max_rows, timeout), f"reading {p.key}", self.retry_s)

    def _process(
        self,
        started: float,
        chunks: list[tuple[PartitionClock, pl.DataFrame]],
        ends: dict[int, int],
        dead: dict[str, list[pl.DataFrame]],
        wm_after: int | None = None,
    ) -> bool:
        """A pulled micro-batch through the plan; commit when an epoch is due."""
        self.steps: dict[str, dict[str, int]] = {}
        holding = sorted(self.parts[i].key for i in self.tracker.holding)
        stamped = self.tracker.stamp(chunks, ends)
        if wm_after is not None:  # replayed: the watermark the recorded run reached
            self.tracker.job_wm = wm_after
        final = all(p.ended for p in self.parts)
        pulled: dict[str, list[Frame]] = {}
        self._pulled_rows: dict[str, int] = {}
        for (p, chunk), df in zip(chunks, stamped, strict=True):
            pulled.setdefault(p.read_id, []).append(df)
            self.result.rows_read[p.read_id] += chunk.height
            self._pulled_rows[p.read_id] = self._pulled_rows.get(p.read_id, 0) + chunk.height
        rows_in = sum(df.height for _, df in chunks)
        self.stats.events += rows_in
        self.stats.last_batch_rows = rows_in
        moved = self.tracker.job_wm != self.tracker.start_wm
        outputs: dict[str, pl.DataFrame] = {}
        if self.store is not None and not self.replaying and (chunks or ends or dead or moved):
            self.batches.append(
                {
                    "pulls": self.pulls,
                    "ends": {self.parts[i].key: n for i, n in ends.items()},
                    "holding": holding,
                    "wm": self.tracker.job_wm,
                }
            )
        if rows_in or final or dead or moved:  # else nothing arrived: nothing to compute
            self.dirty = True
            self.stats.batches += 1
            tick = Tick(self.tracker.watermark, self.tracker.started_at, final)
            outputs = self._run_plan(pulled, dead, tick)
        wm = self.tracker.watermark
        self.stats.watermark = None if wm is None else wm // US
        figures = [rt.figures() for rt in self.runtimes.values()]
        self.stats.open_windows = sum(f.get("open_windows", 0) for f in figures)
        self.stats.state_bytes = sum(f.get("state_bytes", 0) for f in figures)
        commit_s = None
        interval = self.opts.commit_interval_ms if self.store is None else self.opts.checkpoint_interval_ms
        if not self.replaying and (final or time.monotonic() - self.last_commit >= interval / 1000):
            timed = time.perf_counter()
            self.commit()
            commit_s = time.perf_counter() - timed
        if self.opts.on_batch is not None:
            self.opts.on_batch(self.stats, outputs)
        if self.opts.observer is not None:
            now = time.monotonic()  # an idle job still reports (a heartbeat a second)
            if rows_in or outputs or final or now - self._observed >= 1.0:
                self._observed = now
                self._observe(time.perf_counter() - started, commit_s, outputs)
        self.stats.ended = final
        return not final

    def _observe(self, seconds: float, commit_s: float | None, outputs: dict[str, pl.DataFrame]) -> None:
        """Tell the observer about this micro-batch (cheap: figures the loop already has)."""
        figures: dict[str, Any] = {
            "events": self.stats.events,
            "events_per_s": self.stats.events_per_s,
            "batch_rows": self.stats.last_batch_rows,
            "batch_seconds": seconds,
            "watermark": self.stats.watermark,
            "watermark_delay_s": self.stats.watermark_delay_s(),
            "open_windows": self.stats.open_windows,
            "state_bytes": self.stats.state_bytes,
            "late": self.stats.late,
            "dead_letters": self.stats.dead_letters,
        }
        if commit_s is not None:
            figures["sink_commit_s"] = commit_s
        now = time.monotonic()
        if now - self._lag_at >= 1.0:  # asking a log or broker for its end: once a second
            self._lag_at = now
            lags = {p.key: p.reader.lag() for p in self.parts if not p.ended}
            self._lags = {k: v for k, v in lags.items() if v is not None}
        if self._lags:
            figures["source_lag"] = self._lags
        if outputs and self.stats.watermark is not None:
            figures["end_to_end_latency_s"] = self.stats.watermark_delay_s()
        self.opts.observer.on_batch(figures, self.steps)

    def _read_input(self, read_id: str, frames: list[Frame], dead: list[pl.DataFrame]) -> list[Frame]:
        schema = self.res.schema(read_id)
        rows: Frame
        if len(frames) == 1:
            rows = frames[0]
        elif any(isinstance(f, pl.LazyFrame) for f in frames):
            rows = pl.concat([f.lazy() for f in frames], how="vertical_relaxed")
        elif frames:
            rows = pl.concat(frames, how="vertical_relaxed")  # type: ignore[type-var]
        else:
            rows = pl.DataFrame(schema=schema)
            if self.res.event_times[(read_id, "out")] is not None:
                rows = rows.with_columns(pl.lit(None, pl.Int64).alias(WM))
        letters = pl.concat(dead) if dead else pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
        self.result.rows_read[read_id] += letters.height
        return [rows, letters]

    def _run_plan(
        self, pulled: dict[str, list[Frame]], dead: dict[str, list[pl.DataFrame]], tick: Tick
    ) -> dict[str, pl.DataFrame]:
        """One micro-batch through every step. Stateless steps stay lazy and fuse into the
        query of the next step that needs rows."""
        outs: dict[tuple[str, str], Frame] = {}
        shown: dict[str, pl.DataFrame] = {}
        for node in self.plan.nodes:
            op = self.res.ops[node.id]
            ports = self.res.inputs(node.id)
            if not ports:
                ins = self._read_input(node.id, pulled.get(node.id, []), dead.get(node.id, []))
            else:
                ins = [outs[p] for p in ports]
                if not op.stateful and all(_unknown(f) for f in ins):
                    outs[(node.id, "out")] = pl.DataFrame()
                    for port in op.ports:
                        outs[(node.id, port)] = pl.DataFrame()
                    continue
            got = self.runtimes[node.id].process(ins, tick)
            outs[(node.id, "out")] = got.out
            if not ports:  # a read: the rows its partitions delivered
                n = self._pulled_rows.get(node.id, 0)
                self.steps[node.id] = {"rows_in": n, "rows_out": n}
            elif op.stateful and isinstance(got.out, pl.DataFrame):  # fused lazy steps: not apart
                rows_in = sum(f.height for f in ins if isinstance(f, pl.DataFrame))
                self.steps[node.id] = {"rows_in": rows_in, "rows_out": got.out.height}
            for port, frame in got.sides.items():
                outs[(node.id, port)] = frame
            self._count(node.id, got.counts)
            if node.id in self.writers:
                df = visible(_rows(got.out))
                if node.id not in self.skip:  # a replayed epoch this sink committed already
                    self.writers[node.id].write(df)
                    self.result.rows_written[node.id] += df.height
                self.steps[node.id] = {"rows_in": df.height, "rows_out": df.height}
                shown[node.id] = df
            elif op.stateful and isinstance(got.out, pl.DataFrame):
                shown[node.id] = got.out
            if self.consumers[node.id] > 1 and isinstance(got.out, pl.LazyFrame):
                outs[(node.id, "out")] = got.out.collect()  # shared by several steps: compute once
            if "dead" in got.sides and node.id not in self.dead_consumed:
                self._spill_dead(node.id, _rows(got.sides["dead"]))
        return shown

    def _count(self, step: str, counts: dict[str, int]) -> None:
        if counts.get("late"):
            self.result.late[step] = self.result.late.get(step, 0) + counts["late"]
            self.stats.late += counts["late"]
        if counts.get("late_assignments"):
            partly = self.result.stats.setdefault("late_assignments", {})
            partly[step] = partly.get(step, 0) + counts["late_assignments"]
        if counts.get("dead"):
            self.result.dead_letters[step] = self.result.dead_letters.get(step, 0) + counts["dead"]
            self.stats.dead_letters += counts["dead"]

    def _spill_dead(self, read_id: str, letters: pl.DataFrame) -> None:
        """Dead letters nobody consumes go to a JSON-lines file, committed with the epoch."""
        if not letters.height:
            return
        target = self.opts.home / "dead_letters" / self.plan.name / f"{read_id}.jsonl"
        sid = f"{read_id}.dead_letters"
        if sid not in self.spills:
            sctx = SinkContext(
                mode="stream",
                home=self.opts.home,
                pipeline=self.plan.name,
                step=sid,
                first_epoch=self.job["first_epoch"],
                job_id=self.job["job_id"],
                schema=DEAD_LETTER_SCHEMA,
            )
            self.spills[sid] = FileSink(str(target), "jsonl", "append").open(sctx)
            if self.replaying and _done(self.spills[sid], self.epoch):
                self.skip.add(sid)
        if sid not in self.skip:
            self.spills[sid].write(letters)
        note = f"records rejected by {read_id} appended to {target}"
        if note not in self.result.notes:
            self.result.notes.append(note)

    # -- commit / close -------------------------------------------------------------------
    def commit(self) -> None:
        """End the epoch: log its micro-batches, commit every sink, write a checkpoint."""
        self.last_commit = time.monotonic()
        if self.store is not None and not self.dirty:
            return  # nothing read or computed since the last checkpoint
        if self.store is not None and not self.replaying:
            self.store.write_offsets(self.epoch, {"epoch": self.epoch, "batches": self.batches})
            kill_point("offsets-written")
        for sid, writer in [*self.writers.items(), *self.spills.items()]:
            if sid in self.skip:
                continue
            self._commit_sink(sid, writer)
            kill_point("sink-committed")
        if self.store is not None:
            kill_point("before-checkpoint")
            self._checkpoint()
            kill_point("after-checkpoint")
        self.epoch += 1
        for writer in self.writers.values():
            writer.begin_epoch(self.epoch)
        self.batches = []
        self.skip = set()
        self.dirty = False

    def _commit_sink(self, sid: str, writer: SinkWriter) -> None:
        epoch = self.epoch

        def attempt() -> None:
            try:
                writer.commit(epoch)
            except Exception:
                # a commit whose outcome is unknown may have landed: ask before retrying
                if self.store is not None and _done(writer, epoch):
                    return
                raise

        retry(attempt, f"committing epoch {epoch} to {sid}", self.retry_s)

    def _checkpoint(self) -> None:
        assert self.store is not None
        states: dict[str, bytes] = {}
        for sid in self._layouts():
            blob = self.runtimes[sid].snapshot()
            states[sid] = blob if blob is not None else b""
        positions = {p.key: _json(p.reader.snapshot()) for p in self.parts}
        ckpt = Checkpoint(self.epoch, positions, self.tracker.snapshot(), states, self._layouts())
        started = time.perf_counter()
        size = retry(lambda: self.store.write_checkpoint(ckpt), "writing a checkpoint", self.retry_s)  # type: ignore[union-attr]
        if self.opts.observer is not None:
            self.opts.observer.on_checkpoint(time.perf_counter() - started, size, self.epoch)
        for node in self.plan.reads():
            mine = {p.name: pos for p in self.parts if p.read_id == node.id for pos in [positions[p.key]]}
            node.source.commit_positions(mine, self.ctx)

    def recover(self) -> bool:
        """Replay the epochs the offset log holds past the checkpoint; False: input ended."""
        return recover(self)

    def close(self) -> None:
        for p in self.parts:
            p.reader.close()
        for writer in [*self.writers.values(), *self.spills.values()]:
            writer.close()
        if self.store is not None:
            self.store.unlock()


def _rows(frame: Frame) -> pl.DataFrame:
    return frame.collect() if isinstance(frame, pl.LazyFrame) else frame


def run(plan: Plan, opts: StreamOptions) -> RunResult:
    """Run ``plan`` as a stream job until its bounded inputs end or it is stopped."""
    started = time.perf_counter()
    stop = opts.stop or threading.Event()
    job = StreamJob(plan, opts)
    deadline = None if opts.stop_after_ms is None else time.monotonic() + opts.stop_after_ms / 1000
    restore: list[tuple[signal.Signals, Any]] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            restore.append((sig, signal.signal(sig, lambda *_: stop.set())))
    display = None
    if opts.live:
        from riverbed.executors._live import LiveDisplay

        display = LiveDisplay(job.stats, plan.name)
        display.start()
    try:
        going = job.recover()
        while going and not stop.is_set():
            if not job.step():
                break
            if display is not None:
                display.refresh()
            if deadline is not None and time.monotonic() >= deadline:
                break
        else:
            if stop.is_set():
                job.result.notes.append(
                    "stopped on request; windows still open were not emitted"
                    + (" (they are in the checkpoint: run again to continue)" if job.store else "")
                )
        if not job.stats.ended:
            job.commit()
    finally:
        if display is not None:
            display.stop()
        for sig, handler in restore:
            signal.signal(sig, handler)
        job.close()
    job.result.elapsed_s = time.perf_counter() - started
    job.result.stats.update(
        {
            "batches": job.stats.batches,
            "events_per_s": job.stats.events / max(job.result.elapsed_s, 1e-9),
            "watermark": job.stats.watermark,
            "open_windows": job.stats.open_windows,
            "state_bytes": job.stats.state_bytes,
        }
    )
    return job.result
