"""The batch executor: lowers every operator into one Polars query and runs it.

Bounded input is seen as a whole: no watermark, nothing is late. Every sink's LazyFrame is
collected together (``pl.collect_all``) so shared steps run once. The driver knows no step
kind: each operator's ``lower`` gives its part of the query.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import polars as pl

from riverbed._errors import RiverbedError, SinkError, SourceError
from riverbed._plan import Plan
from riverbed._progress import Progress
from riverbed.connectors.base import SinkContext, SinkWriter, SourceContext
from riverbed.executors.options import BatchOptions
from riverbed.executors.result import RunResult
from riverbed.operators import resolve


def run(plan: Plan, opts: BatchOptions) -> RunResult:
    """Run ``plan`` over its bounded inputs."""
    started = time.perf_counter()
    result = RunResult(plan.name, "batch")
    home = opts.home
    with Progress(opts.progress) as prog:
        ctx = SourceContext(
            mode="batch", home=home, pipeline=plan.name, progress=prog if prog.enabled else None
        )
        res = resolve(plan, ctx, "batch", home)
        writers = _open_sinks(plan, res.schemas, home, result)
        try:
            frames: dict[tuple[str, str], pl.LazyFrame] = {}
            for node in plan.nodes:
                got = res.ops[node.id].lower([frames[p] for p in res.inputs(node.id)], res.contexts[node.id])
                frames[(node.id, "out")] = got.out.lazy()
                for port, frame in got.sides.items():
                    frames[(node.id, port)] = frame.lazy()
            writes = plan.writes()
            reads = plan.reads()
            extra = [frames[(r.id, "count")] for r in reads] + [frames[(r.id, "dead")] for r in reads]
            spinner = prog.task("run query", total=None)
            timed = time.perf_counter()
            try:
                outs = pl.collect_all([frames[(w.id, "out")] for w in writes] + extra, engine="streaming")
            except pl.exceptions.PolarsError as exc:
                raise SourceError(f"pipeline {plan.name!r} failed: {exc}") from exc
            spinner.finish()
            if opts.observer is not None:  # one fused query: its time goes to the reads
                for r in reads:
                    opts.observer.on_step_timing(r.id, (time.perf_counter() - timed) / len(reads))
            counts, dead = outs[len(writes) : len(writes) + len(reads)], outs[len(writes) + len(reads) :]
            consumed = {n.inputs[0] for n in plan.nodes if n.port == "dead"}
            for r, counted, letters in zip(reads, counts, dead, strict=True):
                result.rows_read[r.id] = int(counted["n"][0])
                if letters.height:
                    result.dead_letters[r.id] = letters.height
                    if r.id not in consumed:
                        _spill(plan, r.id, letters, home, result)
            for w, df in zip(writes, outs[: len(writes)], strict=True):
                task = prog.task(f"write {w.sink.describe()}", total=1)
                timed = time.perf_counter()
                _write(w.id, w.sink.describe(), writers[w.id], df)
                task.advance(1)
                if opts.observer is not None:
                    opts.observer.on_step_timing(w.id, time.perf_counter() - timed)
                result.rows_written[w.id] = df.height
        finally:
            for writer in writers.values():
                writer.close()
    result.elapsed_s = time.perf_counter() - started
    if opts.observer is not None:
        _observe(opts.observer, result)
    return result


def _observe(observer: Any, result: RunResult) -> None:
    """The run's figures, once, for the status file and metrics."""
    steps = {k: {"rows_in": v, "rows_out": v} for k, v in {**result.rows_read, **result.rows_written}.items()}
    observer.on_batch(
        {
            "events": result.total_read,
            "events_per_s": result.total_read / max(result.elapsed_s, 1e-9),
            "batch_rows": result.total_read,
            "batch_seconds": result.elapsed_s,
            "late": result.total_late,
            "dead_letters": result.total_dead,
        },
        steps,
    )


def _open_sinks(
    plan: Plan, schemas: dict[tuple[str, str], pl.Schema | None], home: Path, result: RunResult
) -> dict[str, SinkWriter]:
    """Open every sink before anything is computed or written: a sink that cannot be written
    fails the job before any other sink publishes."""
    writers: dict[str, SinkWriter] = {}
    try:
        for w in plan.writes():
            sctx = SinkContext(
                mode="batch", home=home, pipeline=plan.name, step=w.id, schema=schemas[(w.id, "out")]
            )
            try:
                writers[w.id] = w.sink.open(sctx)
            except RiverbedError:
                raise
            except Exception as exc:
                raise SinkError(
                    f"step {w.id!r}: cannot open {w.sink.describe()}: {type(exc).__name__}: {exc}"
                ) from exc
            result.outputs[w.id] = w.sink.describe()
    except BaseException:
        for writer in writers.values():
            writer.close()
        raise
    return writers


def _write(step: str, where: str, writer: SinkWriter, df: pl.DataFrame) -> None:
    try:
        writer.write(df)
        writer.commit(0)
    except RiverbedError:
        raise
    except Exception as exc:  # a driver or writer error: name the step and the sink
        raise SinkError(f"step {step!r}: cannot write to {where}: {type(exc).__name__}: {exc}") from exc


def _spill(plan: Plan, read_id: str, letters: pl.DataFrame, home: Path, result: RunResult) -> None:
    target = home / "dead_letters" / plan.name / f"{read_id}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    letters.write_ndjson(target)
    result.notes.append(
        f"{letters.height} record(s) rejected by {read_id} written to {target} "
        "(attach .dead_letters().write(...) to send them elsewhere)"
    )
