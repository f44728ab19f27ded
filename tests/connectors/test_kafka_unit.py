"""Kafka connector pieces that need no broker: value decoding, URIs, options."""

from __future__ import annotations

import json
import pickle
import sys

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed._errors import ConfigError, MissingExtraError
from riverbed.connectors.base import SourceContext
from riverbed.connectors.kafka import (
    KafkaSource,
    decode_values,
    from_uri,
    kafka,
    kafka_sink,
    kafka_source,
)

SCHEMA = pl.Schema({"id": pl.Int64, "name": pl.String, "ok": pl.Boolean})

GOOD = st.builds(
    lambda i, n, ok: json.dumps({"id": i, "name": n, "ok": ok}).encode(),
    st.integers(-(2**62), 2**62),
    st.one_of(st.none(), st.text(max_size=8)),
    st.one_of(st.none(), st.booleans()),
)
BAD = st.sampled_from(
    [
        b"{",
        b"not json",
        b"[1]",
        b"7",
        b"null",
        b"",
        b"   ",
        b'{"id": "x"}',
        b'{"id": 1.5}',
        b'{"ok": "maybe"}',
        b'{"id": 1} {"id": 2}',
        b"\xff\xfe",
        b"\n",
        b'{"id": 1}\n{"id": 2}',
        b'{"id": 1,\n"name": "a\nb"}',
    ]
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.booleans(), GOOD, BAD), max_size=40))
def test_decode_keeps_good_rows_in_order_and_flags_exactly_the_bad(
    cases: list[tuple[bool, bytes, bytes]],
) -> None:
    values: list[bytes | None] = [good if is_good else bad for is_good, good, bad in cases]
    df, bad = decode_values(values, SCHEMA)
    good_index = [i for i, (is_good, _, _) in enumerate(cases) if is_good]
    assert [i for i, _, _ in bad] == [i for i, (g, _, _) in enumerate(cases) if not g]
    assert df.schema == SCHEMA
    expected = [json.loads(values[i]) for i in good_index]  # type: ignore[arg-type]
    assert df.to_dicts() == expected


def test_decode_reasons_and_multiline_values() -> None:
    values: list[bytes | None] = [
        b'{"id": 1}',
        b'{\n "id": 2,\n "name": "two"\n}',
        None,
        b'{"id": "three"}',
        b'{"id": 4, "name": 44}',  # a number in a String field is read as text
    ]
    df, bad = decode_values(values, SCHEMA)
    assert df["id"].to_list() == [1, 2, 4]
    assert df["name"].to_list() == [None, "two", "44"]
    assert [(i, f) for i, f, _ in bad] == [(2, None), (3, "id")]
    assert "empty" in bad[0][2] and "Int64" in bad[1][2]


def test_uri_and_constructors() -> None:
    t = from_uri("kafka://h1:9092,h2:9093/orders.v1?key=user&create_partitions=4&metadata=true")
    assert t.source.bootstrap == "h1:9092,h2:9093" and t.source.topic == "orders.v1"
    assert t.sink.create_partitions == 4 and t.sink.key == "user"
    assert t.source.metadata == ("_partition", "_offset", "_timestamp")
    assert from_uri("kafka://h:1/t?group=a", group="b").source.group == "b"
    for bad in (
        "kafka://h:1/",
        "kafka:///orders",
        "kafka://h:1/a/b",
        "s3://b/k",
        "kafka://h:1/t?nope=1",
        "kafka://h:1/t?create_partitions=x",
        "kafka://h/t",
        "kafka://h:1/bad topic",
    ):
        with pytest.raises(ConfigError):
            from_uri(bad)


def test_options_are_checked_and_sources_pickle() -> None:
    src = kafka_source("t", schema={"id": pl.Int64}, metadata=["offset", "_partition"])
    assert src.metadata == ("_offset", "_partition")
    expected = pl.Schema({"id": pl.Int64, "_offset": pl.Int64, "_partition": pl.Int32})
    assert src.schema(SourceContext()) == expected
    again = pickle.loads(pickle.dumps(src))
    assert again == src and hash(again) == hash(src)
    assert isinstance(kafka("t").as_source(), KafkaSource)
    with pytest.raises(ConfigError, match="metadata"):
        kafka_source("t", metadata=["size"])
    with pytest.raises(ConfigError, match="bootstrap"):
        kafka_source("t", bootstrap="localhost")
    with pytest.raises(ConfigError, match="create_partitions"):
        kafka_sink("t", create_partitions=0)
    with pytest.raises(ConfigError, match="start"):
        kafka_source("t", start="middle")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="clashes"):
        kafka_source("t", schema={"_offset": pl.Int64}, metadata=True).schema(SourceContext())


def test_group_assignment_options() -> None:
    assert kafka_source("t").assignment == "all"
    src = kafka_source("t", group="g", assignment="group", schema={"id": pl.Int64})
    assert src.assignment == "group" and src.group == "g"
    assert pickle.loads(pickle.dumps(src)) == src
    assert kafka("t", group="g", assignment="group").as_source() == kafka_source(
        "t", group="g", assignment="group"
    )
    assert from_uri("kafka://h:1/t?group=g&assignment=group").source.assignment == "group"
    with pytest.raises(ConfigError, match="needs a consumer group"):
        kafka_source("t", assignment="group")
    with pytest.raises(ConfigError, match="expected 'all'"):
        kafka_source("t", group="g", assignment="mine")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="eager"):
        kafka_source(
            "t",
            group="g",
            assignment="group",
            config={"partition.assignment.strategy": "cooperative-sticky"},
        )
    with pytest.raises(ConfigError, match="classic"):
        kafka_source("t", group="g", assignment="group", config={"group.protocol": "consumer"})


def test_missing_confluent_kafka_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    src = kafka_source("t", schema={"id": pl.Int64})
    with pytest.raises(MissingExtraError, match=r"riverbed\[kafka\]"):
        src.partitions(SourceContext())
