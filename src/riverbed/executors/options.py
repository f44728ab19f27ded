"""Typed, frozen options of the executors (what ``Pipeline.run(**options)`` turns into)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from riverbed._errors import PlanError
from riverbed._time import Duration, to_ms


@dataclass(frozen=True)
class BatchOptions:
    """Options of a batch run.

    Examples
    --------
    >>> BatchOptions(progress=False).progress
    False
    """

    progress: bool | None = None
    """Show a progress display (default: when stderr is a terminal)."""
    home: Path = Path(".riverbed")
    """riverbed's data directory (dead letters, the embedded log)."""
    observer: Any = None
    """A :class:`riverbed.observe.JobObserver` told about the run (per-step timeline)."""


@dataclass(frozen=True, eq=False)
class StreamOptions:
    """Options of a stream run.

    Examples
    --------
    >>> StreamOptions.build(max_wait="50ms").max_wait_ms
    50
    >>> StreamOptions.build(checkpoint_dir="ckpt", checkpoint_interval="2s").checkpoint_interval_ms
    2000
    """

    progress: bool | None = None
    home: Path = Path(".riverbed")
    max_batch_rows: int = 250_000
    """A micro-batch closes at this many rows ..."""
    max_wait_ms: int = 10
    """... or this long after its first row arrived."""
    commit_interval_ms: int = 500
    """How often sinks commit (with ``checkpoint_dir``: at every checkpoint instead)."""
    stop: threading.Event | None = None
    """Set this event to stop the job cleanly (SIGINT/SIGTERM do the same)."""
    stop_after_ms: int | None = None
    """Stop after this much wall time (unbounded sources in scripts and tests)."""
    live: bool = False
    """Show live figures in the terminal."""
    clock: Callable[[], float] = time.monotonic
    """Processing-time clock for idle timeouts (``riverbed.testing.ManualClock``)."""
    on_batch: Callable[..., None] | None = None
    """Called after every micro-batch with the live figures and each step's output."""
    observer: Any = None
    """A :class:`riverbed.observe.JobObserver` fed every micro-batch's figures."""
    checkpoint_dir: str | None = None
    """Where checkpoints go (a directory or an fsspec URL); None: no checkpoints. A job
    resumes from the newest complete checkpoint there; see :mod:`riverbed.executors._checkpoint`."""
    checkpoint_interval_ms: int = 1000
    """With ``checkpoint_dir``: how often sinks commit and a checkpoint is written (one epoch)."""
    stop_at_end: bool = False
    """End the job when every source reaches the end it had at the job's first start."""
    retry_timeout_ms: int = 60_000
    """How long transient failures of sources and sinks are retried before the job stops."""

    @classmethod
    def build(cls, **kw: Any) -> StreamOptions:
        """Options from ``Pipeline.run`` keywords (durations as '10ms', timedelta or int ms)."""
        known = {f.name for f in fields(cls)}
        for name in ("max_wait", "commit_interval", "stop_after", "checkpoint_interval", "retry_timeout"):
            if name in kw:
                value = kw.pop(name)
                kw[f"{name}_ms"] = None if value is None else to_ms(value, what=name)
        unknown = sorted(set(kw) - known)
        if unknown:
            raise PlanError(
                f"stream mode takes no option(s) {unknown}.\n  options: max_batch_rows, max_wait, "
                "commit_interval, stop, stop_after, live, clock, on_batch, observer, checkpoint_dir, "
                "checkpoint_interval, stop_at_end, retry_timeout"
            )
        if "max_batch_rows" in kw and kw["max_batch_rows"] is None:
            kw["max_batch_rows"] = 2**62  # no row limit: max_wait alone closes micro-batches
        if kw.get("checkpoint_dir") is not None:
            kw["checkpoint_dir"] = os.fspath(kw["checkpoint_dir"])
        opts = cls(**kw)
        if not isinstance(opts.max_batch_rows, int) or opts.max_batch_rows < 1:
            raise PlanError(f"max_batch_rows must be >= 1, got {opts.max_batch_rows}")
        return opts


def duration(value: Duration | None) -> int | None:
    """Milliseconds of an optional duration."""
    return None if value is None else to_ms(value)
