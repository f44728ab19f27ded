"""The embedded log as a source and a sink.

* :class:`LogSource` reads a topic; each topic partition is a source partition and the
  position is the next offset to read (an int). In batch mode a reader reads a bounded
  snapshot: up to the end offsets taken when it is opened. In stream mode it follows the tail.
* :class:`LogSink` appends to a topic, routing rows by ``key`` (or round-robin); the rows of
  an epoch and the epoch number are written in one transaction, so the sink is exactly-once.
* :func:`log` builds a :class:`LogTopic`, usable as either (``p.read(log("orders"))``,
  ``s.write(log("orders", key="store_id"))``) through its ``as_source()`` / ``as_sink()``
  halves, which is also what ``log:TOPIC`` URIs resolve to; :func:`log_source` and
  :func:`log_sink` build one half.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from riverbed._errors import ConfigError, RiverbedError, SinkError, SourceError
from riverbed.connectors.base import (
    Capabilities,
    Sink,
    SinkContext,
    SinkWriter,
    Source,
    SourceContext,
    SourceReader,
)
from riverbed.eventlog import Log, Topic
from riverbed.eventlog._sqlite import check_name

logger = logging.getLogger("riverbed.eventlog")

__all__ = ["LogSink", "LogSource", "LogTopic", "log", "log_sink", "log_source"]

_METADATA_DTYPES: dict[str, pl.DataType] = {
    "_partition": pl.Int32(),
    "_offset": pl.Int64(),
    "_timestamp": pl.Datetime("ms", "UTC"),
}


def _home(home: str | None, ctx: SourceContext | SinkContext) -> Path:
    return Path(home) if home is not None else ctx.home


def _partition_index(partition: str, topic: Topic) -> int:
    try:
        index = int(partition)
    except ValueError:
        index = -1
    if not 0 <= index < topic.partitions:
        raise SourceError(f"log:{topic.name} has partitions '0'..'{topic.partitions - 1}', got {partition!r}")
    return index


@dataclass(frozen=True)
class LogSource(Source):
    """Read a topic of the embedded log. Build it with :func:`log` or directly.

    Parameters
    ----------
    topic
        The topic's name.
    home
        riverbed's home directory; None uses the run's (``SourceContext.home``).
    group
        Consumer group: a reader without resume state starts from the group's committed
        position, and :meth:`commit_positions` records positions for it.
    from_beginning
        Where a reader without resume state or committed position starts: the oldest kept
        offset (True) or the end (False, only records appended later).
    metadata
        Add ``_partition``, ``_offset`` and ``_timestamp`` (append time) columns.
    poll_interval
        Seconds between looks at the tail in stream mode.

    Supports: batch, stream.
    """

    topic: str
    home: str | None = None
    group: str | None = None
    from_beginning: bool = True
    metadata: bool = False
    poll_interval: float = 0.02

    capabilities: ClassVar[Capabilities] = Capabilities(bounded=True, unbounded=True, replayable=True)

    def describe(self) -> str:
        return f"log:{self.topic}" + (f" (group {self.group})" if self.group else "")

    def _log(self, ctx: SourceContext) -> Log:
        return Log(_home(self.home, ctx))

    def schema(self, ctx: SourceContext) -> pl.Schema:
        with self._log(ctx) as log:
            schema = log.topic(self.topic).schema
        if schema is None:
            raise SourceError(
                f"log:{self.topic} has no records yet, so its schema is unknown.\n"
                "  hint: produce a first batch before starting the pipeline"
            )
        if self.metadata:
            return pl.Schema({**schema, **_METADATA_DTYPES})
        return schema

    def partitions(self, ctx: SourceContext) -> list[str]:
        with self._log(ctx) as log:
            return [str(p) for p in range(log.topic(self.topic).partitions)]

    def open(self, partition: str, resume: Any, ctx: SourceContext) -> SourceReader:
        log = self._log(ctx)
        try:
            topic = log.topic(self.topic)
            index = _partition_index(partition, topic)
            if resume is not None:
                start = int(resume)
                end = topic.end_offsets()[index]
                if start > end:  # (offsets removed by retention fail at the first read)
                    raise SourceError(
                        f"log:{self.topic} partition {index}: the checkpoint resumes at offset {start}, "
                        f"but the partition ends at offset {end} now (the topic was deleted and "
                        "created again, or truncated).\n  hint: nothing was reset silently; start "
                        "over with a new checkpoint directory to read the topic as it is"
                    )
            else:
                committed = topic.committed(self.group) if self.group else {}
                oldest = topic.start_offsets()[index]
                if index in committed and committed[index] < oldest:
                    logger.warning(
                        "log:%s partition %d: group %r was at offset %d, removed by retention; "
                        "continuing at %d",
                        self.topic,
                        index,
                        self.group,
                        committed[index],
                        oldest,
                    )
                    start = oldest
                elif index in committed:
                    start = committed[index]
                elif self.from_beginning:
                    start = oldest
                else:
                    start = topic.end_offsets()[index]
            stop = topic.end_offsets()[index] if ctx.mode == "batch" else None
        except BaseException:
            log.close()
            raise
        return LogReader(log, topic, index, start, stop, self.metadata, self.poll_interval)

    def scan(self, ctx: SourceContext) -> tuple[pl.LazyFrame, pl.DataFrame | None] | None:
        """Batch fast path: every kept record, when reading from the beginning without a group."""
        if self.group is not None or not self.from_beginning:
            return None
        with self._log(ctx) as log:
            return log.topic(self.topic).read_all(metadata=self.metadata).lazy(), None

    def commit_positions(self, positions: Mapping[str, Any], ctx: SourceContext) -> None:
        """Record the group's positions: ``{partition: next offset}`` as :meth:`snapshot` gives.

        The executor calls this after a checkpoint; without a ``group`` it does nothing.
        """
        if self.group is None or not positions:
            return
        with self._log(ctx) as log:
            topic = log.topic(self.topic)
            offsets = {_partition_index(p, topic): int(o) for p, o in positions.items()}
            topic.commit(self.group, offsets)


class LogReader(SourceReader):
    """Reads one partition of a topic from a position; bounded when ``stop`` is given."""

    def __init__(
        self,
        log: Log,
        topic: Topic,
        partition: int,
        start: int,
        stop: int | None,
        metadata: bool,
        poll_interval: float,
    ) -> None:
        self._log = log
        self.topic = topic
        self.partition = partition
        self.position = start
        self.stop = stop
        self.metadata = metadata
        self.poll_interval = poll_interval

    def next_batch(self, max_rows: int, timeout: float) -> pl.DataFrame | None:
        """Up to ``max_rows`` records; empty after ``timeout`` s of nothing; None at the end."""
        limit = max_rows
        if self.stop is not None:
            if self.position >= self.stop:
                return None
            limit = min(limit, self.stop - self.position)
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            df = self.topic.read(self.partition, self.position, limit, metadata=self.metadata)
            if df.height:
                self.position += df.height
                return df
            if self.stop is not None:
                return None  # the tail was cut below the snapshot's end: nothing more to read
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return df
            time.sleep(min(self.poll_interval, remaining))

    def snapshot(self) -> Any:
        """The next offset to read."""
        return self.position

    def lag(self) -> int | None:
        """Records appended to this partition that the reader has not read yet."""
        return max(int(self.topic.end_offsets()[self.partition]) - int(self.position), 0)

    def end_position(self) -> Any:
        """The offset one past the partition's last record now."""
        return self.topic.end_offsets()[self.partition]

    def stop_at(self, position: Any) -> None:
        """End the partition at offset ``position``."""
        self.stop = int(position)

    def close(self) -> None:
        self._log.close()


@dataclass(frozen=True)
class LogSink(Sink):
    """Append to a topic of the embedded log. Build it with :func:`log` or directly.

    Rows staged during an epoch are appended on commit in one transaction that also records
    the epoch, so after a crash :meth:`LogWriter.last_committed_epoch` says exactly what is
    in the topic. A missing topic is created with ``partitions`` (default 1).

    Supports: batch, stream.
    """

    topic: str
    key: str | None = None
    partitions: int | None = None
    home: str | None = None

    capabilities: ClassVar[Capabilities] = Capabilities(bounded=True, unbounded=True, exactly_once=True)

    def describe(self) -> str:
        return f"log:{self.topic}" + (f" (key {self.key})" if self.key else "")

    def open(self, ctx: SinkContext) -> SinkWriter:
        log = Log(_home(self.home, ctx))
        try:
            if self.topic in log:
                topic = log.topic(self.topic)
                if self.partitions is not None and topic.partitions != self.partitions:
                    raise ConfigError(
                        f"log:{self.topic} exists with {topic.partitions} partitions, "
                        f"the sink asks for {self.partitions}\n"
                        "  hint: drop partitions= or write to a new topic"
                    )
            else:
                topic = log.create_topic(self.topic, self.partitions or 1, exist_ok=True)
        except BaseException:
            log.close()
            raise
        return LogWriter(log, topic, self.key, f"{ctx.pipeline}/{ctx.step}")


class LogWriter(SinkWriter):
    """Stages frames; on commit appends them and the epoch in one transaction."""

    def __init__(self, log: Log, topic: Topic, key: str | None, writer_id: str) -> None:
        self._log = log
        self.topic = topic
        self.key = key
        self.writer_id = writer_id
        self.staged: list[pl.DataFrame] = []

    def write(self, df: pl.DataFrame) -> None:
        if df.height:
            self.staged.append(df)

    def commit(self, epoch: int) -> None:
        frames = self.staged  # kept until the append succeeds: a retried commit writes them
        df = pl.concat(frames, how="vertical_relaxed", rechunk=False) if frames else pl.DataFrame()
        try:
            self.topic.append(df, self.key, epoch=(self.writer_id, epoch))
        except RiverbedError:  # schema mismatch, locked topic (transient): keep the type
            raise
        except Exception as exc:
            raise SinkError(f"log:{self.topic.name}: commit of epoch {epoch} failed: {exc}") from exc
        self.staged = []

    def last_committed_epoch(self) -> int | None:
        return self.topic.last_epoch(self.writer_id)

    def close(self) -> None:
        self._log.close()


@dataclass(frozen=True)
class LogTopic:
    """A topic usable both as a source and as a sink (what :func:`log` returns).

    ``p.read(topic)`` takes :meth:`as_source`, ``.write(topic)`` takes :meth:`as_sink`.
    """

    source: LogSource
    sink: LogSink

    def as_source(self) -> LogSource:
        """The topic as a :class:`LogSource`."""
        return self.source

    def as_sink(self) -> LogSink:
        """The topic as a :class:`LogSink`."""
        return self.sink

    def describe(self) -> str:
        """``log:TOPIC``."""
        return f"log:{self.source.topic}"


def _check(topic: str, partitions: int | None) -> None:
    check_name(topic)
    if partitions is not None and (isinstance(partitions, bool) or partitions < 1):
        raise ConfigError(f"log({topic!r}): partitions must be a positive int, got {partitions!r}")


def _home_str(home: str | os.PathLike[str] | None) -> str | None:
    return None if home is None else os.fspath(home)


def log_source(
    topic: str,
    *,
    home: str | os.PathLike[str] | None = None,
    group: str | None = None,
    from_beginning: bool = True,
    metadata: bool = False,
) -> LogSource:
    """Read a topic of the embedded log; see :func:`log` for the parameters.

    Examples
    --------
    >>> log_source("orders", group="billing").describe()
    'log:orders (group billing)'
    """
    _check(topic, None)
    return LogSource(
        topic,
        home=_home_str(home),
        group=group,
        from_beginning=from_beginning,
        metadata=metadata,
    )


def log_sink(
    topic: str,
    *,
    partitions: int | None = None,
    key: str | None = None,
    home: str | os.PathLike[str] | None = None,
) -> LogSink:
    """Append to a topic of the embedded log; see :func:`log` for the parameters.

    Examples
    --------
    >>> log_sink("orders", key="store_id").describe()
    'log:orders (key store_id)'
    """
    _check(topic, partitions)
    return LogSink(topic, key=key, partitions=partitions, home=_home_str(home))


def log(
    topic: str,
    *,
    partitions: int | None = None,
    key: str | None = None,
    home: str | os.PathLike[str] | None = None,
    group: str | None = None,
    from_beginning: bool = True,
    metadata: bool = False,
) -> LogTopic:
    """A topic of the embedded log, usable as a source and as a sink.

    Parameters
    ----------
    topic
        The topic's name (``A-Z a-z 0-9 . _ -``).
    partitions
        As a sink: partitions of the topic when it has to be created (default 1); if the
        topic exists it must have this many.
    key
        As a sink: column whose hash picks each row's partition (default: round-robin).
    home
        riverbed's home directory (default: the run's).
    group
        As a source: consumer group whose committed positions a fresh reader starts from.
    from_beginning
        As a source without position: start at the oldest kept record (True) or the end.
    metadata
        As a source: add ``_partition``, ``_offset`` and ``_timestamp`` columns.

    Examples
    --------
    >>> t = log("orders", partitions=4, key="store_id")
    >>> t.describe(), t.as_sink().partitions, t.as_source().from_beginning
    ('log:orders', 4, True)
    >>> import riverbed as rb
    >>> p = rb.Pipeline("copy")
    >>> _ = p.read(log("orders")).write(log("orders_copy", key="store_id"))
    """
    return LogTopic(
        source=log_source(topic, home=home, group=group, from_beginning=from_beginning, metadata=metadata),
        sink=log_sink(topic, partitions=partitions, key=key, home=home),
    )
