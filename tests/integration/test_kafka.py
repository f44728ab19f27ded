"""KafkaSource / KafkaSink against a real Kafka-compatible broker.

tansu by default (started by the ``kafka_bootstrap`` fixture); a real Kafka when
``RIVERBED_KAFKA_BOOTSTRAP`` is set. Every test uses fresh, uniquely named topics, so the
suite also runs against a long-lived cluster.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from typing import Any

import confluent_kafka as ck  # the dev extra installs it: a missing package fails, never skips
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from riverbed._errors import ConfigError, SinkError, SourceError, TransientError
from riverbed.connectors.base import DEAD_LETTER_SCHEMA, SinkContext, SourceContext
from riverbed.connectors.kafka import (
    KafkaSource,
    KafkaWriter,
    from_uri,
    kafka,
    kafka_sink,
    kafka_source,
)

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.kafka_broker"]  # the kafka_bootstrap fixture

SCHEMA = pl.Schema({"id": pl.Int64, "user": pl.String, "amount": pl.Float64})
BATCH = SourceContext(mode="batch", pipeline="test")
STREAM = SourceContext(mode="stream", pipeline="test")
GUARD = 30.0  # seconds: a hang guard for loops, not a timing assertion


def _topic(name: str) -> str:
    return f"rb-{name}-{uuid.uuid4().hex[:10]}"


def _rows(start: int, n: int) -> pl.DataFrame:
    ids = list(range(start, start + n))
    return pl.DataFrame(
        {"id": ids, "user": [f"u{i % 7}" for i in ids], "amount": [i * 0.5 for i in ids]},
        schema=SCHEMA,
    )


def _write(bootstrap: str, topic: str, *frames: pl.DataFrame, **options: Any) -> None:
    options.setdefault("idempotent", False)  # the idempotent producer needs ~0.5 s to start
    writer = kafka_sink(topic, bootstrap=bootstrap, **options).open(SinkContext())
    try:
        for epoch, df in enumerate(frames):
            writer.write(df)
            writer.commit(epoch)
    finally:
        writer.close()


def _raw_produce(
    bootstrap: str,
    topic: str,
    values: list[bytes | None],
    *,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    one_by_one: bool = False,
) -> None:
    producer = ck.Producer({"bootstrap.servers": bootstrap, "allow.auto.create.topics": False})
    for value in values:
        producer.produce(topic, value, key, partition=0, headers=headers)
        if one_by_one:
            assert producer.flush(10) == 0
    assert producer.flush(10) == 0


def _read(
    source: KafkaSource,
    partition: str = "0",
    *,
    resume: int | None = None,
    ctx: SourceContext = BATCH,
    max_rows: int = 10_000,
    limit: int | None = None,
) -> tuple[pl.DataFrame, int, pl.DataFrame | None]:
    """Read a partition to its end (batch) or until ``limit`` rows; frame, snapshot, dead."""
    reader = source.open(partition, resume, ctx)
    frames: list[pl.DataFrame] = []
    dead: list[pl.DataFrame] = []
    rows = 0
    deadline = time.monotonic() + GUARD
    try:
        while time.monotonic() < deadline and (limit is None or rows < limit):
            want = max_rows if limit is None else min(max_rows, limit - rows)
            batch = reader.next_batch(want, 0.5)
            if batch is None:
                break
            assert batch.height <= want
            frames.append(batch)
            rows += batch.height
            if (d := reader.drain_dead_letters()) is not None:
                dead.append(d)
        else:
            assert limit is not None, "batch read did not end"
        snapshot = reader.snapshot()
    finally:
        reader.close()
    out = pl.concat(frames) if frames else pl.DataFrame(schema=source.schema(ctx))
    return out, snapshot, (pl.concat(dead) if dead else None)


def test_roundtrip_batch(kafka_bootstrap: str) -> None:
    topic = _topic("roundtrip")
    df = pl.concat([_rows(0, 2500), _rows(2500, 1500)])
    _write(kafka_bootstrap, topic, df[:2500], df[2500:], create_partitions=1, idempotent=True)
    source = kafka_source(topic, bootstrap=kafka_bootstrap, schema=SCHEMA)
    assert source.partitions(BATCH) == ["0"]
    assert source.schema(BATCH) == SCHEMA
    got, snapshot, dead = _read(source, max_rows=700)
    assert_frame_equal(got, df)
    assert snapshot == 4000
    assert dead is None
    # a finished batch read resumed at its end yields nothing, and ends
    again, snapshot2, _ = _read(source, resume=snapshot)
    assert again.height == 0 and snapshot2 == 4000


def test_batch_reads_up_to_the_watermark_when_opened(kafka_bootstrap: str) -> None:
    topic = _topic("bounded")
    _write(kafka_bootstrap, topic, _rows(0, 300), create_partitions=1)
    source = kafka_source(topic, bootstrap=kafka_bootstrap, schema=SCHEMA)
    reader = source.open("0", None, BATCH)
    try:
        first = reader.next_batch(100, 5.0)
        assert first is not None and first.height > 0
        _write(kafka_bootstrap, topic, _rows(300, 200))  # arrives after the read began
        frames = [first]
        deadline = time.monotonic() + GUARD
        while (batch := reader.next_batch(100, 0.5)) is not None:
            frames.append(batch)
            assert time.monotonic() < deadline, "batch read did not end"
        assert pl.concat(frames)["id"].to_list() == list(range(300))
        assert reader.snapshot() == 300
    finally:
        reader.close()
    rest, snapshot, _ = _read(source, resume=300)
    assert rest["id"].to_list() == list(range(300, 500)) and snapshot == 500


def test_stream_follows_the_tail(kafka_bootstrap: str) -> None:
    topic = _topic("stream")
    kafka_sink(topic, bootstrap=kafka_bootstrap, create_partitions=1).ensure_topic()
    source = kafka_source(topic, bootstrap=kafka_bootstrap, schema=SCHEMA)
    reader = source.open("0", None, STREAM)
    chunks = [_rows(i * 50, 50) for i in range(8)]

    def produce() -> None:
        writer = kafka_sink(topic, bootstrap=kafka_bootstrap).open(SinkContext(mode="stream"))
        try:
            for epoch, chunk in enumerate(chunks):
                writer.write(chunk)
                writer.commit(epoch)
                time.sleep(0.02)
        finally:
            writer.close()

    thread = threading.Thread(target=produce)
    try:
        idle = reader.next_batch(100, 0.05)  # nothing yet: an empty frame, not a block
        assert idle is not None and idle.height == 0 and idle.schema == SCHEMA
        thread.start()
        frames: list[pl.DataFrame] = []
        deadline = time.monotonic() + GUARD
        while sum(f.height for f in frames) < 400 and time.monotonic() < deadline:
            batch = reader.next_batch(64, 0.2)
            assert batch is not None, "a stream reader never ends"
            assert batch.height <= 64
            frames.append(batch)
        thread.join(GUARD)
        assert_frame_equal(pl.concat(frames), pl.concat(chunks))
        assert reader.snapshot() == 400
        tail = reader.next_batch(64, 0.1)
        assert tail is not None and tail.height == 0
    finally:
        reader.close()
        if thread.is_alive():
            thread.join(GUARD)


def test_resume_from_snapshot_loses_and_repeats_nothing(kafka_bootstrap: str) -> None:
    topic = _topic("resume")
    df = _rows(0, 1000)
    _write(kafka_bootstrap, topic, df, create_partitions=1)
    source = kafka_source(topic, bootstrap=kafka_bootstrap, schema=SCHEMA)
    parts: list[pl.DataFrame] = []
    position: int | None = None
    for cut in (137, 1, 400):  # read some, "crash", resume from the snapshot
        got, position, _ = _read(source, resume=position, ctx=STREAM, max_rows=50, limit=cut)
        assert got.height == cut
        parts.append(got)
    rest, position, _ = _read(source, resume=position)
    parts.append(rest)
    assert_frame_equal(pl.concat(parts), df)
    assert position == 1000


def test_partitions_and_key_routing(kafka_bootstrap: str) -> None:
    topic = _topic("keyed")
    df = _rows(0, 2100)
    t = kafka(topic, bootstrap=kafka_bootstrap, key="user", create_partitions=3, metadata=True)
    _write(kafka_bootstrap, topic, df[:1000], df[1000:], key="user", create_partitions=3)
    source = t.as_source()
    assert source.partitions(BATCH) == ["0", "1", "2"]
    got = pl.concat([_read(source, p)[0] for p in source.partitions(BATCH)])
    assert_frame_equal(got.drop("_partition", "_offset", "_timestamp").sort("id"), df)
    assert got.schema["_timestamp"] == pl.Datetime("ms", "UTC")
    # one key, one partition; offsets are dense per partition; rows keep their order there
    per_user = got.group_by("user").agg(pl.col("_partition").n_unique().alias("n"))
    assert per_user["n"].max() == 1
    assert got.select(pl.col("_partition").n_unique()).item() > 1
    for _, part in got.group_by("_partition"):
        assert part["_offset"].to_list() == list(range(part.height))
        assert part["id"].is_sorted()
    # the message key itself, as a column, when the value does not hold it
    keyed = kafka_source(topic, bootstrap=kafka_bootstrap, schema={"id": pl.Int64}, key="k")
    frame = pl.concat([_read(keyed, p)[0] for p in keyed.partitions(BATCH)])
    assert frame.columns == ["id", "k"]
    expected = df.select("id", pl.col("user").alias("k"))
    assert_frame_equal(frame.sort("id"), expected)


def test_bad_messages_become_dead_letters(kafka_bootstrap: str) -> None:
    topic = _topic("dead")
    kafka_sink(topic, bootstrap=kafka_bootstrap, create_partitions=1).ensure_topic()
    values: list[bytes | None] = [
        b'{"id": 1, "user": "a", "amount": 1.5}',
        b'{"id": 2, "user": "b", "amount": oops}',  # 1: not JSON
        b'{"id": "three", "user": "c", "amount": 3.0}',  # 2: wrong type
        b"[1, 2, 3]",  # 3: not an object
        b"",  # 4: empty value
        b'{\n  "id": 5,\n  "user": "e",\n  "amount": 5.0\n}',  # pretty-printed: fine
        None,  # 6: tombstone
        b'{"id": 7, "user": "g"}',  # missing field: a null
        b'{"id": 8, "user": "h", "amount": 8.0}',
    ]
    _raw_produce(kafka_bootstrap, topic, values)
    source = kafka_source(topic, bootstrap=kafka_bootstrap, schema=SCHEMA, metadata=["offset"])
    got, snapshot, dead = _read(source)
    assert got["id"].to_list() == [1, 5, 7, 8]
    assert got["_offset"].to_list() == [0, 5, 7, 8]
    assert got["amount"].to_list() == [1.5, 5.0, None, 8.0]
    assert snapshot == 9
    assert dead is not None and dead.schema == DEAD_LETTER_SCHEMA
    assert got.height + dead.height == len(values)
    rows = {r["position"]: r for r in dead.to_dicts()}
    assert list(rows) == [f"partition 0 offset {o}" for o in (1, 2, 3, 4, 6)]
    assert set(dead["source"]) == {topic}
    assert "invalid JSON" in rows["partition 0 offset 1"]["error"]
    assert rows["partition 0 offset 1"]["raw"] == values[1].decode()  # type: ignore[union-attr]
    assert rows["partition 0 offset 2"]["field"] == "id"
    assert "Int64" in rows["partition 0 offset 2"]["error"]
    assert "object" in rows["partition 0 offset 3"]["error"]
    assert rows["partition 0 offset 4"]["raw"] == ""
    assert rows["partition 0 offset 6"]["raw"] is None


def test_schema_inference_headers_and_group(kafka_bootstrap: str) -> None:
    topic = _topic("infer")
    kafka_sink(topic, bootstrap=kafka_bootstrap, create_partitions=1).ensure_topic()
    with pytest.raises(ConfigError, match="no messages yet"):
        kafka_source(topic, bootstrap=kafka_bootstrap).schema(BATCH)
    _raw_produce(
        kafka_bootstrap,
        topic,
        [b'{"a": 1, "b": "x"}', b'{"a": 2, "b": "y", "c": true}'],
        key=b"k1",
        headers=[("trace", b"t-1"), ("empty", b"")],
    )
    group = f"rb-group-{uuid.uuid4().hex[:8]}"
    source = kafka_source(topic, bootstrap=kafka_bootstrap, headers=True, group=group)
    assert source.schema(BATCH) == pl.Schema(
        {
            "a": pl.Int64,
            "b": pl.String,
            "c": pl.Boolean,
            "_headers": pl.List(pl.Struct({"key": pl.String, "value": pl.String})),
        }
    )
    reader = source.open("0", None, BATCH)
    try:
        batch = reader.next_batch(10, 5.0)
        assert batch is not None
        assert batch["a"].to_list() == [1, 2] and batch["c"].to_list() == [None, True]
        assert batch["_headers"].to_list()[0] == [
            {"key": "trace", "value": "t-1"},
            {"key": "empty", "value": ""},
        ]
        reader.commit_group()
    finally:
        reader.close()
    admin = ck.admin.AdminClient({"bootstrap.servers": kafka_bootstrap})
    request = ck.ConsumerGroupTopicPartitions(group, [ck.TopicPartition(topic, 0)])
    result = admin.list_consumer_group_offsets([request])[group].result(10)
    assert [tp.offset for tp in result.topic_partitions] == [2]
    source.commit_group({"0": 1})
    result = admin.list_consumer_group_offsets([request])[group].result(10)
    assert [tp.offset for tp in result.topic_partitions] == [1]


def test_start_latest_skips_what_is_there(kafka_bootstrap: str) -> None:
    topic = _topic("latest")
    kafka_sink(topic, bootstrap=kafka_bootstrap, create_partitions=1).ensure_topic()
    # one message per produce request: tansu's ListOffsets(latest) is only exact then
    _raw_produce(kafka_bootstrap, topic, [b'{"id": 1}', b'{"id": 2}'], one_by_one=True)
    source = kafka_source(topic, bootstrap=kafka_bootstrap, schema={"id": pl.Int64}, start="latest")
    reader = source.open("0", None, STREAM)
    try:
        assert reader.snapshot() == 2
        _raw_produce(kafka_bootstrap, topic, [b'{"id": 3}'])
        frames: list[pl.DataFrame] = []
        deadline = time.monotonic() + GUARD
        while sum(f.height for f in frames) < 1 and time.monotonic() < deadline:
            batch = reader.next_batch(10, 0.2)
            assert batch is not None
            frames.append(batch)
        assert pl.concat(frames)["id"].to_list() == [3]
    finally:
        reader.close()


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_unreachable_broker_is_a_transient_error() -> None:
    address = _closed_port()
    source = kafka_source("orders", bootstrap=address, schema=SCHEMA, timeout=0.5)
    with pytest.raises(TransientError, match=rf"{address}.*'orders'") as info:
        source.partitions(BATCH)
    assert "hint" in str(info.value)
    with pytest.raises(TransientError, match=address):
        source.open("0", None, BATCH)
    with pytest.raises(TransientError, match=address):
        kafka_sink("orders", bootstrap=address, timeout=0.5).open(SinkContext())
    # a writer whose broker goes away: commit fails, it does not hang
    sink = kafka_sink("orders", bootstrap=address, config={"message.timeout.ms": 500}, linger_ms=5)
    writer = KafkaWriter(sink)
    writer.write(_rows(0, 3))
    with pytest.raises(SinkError, match=r"3 messages of epoch 7 were not delivered"):
        writer.commit(7)
    writer.close()


def test_missing_topic_and_bad_options(kafka_bootstrap: str) -> None:
    topic = _topic("missing")
    with pytest.raises(SourceError, match=rf"{topic}' does not exist at {kafka_bootstrap}"):
        kafka_source(topic, bootstrap=kafka_bootstrap, schema=SCHEMA).partitions(BATCH)
    with pytest.raises(SinkError, match="create_partitions"):
        kafka_sink(topic, bootstrap=kafka_bootstrap).open(SinkContext())
    # the checks above must not have created the topic
    with pytest.raises(SourceError, match="does not exist"):
        kafka_source(topic, bootstrap=kafka_bootstrap, schema=SCHEMA).partitions(BATCH)
    _write(kafka_bootstrap, topic, _rows(0, 3), create_partitions=2)
    source = from_uri(f"kafka://{kafka_bootstrap}/{topic}", schema=SCHEMA).as_source()
    assert source.partitions(BATCH) == ["0", "1"]
    with pytest.raises(ConfigError, match="resume state"):
        source.open("0", "somewhere", BATCH)
    writer = kafka_sink(topic, bootstrap=kafka_bootstrap, key="nope").open(SinkContext())
    try:
        with pytest.raises(SinkError, match="key column 'nope'"):
            writer.write(_rows(0, 1))
    finally:
        writer.close()


def test_sink_waits_for_room_when_its_queue_is_full(kafka_bootstrap: str) -> None:
    topic = _topic("smallq")
    df = _rows(0, 1000)
    _write(
        kafka_bootstrap,
        topic,
        df,
        create_partitions=1,
        config={"queue.buffering.max.messages": 64},
    )
    got, snapshot, _ = _read(kafka_source(topic, bootstrap=kafka_bootstrap, schema=SCHEMA))
    assert_frame_equal(got, df)
    assert snapshot == 1000


def test_sink_ids_are_stable_across_a_replay(kafka_bootstrap: str, tmp_path: Any) -> None:
    """At-least-once, with a stable id per message: a stream job whose last checkpoint was
    lost replays that epoch and produces its messages again, with the same ``riverbed-id``
    headers, so deduplicating by id gives exactly the uninterrupted output."""
    import os

    import riverbed as rb
    from riverbed.eventlog import Log
    from riverbed.executors._checkpoint import CheckpointStore

    topic = _topic("ids")
    kafka_sink(topic, bootstrap=kafka_bootstrap, create_partitions=1).ensure_topic()
    home, ckpt = tmp_path / "home", tmp_path / "ckpt"
    with Log(home) as log:
        log.create_topic("events", 1).append(_rows(0, 300))
    p = rb.Pipeline("to_kafka")
    p.read(rb.log("events"), name="events").write(
        kafka_sink(topic, bootstrap=kafka_bootstrap, idempotent=False), name="out"
    )
    p.run("stream", home=home, checkpoint_dir=ckpt, stop_at_end=True, max_batch_rows=100)
    last = CheckpointStore(str(ckpt)).latest()
    assert last is not None
    os.remove(ckpt / "checkpoints" / f"{last.epoch:012d}.ckpt")  # as if killed before it
    result = p.run("stream", home=home, checkpoint_dir=ckpt, stop_at_end=True)
    assert any(n.startswith(f"replayed epoch {last.epoch}") for n in result.notes)
    got, _, _ = _read(kafka_source(topic, bootstrap=kafka_bootstrap, headers=True))
    ids = [next(h["value"] for h in hs if h["key"] == "riverbed-id") for hs in got["_headers"].to_list()]
    writers = {
        next(h["value"] for h in hs if h["key"] == "riverbed-writer") for hs in got["_headers"].to_list()
    }
    assert writers == {"to_kafka/out"}
    assert got.height > 300  # the replayed epoch was produced twice ...
    deduped = got.with_columns(rid=pl.Series(ids)).unique("rid", keep="first", maintain_order=True)
    assert sorted(deduped["id"].to_list()) == list(range(300))  # ... and the ids tell repeats apart
    assert all(i.startswith(f"{last.epoch}:") for i in ids[300:])
