"""Kafka connector: :class:`KafkaTopic`, the constructors and ``kafka://`` URIs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import polars as pl

from riverbed._errors import ConfigError
from riverbed.connectors.kafka._config import (
    Assignment,
    ConfigValue,
    Start,
    _freeze_config,
    _freeze_schema,
    _metadata_names,
)
from riverbed.connectors.kafka._sink import KafkaSink
from riverbed.connectors.kafka._source import KafkaSource

if TYPE_CHECKING:
    from polars._typing import PolarsDataType


@dataclass(frozen=True)
class KafkaTopic:
    """A Kafka topic usable both as a source and as a sink (what :func:`kafka` returns)."""

    source: KafkaSource
    sink: KafkaSink

    def as_source(self) -> KafkaSource:
        """The topic as a :class:`KafkaSource`."""
        return self.source

    def as_sink(self) -> KafkaSink:
        """The topic as a :class:`KafkaSink`."""
        return self.sink

    def describe(self) -> str:
        """``kafka://BOOTSTRAP/TOPIC``."""
        return self.source.describe()


def kafka_source(
    topic: str,
    *,
    bootstrap: str = "127.0.0.1:9092",
    schema: Mapping[str, PolarsDataType] | pl.Schema | None = None,
    key: str | None = None,
    group: str | None = None,
    assignment: Assignment = "all",
    headers: bool = False,
    metadata: bool | Sequence[str] = False,
    start: Start = "earliest",
    infer_rows: int = 1000,
    timeout: float = 10.0,
    config: Mapping[str, ConfigValue] | None = None,
) -> KafkaSource:
    """Read JSON messages of ``topic``; see :class:`KafkaSource` for the options.

    ``assignment="group"`` (with ``group=``) shares the topic's partitions among the
    processes that read it with the same group, through Kafka's consumer-group protocol.

    Examples
    --------
    >>> src = kafka_source("orders", schema={"id": pl.Int64}, key="user", metadata=["offset"])
    >>> src.describe(), src.metadata
    ('kafka://127.0.0.1:9092/orders', ('_offset',))
    >>> kafka_source("orders", group="billing", assignment="group").assignment
    'group'
    """
    return KafkaSource(
        topic=topic,
        bootstrap=bootstrap,
        value_schema=_freeze_schema(schema),
        key=key,
        headers=headers,
        metadata=_metadata_names(metadata),
        group=group,
        assignment=assignment,
        start=start,
        infer_rows=infer_rows,
        timeout=timeout,
        config=_freeze_config(config),
    )


def kafka_sink(
    topic: str,
    *,
    bootstrap: str = "127.0.0.1:9092",
    key: str | None = None,
    create_partitions: int | None = None,
    replication_factor: int = -1,
    linger_ms: int = 20,
    batch_size: int = 1_000_000,
    compression: str = "none",
    idempotent: bool = True,
    flush_timeout: float = 60.0,
    timeout: float = 10.0,
    config: Mapping[str, ConfigValue] | None = None,
) -> KafkaSink:
    """Write rows to ``topic`` as JSON messages; see :class:`KafkaSink` for the options."""
    return KafkaSink(
        topic=topic,
        bootstrap=bootstrap,
        key=key,
        create_partitions=create_partitions,
        replication_factor=replication_factor,
        linger_ms=linger_ms,
        batch_size=batch_size,
        compression=compression,
        idempotent=idempotent,
        flush_timeout=flush_timeout,
        timeout=timeout,
        config=_freeze_config(config),
    )


def kafka(
    topic: str,
    *,
    bootstrap: str = "127.0.0.1:9092",
    schema: Mapping[str, PolarsDataType] | pl.Schema | None = None,
    key: str | None = None,
    group: str | None = None,
    assignment: Assignment = "all",
    headers: bool = False,
    metadata: bool | Sequence[str] = False,
    start: Start = "earliest",
    create_partitions: int | None = None,
    timeout: float = 10.0,
    config: Mapping[str, ConfigValue] | None = None,
) -> KafkaTopic:
    """A Kafka topic of JSON messages, usable as a source and as a sink.

    ``key`` names the column that is the message key both ways: the sink keys messages by
    it; the source fills it from the message key unless the value already holds it.
    ``group`` and ``assignment`` concern the source (see :class:`KafkaSource`):
    ``assignment="group"`` shares the partitions among the processes reading with ``group``.

    Examples
    --------
    >>> t = kafka("orders", bootstrap="127.0.0.1:9092", key="user", create_partitions=3)
    >>> t.as_source().key, t.as_sink().key, t.as_sink().create_partitions
    ('user', 'user', 3)
    """
    source = kafka_source(
        topic,
        bootstrap=bootstrap,
        schema=schema,
        key=key,
        group=group,
        assignment=assignment,
        headers=headers,
        metadata=metadata,
        start=start,
        timeout=timeout,
        config=config,
    )
    sink = kafka_sink(
        topic,
        bootstrap=bootstrap,
        key=key,
        create_partitions=create_partitions,
        timeout=timeout,
        config=config,
    )
    return KafkaTopic(source, sink)


_URI_OPTIONS: dict[str, type] = {
    "key": str,
    "group": str,
    "assignment": str,
    "start": str,
    "headers": bool,
    "metadata": bool,
    "create_partitions": int,
    "timeout": float,
}


def _uri_value(uri: str, name: str, text: str) -> Any:
    kind = _URI_OPTIONS.get(name)
    if kind is None:
        raise ConfigError(
            f"Kafka URI {uri!r}: unknown option {name!r}; expected some of {sorted(_URI_OPTIONS)}"
        )
    if kind is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"Kafka URI {uri!r}: option {name}={text!r} is not true/false")
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"Kafka URI {uri!r}: option {name}={text!r} is not a {kind.__name__}") from None


def from_uri(uri: str, **options: Any) -> KafkaTopic:
    """Parse ``kafka://HOST:PORT[,HOST:PORT...]/TOPIC[?option=value&...]``.

    Query options: ``key``, ``group``, ``assignment``, ``start``, ``headers``, ``metadata``,
    ``create_partitions``, ``timeout``; keyword ``options`` (any :func:`kafka` argument)
    override them.

    Examples
    --------
    >>> t = from_uri("kafka://127.0.0.1:9092/orders?key=user&group=g1", schema={"id": pl.Int64})
    >>> t.describe(), t.as_source().group, t.as_sink().key
    ('kafka://127.0.0.1:9092/orders', 'g1', 'user')
    >>> from_uri("kafka://127.0.0.1:9092/orders?group=g1&assignment=group").as_source().assignment
    'group'
    """
    parts = urlsplit(uri)
    if parts.scheme.lower() != "kafka":
        raise ConfigError(f"{uri!r} is not a Kafka URI: expected kafka://HOST:PORT/TOPIC")
    bootstrap = parts.netloc
    topic = unquote(parts.path.lstrip("/"))
    if not bootstrap or not topic or "/" in topic:
        raise ConfigError(
            f"Kafka URI {uri!r}: expected kafka://HOST:PORT/TOPIC (one topic, no sub-path).\n"
            "  hint: kafka://127.0.0.1:9092/orders"
        )
    query = {k: _uri_value(uri, k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)}
    return kafka(topic, bootstrap=bootstrap, **{**query, **options})
