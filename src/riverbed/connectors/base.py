"""The connector protocol: one partitioned source protocol and one sink protocol.

A *source* is a frozen, picklable description (paths, topic, options). At run time the
executor asks it for its partitions and builds one :class:`SourceReader` per partition from
resume state. A bounded source is one whose readers end (``next_batch`` returns ``None``).

A *sink* is a frozen description too; :meth:`Sink.open` builds a :class:`SinkWriter` that
stages rows per epoch and makes them visible on :meth:`SinkWriter.commit`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import polars as pl

Mode = Literal["batch", "stream"]


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do, declared rather than implied."""

    bounded: bool = True
    unbounded: bool = False
    replayable: bool = False
    exactly_once: bool = False
    upsert: bool = False


@dataclass
class SourceContext:
    """Run-time facts a source may need: the mode, riverbed's home directory, progress."""

    mode: Mode = "batch"
    home: Path = field(default_factory=lambda: Path(".riverbed"))
    pipeline: str = "pipeline"
    step: str = "source"
    progress: Any = None  # a riverbed._progress.Progress or None
    columns: list[str] | None = None  # the columns the pipeline uses (None: all); a hint
    # the read step's event-time column: a source that knows records' lines rejects a record
    # whose event time is null or empty itself (RecordError, or a dead letter with its line)
    event_time: str | None = None


@dataclass
class SinkContext:
    """Run-time facts a sink needs: the mode, the key columns for upserts, the emit mode."""

    mode: Mode = "batch"
    home: Path = field(default_factory=lambda: Path(".riverbed"))
    pipeline: str = "pipeline"
    step: str = "sink"
    key: tuple[str, ...] = ()
    emit: Literal["append", "update"] = "append"
    schema: pl.Schema | None = None  # the rows' schema when known: sinks check tables against it
    # the job's first epoch: "replace" sinks replace then, and only then (a resumed job's
    # later epochs append); set by the stream executor once every sink is open
    first_epoch: int = 0
    # a checkpointed job's id (stable across its restarts); None: a run without checkpoints
    job_id: str | None = None


class SourceReader(ABC):
    """Reads one partition of a source."""

    @abstractmethod
    def next_batch(self, max_rows: int, timeout: float) -> pl.DataFrame | None:
        """Return up to ``max_rows`` rows.

        An empty frame means nothing arrived within ``timeout`` seconds (never block forever);
        ``None`` means the partition has ended (bounded sources only).
        """

    @abstractmethod
    def snapshot(self) -> Any:
        """Return the JSON-serialisable position to resume from."""

    def lag(self) -> int | None:
        """Records this partition holds that the reader has not read yet (log, Kafka), or None
        when the source cannot tell. Called at most about once a second, for metrics."""
        return None

    def end_position(self) -> Any:
        """The position just past what the partition holds now (None: it cannot tell).

        A stream job run with ``stop_at_end`` takes these at its first start as the end of its
        input, and hands them to :meth:`stop_at` at every start.
        """
        return None

    def stop_at(self, position: Any) -> None:
        """End the partition (``next_batch`` returns None) once ``position`` is reached."""
        raise NotImplementedError(f"{type(self).__name__} cannot stop at a position")

    def drain_dead_letters(self) -> pl.DataFrame | None:
        """Return records rejected since the last call (see ``DEAD_LETTER_SCHEMA``), or None."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files, connections."""


class Source(ABC):
    """A frozen description of where records come from."""

    capabilities: ClassVar[Capabilities] = Capabilities()

    @abstractmethod
    def describe(self) -> str:
        """A one-line description for plans and errors."""

    @abstractmethod
    def schema(self, ctx: SourceContext) -> pl.Schema:
        """The schema of the rows this source yields (resolved before anything runs)."""

    def identity(self) -> str:
        """What makes this source itself, for the read step's stable id (default: describe())."""
        return self.describe()

    def fails_on_bad_records(self) -> bool:
        """Whether a bad record (one with no event time, say) stops the job
        (``on_error="fail"``, the default of sources that have the option) rather than
        going to dead letters."""
        return bool(getattr(self, "on_error", "dead_letter") == "fail")

    def caps(self) -> Capabilities:
        """What this source, as configured, can do (default: the class's ``capabilities``)."""
        return self.capabilities

    @abstractmethod
    def partitions(self, ctx: SourceContext) -> list[str]:
        """The partitions to read; each gets its own reader and watermark."""

    @abstractmethod
    def open(self, partition: str, resume: Any, ctx: SourceContext) -> SourceReader:
        """Build a reader for ``partition``, positioned from ``resume`` (None = start)."""

    def commit_positions(self, positions: dict[str, Any], ctx: SourceContext) -> None:  # noqa: B027
        """Told the positions (``{partition: position}``) of each checkpoint once it is written,
        e.g. to record a consumer group's progress; does nothing by default."""

    def scan(self, ctx: SourceContext) -> tuple[pl.LazyFrame, pl.DataFrame | None] | None:
        """Batch fast path: the whole bounded input as one LazyFrame plus dead letters.

        Returns None when the source has no such path; :meth:`read_all` then reads every
        partition to its end through :meth:`open`.
        """
        return None

    def read_all(self, ctx: SourceContext) -> tuple[pl.LazyFrame, pl.DataFrame | None]:
        """The whole bounded input (partitions in order) plus its dead letters, through the
        :meth:`scan` fast path when there is one."""
        fast = self.scan(ctx)
        if fast is not None:
            return fast
        frames: list[pl.DataFrame] = []
        dead: list[pl.DataFrame] = []
        for part in self.partitions(ctx):
            reader = self.open(part, None, ctx)
            try:
                while (batch := reader.next_batch(1_000_000, 1.0)) is not None:
                    frames.append(batch)
                    letters = reader.drain_dead_letters()
                    if letters is not None:
                        dead.append(letters)
            finally:
                reader.close()
        schema = self.schema(ctx)
        kept = [f for f in frames if f.height] or [pl.DataFrame(schema=schema)]
        data = pl.concat(kept, how="vertical_relaxed")
        return data.lazy(), (pl.concat(dead) if dead else None)


class SinkWriter(ABC):
    """Writes rows for one run; stages per epoch, publishes on commit."""

    @abstractmethod
    def write(self, df: pl.DataFrame) -> None:
        """Stage rows for the current epoch."""

    @abstractmethod
    def commit(self, epoch: int) -> None:
        """Make everything staged so far visible, recording ``epoch`` when the sink can.

        When it raises, nothing of the epoch is visible and the rows stay staged: calling
        ``commit(epoch)`` again retries them (the stream executor does, for transient errors).
        """

    def last_committed_epoch(self) -> int | None:
        """The newest epoch this sink has committed (for exactly-once resume), if it tracks one."""
        return None

    def begin_epoch(self, epoch: int) -> None:  # noqa: B027 - optional hook
        """Told the epoch the next rows belong to (a sink that tags records with it listens)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files, connections."""


class Sink(ABC):
    """A frozen description of where rows go."""

    capabilities: ClassVar[Capabilities] = Capabilities()

    @abstractmethod
    def describe(self) -> str:
        """A one-line description for plans and errors."""

    @abstractmethod
    def open(self, ctx: SinkContext) -> SinkWriter:
        """Build a writer for one run."""

    def identity(self) -> str:
        """What makes this sink itself, for the write step's stable id (default: describe())."""
        return self.describe()

    def required_columns(self) -> tuple[str, ...]:
        """Columns the rows must have (an upsert key, a routing key), checked at validation."""
        key = getattr(self, "key", None)
        if isinstance(key, str):
            return (key,)
        return tuple(key) if isinstance(key, tuple | list) else ()


@runtime_checkable
class Endpoint(Protocol):
    """Something that can be read and written, like a log or Kafka topic: ``p.read()`` takes
    its source half and ``.write()`` its sink half."""

    def as_source(self) -> Source: ...

    def as_sink(self) -> Sink: ...


def source_of(obj: Source | Endpoint) -> Source:
    """The source half of an endpoint, or the source itself."""
    return obj.as_source() if isinstance(obj, Endpoint) else obj


def sink_of(obj: Sink | Endpoint) -> Sink:
    """The sink half of an endpoint, or the sink itself."""
    return obj.as_sink() if isinstance(obj, Endpoint) else obj


DEAD_LETTER_SCHEMA = pl.Schema(
    {
        "source": pl.String,
        "position": pl.String,
        "field": pl.String,
        "error": pl.String,
        "raw": pl.String,
    }
)
"""Columns of a dead-letter record: where it came from, what failed, and the raw text."""


def dead_letters(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Build a dead-letter frame from a list of dicts with the ``DEAD_LETTER_SCHEMA`` keys."""
    return pl.DataFrame(rows, schema=DEAD_LETTER_SCHEMA)
