"""Progress display on stderr: bars on a terminal, plain lines elsewhere (a log file, a CI
job), or nothing when disabled."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO

PLAIN_INTERVAL_S = 5.0
"""Seconds between two plain progress lines of one task (its last line is always printed)."""


class Task:
    """One progress bar."""

    def __init__(self, progress: Any, task_id: Any) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, amount: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._id, amount)

    def update(self, **fields: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._id, **fields)

    def finish(self) -> None:
        """Mark the bar complete (a spinner becomes a full bar)."""
        if self._progress is not None:
            task = self._progress.tasks[self._id]
            total = task.total if task.total is not None else max(task.completed, 1)
            self._progress.update(self._id, total=total, completed=total, count="done")


class _PlainTask(Task):
    """A task shown as plain lines (``read 24 files: 12/24 (3.1 s)``), at most one every
    ``PLAIN_INTERVAL_S`` seconds, plus one when it completes."""

    def __init__(self, out: TextIO, description: str, total: float | None, unit: str) -> None:
        super().__init__(None, None)
        self._out, self._description, self._total = out, description, total
        self._fmt = _fmt_bytes if unit == "bytes" else _fmt_count
        self._done = 0.0
        self._started = self._last = time.monotonic()
        self._finished = False

    def _line(self, count: str) -> None:
        elapsed = time.monotonic() - self._started
        self._out.write(f"{self._description}: {count} ({elapsed:.1f} s)\n")
        self._out.flush()

    def advance(self, amount: float = 1) -> None:
        self._done += amount
        now = time.monotonic()
        if self._total is not None and self._done >= self._total:
            self.finish()
        elif now - self._last >= PLAIN_INTERVAL_S:
            self._last = now
            self._line(self._fmt(self._done, self._total))

    def update(self, **fields: Any) -> None:
        pass

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._line(self._fmt(self._done, self._total) + ", done" if self._total else "done")


class Progress:
    """Progress on stderr when ``enabled``: rich bars on a terminal, plain lines otherwise;
    every call is a no-op when disabled."""

    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        tty = self._stream.isatty()
        self.enabled = tty if enabled is None else enabled
        self._rich: Any = None
        self._plain = self.enabled and not tty
        if self.enabled and tty:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                SpinnerColumn(),
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(),
                console=Console(file=self._stream),
                transient=False,
            )

    def __enter__(self) -> Progress:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._rich is not None:
            self._rich.stop()

    def task(self, description: str, total: float | None = None, unit: str = "") -> Task:
        """Add a bar (``total=None``: a spinner with elapsed time)."""
        if self._plain:
            return _PlainTask(self._stream, description, total, unit)
        if self._rich is None:
            return Task(None, None)
        fmt = _fmt_bytes if unit == "bytes" else _fmt_count
        progress = self._rich

        class _Task(Task):
            def advance(self, amount: float = 1) -> None:
                progress.advance(self._id, amount)
                t = progress.tasks[self._id]
                progress.update(self._id, count=fmt(t.completed, t.total))

        task_id = progress.add_task(description, total=total, count=fmt(0, total))
        return _Task(progress, task_id)

    def log(self, message: str) -> None:
        """Print a line above the bars (stderr)."""
        if self._rich is not None:
            self._rich.console.print(message, markup=False, highlight=False)
        elif self._plain:
            self._stream.write(message + "\n")


def _fmt_bytes(done: float, total: float | None) -> str:
    def mb(x: float) -> str:
        return f"{x / 1e6:,.1f} MB"

    return f"{mb(done)}/{mb(total)}" if total else mb(done)


def _fmt_count(done: float, total: float | None) -> str:
    return f"{int(done):,}/{int(total):,}" if total else f"{int(done):,}"
