"""Kafka connector: :class:`KafkaReader`, which reads one partition of a topic."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import polars as pl

from riverbed._errors import ConfigError, SourceError
from riverbed.connectors.base import SourceContext, SourceReader, dead_letters
from riverbed.connectors.kafka._config import (
    _HEADERS_DTYPE,
    _LOG,
    _METADATA_DTYPES,
    _PARTITION_EOF,
    _TRANSIENT_CODES,
    _UNKNOWN_TOPIC,
    HEADERS_COLUMN,
    _ck,
    _is_transient,
    _unreachable,
)
from riverbed.connectors.kafka._decode import decode_values

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, Message

    from riverbed.connectors.kafka._group import GroupMember
    from riverbed.connectors.kafka._source import KafkaSource


class KafkaReader(SourceReader):
    """Reads one partition of a topic; see :class:`KafkaSource`."""

    def __init__(
        self,
        source: KafkaSource,
        partition: int,
        resume: int | None,
        ctx: SourceContext,
        value_schema: pl.Schema,
        member: GroupMember | None = None,
    ) -> None:
        ck = _ck()
        self._ck = ck
        self.source = source
        self.partition = partition
        self.mode = ctx.mode
        self._value_schema = value_schema
        self._schema = source._output_schema(value_schema)
        self._key_column = source.key if source.key is not None and source.key not in value_schema else None
        self._dead: list[dict[str, Any]] = []
        self._where = f"{source.describe()} partition {partition}"
        self._tp = ck.TopicPartition(source.topic, partition)
        self._consumer: Consumer = ck.Consumer(source._consumer_config(ctx))
        deadline = time.monotonic() + source.timeout
        while True:  # a just-created topic may have no leader for a moment: retry until timeout
            try:
                low, high = self._consumer.get_watermark_offsets(
                    self._tp, timeout=max(deadline - time.monotonic(), 0.1), cached=False
                )
                break
            except ck.KafkaException as exc:
                if _is_transient(exc) and time.monotonic() < deadline - 0.1:
                    time.sleep(0.1)
                    continue
                self._consumer.close()
                if _is_transient(exc):
                    raise _unreachable(source.bootstrap, source.topic, source.timeout, exc) from exc
                raise SourceError(f"{self._where}: cannot read its offsets: {exc}") from exc
        self._member = member
        try:
            start = self._start(resume, low, high)
        except BaseException:
            self._consumer.close()
            raise
        self._next: int = int(start)
        self._listed_end = high  # ListOffsets(latest) when opened
        self._end: int | None = None  # batch mode bound, fixed at the first fetch
        # a partition with no messages at all ends a batch read at once
        self._done = self.mode == "batch" and high <= low and start >= high
        self._consumer.assign([ck.TopicPartition(source.topic, partition, start)])
        if member is not None:
            member.opened(partition)

    def _start(self, resume: int | None, low: int, high: int) -> int:
        """riverbed's resume offset; else (group mode) the group's committed one; else start."""
        what = "resume at"
        if self._member is not None:
            while not self._member.check(self.partition, self.source.timeout):
                pass  # a rebalance is under way: check() raises once it takes too long
            if resume is None:
                resume = self._member.committed(self.partition)
                what = f"start at group {self._member.group!r}'s committed"
        if resume is None:
            return low if self.source.start == "earliest" else high
        if resume < low:
            raise SourceError(
                f"{self._where}: cannot {what} offset {resume}; the oldest message "
                f"still kept is at offset {low}, so offsets {resume}..{low - 1} were deleted "
                "(retention or compaction) and would be lost.\n  hint: raise the topic's "
                "retention, or restart the pipeline from scratch"
            )
        return resume

    # -- reading

    def next_batch(self, max_rows: int, timeout: float) -> pl.DataFrame | None:
        """Up to ``max_rows`` rows; empty if nothing came within ``timeout`` s; None at the end
        of a batch-mode read."""
        if self._done:
            return None
        member = self._member
        if member is not None and not member.check(self.partition, max(float(timeout), 0.0)):
            return pl.DataFrame(schema=self._schema)  # the group is rebalancing: wait
        data, eof = self._poll(max(int(max_rows), 1), max(float(timeout), 0.0))
        if member is not None and (data or eof is not None) and not member.check(self.partition, 0.0):
            # revoked while polling: accept nothing; fetch again from the same offset later
            self._consumer.assign([self._ck.TopicPartition(self.source.topic, self.partition, self._next)])
            return pl.DataFrame(schema=self._schema)
        batch = self.mode == "batch"
        if batch and self._end is None and (data or eof is not None):
            # The high watermark of the first Fetch response: ListOffsets alone can be behind
            # on some Kafka-compatible brokers (see riverbed._testing.tansu).
            cached = self._consumer.get_watermark_offsets(self._tp, cached=True)
            self._end = max(self._listed_end, cached[1] if cached else -1)
        if data:
            if batch and self._end is not None and (data[-1].offset() or 0) >= self._end:
                data = [m for m in data if (m.offset() or 0) < self._end]
                self._done = True
            if data:
                self._next = (data[-1].offset() or 0) + 1
        if eof is not None:
            limit = self._end if batch and self._end is not None else eof
            self._next = max(self._next, min(eof, limit))
            if batch and eof >= self._listed_end:
                self._done = True
        if batch and self._end is not None and self._next >= self._end:
            self._done = True
        if not data:
            return None if self._done else pl.DataFrame(schema=self._schema)
        return self._frame(data)

    def _poll(self, max_rows: int, timeout: float) -> tuple[list[Message], int | None]:
        """Messages already fetched; else wait up to ``timeout`` for the first one."""
        consumer = self._consumer
        events = consumer.consume(max_rows, 0)
        data, eof = self._split(events)
        if data:
            return data, eof
        if self.mode == "batch" and eof is not None and eof >= self._listed_end:
            return data, eof
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return data, eof
            events = consumer.consume(1, left)
            got, got_eof = self._split(events)
            if got_eof is not None:
                eof = got_eof
            if got:
                if max_rows > 1:
                    more, more_eof = self._split(consumer.consume(max_rows - 1, 0))
                    got.extend(more)
                    eof = more_eof if more_eof is not None else eof
                return got, eof
            if self.mode == "batch" and eof is not None:
                return data, eof

    def _split(self, events: list[Message]) -> tuple[list[Message], int | None]:
        data = [m for m in events if m.error() is None]
        eof: int | None = None
        if len(data) != len(events):
            for m in events:
                err = m.error()
                if err is None:
                    continue
                if err.code() == _PARTITION_EOF:
                    eof = m.offset()
                else:
                    self._event_error(err)
        return data, eof

    def _event_error(self, err: KafkaError) -> None:
        if err.code() in _TRANSIENT_CODES or err.retriable():
            _LOG.warning("%s: %s (retrying)", self._where, err)
            return
        if err.code() == 1:  # OFFSET_OUT_OF_RANGE
            raise SourceError(
                f"{self._where}: offset {self._next} is out of range ({err}); messages were "
                "deleted by retention while the pipeline was stopped, or the topic was "
                "recreated.\n  hint: restart the pipeline from scratch, or raise the retention"
            )
        if err.fatal():
            raise SourceError(f"{self._where}: fatal Kafka error: {err}")
        if err.code() == _UNKNOWN_TOPIC:
            raise SourceError(f"{self._where}: the topic no longer exists ({err})")
        _LOG.warning("%s: %s", self._where, err)

    def _frame(self, data: list[Message]) -> pl.DataFrame:
        values, bad = decode_values([m.value() for m in data], self._value_schema)
        keep: pl.Series | None = None
        if bad:
            mask = [True] * len(data)
            for i, fld, reason in bad:
                mask[i] = False
                m = data[i]
                raw = m.value()
                self._dead.append(
                    {
                        "source": self.source.topic,
                        "position": f"partition {self.partition} offset {m.offset()}",
                        "field": fld,
                        "error": reason,
                        "raw": raw.decode("utf-8", "replace") if raw is not None else None,
                    }
                )
            keep = pl.Series(mask, dtype=pl.Boolean)
        extra: list[pl.Series] = []
        if self._key_column is not None:
            extra.append(_keys(self._key_column, [m.key() for m in data]))
        if self.source.headers:
            extra.append(_headers([m.headers() for m in data]))
        for name in self.source.metadata:
            if name == "_partition":
                extra.append(pl.repeat(self.partition, len(data), dtype=pl.Int32, eager=True).alias(name))
            elif name == "_offset":
                extra.append(pl.Series(name, [m.offset() for m in data], dtype=pl.Int64))
            else:
                stamps = [ts if kind else None for kind, ts in (m.timestamp() for m in data)]
                extra.append(pl.Series(name, stamps, dtype=pl.Int64).cast(_METADATA_DTYPES[name]))
        if extra:
            meta = pl.DataFrame(extra)
            if keep is not None:
                meta = meta.filter(keep)
            values = values.hstack(meta)
        return values.select(self._schema.names())

    # -- state

    def snapshot(self) -> int:
        """The next offset this reader will read (JSON-serialisable resume state)."""
        return self._next

    def lag(self) -> int | None:
        """The partition's high watermark (as last fetched) minus the next offset to read."""
        cached = self._consumer.get_watermark_offsets(self._tp, cached=True)
        if not cached or cached[1] is None or cached[1] < 0:
            return None
        return max(int(cached[1]) - int(self._next), 0)

    def drain_dead_letters(self) -> pl.DataFrame | None:
        """Messages rejected since the last call (``DEAD_LETTER_SCHEMA``), or None."""
        if not self._dead:
            return None
        rows, self._dead = self._dead, []
        return dead_letters(rows)

    def commit_group(self) -> None:
        """Copy this reader's position to the source's consumer ``group`` (for lag tools)."""
        if not self.source.group:
            raise ConfigError(
                f"{self._where}: commit_group needs a consumer group.\n"
                "  hint: kafka(topic, group='my-pipeline')"
            )
        if self._member is not None:  # the group takes commits from its members only
            self._member.commit([(self.partition, self._next)])
            return
        try:
            self._consumer.commit(
                offsets=[self._ck.TopicPartition(self.source.topic, self.partition, self._next)],
                asynchronous=False,
            )
        except self._ck.KafkaException as exc:
            if _is_transient(exc):
                raise _unreachable(
                    self.source.bootstrap, self.source.topic, self.source.timeout, exc
                ) from exc
            raise SourceError(f"{self._where}: cannot commit to group {self.source.group!r}: {exc}") from exc

    def close(self) -> None:
        """Disconnect (readers use ``assign``: closing one causes no rebalance). In group mode
        the process leaves the group once every partition it was given has been read."""
        consumer, self._consumer = self._consumer, None  # type: ignore[assignment]
        if consumer is not None:
            consumer.close()
            if self._member is not None:
                self._member.closed()


def _keys(name: str, keys: list[bytes | None]) -> pl.Series:
    raw = pl.Series(name, keys, dtype=pl.Binary)
    try:
        return raw.cast(pl.String)
    except pl.exceptions.PolarsError:  # invalid UTF-8 somewhere: decode with replacement
        return pl.Series(name, [k.decode("utf-8", "replace") if k is not None else None for k in keys])


def _headers(headers: list[Any]) -> pl.Series:
    rows = [
        [{"key": k, "value": v.decode("utf-8", "replace") if isinstance(v, bytes) else v} for k, v in h]
        if h
        else []
        for h in headers
    ]
    return pl.Series(HEADERS_COLUMN, rows, dtype=_HEADERS_DTYPE)
