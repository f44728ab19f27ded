"""KafkaSource with ``assignment="group"``: partitions shared through a consumer group.

tansu (v0.6.0) runs the classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
OffsetCommit/OffsetFetch) well enough for these tests. It answers a JoinGroup only after
about half of ``session.timeout.ms`` (about 22 s with librdkafka's default of 45 s), so the
tests use 3 s sessions there; against a real Kafka (``RIVERBED_KAFKA_BOOTSTRAP``) they use
6 s, the smallest session a default broker accepts.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import confluent_kafka as ck  # the dev extra installs it: a missing package fails, never skips
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import riverbed as rb
from riverbed._errors import TransientError
from riverbed.connectors.base import SinkContext, SourceContext
from riverbed.connectors.kafka import KafkaSource, kafka_sink, kafka_source

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.kafka_broker"]  # the kafka_bootstrap fixture

SCHEMA = pl.Schema({"id": pl.Int64, "user": pl.String, "amount": pl.Float64})
BATCH = SourceContext(mode="batch", pipeline="test")
STREAM = SourceContext(mode="stream", pipeline="test")
GUARD = 30.0  # seconds: a hang guard for loops, not a timing assertion
SESSION_MS = 6000 if os.environ.get("RIVERBED_KAFKA_BOOTSTRAP", "").strip() else 3000  # see above
GROUP_CONFIG = {"session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": 500}
ALL = ["0", "1", "2", "3"]


def _name(kind: str) -> str:
    return f"rb-{kind}-{uuid.uuid4().hex[:10]}"


def _rows(n: int) -> pl.DataFrame:
    ids = list(range(n))
    return pl.DataFrame(
        {"id": ids, "user": [f"u{i % 97}" for i in ids], "amount": [i * 0.5 for i in ids]},
        schema=SCHEMA,
    )


def _topic_with(bootstrap: str, df: pl.DataFrame) -> str:
    """A fresh 4-partition topic holding ``df``, keyed by user (so every partition gets rows)."""
    topic = _name("group")
    writer = kafka_sink(topic, bootstrap=bootstrap, key="user", create_partitions=4, idempotent=False).open(
        SinkContext()
    )
    try:
        writer.write(df)
        writer.commit(0)
    finally:
        writer.close()
    return topic


def _member(bootstrap: str, topic: str, group: str, **options: Any) -> KafkaSource:
    return kafka_source(
        topic,
        bootstrap=bootstrap,
        schema=SCHEMA,
        group=group,
        assignment="group",
        metadata=["partition", "offset"],
        config=GROUP_CONFIG,
        **options,
    )


def _in_threads(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` at once; their results in order (an exception is re-raised)."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD)
    assert not any(t.is_alive() for t in threads), "a call did not return"
    if errors:
        raise errors[0]
    return results


def _attempt(call: Callable[[], Any]) -> Any:
    """``call()``, or the exception it raised (for calls run in a thread)."""
    try:
        return call()
    except Exception as exc:
        return exc


def _read_all(source: KafkaSource, partition: str, resume: int | None = None) -> pl.DataFrame:
    reader = source.open(partition, resume, BATCH)
    frames = []
    deadline = time.monotonic() + GUARD
    try:
        while (batch := reader.next_batch(1000, 0.5)) is not None:
            frames.append(batch)
            assert time.monotonic() < deadline, "batch read did not end"
    finally:
        reader.close()
    return pl.concat(frames) if frames else pl.DataFrame(schema=source.schema(BATCH))


def test_one_member_gets_every_partition_and_starts_at_committed_offsets(kafka_bootstrap: str) -> None:
    df = _rows(400)
    topic, group = _topic_with(kafka_bootstrap, df), _name("g")
    # the group is empty: a plain consumer may commit for it
    kafka_source(topic, bootstrap=kafka_bootstrap, schema=SCHEMA, group=group).commit_group({"0": 3})
    source = _member(kafka_bootstrap, topic, group)
    assert source.partitions(BATCH) == ALL
    again = pickle.loads(pickle.dumps(source))  # the membership is not part of the description
    assert again == source
    source.commit_group({"2": 1})  # while a member: committed through it (the group takes it)
    got = {p: _read_all(source, p, resume=2 if p == "1" else None) for p in ALL}
    # riverbed's resume state wins; else the group's committed offset; else start="earliest"
    firsts = {p: frame["_offset"].min() for p, frame in got.items()}
    assert firsts == {"0": 3, "1": 2, "2": 1, "3": 0}
    for p, frame in got.items():
        assert frame["_partition"].unique().to_list() == [int(p)]
        assert frame["_offset"].to_list() == list(range(firsts[p], firsts[p] + frame.height))
    total = pl.concat(got.values())
    assert total.height == df.height - 3 - 2 - 1
    assert total["id"].n_unique() == total.height
    # every partition read and its reader closed: the process left, so the group is empty
    # again and a plain consumer may commit for it (a non-member commit is refused otherwise)
    kafka_source(topic, bootstrap=kafka_bootstrap, schema=SCHEMA, group=group).commit_group({"0": 0})
    admin = ck.admin.AdminClient({"bootstrap.servers": kafka_bootstrap})
    request = ck.ConsumerGroupTopicPartitions(group, [ck.TopicPartition(topic, p) for p in range(4)])
    result = admin.list_consumer_group_offsets([request])[group].result(10)
    assert [tp.offset for tp in result.topic_partitions] == [0, -1001, 1, -1001]  # nothing auto-committed


def test_two_members_share_the_partitions_and_read_every_record_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    df = _rows(3000)
    topic, group = _topic_with(kafka_bootstrap, df), _name("g")
    topics = [
        rb.kafka(
            topic,
            bootstrap=kafka_bootstrap,
            schema=SCHEMA,
            group=group,
            assignment="group",
            metadata=["partition"],
            config=GROUP_CONFIG,
        )
        for _ in range(2)
    ]
    sources = [t.as_source() for t in topics]
    # both join; one that joined late makes the group rebalance: ask until it has settled
    deadline = time.monotonic() + GUARD
    while True:
        a, b = _in_threads(*(lambda s=s: s.partitions(BATCH) for s in sources))
        if not set(a) & set(b) and sorted(a + b) == ALL:
            break
        assert time.monotonic() < deadline, f"the group did not settle: {a} {b}"
    assert a and b  # the coordinator shares 4 partitions between 2 members
    sinks = [rb.testing.collect() for _ in topics]
    pipelines = []
    for i, (t, sink) in enumerate(zip(topics, sinks, strict=True)):
        p = rb.Pipeline(f"share{i}")
        p.read(t).write(sink)
        pipelines.append(p)
    _in_threads(*(lambda p=p, i=i: p.run("batch", home=tmp_path / str(i)) for i, p in enumerate(pipelines)))
    first, second = (sink.frame() for sink in sinks)
    assert sorted(first["_partition"].unique().to_list()) == [int(x) for x in a]
    assert sorted(second["_partition"].unique().to_list()) == [int(x) for x in b]
    both = pl.concat([first, second]).drop("_partition").sort("id")
    assert_frame_equal(both, df)  # every record once: nothing missed, nothing read twice


def test_a_rebalance_that_moves_a_partition_raises_in_its_reader(kafka_bootstrap: str) -> None:
    topic, group = _topic_with(kafka_bootstrap, _rows(200)), _name("g")
    first = _member(kafka_bootstrap, topic, group)
    assert first.partitions(STREAM) == ALL
    readers = {p: first.open(p, None, STREAM) for p in ALL}
    second = _member(kafka_bootstrap, topic, group)
    try:
        for reader in readers.values():
            batch = reader.next_batch(1000, 0.5)
            assert batch is not None
        # a second member joins: the group rebalances and moves some partitions to it
        joined: list[Any] = []  # its partitions, or what it raised
        thread = threading.Thread(target=lambda: joined.append(_attempt(lambda: second.partitions(STREAM))))
        thread.start()
        raised: dict[str, str] = {}
        deadline = time.monotonic() + GUARD
        while thread.is_alive() or (isinstance(joined[0], list) and len(raised) < len(joined[0])):
            assert time.monotonic() < deadline, f"no reader raised: {raised}"
            for p, reader in readers.items():
                if p not in raised:
                    try:
                        reader.next_batch(100, 0.05)  # during the rebalance: empty batches
                    except TransientError as exc:
                        raised[p] = str(exc)
        assert isinstance(joined[0], list), f"the second member did not join: {joined[0]!r}"
        moved = joined[0]
        assert moved and sorted(raised) == moved
        message = raised[moved[0]]
        assert "partitions were reassigned" in message and "restart the job" in message
        assert group in message and topic in message and kafka_bootstrap in message
        for p in sorted(set(ALL) - set(moved)):  # the partitions still assigned here read on
            batch = readers[p].next_batch(100, 0.05)
            assert batch is not None and batch.schema == first.schema(STREAM)
    finally:
        for reader in readers.values():
            reader.close()
        second.leave_group()


def test_no_assignment_within_the_timeout_is_a_transient_error(kafka_bootstrap: str) -> None:
    topic, group = _topic_with(kafka_bootstrap, _rows(10)), _name("g")
    # a member that stopped polling: the next rebalance waits for it (up to its
    # max.poll.interval.ms) instead of finishing
    stuck = ck.Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": group, "log_level": 0, **GROUP_CONFIG}
    )
    assigned = threading.Event()
    stuck.subscribe([topic], on_assign=lambda c, parts: assigned.set())
    try:
        deadline = time.monotonic() + GUARD
        while not assigned.is_set() and time.monotonic() < deadline:
            stuck.poll(0.1)
        assert assigned.is_set()
        source = _member(kafka_bootstrap, topic, group, timeout=1.0)
        with pytest.raises(TransientError) as info:
            source.partitions(BATCH)
        message = str(info.value)
        assert kafka_bootstrap in message and repr(topic) in message and repr(group) in message
        assert "assigned no partitions" in message and "hint" in message
    finally:
        stuck.close()
