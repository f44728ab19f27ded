"""Kafka connector: :class:`KafkaSource`, a topic read partition by partition."""

from __future__ import annotations

import io
import json
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import polars as pl

from riverbed._errors import ConfigError, SourceError
from riverbed.connectors.base import Capabilities, Source, SourceContext
from riverbed.connectors.kafka._config import (
    _HEADERS_DTYPE,
    _LOG,
    _METADATA_DTYPES,
    _PARTITION_EOF,
    HEADERS_COLUMN,
    Assignment,
    ConfigValue,
    Start,
    _admin,
    _check_bootstrap,
    _check_group_options,
    _check_topic,
    _ck,
    _is_transient,
    _missing_topic,
    _topic_partitions,
    _unreachable,
)
from riverbed.connectors.kafka._group import GroupMember
from riverbed.connectors.kafka._reader import KafkaReader

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

_MEMBER = "group_member"  # the _cache key of this process's GroupMember (never pickled)
_MEMBER_LOCK = threading.Lock()


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
    assignment
        Which partitions this process reads. ``"all"`` (the default): every partition of the
        topic, each reader ``assign``-ed by hand; two processes running the same pipeline
        each read everything. ``"group"``: :meth:`partitions` joins consumer ``group``
        (required) and returns only the partitions the group coordinator assigns to this
        process, so several processes share the topic's partitions. Offsets stay riverbed's:
        nothing is auto-committed, and a reader starts at its resume state, else at the
        group's committed offset (see :meth:`commit_group`), else at ``start``. A rebalance
        (a member joins, leaves or dies) is detected, not followed: a reader whose partition
        went to another member raises :class:`~riverbed._errors.TransientError`
        ("partitions were reassigned; restart the job ..."), and so does, in stream mode,
        any reader once partitions were added to this process. The process leaves the group
        when every partition it was given has been read and its reader closed, on
        :meth:`leave_group`, or when the source is dropped or the process exits. Classic
        (eager) rebalancing only.
    start
        Where a reader without resume state (nor, in group mode, a committed offset) begins:
        ``"earliest"`` or ``"latest"``.
    infer_rows
        How many messages schema inference reads.
    timeout
        Seconds to wait for the broker on metadata and offset requests; in group mode also
        for the coordinator to assign partitions and for a rebalance to end.
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
    assignment: Assignment = "all"
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
        _check_group_options(self.topic, self.assignment, self.group, self.config)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the description, never this process's group membership."""
        state = dict(self.__dict__)
        state["_cache"] = {k: v for k, v in self._cache.items() if k != _MEMBER}
        return state

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
        parts = self._all_partitions()  # every partition, whatever this process is assigned
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
        """The partition ids to read here as strings (``["0", "1", ...]``): all of the topic's,
        or (``assignment="group"``) those the consumer group assigns to this process."""
        parts = self._all_partitions()
        if self.assignment == "all":
            return [str(p) for p in parts]
        return [str(p) for p in self._group_member(ctx).hand_out(ctx.mode)]

    def _all_partitions(self) -> list[int]:
        admin = _admin(self.bootstrap, self.config)
        parts = _topic_partitions(self.bootstrap, self.topic, self.timeout, self.config, admin=admin)
        if parts is None:
            raise SourceError(
                _missing_topic(self.bootstrap, self.topic, admin, self.timeout)
                + ".\n  hint: check the topic name, or create it (kafka_sink(..., "
                "create_partitions=N) creates it on first write)"
            )
        return parts

    def _group_member(self, ctx: SourceContext) -> GroupMember:
        """This process's member of ``group`` (joined on first use, kept until it leaves)."""
        assert self.group is not None  # checked in __post_init__
        with _MEMBER_LOCK:
            member: GroupMember | None = self._cache.get(_MEMBER)
            if member is None or member.ended:
                member = GroupMember(
                    topic=self.topic,
                    group=self.group,
                    bootstrap=self.bootstrap,
                    config={
                        **self._consumer_config(ctx),
                        "enable.partition.eof": False,
                        "auto.offset.reset": "latest",  # it never fetches: its partitions are paused
                        **dict(self.config),
                    },
                    timeout=self.timeout,
                    mode=ctx.mode,
                )
                self._cache[_MEMBER] = member
                weakref.finalize(self, member.leave, min(self.timeout, 5.0))  # source dropped, or exit
        return member

    def leave_group(self) -> None:
        """Leave the consumer group now (``assignment="group"``); open readers then raise
        :class:`~riverbed._errors.TransientError`. A later :meth:`partitions` joins again."""
        member: GroupMember | None = self._cache.get(_MEMBER)
        if member is not None:
            member.leave(wait=self.timeout)

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
        member = None
        if self.assignment == "group":
            member = self._group_member(ctx)
            if not member.handed_out:  # opened without partitions(): join the group first
                member.hand_out(ctx.mode)
        return KafkaReader(self, pid, resume, ctx, self._value_schema(ctx), member)

    def commit_group(self, positions: Mapping[str, int]) -> None:
        """Commit ``{partition: next offset}`` (e.g. a checkpoint's positions) to ``group``.

        While this process is a member of the group (``assignment="group"``) the commit goes
        through its member: a group with members takes commits from its members only."""
        if not self.group:
            raise ConfigError(
                f"Kafka source {self.describe()}: commit_group needs a consumer group.\n"
                "  hint: kafka(topic, group='my-pipeline')"
            )
        member: GroupMember | None = self._cache.get(_MEMBER)
        if member is not None and not member.ended:
            member.commit((int(p), int(o)) for p, o in sorted(positions.items()))
            return
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
