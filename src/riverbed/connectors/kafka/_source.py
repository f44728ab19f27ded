"""Kafka connector: :class:`KafkaSource` and its per-partition :class:`KafkaReader`."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import polars as pl

from riverbed._errors import ConfigError, SourceError
from riverbed.connectors.base import (
    Capabilities,
    Source,
    SourceContext,
    SourceReader,
    dead_letters,
)
from riverbed.connectors.kafka._config import (
    _HEADERS_DTYPE,
    _LOG,
    _METADATA_DTYPES,
    _PARTITION_EOF,
    _TRANSIENT_CODES,
    _UNKNOWN_TOPIC,
    HEADERS_COLUMN,
    ConfigValue,
    Start,
    _admin,
    _check_bootstrap,
    _check_topic,
    _ck,
    _is_transient,
    _missing_topic,
    _topic_partitions,
    _unreachable,
)
from riverbed.connectors.kafka._decode import decode_values

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, Message
    from polars._typing import PolarsDataType


@dataclass(frozen=True)
class KafkaSource(Source):
    """A Kafka topic read as JSON records; see :mod:`riverbed.connectors.kafka` for the semantics.

    Parameters
    ----------
    topic, bootstrap
        The topic and a comma-separated list of ``HOST:PORT`` brokers.
    value_schema
        The declared fields of the JSON values as ``(name, dtype)`` pairs; None infers them.
    key
        Name of a column holding the message key (UTF-8 text). When the value already has a
        field of that name (as messages written by :class:`KafkaSink` with ``key=`` do), the
        value's field is kept and the message key is not added.
    headers
        Add a ``_headers`` column: ``list[struct{key, value}]`` (values as UTF-8 text).
    metadata
        Extra columns among ``_partition`` (Int32), ``_offset`` (Int64) and ``_timestamp``
        (Datetime ms UTC, the message timestamp).
    group
        A consumer group to which :meth:`KafkaReader.commit_group` and :meth:`commit_group`
        copy positions (so lag shows in Kafka tools). riverbed's checkpoint stays the truth.
    start
        Where a reader without resume state begins: ``"earliest"`` or ``"latest"``.
    infer_rows
        How many messages schema inference reads.
    timeout
        Seconds to wait for the broker on metadata and offset requests.
    config
        Extra librdkafka settings as ``(name, value)`` pairs (security, SASL, ...).
    """

    topic: str
    bootstrap: str = "127.0.0.1:9092"
    value_schema: tuple[tuple[str, PolarsDataType], ...] | None = None
    key: str | None = None
    headers: bool = False
    metadata: tuple[str, ...] = ()
    group: str | None = None
    start: Start = "earliest"
    infer_rows: int = 1000
    timeout: float = 10.0
    config: tuple[tuple[str, ConfigValue], ...] = ()
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    capabilities: ClassVar[Capabilities] = Capabilities(bounded=True, unbounded=True, replayable=True)

    def __post_init__(self) -> None:
        _check_topic(self.topic)
        _check_bootstrap(self.bootstrap)
        if self.start not in ("earliest", "latest"):
            raise ConfigError(f"Kafka start={self.start!r}: expected 'earliest' or 'latest'")
        if self.infer_rows < 1:
            raise ConfigError(f"Kafka infer_rows={self.infer_rows}: expected at least 1")
        if self.timeout <= 0:
            raise ConfigError(f"Kafka timeout={self.timeout}: expected seconds > 0")
        for name in self.metadata:
            if name not in _METADATA_DTYPES:
                raise ConfigError(f"Kafka metadata column {name!r}: expected one of {list(_METADATA_DTYPES)}")

    # -- description

    def describe(self) -> str:
        """``kafka://BOOTSTRAP/TOPIC``.

        Examples
        --------
        >>> from riverbed.connectors.kafka import kafka_source
        >>> kafka_source("orders", bootstrap="127.0.0.1:9092").describe()
        'kafka://127.0.0.1:9092/orders'
        """
        return f"kafka://{self.bootstrap}/{self.topic}"

    def _consumer_config(self, ctx: SourceContext | None) -> dict[str, Any]:
        pipeline = ctx.pipeline if ctx is not None else "pipeline"
        return {
            "bootstrap.servers": self.bootstrap,
            "group.id": self.group or f"riverbed-{pipeline}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",
            "allow.auto.create.topics": False,
            # librdkafka pauses a partition's prefetch for fetch.queue.backoff.ms (1 s by
            # default) whenever its local queue is full: it caps reading at ~250k msg/s
            "fetch.queue.backoff.ms": 10,
            "queued.min.messages": 200_000,
            # how long the broker may hold a fetch at the tail: bounds the wait for the
            # partition-EOF event that ends a batch read, and tail latency on brokers that
            # do not answer a long poll as soon as data arrives
            "fetch.wait.max.ms": 100,
            "logger": _LOG,
            **dict(self.config),
        }

    # -- schema

    def _value_schema(self, ctx: SourceContext | None) -> pl.Schema:
        if self.value_schema is not None:
            return pl.Schema(self.value_schema)
        cached = self._cache.get("value_schema")
        if cached is None:
            cached = self._infer(ctx)
            self._cache["value_schema"] = cached
        return pl.Schema(cached)

    def _infer(self, ctx: SourceContext | None) -> pl.Schema:
        ck = _ck()
        parts = self.partitions(ctx or SourceContext())
        consumer = ck.Consumer(self._consumer_config(ctx))
        samples: list[bytes] = []
        try:
            tps = [ck.TopicPartition(self.topic, int(p)) for p in parts]
            for tp in tps:  # explicit offsets: a logical OFFSET_BEGINNING costs a lookup
                tp.offset = consumer.get_watermark_offsets(tp, self.timeout, cached=False)[0]
            consumer.assign(tps)
            at_end: set[int] = set()
            deadline = time.monotonic() + self.timeout
            while len(samples) < self.infer_rows and len(at_end) < len(parts):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                events = consumer.consume(self.infer_rows, 0) or consumer.consume(1, left)
                for m in events:
                    err = m.error()
                    if err is None:
                        at_end.discard(m.partition() or 0)
                        value = m.value()
                        if value and len(samples) < self.infer_rows:
                            samples.append(value)
                    elif err.code() == _PARTITION_EOF:
                        at_end.add(m.partition() or 0)
        finally:
            consumer.close()
        lines: list[bytes] = []
        for value in samples:
            try:
                obj = json.loads(value)
            except ValueError:
                continue
            if isinstance(obj, dict):
                lines.append(json.dumps(obj).encode())
        if not lines:
            what = (
                f"no JSON object among its first {len(samples)} messages"
                if samples
                else "it has no messages yet"
            )
            raise ConfigError(
                f"cannot infer the schema of Kafka topic {self.topic!r} at {self.bootstrap}: "
                f"{what}.\n"
                "  hint: declare it, e.g. kafka(topic, schema={'id': pl.Int64, 'name': pl.String})"
            )
        try:
            inferred = pl.read_ndjson(io.BytesIO(b"\n".join(lines)), infer_schema_length=None)
        except pl.exceptions.PolarsError as exc:
            raise ConfigError(
                f"cannot infer the schema of Kafka topic {self.topic!r}: {exc}\n"
                "  hint: declare it with schema={...}"
            ) from exc
        return inferred.schema

    def schema(self, ctx: SourceContext) -> pl.Schema:
        """The value fields (declared or inferred), then key, ``_headers`` and metadata."""
        return self._output_schema(self._value_schema(ctx))

    def _output_schema(self, value_schema: pl.Schema) -> pl.Schema:
        out: dict[str, PolarsDataType] = dict(value_schema)
        extra: dict[str, PolarsDataType] = {}
        if self.key is not None and self.key not in out:
            extra[self.key] = pl.String
        if self.headers:
            extra[HEADERS_COLUMN] = _HEADERS_DTYPE
        for name in self.metadata:
            extra[name] = _METADATA_DTYPES[name]
        for name in extra:
            if name in out and name != self.key:
                what = "headers" if name == HEADERS_COLUMN else "metadata"
                raise ConfigError(
                    f"Kafka topic {self.topic!r}: the values have a field {name!r}, which "
                    f"clashes with the column riverbed adds for {what}.\n"
                    "  hint: rename the field or drop headers=/metadata="
                )
        out.update(extra)
        return pl.Schema(out)

    # -- partitions and readers

    def partitions(self, ctx: SourceContext) -> list[str]:
        """The topic's partition ids as strings (``["0", "1", ...]``)."""
        admin = _admin(self.bootstrap, self.config)
        parts = _topic_partitions(self.bootstrap, self.topic, self.timeout, self.config, admin=admin)
        if parts is None:
            raise SourceError(
                _missing_topic(self.bootstrap, self.topic, admin, self.timeout)
                + ".\n  hint: check the topic name, or create it (kafka_sink(..., "
                "create_partitions=N) creates it on first write)"
            )
        return [str(p) for p in parts]

    def open(self, partition: str, resume: Any, ctx: SourceContext) -> KafkaReader:
        """A reader of one partition, at offset ``resume`` (None: see ``start``)."""
        try:
            pid = int(partition)
        except (TypeError, ValueError):
            raise ConfigError(
                f"Kafka topic {self.topic!r}: partition {partition!r} is not a partition id "
                "(expected '0', '1', ...)"
            ) from None
        if resume is not None and (isinstance(resume, bool) or not isinstance(resume, int) or resume < 0):
            raise ConfigError(
                f"Kafka topic {self.topic!r} partition {pid}: resume state {resume!r} is not an "
                "offset (expected an int >= 0, as snapshot() returns)"
            )
        return KafkaReader(self, pid, resume, ctx, self._value_schema(ctx))

    def commit_group(self, positions: Mapping[str, int]) -> None:
        """Commit ``{partition: next offset}`` (e.g. a checkpoint's positions) to ``group``."""
        if not self.group:
            raise ConfigError(
                f"Kafka source {self.describe()}: commit_group needs a consumer group.\n"
                "  hint: kafka(topic, group='my-pipeline')"
            )
        ck = _ck()
        consumer = ck.Consumer(self._consumer_config(None))
        try:
            offsets = [ck.TopicPartition(self.topic, int(p), int(o)) for p, o in sorted(positions.items())]
            if offsets:
                consumer.commit(offsets=offsets, asynchronous=False)
        except ck.KafkaException as exc:
            if _is_transient(exc):
                raise _unreachable(self.bootstrap, self.topic, self.timeout, exc) from exc
            raise SourceError(
                f"Kafka at {self.bootstrap}: cannot commit group {self.group!r} positions for "
                f"{self.topic!r}: {exc}"
            ) from exc
        finally:
            consumer.close()


class KafkaReader(SourceReader):
    """Reads one partition of a topic; see :class:`KafkaSource`."""

    def __init__(
        self,
        source: KafkaSource,
        partition: int,
        resume: int | None,
        ctx: SourceContext,
        value_schema: pl.Schema,
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
        if resume is None:
            start = low if source.start == "earliest" else high
        else:
            start = resume
            if start < low:
                self._consumer.close()
                raise SourceError(
                    f"{self._where}: cannot resume at offset {start}; the oldest message "
                    f"still kept is at offset {low}, so offsets {start}..{low - 1} were deleted "
                    "(retention or compaction) and would be lost.\n  hint: raise the topic's "
                    "retention, or restart the pipeline from scratch"
                )
        self._next: int = int(start)
        self._listed_end = high  # ListOffsets(latest) when opened
        self._end: int | None = None  # batch mode bound, fixed at the first fetch
        # a partition with no messages at all ends a batch read at once
        self._done = self.mode == "batch" and high <= low and start >= high
        self._consumer.assign([ck.TopicPartition(source.topic, partition, start)])

    # -- reading

    def next_batch(self, max_rows: int, timeout: float) -> pl.DataFrame | None:
        """Up to ``max_rows`` rows; empty if nothing came within ``timeout`` s; None at the end
        of a batch-mode read."""
        if self._done:
            return None
        data, eof = self._poll(max(int(max_rows), 1), max(float(timeout), 0.0))
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
        """Leave the broker (no group rebalance: readers use ``assign``)."""
        consumer, self._consumer = self._consumer, None  # type: ignore[assignment]
        if consumer is not None:
            consumer.close()


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
