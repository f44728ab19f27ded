"""Checkpoints in process: resume where a stopped job left off, epochs that continue, the
offset log replayed exactly, refusals (lock, changed pipeline, wiped source), stop_at_end,
retries of transient failures."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import riverbed as rb
from riverbed._errors import SinkError, SourceError, TransientError
from riverbed.connectors.base import Capabilities, Sink, SinkContext, SinkWriter
from riverbed.eventlog import Log
from riverbed.executors._checkpoint import Checkpoint, CheckpointError, CheckpointStore, decode, encode
from riverbed.executors._retry import RetriesExhausted

T0 = 1_700_000_000_000


def events(n: int, start: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(start, start + n)),
            "store": [f"s{i % 3}" for i in range(start, start + n)],
            "ts": [T0 + i * 1000 for i in range(start, start + n)],
            "amount": [i % 7 for i in range(start, start + n)],
        }
    )


def produce(home: Path, df: pl.DataFrame, partitions: int = 1) -> None:
    with Log(home) as log:
        log.create_topic("events", partitions, exist_ok=True).append(df, "store")


def pipeline(out: Path, *, size: str = "10s", sink: Any = None) -> rb.Pipeline:
    p = rb.Pipeline("ckpt")
    s = p.read(rb.log("events"), event_time="ts", name="events")
    w = s.window(rb.tumbling(size), by="store", name="per_store").agg(n=rb.count(), total=rb.sum("amount"))
    w.write(sink or rb.sqlite(str(out / "out.sqlite"), table="w", mode="replace"), name="out")
    return p


def table(path: Path, name: str = "w") -> pl.DataFrame:
    con = sqlite3.connect(path)
    try:
        cur = con.execute(f"SELECT store, window_start, n, total FROM {name} ORDER BY store, window_start")
        return pl.DataFrame(cur.fetchall(), schema=["store", "window_start", "n", "total"], orient="row")
    finally:
        con.close()


def test_resume_continues_exactly(tmp_path: Path) -> None:
    home, ckpt = tmp_path / "home", tmp_path / "ckpt"
    produce(home, events(300))
    # the reference: one run over everything
    ref_home = tmp_path / "ref"
    produce(ref_home, events(300))
    produce(ref_home, events(300, 300))
    pipeline(tmp_path / "ref").run(
        "stream", home=ref_home, checkpoint_dir=tmp_path / "ref_ckpt", stop_at_end=True
    )
    # first run: the first 300 events, stopped at their end (windows still open stay in state)
    first = pipeline(tmp_path).run("stream", home=home, checkpoint_dir=ckpt, stop_at_end=True)
    assert first.rows_read["events"] == 300
    produce(home, events(300, 300))
    # a second run is a new job only if the checkpoint is forgotten: here it resumes
    store = CheckpointStore(str(ckpt))
    job = store.read_job()
    assert job is not None and job["ends"] == {"events/0": 300}
    # move the end: a resumed stop_at_end job keeps its first end, so run without it
    stop = threading.Event()
    seen: list[int] = []

    def on_batch(stats: Any, outputs: Any) -> None:
        seen.append(stats.events)
        if stats.events >= 300:
            stop.set()

    second = pipeline(tmp_path).run("stream", home=home, checkpoint_dir=ckpt, stop=stop, on_batch=on_batch)
    assert second.rows_read["events"] == 300  # only the new events: none read twice
    assert any("resumed from the checkpoint" in n for n in second.notes)
    last = CheckpointStore(str(ckpt)).latest()
    assert last is not None and last.epoch > 0
    got = table(tmp_path / "out.sqlite")
    want = table(tmp_path / "ref" / "out.sqlite")
    # the stopped job has not flushed its last open windows: every emitted window is exact
    assert got.height > 0
    assert got.join(want, on=["store", "window_start"], how="anti").height == 0
    assert got.equals(
        want.join(got.select("store", "window_start"), on=["store", "window_start"]).sort(
            "store", "window_start"
        )
    )


def test_replace_only_at_first_start_and_epochs_continue(tmp_path: Path) -> None:
    home, ckpt = tmp_path / "home", tmp_path / "ckpt"
    produce(home, events(100))
    out = tmp_path / "out.sqlite"
    con = sqlite3.connect(out)
    con.execute("CREATE TABLE w (store TEXT, window_start INT, n INT, total INT)")
    con.execute("INSERT INTO w VALUES ('old', 0, 1, 1)")
    con.commit()
    con.close()
    stop = threading.Event()
    stop.set()  # stop at once: the first epoch is committed on stop
    pipeline(tmp_path).run("stream", home=home, checkpoint_dir=ckpt, stop_after="300ms")
    first = table(out)
    assert "old" not in first["store"].to_list()  # replaced at the job's first start
    epoch_1 = CheckpointStore(str(ckpt)).latest()
    assert epoch_1 is not None
    produce(home, events(100, 100))
    pipeline(tmp_path).run("stream", home=home, checkpoint_dir=ckpt, stop_after="300ms")
    second = table(out)
    assert second.height > first.height  # a resume appends: it does not replace
    assert first.join(second, on=["store", "window_start"], how="anti").height == 0
    epoch_2 = CheckpointStore(str(ckpt)).latest()
    assert epoch_2 is not None and epoch_2.epoch > epoch_1.epoch


def test_first_epoch_follows_the_sinks_records(tmp_path: Path) -> None:
    """A new checkpoint directory over tables an older run wrote: epochs continue past the
    sink's record, so nothing new is skipped as 'already committed'."""
    home = tmp_path / "home"
    produce(home, events(100))
    pipeline(tmp_path).run("stream", home=home, checkpoint_dir=tmp_path / "c1", stop_at_end=True)
    first = CheckpointStore(str(tmp_path / "c1")).latest()
    assert first is not None
    pipeline(tmp_path).run("stream", home=home, checkpoint_dir=tmp_path / "c2", stop_at_end=True)
    job = CheckpointStore(str(tmp_path / "c2")).read_job()
    assert job is not None and job["first_epoch"] == first.epoch + 1
    assert (
        table(tmp_path / "out.sqlite").height
        == pipeline(tmp_path).run("batch", home=home).rows_written["out"]
    )


def test_offset_log_replays_an_epoch_already_committed(tmp_path: Path) -> None:
    """Killed after the sinks committed the last epoch but before its checkpoint: the restart
    replays exactly that epoch from the offset log, the sink skips it, nothing is doubled.
    (A sink that had not committed it yet gets it: see the crash test's kill points.)"""
    home, ckpt = tmp_path / "home", tmp_path / "ckpt"
    produce(home, events(500, 0), partitions=3)
    pipeline(tmp_path).run("stream", home=home, checkpoint_dir=ckpt, stop_at_end=True, max_batch_rows=50)
    want = table(tmp_path / "out.sqlite")
    store = CheckpointStore(str(ckpt))
    last = store.latest()
    assert last is not None and store.read_offsets(last.epoch) is not None
    os.remove(ckpt / "checkpoints" / f"{last.epoch:012d}.ckpt")
    result = pipeline(tmp_path).run("stream", home=home, checkpoint_dir=ckpt, stop_at_end=True)
    assert f"replayed epoch {last.epoch} (already committed by ['out'])" in result.notes, result.notes
    assert table(tmp_path / "out.sqlite").equals(want)
    assert CheckpointStore(str(ckpt)).latest().epoch == last.epoch  # type: ignore[union-attr]


def test_second_job_on_a_checkpoint_dir_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path))
    store.lock()
    try:
        with pytest.raises(CheckpointError, match="in use"):
            CheckpointStore(str(tmp_path)).lock()
    finally:
        store.unlock()
    CheckpointStore(str(tmp_path)).lock()  # released: taken again


def test_changed_stateful_step_is_refused_stateless_edit_resumes(tmp_path: Path) -> None:
    home, ckpt = tmp_path / "home", tmp_path / "ckpt"
    produce(home, events(50))
    pipeline(tmp_path).run("stream", home=home, checkpoint_dir=ckpt, stop_at_end=True)
    with pytest.raises(CheckpointError, match=r"per_store.*changed"):
        pipeline(tmp_path, size="20s").run("stream", home=home, checkpoint_dir=ckpt, stop_at_end=True)
    # a stateless edit (a filter before the window) keeps the stateful step: it resumes
    p = rb.Pipeline("ckpt")
    s = p.read(rb.log("events"), event_time="ts", name="events").filter(pl.col("amount") >= 0)
    s.window(rb.tumbling("10s"), by="store", name="per_store").agg(
        n=rb.count(), total=rb.sum("amount")
    ).write(rb.sqlite(str(tmp_path / "out.sqlite"), table="w", mode="replace"), name="out")
    result = p.run("stream", home=home, checkpoint_dir=ckpt, stop_at_end=True)
    assert any("resumed" in n for n in result.notes)


def test_torn_checkpoint_is_skipped(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path))
    good = Checkpoint(3, {"r/0": 10}, {"job": 5, "max_t": {}}, {"w": b"abc"}, {"w": "x"})
    store.write_checkpoint(good)
    data = encode(Checkpoint(4, {"r/0": 20}, {"job": 6, "max_t": {}}, {"w": b"abcd"}, {"w": "x"}))
    (tmp_path / "checkpoints" / f"{4:012d}.ckpt").write_bytes(data[: len(data) // 2])
    assert decode(data[:-1]) is None
    latest = store.latest()
    assert latest is not None and latest.epoch == 3 and latest.states == {"w": b"abc"}


def test_wiped_source_is_an_error_not_a_reset(tmp_path: Path) -> None:
    home, ckpt = tmp_path / "home", tmp_path / "ckpt"
    produce(home, events(50))
    pipeline(tmp_path).run("stream", home=home, checkpoint_dir=ckpt, stop_at_end=True)
    with Log(home) as log:
        log.delete_topic("events")
    produce(home, events(10))
    with pytest.raises(SourceError, match=r"resumes at offset 50, but the partition ends at offset 10"):
        pipeline(tmp_path).run("stream", home=home, checkpoint_dir=ckpt)


def test_group_positions_committed_after_checkpoints(tmp_path: Path) -> None:
    home = tmp_path / "home"
    produce(home, events(40))
    p = rb.Pipeline("grp")
    p.read(rb.log("events", group="billing"), name="events").write(
        rb.sqlite(str(tmp_path / "o.sqlite"), table="rows", mode="append"), name="out"
    )
    p.run("stream", home=home, checkpoint_dir=tmp_path / "ckpt", stop_at_end=True)
    with Log(home) as log:
        assert log.topic("events").committed("billing") == {0: 40}


class _Flaky(Sink):
    """A sink whose commits fail transiently ``fails`` times (a flaky server)."""

    capabilities = Capabilities(bounded=True, unbounded=True, exactly_once=True)

    def __init__(self, fails: int, kind: type[Exception] = TransientError) -> None:
        self.fails = fails
        self.kind = kind
        self.committed: list[int] = []
        self.rows = 0

    def describe(self) -> str:
        return "flaky"

    def open(self, ctx: SinkContext) -> SinkWriter:
        sink = self

        class W(SinkWriter):
            def write(self, df: pl.DataFrame) -> None:
                sink.rows += df.height

            def commit(self, epoch: int) -> None:
                if sink.fails > 0:
                    sink.fails -= 1
                    raise sink.kind("server went away")
                sink.committed.append(epoch)

            def last_committed_epoch(self) -> int | None:
                return sink.committed[-1] if sink.committed else None

        return W()


def test_transient_sink_failures_are_retried(tmp_path: Path) -> None:
    home = tmp_path / "home"
    produce(home, events(30))
    sink = _Flaky(3)
    p = rb.Pipeline("flaky")
    p.read(rb.log("events"), name="events").write(sink, name="out")
    p.run("stream", home=home, checkpoint_dir=tmp_path / "c", stop_at_end=True)
    assert sink.committed and sink.rows == 30


def test_retries_are_bounded_and_leave_a_resumable_checkpoint(tmp_path: Path) -> None:
    home = tmp_path / "home"
    produce(home, events(30))
    sink = _Flaky(10_000)
    p = rb.Pipeline("flaky")
    p.read(rb.log("events"), name="events").write(sink, name="out")
    with pytest.raises(RetriesExhausted, match=r"committing epoch 0 to out kept failing"):
        p.run("stream", home=home, checkpoint_dir=tmp_path / "c", stop_at_end=True, retry_timeout="300ms")
    sink.fails = 0  # the server is back: the same job resumes and commits the logged epoch
    result = p.run("stream", home=home, checkpoint_dir=tmp_path / "c", stop_at_end=True)
    assert sink.committed == [0]
    assert any(n.startswith("replayed epoch 0") for n in result.notes)


def test_terminal_sink_failure_is_not_retried(tmp_path: Path) -> None:
    home = tmp_path / "home"
    produce(home, events(5))
    sink = _Flaky(1, SinkError)
    p = rb.Pipeline("flaky")
    p.read(rb.log("events"), name="events").write(sink, name="out")
    with pytest.raises(SinkError, match="server went away"):
        p.run("stream", home=home, checkpoint_dir=tmp_path / "c", stop_at_end=True)
    assert sink.fails == 0


def test_observer_is_told_about_checkpoints(tmp_path: Path) -> None:
    home = tmp_path / "home"
    produce(home, events(20))
    seen: list[tuple[float, int, int]] = []

    class Observer:
        def on_batch(self, figures: Any, steps: Any) -> None:
            pass

        def on_checkpoint(self, duration_s: float, size_bytes: int, epoch: int) -> None:
            seen.append((duration_s, size_bytes, epoch))

    pipeline(tmp_path).run(
        "stream", home=home, checkpoint_dir=tmp_path / "c", stop_at_end=True, observer=Observer()
    )
    assert (
        seen and seen[-1][1] == (tmp_path / "c" / "checkpoints" / f"{seen[-1][2]:012d}.ckpt").stat().st_size
    )


def test_dead_letters_spilled_once_across_a_replay(tmp_path: Path) -> None:
    """Dead letters nobody consumes go to a JSON-lines file committed with the epoch: a
    replayed epoch does not append them twice."""
    home, ckpt = tmp_path / "home", tmp_path / "ckpt"
    df = events(200).with_columns(ts=pl.when(pl.col("id") % 10 == 0).then(None).otherwise(pl.col("ts")))
    produce(home, df)
    p = rb.Pipeline("spill")
    p.read(rb.log("events"), event_time="ts", name="events").write(
        rb.sqlite(str(tmp_path / "o.sqlite"), table="rows", mode="append"), name="out"
    )
    p.run("stream", home=home, checkpoint_dir=ckpt, stop_at_end=True, max_batch_rows=30)
    spilled = home / "dead_letters" / "spill" / "events.jsonl"
    assert pl.read_ndjson(spilled).height == 20
    last = CheckpointStore(str(ckpt)).latest()
    assert last is not None
    os.remove(ckpt / "checkpoints" / f"{last.epoch:012d}.ckpt")
    result = p.run("stream", home=home, checkpoint_dir=ckpt, stop_at_end=True)
    assert any(n.startswith(f"replayed epoch {last.epoch}") for n in result.notes)
    assert pl.read_ndjson(spilled).height == 20


def test_stop_at_end_refused_by_a_source_that_cannot_tell_its_end(tmp_path: Path) -> None:
    from riverbed.testing import collect, source

    p = rb.Pipeline("endless")
    p.read(source([events(3)], bounded=False), name="events").write(collect(), name="out")
    with pytest.raises(CheckpointError, match=r"stop_at_end: partition\(s\) \['events/0'\] cannot tell"):
        p.run("stream", home=tmp_path, checkpoint_dir=tmp_path / "c", stop_at_end=True)


def test_stop_at_end_over_a_tailed_file(tmp_path: Path) -> None:
    """A tailed file's end at the job's first start ends the job, also after a restart; a
    later run without stop_at_end reads what was appended since, nothing twice."""
    path = tmp_path / "events.jsonl"
    events(10).write_ndjson(path)
    out = tmp_path / "o.sqlite"
    p = rb.Pipeline("tail")
    p.read(rb.files(str(path), tail=True), name="events").write(
        rb.sqlite(str(out), table="rows", mode="append"), name="out"
    )
    first = p.run("stream", home=tmp_path, checkpoint_dir=tmp_path / "c", stop_at_end=True)
    assert first.rows_read["events"] == 10
    with open(path, "ab") as fh:
        events(5, 10).write_ndjson(fh)
    again = p.run("stream", home=tmp_path, checkpoint_dir=tmp_path / "c", stop_at_end=True)
    assert again.rows_read["events"] == 0
    later = p.run("stream", home=tmp_path, checkpoint_dir=tmp_path / "c", stop_after="1s")
    assert later.rows_read["events"] == 5
    rows = sqlite3.connect(out).execute("SELECT count(*), count(DISTINCT id) FROM rows").fetchone()
    assert rows == (15, 15)


def test_transient_source_failures_are_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from riverbed._errors import SourceUnavailable
    from riverbed.connectors.log import LogReader

    home = tmp_path / "home"
    produce(home, events(40))
    original = LogReader.next_batch
    failures = [2]

    def flaky(self: LogReader, max_rows: int, timeout: float) -> pl.DataFrame | None:
        if failures[0]:
            failures[0] -= 1
            raise SourceUnavailable("storage went away for a moment")
        return original(self, max_rows, timeout)

    monkeypatch.setattr(LogReader, "next_batch", flaky)
    p = rb.Pipeline("flaky_source")
    p.read(rb.log("events"), name="events").write(
        rb.sqlite(str(tmp_path / "o.sqlite"), table="rows", mode="append"), name="out"
    )
    result = p.run("stream", home=home, checkpoint_dir=tmp_path / "c", stop_at_end=True)
    assert failures == [0] and result.rows_read["events"] == 40
    failures[0] = 10_000
    produce(home, events(5, 40))
    with pytest.raises(RetriesExhausted, match=r"reading events/0 kept failing"):
        p.run("stream", home=home, checkpoint_dir=tmp_path / "c", retry_timeout="200ms")
