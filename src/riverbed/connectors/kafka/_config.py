"""Kafka connector: options, their validation, admin helpers and error classification."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from riverbed._errors import ConfigError, MissingExtraError, SourceError, TransientError

if TYPE_CHECKING:
    from types import ModuleType

    from confluent_kafka import KafkaError
    from polars._typing import PolarsDataType

_LOG = logging.getLogger("riverbed.kafka")
# librdkafka's own lines go to this logger, silent unless the user configures logging for
# "riverbed.kafka": riverbed's errors say what matters (no 13 lines of broker chatter first)
_LOG.addHandler(logging.NullHandler())

Start = Literal["earliest", "latest"]
Assignment = Literal["all", "group"]
ConfigValue = str | int | float | bool
METADATA_COLUMNS = {"partition": "_partition", "offset": "_offset", "timestamp": "_timestamp"}
HEADERS_COLUMN = "_headers"
_HEADERS_DTYPE = pl.List(pl.Struct({"key": pl.String, "value": pl.String}))
_METADATA_DTYPES: dict[str, PolarsDataType] = {
    "_partition": pl.Int32,
    "_offset": pl.Int64,
    "_timestamp": pl.Datetime("ms", "UTC"),
}
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_HOST_PORT_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")
# librdkafka error codes that mean "the broker is not reachable (yet)"
_TRANSIENT_CODES = {
    -195,  # _TRANSPORT
    -187,  # _ALL_BROKERS_DOWN
    -185,  # _TIMED_OUT
    -193,  # _RESOLVE
    7,  # REQUEST_TIMED_OUT
    8,  # BROKER_NOT_AVAILABLE
    13,  # NETWORK_EXCEPTION
    15,  # COORDINATOR_NOT_AVAILABLE
    6,  # NOT_LEADER_OR_FOLLOWER
    5,  # LEADER_NOT_AVAILABLE
}
_PARTITION_EOF = -191
_UNKNOWN_TOPIC = 3
_TOPIC_EXISTS = 36
_QUEUE_MESSAGES = 1_000_000  # producer's local queue (queue.buffering.max.messages)


def _ck() -> ModuleType:
    """Import confluent_kafka lazily; a missing package names the extra to install."""
    try:
        import confluent_kafka
        import confluent_kafka.admin
    except ImportError as exc:
        raise MissingExtraError("confluent-kafka", "kafka") from exc
    return confluent_kafka


# -- options ------------------------------------------------------------------------------------


def _check_topic(topic: str) -> None:
    if not isinstance(topic, str) or not _TOPIC_RE.match(topic) or topic in {".", ".."}:
        raise ConfigError(
            f"Kafka topic name {topic!r} is not valid: expected 1-249 characters from "
            "[A-Za-z0-9._-].\n  hint: kafka('orders', ...) or kafka://127.0.0.1:9092/orders"
        )


def _check_bootstrap(bootstrap: str) -> None:
    parts = [p.strip() for p in bootstrap.split(",")] if isinstance(bootstrap, str) else [""]
    for part in parts:
        m = _HOST_PORT_RE.match(part)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ConfigError(
                f"Kafka bootstrap address {bootstrap!r} is not valid: expected HOST:PORT "
                "(comma-separated for several brokers), got "
                f"{part!r}.\n  hint: bootstrap='127.0.0.1:9092'"
            )


def _check_group_options(
    topic: str, assignment: str, group: str | None, config: tuple[tuple[str, ConfigValue], ...]
) -> None:
    if assignment not in ("all", "group"):
        raise ConfigError(
            f"Kafka topic {topic!r}: assignment={assignment!r}: expected 'all' (read every "
            "partition) or 'group' (share the partitions through a consumer group)"
        )
    if assignment != "group":
        return
    if not group:
        raise ConfigError(
            f"Kafka topic {topic!r}: assignment='group' needs a consumer group.\n"
            f"  hint: kafka({topic!r}, group='my-pipeline', assignment='group')"
        )
    settings = dict(config)
    strategy = str(settings.get("partition.assignment.strategy", ""))
    protocol = str(settings.get("group.protocol", "classic"))
    if "cooperative" in strategy or protocol != "classic":
        raise ConfigError(
            f"Kafka topic {topic!r}: assignment='group' supports the classic, eager rebalance "
            f"protocol only; got partition.assignment.strategy={strategy!r}, "
            f"group.protocol={protocol!r}.\n  hint: use 'range' or 'roundrobin' (the default)"
        )


def _freeze_config(config: Mapping[str, ConfigValue] | None) -> tuple[tuple[str, ConfigValue], ...]:
    if not config:
        return ()
    for k, v in config.items():
        if not isinstance(k, str) or not isinstance(v, str | int | float | bool):
            raise ConfigError(
                f"Kafka client setting {k!r}={v!r}: expected a string key and a str, int, "
                "float or bool value (librdkafka settings, e.g. {'security.protocol': 'SSL'})"
            )
    return tuple(sorted(config.items()))


def _freeze_schema(
    schema: Mapping[str, PolarsDataType] | pl.Schema | None,
) -> tuple[tuple[str, PolarsDataType], ...] | None:
    if schema is None:
        return None
    try:
        resolved = pl.Schema(schema)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"Kafka schema= could not be read as a Polars schema: {exc}\n"
            "  hint: schema={'id': pl.Int64, 'user': pl.String}"
        ) from exc
    if not resolved:
        raise ConfigError("Kafka schema= is empty; declare at least one field or leave it None")
    return tuple(resolved.items())


def _metadata_names(metadata: bool | Sequence[str]) -> tuple[str, ...]:
    if metadata is True:
        return tuple(METADATA_COLUMNS.values())
    if metadata is False:
        return ()
    out: list[str] = []
    for item in [metadata] if isinstance(metadata, str) else metadata:
        name = METADATA_COLUMNS.get(str(item).lstrip("_"))
        if name is None:
            raise ConfigError(
                f"Kafka metadata= got {item!r}: expected True or some of "
                f"{sorted(METADATA_COLUMNS)} (columns {sorted(METADATA_COLUMNS.values())})"
            )
        if name not in out:
            out.append(name)
    return tuple(out)


def _kafka_error(exc: BaseException) -> KafkaError | None:
    args = getattr(exc, "args", ())
    err = args[0] if args else None
    return err if err is not None and hasattr(err, "code") else None


def _is_transient(exc: BaseException) -> bool:
    err = _kafka_error(exc)
    if err is None:
        return False
    return err.code() in _TRANSIENT_CODES or bool(err.retriable())


def _unreachable(bootstrap: str, topic: str, timeout: float, exc: BaseException) -> TransientError:
    return TransientError(
        f"cannot reach Kafka at {bootstrap} (topic {topic!r}) within {timeout:g}s: {exc}\n"
        f"  hint: is a broker running and listening on {bootstrap}? Check bootstrap= "
        "(HOST:PORT of a broker), firewalls, and the broker's advertised listeners"
    )


def _admin(bootstrap: str, config: tuple[tuple[str, ConfigValue], ...]) -> Any:
    ck = _ck()
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "allow.auto.create.topics": False,
        "logger": _LOG,
        **dict(config),
    }
    return ck.admin.AdminClient(conf)


def _topic_partitions(
    bootstrap: str,
    topic: str,
    timeout: float,
    config: tuple[tuple[str, ConfigValue], ...],
    *,
    admin: Any = None,
) -> list[int] | None:
    """The partition ids of ``topic``, or None when the topic does not exist."""
    ck = _ck()
    admin = admin or _admin(bootstrap, config)
    try:
        md = admin.list_topics(topic, timeout=timeout)
    except ck.KafkaException as exc:
        raise _unreachable(bootstrap, topic, timeout, exc) from exc
    finally:
        admin.poll(0)  # serve queued log lines
    tmd = md.topics.get(topic)
    if tmd is None:
        return None
    if tmd.error is not None:
        if tmd.error.code() == _UNKNOWN_TOPIC:
            return None
        if tmd.error.code() in _TRANSIENT_CODES or tmd.error.retriable():
            raise _unreachable(bootstrap, topic, timeout, ck.KafkaException(tmd.error))
        raise SourceError(f"Kafka at {bootstrap}: cannot read topic {topic!r}: {tmd.error}")
    return sorted(tmd.partitions)


def _missing_topic(bootstrap: str, topic: str, admin: Any, timeout: float) -> str:
    try:
        names = sorted(t for t in admin.list_topics(timeout=timeout).topics if not t.startswith("_"))
    except Exception:
        names = []
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "") if names else "none"
    return f"Kafka topic {topic!r} does not exist at {bootstrap} (topics there: {shown})"
