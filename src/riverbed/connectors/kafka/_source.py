"""Kafka source and sink: one JSON object per message, decoded into Polars frames per batch.

Supports: batch, stream.

- :class:`KafkaSource` reads a topic. Each partition of the topic is one riverbed partition
  (``"0"``, ``"1"``, ...) read by its own reader with ``consumer.assign`` (no group
  rebalancing: riverbed owns the offsets, ``enable.auto.commit`` is off). A reader's
  :meth:`~KafkaReader.snapshot` is the next offset to read; ``open(partition, resume=offset)``
  continues from there. In batch mode a reader stops at the partition's high watermark as it
  stood when reading began; in stream mode it follows the tail.
- :class:`KafkaSink` produces one JSON message per row (``df.write_ndjson()`` split in lines),
  keyed by a column if asked, and waits for every delivery on ``commit(epoch)``
  (at-least-once: a replayed epoch is produced again).
- :func:`kafka` describes a topic usable both ways (:meth:`KafkaTopic.as_source`,
  :meth:`KafkaTopic.as_sink`); :func:`from_uri` parses ``kafka://HOST:PORT/TOPIC``.

Values are decoded vectorized: the raw values of a batch are joined into one NDJSON buffer
and read by ``polars.read_ndjson`` against the value schema. A message that is not JSON, not
an object, empty, or whose fields do not fit the schema becomes a dead letter (see
``DEAD_LETTER_SCHEMA``; ``position`` is ``"partition P offset O"``); the other rows of the
batch flow on. The bad messages are located by bisection, so one bad message costs a few
extra decodes, not a per-record Python path. Polars' JSON reader is strict about numbers,
booleans, dates and nested types and lenient about strings (``5`` read into a ``String``
field becomes ``"5"``); a missing field or JSON ``null`` is a null.

The value schema is the declared ``schema=`` or, if none is given, inferred from the first
``infer_rows`` messages of the topic (all partitions) when the plan is resolved; an empty
topic then cannot be read without ``schema=``. Declare it for production: an inferred
``Int64`` field rejects a later ``1.5``.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import polars as pl

from riverbed._errors import (
    ConfigError,
    MissingExtraError,
    SinkError,
    SourceError,
    TransientError,
)
from riverbed.connectors.base import (
    Capabilities,
    Sink,
    SinkContext,
    SinkWriter,
    Source,
    SourceContext,
    SourceReader,
    dead_letters,
)

if TYPE_CHECKING:
    from types import ModuleType

    from confluent_kafka import Consumer, KafkaError, Message, Producer
    from polars._typing import PolarsDataType

__all__ = [
    "KafkaReader",
    "KafkaSink",
    "KafkaSource",
    "KafkaTopic",
    "KafkaWriter",
    "from_uri",
    "kafka",
    "kafka_sink",
    "kafka_source",
]

_LOG = logging.getLogger("riverbed.kafka")

Start = Literal["earliest", "latest"]
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
_DEAD_LETTER_DECODE_LIMIT = 8  # below this many values, a failed decode goes record by record


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


# -- decoding -----------------------------------------------------------------------------------


def _read_ndjson(values: list[bytes], schema: pl.Schema) -> pl.DataFrame:
    return pl.read_ndjson(io.BytesIO(b"\n".join(values)), schema=schema)


def _diagnose(value: bytes, schema: pl.Schema, polars_error: str) -> tuple[str | None, str]:
    """Say why one message does not decode: (field or None, reason). Slow path, bad rows only."""
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"invalid JSON: {exc}"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}: {value[:80]!r}"
    for name, dtype in schema.items():
        if name not in obj:
            continue
        one = json.dumps({name: obj[name]}).encode()
        try:
            pl.read_ndjson(io.BytesIO(one), schema={name: dtype})
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:
            got = json.dumps(obj[name])
            got = got if len(got) <= 80 else got[:77] + "..."
            reason = str(exc).split("\n", 1)[0]
            return name, f"expected {dtype}, got {got} ({reason})"
    return None, f"does not fit the schema: {polars_error}"


def decode_values(
    values: list[bytes | None], schema: pl.Schema
) -> tuple[pl.DataFrame, list[tuple[int, str | None, str]]]:
    """Decode JSON message values into a frame of ``schema``.

    Returns the rows that decode, in order, and ``(index, field, reason)`` for those that
    do not. One ``read_ndjson`` call when every value is good; bad values are found by
    bisection.

    Examples
    --------
    >>> df, bad = decode_values([b'{"a": 1}', b"oops", b'{"a": 3}'], pl.Schema({"a": pl.Int64}))
    >>> df["a"].to_list(), [(i, f) for i, f, _ in bad]
    ([1, 3], [(1, None)])
    """
    bad: list[tuple[int, str | None, str]] = []
    index: list[int] | None = None  # position in ``values`` of each entry of ``good``
    good: list[bytes]
    if all(values):
        good = values  # type: ignore[assignment]  # all() proved there is no None/empty
    else:
        index = [i for i, v in enumerate(values) if v]
        bad = [(i, None, "empty message value (no JSON)") for i, v in enumerate(values) if not v]
        good = [v for v in values if v]
    if good and b"\n".join(good).count(b"\n") != len(good) - 1:
        # Some values span lines (pretty-printed JSON). Valid JSON has newlines only between
        # tokens, so once a value parses, turning them into spaces keeps its meaning.
        where = index if index is not None else list(range(len(good)))
        index, flat = [], []
        for i, v in zip(where, good, strict=True):
            if b"\n" in v:
                try:
                    json.loads(v)
                except (ValueError, UnicodeDecodeError) as exc:
                    bad.append((i, None, f"invalid JSON: {exc}"))
                    continue
                v = v.replace(b"\r\n", b" ").replace(b"\n", b" ")
            index.append(i)
            flat.append(v)
        good = flat
    if not good:
        bad.sort(key=lambda t: t[0])
        return pl.DataFrame(schema=schema), bad
    frames: list[pl.DataFrame] = []
    found: list[tuple[int, str | None, str]] = []
    _bisect(good, 0, schema, frames, found)
    bad.extend((index[i] if index is not None else i, f, r) for i, f, r in found)
    bad.sort(key=lambda t: t[0])
    if not frames:
        return pl.DataFrame(schema=schema), bad
    out = frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")
    return out, bad


def _bisect(
    values: list[bytes],
    base: int,
    schema: pl.Schema,
    frames: list[pl.DataFrame],
    bad: list[tuple[int, str | None, str]],
) -> None:
    try:
        df = _read_ndjson(values, schema)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
        pass
    else:
        if df.height == len(values):  # else a value held no JSON object (blank)
            frames.append(df)
            return
    if len(values) <= _DEAD_LETTER_DECODE_LIMIT:
        for i, v in enumerate(values):
            try:
                df = _read_ndjson([v], schema)
                if df.height != 1:
                    raise pl.exceptions.ComputeError("a message value holds no JSON object")
            except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:
                fld, reason = _diagnose(v, schema, str(exc).split("\n", 1)[0])
                bad.append((base + i, fld, reason))
            else:
                frames.append(df)
        return
    mid = len(values) // 2
    _bisect(values[:mid], base, schema, frames, bad)
    _bisect(values[mid:], base + mid, schema, frames, bad)


# -- source -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaSource(Source):
    """A Kafka topic read as JSON records; see the module docstring for the semantics.

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


# -- sink ---------------------------------------------------------------------------------------


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
        return KafkaWriter(self)


class KafkaWriter(SinkWriter):
    """Produces rows to a topic; ``commit`` waits until the broker acknowledged all of them."""

    def __init__(self, sink: KafkaSink) -> None:
        ck = _ck()
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
        try:
            if keys is None:
                for value in lines:
                    try:
                        produce(topic, value)
                    except BufferError:
                        self._wait_for_room()
                        produce(topic, value)
            else:
                for value, key in zip(lines, keys, strict=True):
                    try:
                        produce(topic, value, key)
                    except BufferError:
                        self._wait_for_room()
                        produce(topic, value, key)
        except BufferError as exc:
            raise SinkError(
                f"Kafka sink {sink.describe()}: the producer queue stayed full for "
                f"{sink.flush_timeout:g}s; the broker at {sink.bootstrap} does not take "
                f"messages ({exc})"
            ) from exc
        except self._ck.KafkaException as exc:
            raise SinkError(f"Kafka sink {sink.describe()}: cannot produce: {exc}") from exc
        self._sent += len(lines)
        self._producer.poll(0)

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


# -- constructors -------------------------------------------------------------------------------


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
    headers: bool = False,
    metadata: bool | Sequence[str] = False,
    start: Start = "earliest",
    infer_rows: int = 1000,
    timeout: float = 10.0,
    config: Mapping[str, ConfigValue] | None = None,
) -> KafkaSource:
    """Read JSON messages of ``topic``; see :class:`KafkaSource` for the options.

    Examples
    --------
    >>> src = kafka_source("orders", schema={"id": pl.Int64}, key="user", metadata=["offset"])
    >>> src.describe(), src.metadata
    ('kafka://127.0.0.1:9092/orders', ('_offset',))
    """
    return KafkaSource(
        topic=topic,
        bootstrap=bootstrap,
        value_schema=_freeze_schema(schema),
        key=key,
        headers=headers,
        metadata=_metadata_names(metadata),
        group=group,
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

    Query options: ``key``, ``group``, ``start``, ``headers``, ``metadata``,
    ``create_partitions``, ``timeout``; keyword ``options`` (any :func:`kafka` argument)
    override them.

    Examples
    --------
    >>> t = from_uri("kafka://127.0.0.1:9092/orders?key=user&group=g1", schema={"id": pl.Int64})
    >>> t.describe(), t.as_source().group, t.as_sink().key
    ('kafka://127.0.0.1:9092/orders', 'g1', 'user')
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
