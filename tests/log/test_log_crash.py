"""Durability: damaged tails are cut on open, ``kill -9`` of producers loses no acknowledged record.

The kill loop runs 20 rounds by default (two producer processes appending to one topic while
this process reads it, both killed with SIGKILL at random moments); ``-m slow`` runs 200.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import riverbed
from riverbed._errors import SourceError
from riverbed.eventlog import Log, Topic

TOPIC = "crash"
PACKAGE_DIR = str(Path(riverbed.__file__).parent)


def frame(start: int, n: int, marker: str = "") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": pl.int_range(start, start + n, eager=True, dtype=pl.Int64),
            "text": [f"{marker}row-{i:08d}" for i in range(start, start + n)],
        }
    )


def damage_blob(topic: Topic, partition: int, base: int, how: str) -> None:
    """Damage one stored batch with the sqlite3 module, behind the log's back."""
    db = sqlite3.connect(topic.path / "topic.db")
    where = "WHERE partition = ? AND base_offset = ?"
    if how == "flip":  # same length, different bytes: only the CRC can tell
        (blob,) = db.execute(f"SELECT data FROM batches {where}", (partition, base)).fetchone()
        mid = len(blob) // 2
        bad = blob[:mid] + bytes(b ^ 0xFF for b in blob[mid : mid + 16]) + blob[mid + 16 :]
        db.execute(f"UPDATE batches SET data = ? {where}", (bad, partition, base))
    elif how == "truncate":  # a torn write: the blob ends early
        db.execute(
            f"UPDATE batches SET data = substr(data, 1, length(data) / 2) {where}",
            (partition, base),
        )
    else:
        raise AssertionError(how)
    db.commit()
    db.close()


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_damaged_tail_is_cut_on_open(tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture) -> None:
    with Log(tmp_path) as log:
        t = log.create_topic(TOPIC, partitions=2)
        for i in range(4):  # small appends alternate: two batches of 10 rows per partition
            t.append(frame(i * 10, 10))
        assert t.end_offsets() == {0: 20, 1: 20}
        damage_blob(t, 1, 10, how)
        with pytest.raises(SourceError, match="is damaged"):
            t.read(1, 5, 100)  # an open topic never serves it either
    with caplog.at_level(logging.WARNING, logger="riverbed.eventlog"), Log(tmp_path) as log:
        t = log.topic(TOPIC)
        assert t.end_offsets() == {0: 20, 1: 10}
        assert "partition 1: damaged batch at the tail; cut the log at offset 10" in caplog.text
        assert t.verify() == {}
        assert t.read(1, 0, 100).height == 10
        # appends continue from the cut
        (result,) = t.append(frame(100, 2))
        assert result.first_offset == t.end_offsets()[result.partition] - 2
        assert t.read_all().height == 32


def test_damage_a_few_batches_from_the_end_cuts_from_there(tmp_path: Path) -> None:
    with Log(tmp_path) as log:
        t = log.create_topic(TOPIC)
        for i in range(6):
            t.append(frame(i * 10, 10))
        damage_blob(t, 0, 40, "flip")  # second to last
    with Log(tmp_path) as log:
        t = log.topic(TOPIC)
        assert t.end_offsets() == {0: 40}
        assert_frame_equal(t.read(0, 0, 100), frame(0, 40))


def test_bytes_damaged_in_the_database_file(tmp_path: Path) -> None:
    """Overwrite bytes of the last blob in the file itself; SQLite cannot notice, we do."""
    marker = "LASTBATCHMARKER-"
    with Log(tmp_path) as log:
        t = log.create_topic(TOPIC)
        for i in range(3):
            t.append(frame(i * 50, 50))
        t.append(frame(150, 50, marker=marker))
        path = t.path / "topic.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything into the main file
    db.close()
    raw = bytearray(path.read_bytes())
    at = raw.find(marker.encode())
    assert at > 0 and raw.count(marker.encode()) == 50
    raw[at : at + 8] = b"\x00GARBAGE"
    path.write_bytes(bytes(raw))
    with Log(tmp_path) as log:
        t = log.topic(TOPIC)
        assert t.end_offsets() == {0: 150}
        assert_frame_equal(t.read(0, 0, 1000), frame(0, 150))
        assert t.verify() == {}


SPAWNER = """
import os
import signal
import sys
import types

import polars as pl

# Start once, fork producers on request: a fork is a real process to kill -9, and starting one
# costs nothing. riverbed.eventlog is loaded without riverbed/__init__.py (the whole API); nothing
# runs Polars, Arrow or SQLite before forking, so no thread pool or connection is inherited.
pkg = types.ModuleType("riverbed")
pkg.__path__ = [sys.argv[1]]
sys.modules["riverbed"] = pkg
from riverbed.eventlog import Log

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the killed producers


def produce(home, producer, rows, acks_path):
    with open(acks_path, "w", buffering=1) as acks:  # line-buffered: one write() per line
        topic = Log(home).topic("crash")
        payload = pl.repeat(f"p{producer}-" + "x" * 20, rows, eager=True)
        seq = 0
        while True:
            df = pl.DataFrame({
                "producer": pl.repeat(producer, rows, eager=True, dtype=pl.Int32),
                "seq": pl.int_range(seq, seq + rows, eager=True, dtype=pl.Int64),
                "payload": payload,
            })
            acks.write(f"begin {producer} {seq} {seq + rows}\\n")
            topic.append(df, key="seq" if producer % 2 else None)
            acks.write(f"ack {producer} {seq} {seq + rows}\\n")  # only after append returned
            seq += rows


print("ready", flush=True)
for line in sys.stdin:
    home, producer, rows, acks_path = line.split()
    pid = os.fork()
    if pid == 0:
        try:
            produce(home, int(producer), int(rows), acks_path)
        finally:
            os._exit(1)
    print(pid, flush=True)
"""


class Spawner:
    """A helper process that forks producer processes on request."""

    def __init__(self, tmp_path: Path) -> None:
        script = tmp_path / "spawner.py"
        script.write_text(SPAWNER)
        self.proc = subprocess.Popen(
            [sys.executable, str(script), PACKAGE_DIR],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        line = self.stdout.readline()
        assert line.strip() == "ready", f"spawner did not start: {line!r}"

    def start(self, home: Path, producer: int, rows: int, acks: Path) -> int:
        self.stdin.write(f"{home} {producer} {rows} {acks}\n")
        self.stdin.flush()
        return int(self.stdout.readline())

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait(timeout=30)


def _kill(pid: int) -> None:
    """SIGKILL ``pid`` and wait until it is gone (its parent lets the kernel reap it)."""
    os.kill(pid, signal.SIGKILL)
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.001)


def _follow(topic: Topic, positions: dict[int, int], frames: list[pl.DataFrame]) -> None:
    """Read everything new since ``positions``, as a concurrent consumer would."""
    for p, end in topic.end_offsets().items():
        while positions[p] < end:
            df = topic.read(p, positions[p], 1_000_000, metadata=True)
            positions[p] += df.height
            frames.append(df.select("producer", "seq", "_partition", "_offset"))


def _kill_rounds(tmp_path: Path, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    home = tmp_path / "home"
    acked: dict[int, int] = {}  # producer -> acknowledged rows (a prefix of its seq numbers)
    rows_of: dict[int, int] = {}
    total_acked = 0
    stats: Counter[str] = Counter()
    spawner = Spawner(tmp_path)
    try:
        for r in range(rounds):
            if r % 5 == 0:  # a fresh topic now and then keeps the data small
                total_acked += sum(acked.values())
                with Log(home) as log:
                    if TOPIC in log:
                        log.delete_topic(TOPIC)
                    log.create_topic(TOPIC, partitions=3)
                acked.clear()
            _kill_round(spawner, home, rng, r, acked, rows_of, stats)
    finally:
        spawner.close()
    total_acked += sum(acked.values())
    # not vacuous: appends were acknowledged, and kills landed inside append() (the producers
    # spend most of their time there, so with 2 kills a round this holds but by a fluke)
    assert total_acked > 0, "no producer ever acknowledged an append: the test checked nothing"
    assert stats["killed mid-append"] > 0, f"no kill landed inside append(): {stats}"


def _kill_round(
    spawner: Spawner,
    home: Path,
    rng: random.Random,
    r: int,
    acked: dict[int, int],
    rows_of: dict[int, int],
    stats: Counter[str],
) -> None:
    """Two producers append while this process reads; both get SIGKILL at random moments."""
    pids = {}
    for producer in (2 * r, 2 * r + 1):
        rows_of[producer] = rng.choice([100, 1_000, 5_000])
        acks = home.parent / f"acks-{producer}.txt"
        pids[producer] = (spawner.start(home, producer, rows_of[producer], acks), acks)
    with Log(home) as reader:  # a concurrent consumer in this process
        topic = reader.topic(TOPIC)
        positions = topic.end_offsets()
        frames: list[pl.DataFrame] = []
        deadline = time.monotonic() + rng.uniform(0.0, 0.3)
        while time.monotonic() < deadline:
            _follow(topic, positions, frames)
        for pid, _ in pids.values():
            _kill(pid)
            time.sleep(rng.uniform(0.0, 0.02))
        for producer, (_, acks) in pids.items():
            # killed before it even opened its acks file: nothing acknowledged
            lines = acks.read_text().splitlines() if acks.exists() else []
            for line in lines:
                what, who, _, end = line.split()
                assert int(who) == producer
                if what == "ack":
                    acked[producer] = int(end)
            if lines and lines[-1].startswith("begin"):
                stats["killed mid-append"] += 1
        _follow(topic, positions, frames)
    followed = pl.concat(frames) if frames else None
    # a fresh open (tail check) sees every acknowledged record exactly once
    with Log(home) as fresh:
        topic = fresh.topic(TOPIC)
        assert topic.verify() == {}
        everything = topic.read_all(metadata=True)
    if everything.height == 0:  # every producer so far died before its first append
        assert not any(acked.values())
        assert followed is None
        return
    assert everything.select("producer", "seq").is_duplicated().sum() == 0
    for p in range(3):
        offsets = everything.filter(pl.col("_partition") == p)["_offset"].to_list()
        assert offsets == list(range(len(offsets)))
    counts = {
        who: (n, top)
        for who, n, top in everything.group_by("producer").agg(pl.len(), pl.col("seq").max()).iter_rows()
    }
    for producer, n_acked in acked.items():
        n, top = counts.get(producer, (0, -1))
        # the acked prefix is there; at most the in-flight append beyond it
        assert n == top + 1, f"producer {producer}: records missing inside its range"
        assert n >= n_acked, f"producer {producer}: acked {n_acked}, found {n}"
        assert n <= n_acked + rows_of[producer]  # at most the append in flight at the kill
        assert everything.filter(pl.col("producer") == producer)["seq"].n_unique() == n
    if followed is not None:  # the concurrent consumer saw each record once, as stored
        assert followed.select("producer", "seq").is_duplicated().sum() == 0
        stored = everything.select("producer", "seq", "_partition", "_offset")
        assert followed.join(stored, on=followed.columns, how="anti").height == 0


def test_kill_9_producers_lose_no_acknowledged_record(tmp_path: Path) -> None:
    _kill_rounds(tmp_path, rounds=20, seed=1)


@pytest.mark.slow
def test_kill_9_producers_many_rounds(tmp_path: Path) -> None:
    _kill_rounds(tmp_path, rounds=200, seed=2)
