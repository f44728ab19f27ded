"""Kafka connector: :class:`KafkaSink` and its producer, :class:`KafkaWriter`."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import polars as pl

from riverbed._errors import ConfigError, SinkError, TransientError
from riverbed.connectors.base import Capabilities, Sink, SinkContext, SinkWriter
from riverbed.connectors.kafka._config import (
    _LOG,
    _QUEUE_MESSAGES,
    _TOPIC_EXISTS,
    ConfigValue,
    _admin,
    _check_bootstrap,
    _check_topic,
    _ck,
    _is_transient,
    _kafka_error,
    _missing_topic,
    _topic_partitions,
    _unreachable,
)

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer


@dataclass(frozen=True)
class KafkaSink(Sink):
    """Rows produced to a Kafka topic, one JSON message per row.

    Parameters
    ----------
    topic, bootstrap
        The topic and a comma-separated list of ``HOST:PORT`` brokers.
    key
        A column whose value (as text) becomes the message key; rows with equal keys go to
        the same partition (Java-compatible murmur2 partitioner). The value keeps every column.
    create_partitions
        Create the topic with this many partitions if it does not exist (else a missing topic
        is an error).
    replication_factor
        For a created topic; -1 takes the broker's default.
    linger_ms, batch_size, compression, idempotent
        Producer tuning (``linger.ms``, ``batch.size``, ``compression.type``,
        ``enable.idempotence``).
    flush_timeout
        Seconds ``commit`` waits for every message to be acknowledged.
    timeout
        Seconds to wait for the broker on metadata requests.
    config
        Extra librdkafka settings as ``(name, value)`` pairs.
    """

    topic: str
    bootstrap: str = "127.0.0.1:9092"
    key: str | None = None
    create_partitions: int | None = None
    replication_factor: int = -1
    linger_ms: int = 20
    batch_size: int = 1_000_000
    compression: str = "none"
    idempotent: bool = True
    flush_timeout: float = 60.0
    timeout: float = 10.0
    config: tuple[tuple[str, ConfigValue], ...] = ()

    capabilities: ClassVar[Capabilities] = Capabilities(bounded=True, unbounded=True)

    def __post_init__(self) -> None:
        _check_topic(self.topic)
        _check_bootstrap(self.bootstrap)
        if self.create_partitions is not None and self.create_partitions < 1:
            raise ConfigError(f"Kafka create_partitions={self.create_partitions}: expected a count >= 1")
        if self.flush_timeout <= 0 or self.timeout <= 0:
            raise ConfigError("Kafka flush_timeout= and timeout= must be seconds > 0")

    def describe(self) -> str:
        """``kafka://BOOTSTRAP/TOPIC``."""
        return f"kafka://{self.bootstrap}/{self.topic}"

    def ensure_topic(self) -> list[int]:
        """Check that the topic exists (creating it if ``create_partitions`` is set)."""
        ck = _ck()
        admin = _admin(self.bootstrap, self.config)
        parts = _topic_partitions(self.bootstrap, self.topic, self.timeout, self.config, admin=admin)
        if parts is not None:
            return parts
        if self.create_partitions is None:
            raise SinkError(
                _missing_topic(self.bootstrap, self.topic, admin, self.timeout)
                + ".\n  hint: create it, or pass create_partitions=N to create it on open"
            )
        new = ck.admin.NewTopic(
            self.topic,
            num_partitions=self.create_partitions,
            replication_factor=self.replication_factor,
        )
        try:
            admin.create_topics([new], operation_timeout=self.timeout)[self.topic].result(self.timeout)
        except ck.KafkaException as exc:
            err = _kafka_error(exc)
            if err is None or err.code() != _TOPIC_EXISTS:
                if _is_transient(exc):
                    raise _unreachable(self.bootstrap, self.topic, self.timeout, exc) from exc
                raise SinkError(
                    f"cannot create Kafka topic {self.topic!r} at {self.bootstrap} with "
                    f"{self.create_partitions} partitions: {exc}"
                ) from exc
        deadline = time.monotonic() + self.timeout
        while True:  # wait until the new topic's metadata is visible
            parts = _topic_partitions(self.bootstrap, self.topic, self.timeout, self.config, admin=admin)
            if parts or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if not parts:
            raise TransientError(
                f"Kafka topic {self.topic!r} was created at {self.bootstrap} but its metadata "
                f"did not show within {self.timeout:g}s.\n  hint: retry"
            )
        return parts

    def open(self, ctx: SinkContext) -> KafkaWriter:
        """Check (or create) the topic and build a producer."""
        self.ensure_topic()
        return KafkaWriter(self, ctx)


class KafkaWriter(SinkWriter):
    """Produces rows to a topic; ``commit`` waits until the broker acknowledged all of them.

    At-least-once: a stream job replaying an epoch after a crash produces its messages again.
    Each message carries a stable id in the headers ``riverbed-id`` (``EPOCH:SEQUENCE``, the
    message's place in its epoch, the same on a replay) and ``riverbed-writer``
    (``PIPELINE/STEP``), so readers can drop repeats.
    """

    def __init__(self, sink: KafkaSink, ctx: SinkContext | None = None) -> None:
        ck = _ck()
        ctx = ctx or SinkContext()
        self._writer_id = f"{ctx.pipeline}/{ctx.step}".encode()
        self._epoch = ctx.first_epoch
        self._seq = 0
        self._ck = ck
        self.sink = sink
        self._errors: list[str] = []
        self._failed = 0
        self._sent = 0
        conf: dict[str, Any] = {
            "bootstrap.servers": sink.bootstrap,
            "linger.ms": sink.linger_ms,
            "batch.size": sink.batch_size,
            "compression.type": sink.compression,
            "enable.idempotence": sink.idempotent,
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": _QUEUE_MESSAGES,
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
            "error_cb": self._on_error,
            "allow.auto.create.topics": False,
            "logger": _LOG,
            **dict(sink.config),
        }
        self._queue_max = int(conf["queue.buffering.max.messages"])
        try:
            self._producer: Producer = ck.Producer(conf)
        except ck.KafkaException as exc:
            raise ConfigError(f"Kafka sink {sink.describe()}: bad producer settings: {exc}") from exc

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed += 1
            if len(self._errors) < 5:
                self._errors.append(f"partition {msg.partition()}: {err.str()}")

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._failed += 1
            self._errors.append(f"fatal: {err.str()}")
        else:
            _LOG.warning("%s: %s", self.sink.describe(), err.str())

    def write(self, df: pl.DataFrame) -> None:
        """Produce one JSON message per row (queued; delivered by ``commit``)."""
        if df.height == 0:
            return
        sink = self.sink
        unsupported = [n for n, t in df.schema.items() if t in (pl.Binary, pl.Object)]
        if unsupported:
            raise SinkError(
                f"Kafka sink {sink.describe()}: columns {unsupported} cannot be written as JSON "
                "(binary/object).\n  hint: encode them first, e.g. "
                "pl.col(c).bin.encode('base64')"
            )
        keys: list[str | None] | None = None
        if sink.key is not None:
            if sink.key not in df.columns:
                raise SinkError(
                    f"Kafka sink {sink.describe()}: key column {sink.key!r} is not among the "
                    f"columns {df.columns}.\n  hint: key= must name a column of the rows written"
                )
            keys = df.get_column(sink.key).cast(pl.String).to_list()
        buffer = io.BytesIO()  # bytes, not str: no decode here and re-encode in produce()
        df.write_ndjson(buffer)
        lines = buffer.getvalue().split(b"\n")
        del buffer
        if lines and not lines[-1]:
            lines.pop()
        if len(lines) != df.height:
            raise SinkError(
                f"Kafka sink {sink.describe()}: {df.height} rows serialised to {len(lines)} JSON "
                "lines (internal error)"
            )
        produce = self._producer.produce
        topic = sink.topic
        writer, prefix, seq = self._writer_id, f"{self._epoch}:", self._seq
        try:
            for i, value in enumerate(lines):
                key = None if keys is None else keys[i]
                headers: list[tuple[str, str | bytes | None]] = [
                    ("riverbed-id", f"{prefix}{seq + i}".encode()),
                    ("riverbed-writer", writer),
                ]
                try:
                    produce(topic, value, key, headers=headers)
                except BufferError:
                    self._wait_for_room()
                    produce(topic, value, key, headers=headers)
        except BufferError as exc:
            raise SinkError(
                f"Kafka sink {sink.describe()}: the producer queue stayed full for "
                f"{sink.flush_timeout:g}s; the broker at {sink.bootstrap} does not take "
                f"messages ({exc})"
            ) from exc
        except self._ck.KafkaException as exc:
            raise SinkError(f"Kafka sink {sink.describe()}: cannot produce: {exc}") from exc
        self._sent += len(lines)
        self._seq += len(lines)
        self._producer.poll(0)

    def begin_epoch(self, epoch: int) -> None:
        """Number the next messages from 0 within ``epoch``."""
        self._epoch, self._seq = epoch, 0

    def _wait_for_room(self) -> None:
        """The local queue is full: serve deliveries until it has drained to half."""
        producer = self._producer
        deadline = time.monotonic() + self.sink.flush_timeout
        while len(producer) > self._queue_max // 2:
            if time.monotonic() > deadline:
                raise BufferError(f"{len(producer)} messages still queued")
            producer.poll(0.05)

    def commit(self, epoch: int) -> None:
        """Wait until every message written so far is acknowledged; raise SinkError if not."""
        sink = self.sink
        left = self._producer.flush(sink.flush_timeout)
        if self._failed:
            failed, errors = self._failed, self._errors
            self._failed, self._errors = 0, []
            raise SinkError(
                f"Kafka sink {sink.describe()}: {failed} messages of epoch {epoch} were not "
                f"delivered: {'; '.join(errors)}"
            )
        if left:
            raise TransientError(
                f"Kafka sink {sink.describe()}: {left} messages of epoch {epoch} not "
                f"acknowledged within {sink.flush_timeout:g}s.\n  hint: is the broker at "
                f"{sink.bootstrap} up? raise flush_timeout= for slow clusters"
            )

    def close(self) -> None:
        """Deliver what is still queued (briefly), then release the producer."""
        producer = getattr(self, "_producer", None)
        if producer is not None:
            producer.flush(min(self.sink.flush_timeout, 5.0))
            del self._producer
