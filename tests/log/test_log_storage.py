"""The embedded log's storage: topics, appends, reads, offsets, groups, retention, describe."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from riverbed._errors import ConfigError, PlanError, SourceError
from riverbed.eventlog import METADATA_COLUMNS, AppendResult, Log, Topic
from riverbed.eventlog._routing import partition_of


@pytest.fixture
def log(tmp_path: Path) -> Log:
    with Log(tmp_path) as lg:
        yield lg  # type: ignore[misc]


def frame(start: int, n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": pl.int_range(start, start + n, eager=True, dtype=pl.Int64),
            "key": [f"k{i % 7}" for i in range(start, start + n)],
            "amount": [float(i) / 2 for i in range(start, start + n)],
        }
    )


def read_partition(topic: Topic, partition: int) -> pl.DataFrame:
    start, end = topic.start_offsets()[partition], topic.end_offsets()[partition]
    return topic.read(partition, start, max(end - start, 1))


# -- topics -----------------------------------------------------------------------------------


def test_create_list_and_open_topics(log: Log, tmp_path: Path) -> None:
    assert log.topics() == []
    log.create_topic("orders", partitions=3, retention_ms="7d", retention_bytes=1 << 30)
    log.create_topic("clicks")
    assert log.topics() == ["clicks", "orders"]
    assert (tmp_path / "log" / "orders" / "topic.db").is_file()
    with Log(tmp_path) as other:
        t = other.topic("orders")
        assert (t.partitions, t.retention_ms, t.retention_bytes) == (3, 7 * 86_400_000, 1 << 30)
        assert t.end_offsets() == {0: 0, 1: 0, 2: 0}
        assert t.schema is None


def test_unknown_topic_names_existing_ones(log: Log) -> None:
    log.create_topic("orders")
    log.create_topic("clicks")
    with pytest.raises(ConfigError, match=r"unknown topic 'nope'.*clicks, orders"):
        log.topic("nope")


def test_create_existing_topic(log: Log) -> None:
    log.create_topic("orders", partitions=2)
    with pytest.raises(ConfigError, match=r"already exists .* 2 partitions"):
        log.create_topic("orders", partitions=2)
    assert log.create_topic("orders", partitions=2, exist_ok=True).partitions == 2
    with pytest.raises(ConfigError, match="already exists"):
        log.create_topic("orders", partitions=3, exist_ok=True)


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "with space", "x" * 250, "-x"])
def test_bad_topic_names(log: Log, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid topic name"):
        log.create_topic(name)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"partitions": 0}, "partitions must be a positive integer"),
        ({"retention_ms": 0}, "retention must be positive"),
        ({"retention_bytes": -1}, "retention_bytes must be positive"),
    ],
)
def test_bad_topic_options(log: Log, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        log.create_topic("t", **kwargs)


def test_delete_topic(log: Log) -> None:
    log.create_topic("orders").append(frame(0, 3))
    log.delete_topic("orders")
    assert log.topics() == []
    assert log.create_topic("orders").end_offsets() == {0: 0}


# -- append and read --------------------------------------------------------------------------


def test_append_and_read_back_single_partition(log: Log) -> None:
    t = log.create_topic("t")
    assert t.append(frame(0, 5)) == [AppendResult(0, 0, 4)]
    assert t.append(frame(5, 3)) == [(0, 5, 7)]
    assert_frame_equal(t.read(0, 0, 100), frame(0, 8))
    assert_frame_equal(t.read(0, 3, 4), frame(3, 4))  # spans two stored batches
    assert_frame_equal(t.read(0, 6, 100), frame(6, 2))
    assert t.read(0, 8, 100).height == 0
    assert t.read(0, 8, 100).schema == frame(0, 1).schema


def test_offsets_are_contiguous_per_partition(log: Log) -> None:
    t = log.create_topic("t", partitions=3)
    seen: dict[int, int] = {0: 0, 1: 0, 2: 0}
    for i in range(10):
        for p, first, last in t.append(frame(i * 10, 10), key="key"):
            assert first == seen[p]
            seen[p] = last + 1
    assert t.end_offsets() == seen
    assert sum(seen.values()) == 100


def test_read_with_metadata_columns(log: Log) -> None:
    t = log.create_topic("t", partitions=2)
    t.append(frame(0, 4), key="key")
    t.append(frame(4, 4), key="key")
    out = pl.concat([t.read(p, 0, 100, metadata=True) for p in range(2)])
    assert out.columns[-3:] == list(METADATA_COLUMNS)
    assert out.schema["_partition"] == pl.Int32
    assert out.schema["_offset"] == pl.Int64
    assert out.schema["_timestamp"] == pl.Datetime("ms", "UTC")
    for p in range(2):
        part = out.filter(pl.col("_partition") == p)
        assert part["_offset"].to_list() == list(range(part.height))
    assert out["_timestamp"].null_count() == 0
    empty = t.read(0, t.end_offsets()[0], 10, metadata=True)
    assert empty.height == 0
    assert empty.columns == [*frame(0, 1).columns, *METADATA_COLUMNS]


def test_read_all_concatenates_partitions(log: Log) -> None:
    t = log.create_topic("t", partitions=4)
    assert t.read_all().height == 0
    t.append(frame(0, 50))
    t.append(frame(50, 50), key="key")
    out = t.read_all(metadata=True)
    assert sorted(out["id"].to_list()) == list(range(100))
    assert out.select("_partition", "_offset").is_duplicated().sum() == 0


def test_read_bad_positions(log: Log) -> None:
    t = log.create_topic("t", partitions=2)
    t.append(frame(0, 3), key="key")
    with pytest.raises(ConfigError, match=r"partitions 0..1, got partition 2"):
        t.read(2, 0)
    end = t.end_offsets()[0]
    with pytest.raises(SourceError, match=f"offset {end + 1} is past the end"):
        t.read(0, end + 1)
    with pytest.raises(ConfigError, match="max_rows"):
        t.read(0, 0, 0)


def test_round_robin_small_appends_rotate_whole(log: Log) -> None:
    t = log.create_topic("t", partitions=4)
    results = [t.append(frame(i * 10, 10)) for i in range(8)]
    assert all(len(r) == 1 for r in results)  # each small append is one stored batch
    parts = [r[0].partition for r in results]
    assert all(b == (a + 1) % 4 for a, b in itertools.pairwise(parts))
    assert t.end_offsets() == {0: 20, 1: 20, 2: 20, 3: 20}
    for p in range(4):
        ids = read_partition(t, p)["id"].to_list()
        assert ids == sorted(ids)


def test_round_robin_big_appends_are_cut_into_slices(log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    from riverbed.eventlog import _routing

    monkeypatch.setattr(_routing, "MIN_SLICE_ROWS", 3)
    monkeypatch.setattr(_routing.split_round_robin, "__defaults__", (3,))
    t = log.create_topic("t", partitions=4)
    t.append(frame(0, 10))  # 3 slices of >= 3 rows
    assert sorted(t.end_offsets().values()) == [0, 3, 3, 4]
    t.append(frame(10, 30))  # all 4 partitions, near-equal contiguous slices
    ends = t.end_offsets()
    assert sum(ends.values()) == 40
    assert max(ends.values()) - min(ends.values()) <= 4
    for p in range(4):
        ids = read_partition(t, p)["id"].to_list()
        assert ids == sorted(ids)


def test_key_routing_keeps_keys_together_and_in_order(log: Log) -> None:
    t = log.create_topic("t", partitions=3)
    for i in range(5):
        t.append(frame(i * 20, 20), key="key")
    owners: dict[str, int] = {}
    for p in range(3):
        part = read_partition(t, p)
        for k in part["key"].unique().to_list():
            assert owners.setdefault(k, p) == p
        for _, grp in part.group_by("key"):
            assert grp["id"].to_list() == sorted(grp["id"].to_list())
    expected = partition_of(pl.Series([f"k{i}" for i in range(7)]), 3).to_list()
    assert [owners[f"k{i}"] for i in range(7)] == expected


def test_key_column_missing_or_unsupported(log: Log) -> None:
    t = log.create_topic("t", partitions=2)
    with pytest.raises(PlanError, match="key column 'nope' is not in the appended frame"):
        t.append(frame(0, 2), key="nope")
    lists = pl.DataFrame({"k": [[1], [2]]})
    with pytest.raises(PlanError, match="cannot route by a key column of type List"):
        log.create_topic("l", partitions=2).append(lists, key="k")


def test_schema_is_fixed_by_first_append(log: Log) -> None:
    t = log.create_topic("t")
    t.append(frame(0, 2))
    bad = frame(2, 2).with_columns(pl.col("amount").cast(pl.Float32), extra=pl.lit(1))
    with pytest.raises(PlanError) as err:
        t.append(bad)
    msg = str(err.value)
    assert "topic schema:  {id: Int64, key: String, amount: Float64}" in msg
    assert "append schema: {id: Int64, key: String, amount: Float32, extra: Int32}" in msg
    assert "column 'amount' is Float64 in the topic but Float32 in the append" in msg
    assert "column 'extra' (Int32) is not in the topic" in msg
    # the same columns in another order are fine
    t.append(frame(2, 2).select("amount", "id", "key"))
    assert_frame_equal(t.read(0, 0, 10), frame(0, 4))


def test_schema_mismatch_seen_across_processes(tmp_path: Path) -> None:
    with Log(tmp_path) as a, Log(tmp_path) as b:
        ta = a.create_topic("t")
        tb = b.topic("t")
        tb.append(pl.DataFrame({"x": [1]}))
        with pytest.raises(PlanError, match=r"topic schema:  \{x: Int64\}"):
            ta.append(pl.DataFrame({"y": ["a"]}))
        assert ta.schema == pl.Schema({"x": pl.Int64})


def test_reserved_column_names_rejected(log: Log) -> None:
    with pytest.raises(PlanError, match="reserved"):
        log.create_topic("t").append(pl.DataFrame({"_offset": [1]}))


def test_empty_append_is_a_noop(log: Log) -> None:
    t = log.create_topic("t")
    assert t.append(frame(0, 0)) == []
    assert t.end_offsets() == {0: 0}
    assert t.schema is None


def test_nested_and_temporal_types_round_trip(log: Log) -> None:
    df = pl.DataFrame(
        {
            "ts": pl.datetime_range(pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 3), "1d", eager=True),
            "tags": [["a"], [], ["b", "c"]],
            "info": [{"x": 1, "y": "p"}, {"x": 2, "y": None}, None],
            "cat": pl.Series(["u", "v", "u"], dtype=pl.Categorical),
        }
    )
    t = log.create_topic("t", partitions=2)
    t.append(df, key="ts")
    out = t.read_all()
    assert out.schema == df.schema
    assert_frame_equal(out.sort("ts"), df)


def test_large_append_is_split_into_bounded_blobs(log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    from riverbed.eventlog import _topic

    monkeypatch.setattr(_topic, "_MAX_BLOB_BYTES", 1_000)
    t = log.create_topic("t")
    assert t.append(frame(0, 500)) == [(0, 0, 499)]
    assert t.describe().partitions[0].batches > 1
    assert_frame_equal(t.read(0, 0, 1_000), frame(0, 500))


# -- groups -----------------------------------------------------------------------------------


def test_group_positions_persist(tmp_path: Path) -> None:
    with Log(tmp_path) as lg:
        t = lg.create_topic("t", partitions=2)
        t.append(frame(0, 10), key="key")
        ends = t.end_offsets()
        t.commit("billing", {0: ends[0]})
        t.commit("billing", {1: 1})
        t.commit("audit", {1: 0})
    with Log(tmp_path) as lg:
        t = lg.topic("t")
        assert t.committed("billing") == {0: ends[0], 1: 1}
        assert t.committed("audit") == {1: 0}
        assert t.committed("nobody") == {}
        assert t.groups() == ["audit", "billing"]


def test_commit_validation(log: Log) -> None:
    t = log.create_topic("t", partitions=2)
    t.append(frame(0, 4))  # a small append: one partition
    full = next(p for p, end in t.end_offsets().items() if end == 4)
    with pytest.raises(ConfigError, match=r"cannot commit offset 5; expected 0\.\.4"):
        t.commit("g", {full: 5})
    with pytest.raises(ConfigError, match=r"partitions 0\.\.1"):
        t.commit("g", {5: 0})
    with pytest.raises(ConfigError, match="non-empty name"):
        t.commit("", {0: 0})
    assert t.committed("g") == {}


# -- retention --------------------------------------------------------------------------------


def test_retention_by_age(log: Log) -> None:
    t = log.create_topic("t", partitions=2, retention_ms=60_000)
    t.append(frame(0, 10))
    t.append(frame(10, 10))
    now = max(t.read_all(metadata=True)["_timestamp"].dt.epoch("ms").to_list())
    assert t.apply_retention(now_ms=now + 59_000) == 0
    assert t.apply_retention(now_ms=now + 61_000) == 20
    assert t.start_offsets() == t.end_offsets() == {0: 10, 1: 10}
    assert t.read_all().height == 0
    with pytest.raises(SourceError, match="removed by retention; the partition now starts at 10"):
        t.read(0, 0)
    # offsets keep counting after everything expired
    (result,) = t.append(frame(20, 2))
    assert (result.first_offset, result.last_offset) == (10, 11)


def test_retention_by_size_drops_oldest_batches(log: Log) -> None:
    t = log.create_topic("t", retention_bytes=10**9)
    sizes = []
    for i in range(5):
        t.append(frame(i * 100, 100))
        sizes.append(t.describe().partitions[0].size_bytes - sum(sizes))
    # keep room for exactly the newest two batches
    t2 = log.create_topic("t2", retention_bytes=sizes[3] + sizes[4])
    for i in range(5):
        t2.append(frame(i * 100, 100))
    t2.apply_retention()
    info = t2.describe().partitions[0]
    assert (info.start_offset, info.end_offset, info.batches) == (300, 500, 2)
    assert_frame_equal(t2.read(0, 300, 1000), frame(300, 200))
    assert t.apply_retention() == 0


def test_retention_runs_on_append(log: Log) -> None:
    t = log.create_topic("t", retention_bytes=1)
    t.append(frame(0, 10))  # the only batch is over the limit: dropped right away
    assert t.start_offsets() == {0: 10}
    assert t.end_offsets() == {0: 10}


# -- describe ---------------------------------------------------------------------------------


def test_describe(log: Log) -> None:
    t = log.create_topic("t", partitions=2, retention_ms="1h")
    t.append(frame(0, 10), key="key")
    t.commit("g", {0: 1})
    d = t.describe()
    ends = t.end_offsets()
    assert d.name == "t"
    assert d.retention_ms == 3_600_000
    assert d.schema == frame(0, 1).schema
    assert d.groups == ["g"]
    assert d.records == 10
    assert [p.end_offset for p in d.partitions] == [ends[0], ends[1]]
    assert [p.start_offset for p in d.partitions] == [0, 0]
    assert all(p.size_bytes > 0 and p.batches == 1 for p in d.partitions)
    assert d.partitions[0].lag == {"g": ends[0] - 1}
    assert d.partitions[1].lag == {"g": ends[1]}


# -- integrity --------------------------------------------------------------------------------


def test_damage_in_the_middle_is_never_served(log: Log) -> None:
    t = log.create_topic("t")
    for i in range(6):
        t.append(frame(i * 10, 10))
    t.close()
    db = sqlite3.connect(t.path / "topic.db")
    db.execute("UPDATE batches SET crc32 = crc32 + 1 WHERE base_offset = 10")
    db.commit()
    db.close()
    with Log(log.root.parent) as other:
        t2 = other.topic("t")  # the tail is fine: nothing is cut
        assert t2.end_offsets() == {0: 60}
        assert_frame_equal(t2.read(0, 0, 10), frame(0, 10))
        with pytest.raises(SourceError, match=r"offsets 10..19 is damaged .*CRC32.*not served"):
            t2.read(0, 5, 100)
        assert t2.verify() == {0: 10}
        assert t2.verify(repair=True) == {0: 10}
        assert t2.end_offsets() == {0: 10}
        assert t2.verify() == {}
