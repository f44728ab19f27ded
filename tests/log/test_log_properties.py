"""Property tests: whatever the appends and reads, each partition returns exactly what went in."""

from __future__ import annotations

import tempfile

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from riverbed.eventlog import Log
from riverbed.eventlog._routing import key_hash, partition_of

appends = st.lists(
    st.tuples(st.integers(0, 40), st.booleans()),  # (rows, keyed?)
    min_size=1,
    max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(
    partitions=st.integers(1, 4),
    batches=appends,
    reads=st.lists(st.tuples(st.floats(0, 1), st.integers(1, 60)), max_size=6),
)
def test_appends_come_back_in_order_per_partition(
    partitions: int, batches: list[tuple[int, bool]], reads: list[tuple[float, int]]
) -> None:
    with tempfile.TemporaryDirectory() as home, Log(home) as log:
        t = log.create_topic("t", partitions=partitions)
        expected: dict[int, list[int]] = {p: [] for p in range(partitions)}
        next_id = 0
        for rows, keyed in batches:
            ids = list(range(next_id, next_id + rows))
            next_id += rows
            df = pl.DataFrame({"id": ids, "k": [i % 5 for i in ids]}, schema={"id": pl.Int64, "k": pl.Int64})
            results = t.append(df, key="k" if keyed else None)
            assert sum(r.last_offset - r.first_offset + 1 for r in results) == rows
            for r in results:
                assert r.first_offset == len(expected[r.partition])
                got = t.read(r.partition, r.first_offset, r.last_offset - r.first_offset + 1)
                expected[r.partition].extend(got["id"].to_list())
        # every row exactly once, in append order within each partition
        assert sorted(i for ids in expected.values() for i in ids) == list(range(next_id))
        for ids in expected.values():
            assert ids == sorted(ids)
        assert t.end_offsets() == {p: len(ids) for p, ids in expected.items()}
        if next_id == 0:
            assert t.schema is None  # nothing appended yet: reads have no columns
            assert t.read(0, 0).shape == (0, 0)
            return
        # keyed rows sit in their key's partition
        for p, ids in expected.items():
            part = t.read(p, 0, max(len(ids), 1))
            assert part["id"].to_list() == ids
        # arbitrary reads are slices of the partition
        for p in range(partitions):
            full = expected[p]
            for frac, max_rows in reads:
                offset = int(frac * len(full))
                got = t.read(p, offset, max_rows)["id"].to_list()
                assert got == full[offset : offset + max_rows]


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.one_of(st.none(), st.text(max_size=6)), min_size=1, max_size=30),
    partitions=st.integers(1, 16),
)
def test_string_key_routing_is_deterministic(keys: list[str | None], partitions: int) -> None:
    s = pl.Series("k", keys, dtype=pl.String)
    whole = partition_of(s, partitions).to_list()
    one_by_one = [partition_of(s.slice(i, 1), partitions).item() for i in range(len(keys))]
    assert whole == one_by_one
    assert partition_of(s.reverse(), partitions).to_list() == whole[::-1]
    assert all(0 <= p < partitions for p in whole)
    assert all(p == 0 for p, k in zip(whole, keys, strict=True) if k is None)
    cat = partition_of(s.cast(pl.Categorical), partitions).to_list()
    assert cat == whole


@settings(max_examples=60, deadline=None)
@given(keys=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=30))
def test_integer_key_routing_ignores_width(keys: list[int]) -> None:
    wide = partition_of(pl.Series(keys, dtype=pl.Int64), 7).to_list()
    assert partition_of(pl.Series(keys, dtype=pl.Int32), 7).to_list() == wide
    one_by_one = [partition_of(pl.Series([k], dtype=pl.Int64), 7).item() for k in keys]
    assert wide == one_by_one


def test_routing_hash_is_pinned() -> None:
    """The routing hash is part of the storage format: it must never change."""
    assert key_hash(pl.Series([0, 1, -1])).to_list() == [
        16294208416658607535,  # SplitMix64(0): 0xE220A8397B1DCDAF
        10451216379200822465,
        16490336266968443936,
    ]
    assert key_hash(pl.Series(["a"])).to_list() == [3187963305867457774]
    assert partition_of(pl.Series(["a", "b", "c", "orders", ""]), 8).to_list() == [6, 7, 4, 6, 7]


def test_key_routing_same_in_every_append() -> None:
    with tempfile.TemporaryDirectory() as home, Log(home) as log:
        t = log.create_topic("t", partitions=5)
        df = pl.DataFrame({"k": ["x", "y", "z", "x"], "v": [1, 2, 3, 4]})
        first = t.append(df, key="k")
        second = t.append(df, key="k")
        assert [r.partition for r in first] == [r.partition for r in second]
        assert_frame_equal(t.read_all().sort("v"), pl.concat([df, df]).sort("v"), check_row_order=False)
