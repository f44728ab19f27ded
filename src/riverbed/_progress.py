"""Progress display on stderr (rich), or nothing when disabled."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


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


class Progress:
    """Progress bars on stderr when ``enabled``; every call is a no-op otherwise."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._rich: Any = None
        if self.enabled:
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
                console=Console(stderr=True),
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
            self._rich.console.print(message)


def _fmt_bytes(done: float, total: float | None) -> str:
    def mb(x: float) -> str:
        return f"{x / 1e6:,.1f} MB"

    return f"{mb(done)}/{mb(total)}" if total else mb(done)


def _fmt_count(done: float, total: float | None) -> str:
    return f"{int(done):,}/{int(total):,}" if total else f"{int(done):,}"
