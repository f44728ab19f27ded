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
        lines = [
            f"pipeline {self.pipeline!r} ({self.mode}) finished in {self.elapsed_s:.2f}s: "
            f"{self.total_read:,} rows read"
            + (f", {self.total_dead:,} dead letters" if self.total_dead else "")
            + (f", {self.total_late:,} late events" if self.total_late else "")
        ]
        for step, where in self.outputs.items():
            lines.append(f"  {step}: {self.rows_written.get(step, 0):,} rows -> {where}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
