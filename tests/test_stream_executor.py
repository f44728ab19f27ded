"""Stream executor behaviour beyond window semantics: sources that grow, idleness, several
partitions, dedupe, lookup joins, user functions, stopping, state size."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import riverbed as rb
from riverbed.testing import ManualClock, assert_same_results, collect, source


def _events(rows: list[tuple[int, int, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"k": pl.Int64, "ts": pl.Int64, "v": pl.Float64}, orient="row")


def test_parquet_replay_equals_batch(tmp_path: Path) -> None:
    ev = _events([(i % 3, i * 700, float(i)) for i in range(500)])
    ev.write_parquet(tmp_path / "a.parquet", row_group_size=64)
    ev.with_columns(pl.col("ts") + 350_000).write_parquet(tmp_path / "b.parquet", row_group_size=50)
    p = rb.Pipeline("replay")
    (
        p.read(rb.files(tmp_path), event_time="ts")
        .filter(pl.col("v") > 10)
        .window(rb.tumbling("10s"), by="k")
        .agg(n=rb.count(), s=rb.sum("v"))
        .write(collect())
    )
    out = assert_same_results(p, batch_sizes=[1, 33, None])
    assert out[next(iter(out))]["n"].sum() == 2 * (500 - 11)  # v <= 10 filtered out of each file


def test_tail_follows_a_growing_file_and_stops_on_request(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("")
    out = collect()
    p = rb.Pipeline("tail")
    schema = {"k": pl.Int64, "ts": pl.Int64, "v": pl.Float64}
    src = rb.files(path, tail=True, schema=schema, on_error="dead_letter")
    s = p.read(src, event_time="ts")
    s.window(rb.tumbling(1000), by="k").agg(n=rb.count()).write(out)
    bad = collect()
    s.dead_letters().write(bad)
    stop = threading.Event()

    def feed() -> None:
        with path.open("a") as fh:
            for i in range(30):
                fh.write(json.dumps({"k": i % 2, "ts": i * 100, "v": 1.0}) + "\n")
                if i == 10:
                    fh.write('{"k": 1, "ts": "not a time", "v": 2}\n')
                    fh.write('{"k": 1, "ts": 5, "v": ' + "\n")  # broken JSON
                fh.flush()
                time.sleep(0.002)
            fh.write('{"k": 0, "ts": 99999, "v": 0}\n')  # pushes the watermark past all windows
        time.sleep(0.3)
        stop.set()

    threading.Thread(target=feed).start()
    result = p.run("stream", progress=False, stop=stop, max_wait="5ms")
    windows = out.frame()
    assert windows.filter(pl.col("window_start") < 3000)["n"].sum() == 30
    letters = bad.frame()
    assert letters.height == 2
    assert set(letters["position"]) == {"line 12", "line 13"}
    assert result.total_dead == 2
    assert result.total_read == 33


def test_watch_picks_up_new_files(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    out = collect()
    p = rb.Pipeline("watch")
    schema = {"k": pl.Int64, "ts": pl.Int64, "v": pl.Float64}
    (
        p.read(rb.files(incoming, format="parquet", watch=True, schema=schema), event_time="ts")
        .window(rb.tumbling(1000), by="k")
        .agg(n=rb.count())
        .write(out)
    )
    stop = threading.Event()

    def feed() -> None:
        for i in range(3):
            tmp = incoming / f".part-{i}.tmp"
            _events([(0, i * 1000 + j, 1.0) for j in range(5)]).write_parquet(tmp)
            tmp.rename(incoming / f"part-{i}.parquet")  # appear atomically
            time.sleep(0.3)
        time.sleep(0.5)
        stop.set()

    threading.Thread(target=feed).start()
    result = p.run("stream", progress=False, stop=stop, commit_interval="10ms")
    assert result.total_read == 15
    # windows 0 and 1 closed by the watermark; window 2 was still open when stopped
    assert sorted(out.frame()["window_start"].to_list()) == [0, 1000]


def _idle_run(idle_timeout: str | None) -> dict[int, int]:
    """Two partitions: a busy one and one that sends one event, then nothing."""
    fast = [_events([(0, t, 1.0)]) for t in (1_000, 5_000, 9_000, 20_000)]
    slow = [_events([(1, 500, 1.0)])]
    clock = ManualClock()
    emitted_at: dict[int, int] = {}
    p = rb.Pipeline("idle")
    (
        p.read(
            source(partitions=[fast, slow], bounded=False),
            event_time="ts",
            watermark=rb.watermark(max_delay=0, idle_timeout=idle_timeout),
        )
        .window(rb.tumbling(1000))
        .agg(n=rb.count())
        .write(collect())
    )
    stop = threading.Event()

    polls = [0]

    def on_batch(stats: object, outputs: dict[str, pl.DataFrame]) -> None:
        polls[0] += 1
        batches = polls[0]
        for frame in outputs.values():
            if "window_start" in frame.columns:
                for start in frame["window_start"].to_list():
                    emitted_at.setdefault(start, batches)
        clock.advance(3)  # 3 s of processing time per micro-batch
        if batches >= 12:
            stop.set()

    p.run(
        "stream", progress=False, max_batch_rows=1, max_wait="1ms", clock=clock, stop=stop, on_batch=on_batch
    )
    return emitted_at


def test_job_watermark_is_min_over_partitions_and_idle_partitions_release_it() -> None:
    # without an idle timeout the quiet partition (watermark 500) holds every window back
    assert _idle_run(None) == {}
    # with one, it stops counting after 10 s of processing time without events
    emitted_at = _idle_run("10s")
    assert set(emitted_at) == {0, 1000, 5000, 9000}
    assert min(emitted_at.values()) >= 4  # 4 micro-batches x 3 s >= 10 s


def test_dedupe_matches_batch_and_drops_repeats() -> None:
    ev = pl.DataFrame(
        {"id": [1, 2, 1, 3, 1, 2], "ts": [0, 100, 200, 300, 5_000, 5_050], "v": [1, 2, 3, 4, 5, 6]}
    )
    p = rb.Pipeline("dedupe")
    out = collect()
    (
        p.read(source([ev]), event_time="ts", watermark=rb.watermark(max_delay="10s"))
        .dedupe("id", within="1s")
        .write(out)
    )
    result = assert_same_results(p, batch_sizes=[1, 2, None])
    assert sorted(result[next(iter(result))]["v"].to_list()) == [1, 2, 4, 5, 6]


def test_lookup_join_and_map_rows_in_stream(tmp_path: Path) -> None:
    stores = pl.DataFrame({"k": [0, 1], "region": ["north", "south"]})
    stores.write_csv(tmp_path / "stores.csv")
    ev = _events([(i % 3, i * 10, float(i)) for i in range(20)])
    p = rb.Pipeline("enrich")
    out = collect()
    (
        p.read(source([ev]), event_time="ts")
        .lookup(str(tmp_path / "stores.csv"), on="k", how="inner")
        .map_rows(lambda r: {**r, "label": f"{r['region']}-{r['k']}"} if r["v"] % 2 == 0 else None)
        .select("k", "ts", "label")
        .write(out)
    )
    outputs = assert_same_results(p, batch_sizes=[1, 4, None])
    assert set(outputs[next(iter(outputs))]["label"]) == {"north-0", "south-1"}


def test_union_of_two_sources_in_stream() -> None:
    a = _events([(0, t, 1.0) for t in range(0, 3000, 100)])
    b = _events([(1, t, 2.0) for t in range(0, 3000, 150)])
    p = rb.Pipeline("union")
    s1 = p.read(source([a], name="a"), event_time="ts", watermark=rb.watermark(max_delay="5s"))
    s2 = p.read(source([b], name="b"), event_time="ts", watermark=rb.watermark(max_delay="5s"))
    s1.union(s2).window(rb.tumbling("1s"), by="k").agg(s=rb.sum("v")).write(collect())
    out = assert_same_results(p, batch_sizes=[3, None])
    assert out[next(iter(out))]["s"].sum() == pytest.approx(30 * 1.0 + 20 * 2.0)


def test_state_is_freed_when_windows_close() -> None:
    ev = _events([(i % 50, i * 100, 1.0) for i in range(20_000)])
    p = rb.Pipeline("state")
    p.read(source([ev]), event_time="ts").window(rb.tumbling("1s"), by="k").agg(n=rb.count()).write(collect())
    peak = []
    p.run(
        "stream",
        progress=False,
        max_batch_rows=500,
        on_batch=lambda stats, _: peak.append(stats.open_windows),  # type: ignore[attr-defined]
    )
    # 50 keys x a few open seconds, never the 2,000 windows of the whole input
    assert max(peak) <= 50 * 7


def test_null_event_time_goes_to_dead_letters() -> None:
    ev = pl.DataFrame({"k": [1, 1, 2], "ts": [0, None, 10], "v": [1.0, 2.0, 3.0]})
    p = rb.Pipeline("nulls")
    s = p.read(source([ev]), event_time="ts")
    out, bad = collect(), collect()
    s.window(rb.tumbling(100), by="k").agg(n=rb.count()).write(out)
    s.dead_letters().write(bad)
    result = p.run("stream", progress=False)
    assert out.frame()["n"].sum() == 2
    assert bad.frame()["error"].to_list() == ["event-time column 'ts' is null"]
    assert result.total_read == 3


def test_update_mode_upserts_into_duckdb(tmp_path: Path) -> None:
    import duckdb

    ev = _events([(i % 2, i * 100, 1.0) for i in range(50)])
    db = tmp_path / "w.duckdb"
    p = rb.Pipeline("upd")
    (
        p.read(source([ev]), event_time="ts", watermark=rb.watermark(max_delay="1s"))
        .window(rb.tumbling("1s"), by="k", emit="update")
        .agg(n=rb.count())
        .write(rb.duckdb(db, "counts"))
    )
    p.run("stream", progress=False, max_batch_rows=7, commit_interval=0)
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT k, window_start, n FROM counts ORDER BY k, window_start").fetchall()
    con.close()
    assert sum(n for _, _, n in rows) == 50
    assert len(rows) == len({(k, w) for k, w, _ in rows})


def test_session_update_mode_is_refused() -> None:
    p = rb.Pipeline("sess")
    p.read(source([_events([(0, 0, 1.0)])]), event_time="ts").window(rb.session("1s"), emit="update").agg(
        n=rb.count()
    ).write(collect())
    with pytest.raises(rb.PlanError, match="session"):
        p.run("stream", progress=False)


def test_stream_and_batch_write_the_same_parquet(tmp_path: Path) -> None:
    ev = _events([(i % 4, i * 37, float(i)) for i in range(2_000)])
    ev.write_parquet(tmp_path / "in.parquet")
    for mode in ("batch", "stream"):
        p = rb.Pipeline("files")
        (
            p.read(rb.files(tmp_path / "in.parquet"), event_time="ts")
            .window(rb.sliding("2s", every="1s"), by="k")
            .agg(s=rb.sum("v"), n=rb.count())
            .write(rb.file_sink(tmp_path / f"{mode}.parquet"))
        )
        p.run(mode, progress=False)  # type: ignore[arg-type]
    key = ["k", "window_start"]
    assert_frame_equal(
        pl.read_parquet(tmp_path / "batch.parquet").sort(key),
        pl.read_parquet(tmp_path / "stream.parquet").sort(key),
    )
