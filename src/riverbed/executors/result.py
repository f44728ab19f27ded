"""What a run reports: counts per step, where outputs went, how long it took."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunResult:
    """The outcome of :meth:`riverbed.Pipeline.run`."""

    pipeline: str
    mode: str
    elapsed_s: float = 0.0
    rows_read: dict[str, int] = field(default_factory=dict)
    rows_written: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    late: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def total_read(self) -> int:
        return sum(self.rows_read.values())

    @property
    def total_dead(self) -> int:
        return sum(self.dead_letters.values())

    @property
    def total_late(self) -> int:
        return sum(self.late.values())

    def summary(self) -> str:
        """A few lines for humans."""
        from riverbed._humanize import duration, plural

        lines = [
            f"pipeline {self.pipeline!r} ({self.mode}) finished in {duration(self.elapsed_s)}: "
            f"{plural(self.total_read, 'row')} read"
            + (f", {plural(self.total_dead, 'dead letter')}" if self.total_dead else "")
            + (f", {plural(self.total_late, 'late event')}" if self.total_late else "")
        ]
        partly = self.stats.get("late_assignments") or {}
        if partly:
            lines[0] += f", {plural(sum(partly.values()), 'late window assignment')}"
        for step, where in self.outputs.items():
            lines.append(f"  {step}: {plural(self.rows_written.get(step, 0), 'row')} -> {where}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
