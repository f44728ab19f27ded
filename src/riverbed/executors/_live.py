"""Live figures of a stream job in the terminal (stderr)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.table import Table

from riverbed._humanize import duration

if TYPE_CHECKING:
    from riverbed.executors.stream import StreamStats


class LiveDisplay:
    """A small table refreshed at most 4 times a second."""

    def __init__(self, stats: StreamStats, name: str) -> None:
        self.stats = stats
        self.name = name
        self.last = 0.0
        self.last_events = 0
        self.rate = 0.0
        self.live = Live(self._render(), console=Console(stderr=True), refresh_per_second=4)

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.refresh(force=True)
        self.live.stop()

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 0.25:
            return
        if self.last:
            self.rate = (self.stats.events - self.last_events) / max(now - self.last, 1e-9)
        self.last, self.last_events = now, self.stats.events
        self.live.update(self._render())

    def _render(self) -> Table:
        s = self.stats
        table = Table(title=f"riverbed stream: {self.name}", show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column(justify="right")
        table.add_row("events", f"{s.events:,}")
        table.add_row("events/s", f"{self.rate:,.0f}")
        if s.watermark is None:
            table.add_row("watermark", "-")
        else:
            wm = datetime.fromtimestamp(s.watermark / 1000, tz=UTC)
            table.add_row("watermark", f"{wm:%Y-%m-%d %H:%M:%S.%f}"[:-3] + "Z")
            delay = s.watermark_delay_s()
            table.add_row("behind wall time", duration(delay) if delay is not None else "-")
        table.add_row("open windows", f"{s.open_windows:,}")
        table.add_row("state", f"{s.state_bytes / 1e6:,.1f} MB")
        table.add_row("late events", f"{s.late:,}")
        table.add_row("dead letters", f"{s.dead_letters:,}")
        table.add_row("micro-batches", f"{s.batches:,}")
        return table
