"""Typed, frozen options of the executors (what ``Pipeline.run(**options)`` turns into)."""

from __future__ import annotations

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
    """

    progress: bool | None = None
    home: Path = Path(".riverbed")
    max_batch_rows: int = 250_000
    """A micro-batch closes at this many rows ..."""
    max_wait_ms: int = 10
    """... or this long after its first row arrived."""
    commit_interval_ms: int = 500
    """How often sinks commit."""
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

    @classmethod
    def build(cls, **kw: Any) -> StreamOptions:
        """Options from ``Pipeline.run`` keywords (durations as '10ms', timedelta or int ms)."""
        known = {f.name for f in fields(cls)}
        for name in ("max_wait", "commit_interval", "stop_after"):
            if name in kw:
                value = kw.pop(name)
                kw[f"{name}_ms"] = None if value is None else to_ms(value, what=name)
        unknown = sorted(set(kw) - known)
        if unknown:
            raise PlanError(
                f"stream mode takes no option(s) {unknown}.\n  options: max_batch_rows, max_wait, "
                "commit_interval, stop, stop_after, live, clock, on_batch, observer"
            )
        if "max_batch_rows" in kw and kw["max_batch_rows"] is None:
            kw["max_batch_rows"] = 2**62  # no row limit: max_wait alone closes micro-batches
        opts = cls(**kw)
        if not isinstance(opts.max_batch_rows, int) or opts.max_batch_rows < 1:
            raise PlanError(f"max_batch_rows must be >= 1, got {opts.max_batch_rows}")
        return opts


def duration(value: Duration | None) -> int | None:
    """Milliseconds of an optional duration."""
    return None if value is None else to_ms(value)
