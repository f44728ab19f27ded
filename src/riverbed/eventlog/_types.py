"""Small value types the log returns: append results and topic descriptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import polars as pl

METADATA_COLUMNS = ("_partition", "_offset", "_timestamp")
"""Columns a read adds when asked for metadata: partition, offset and append time (UTC)."""


class AppendResult(NamedTuple):
    """Where an append put its rows in one partition: offsets ``first..last`` inclusive."""

    partition: int
    first_offset: int
    last_offset: int


@dataclass(frozen=True)
class PartitionInfo:
    """One partition as :meth:`Topic.describe` sees it.

    ``lag`` maps each consumer group to ``end_offset - committed`` (a group that never
    committed this partition counts from ``start_offset``).
    """

    partition: int
    start_offset: int
    end_offset: int
    size_bytes: int
    batches: int
    lag: dict[str, int] = field(default_factory=dict)

    @property
    def records(self) -> int:
        """Records currently kept: ``end_offset - start_offset``."""
        return self.end_offset - self.start_offset


@dataclass(frozen=True)
class TopicDescription:
    """A topic's configuration and per-partition state."""

    name: str
    partitions: list[PartitionInfo]
    groups: list[str]
    retention_ms: int | None
    retention_bytes: int | None
    schema: pl.Schema | None

    @property
    def records(self) -> int:
        """Records kept across all partitions."""
        return sum(p.records for p in self.partitions)

    @property
    def size_bytes(self) -> int:
        """Stored bytes across all partitions (the IPC blobs, not SQLite's overhead)."""
        return sum(p.size_bytes for p in self.partitions)
