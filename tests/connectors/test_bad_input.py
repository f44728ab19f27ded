"""A corpus of bad (and awkward but valid) text input, generated here, read in batch and stream
mode under both ``on_error`` settings: exact counts, positions and messages.

Every case is a file the tests write; nothing binary is checked in.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import riverbed as rb
from riverbed.connectors import _files_stream
from riverbed.connectors.base import SourceContext
from riverbed.testing import collect

MODES = ["batch", "stream"]
UTC_TS = pl.Datetime("us", "UTC")


def run(src: Any, mode: str, home: Path) -> tuple[pl.DataFrame, pl.DataFrame, rb.RunResult]:
    """Good rows, dead letters and the result of reading ``src`` to its end."""
    p = rb.Pipeline("bad_input")
    out, dead = collect(), collect()
    s = p.read(src)
    s.write(out)
    s.dead_letters().write(dead)
    result = p.run(mode, progress=False, home=home)  # type: ignore[arg-type]
    return out.frame(), dead.frame(), result


def write(path: Path, data: str | bytes) -> str:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def reader_rows(
    src: Any, max_rows: int, ctx: SourceContext | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read a source through its stream reader in batches of ``max_rows`` (tail: until idle)."""
    r = src.open("0", None, ctx or SourceContext(mode="stream"))
    frames, letters = [], []
    idle = 0
    while idle < 3:
        b = r.next_batch(max_rows, 0.0)
        d = r.drain_dead_letters()
        if d is not None:
            letters.append(d)
        if b is None:
            break
        idle = idle + 1 if b.height == 0 else 0
        if b.height:
            frames.append(b)
    good = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
    dead = pl.concat(letters) if letters else pl.DataFrame()
    return good, dead


# -- timestamps ----------------------------------------------------------------------------
ISO_VALUES = [
    "2024-05-01T09:00:00Z",
    "2024-05-01T11:00:00+02:00",
    "2024-05-01 09:00:00.250+0000",
    "2024-05-01T04:30:00-04:30",
    "2024-05-01T09:00:00",
]
ISO_EXPECTED = [
    datetime(2024, 5, 1, 9, 0, tzinfo=UTC),
    datetime(2024, 5, 1, 9, 0, tzinfo=UTC),
    datetime(2024, 5, 1, 9, 0, 0, 250_000, tzinfo=UTC),
    datetime(2024, 5, 1, 9, 0, tzinfo=UTC),
    datetime(2024, 5, 1, 9, 0, tzinfo=UTC),
]


def _ts_file(tmp_path: Path, fmt: str, values: list[str]) -> str:
    if fmt == "csv":
        return write(tmp_path / "t.csv", "id,ts\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    return write(tmp_path / "t.jsonl", "".join(f'{{"id": {i}, "ts": "{v}"}}\n' for i, v in enumerate(values)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("on_error", ["fail", "dead_letter"])
def test_iso_timestamps_with_z_and_offsets_parse(tmp_path: Path, mode: str, fmt: str, on_error: Any) -> None:
    path = _ts_file(tmp_path, fmt, ISO_VALUES)
    src = rb.files(path, schema={"id": pl.Int64, "ts": UTC_TS}, on_error=on_error)
    good, dead, _ = run(src, mode, tmp_path / "home")
    assert good["ts"].to_list() == ISO_EXPECTED
    assert dead.height == 0


def test_offsets_convert_to_the_declared_zone_or_to_naive_utc(tmp_path: Path) -> None:
    path = _ts_file(tmp_path, "jsonl", ["2024-05-01T09:00:00Z", "2024-05-01T12:00:00"])
    paris = rb.files(path, schema={"id": pl.Int64, "ts": pl.Datetime("ms", "Europe/Paris")})
    good, _, _ = run(paris, "batch", tmp_path / "h")
    assert [t.isoformat() for t in good["ts"]] == ["2024-05-01T11:00:00+02:00", "2024-05-01T12:00:00+02:00"]
    naive = rb.files(path, schema={"id": pl.Int64, "ts": pl.Datetime("us")})
    good, _, _ = run(naive, "batch", tmp_path / "h")
    assert good["ts"].to_list() == [datetime(2024, 5, 1, 9), datetime(2024, 5, 1, 12)]


ODD_FIRST = ["01/05/2024 09:00", *ISO_VALUES[:4]]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_odd_first_value_dead_letters_only_itself(tmp_path: Path, mode: str, fmt: str) -> None:
    path = _ts_file(tmp_path, fmt, ODD_FIRST)
    src = rb.files(path, schema={"id": pl.Int64, "ts": UTC_TS}, on_error="dead_letter")
    good, dead, result = run(src, mode, tmp_path / "home")
    assert good["ts"].to_list() == ISO_EXPECTED[:4]
    assert dead.select("position", "field").rows() == [("line 2" if fmt == "csv" else "line 1", "ts")]
    assert dead["error"][0] == "cannot parse '01/05/2024 09:00' as Datetime(time_unit='us', time_zone='UTC')"
    assert result.total_read == 5


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("max_rows", [1, 2, 3, 1000])
def test_tail_and_batch_agree_whatever_the_chunks(tmp_path: Path, fmt: str, max_rows: int) -> None:
    path = _ts_file(tmp_path, fmt, [*ODD_FIRST, "nope", *ISO_VALUES])
    schema = {"id": pl.Int64, "ts": UTC_TS}
    batch_good, batch_dead, _ = run(
        rb.files(path, schema=schema, on_error="dead_letter"), "batch", tmp_path / "h"
    )
    good, dead = reader_rows(rb.files(path, schema=schema, on_error="dead_letter", tail=True), max_rows)
    assert good.equals(batch_good)
    assert dead.equals(batch_dead)
    assert dead.height == 2


def test_odd_first_value_fails_naming_its_line(tmp_path: Path) -> None:
    path = _ts_file(tmp_path, "csv", ODD_FIRST)
    with pytest.raises(rb.RecordError, match=r"t\.csv: line 2, column 'ts': cannot parse '01/05/2024 09:00'"):
        run(rb.files(path, schema={"id": pl.Int64, "ts": UTC_TS}), "batch", tmp_path / "h")


def test_explicit_formats(tmp_path: Path) -> None:
    path = _ts_file(tmp_path, "csv", ["01/05/2024 09:00", "2024-05-01T09:00:00Z"])
    src = rb.files(
        path, schema={"id": pl.Int64, "ts": UTC_TS}, formats=["%d/%m/%Y %H:%M"], on_error="dead_letter"
    )
    good, dead, _ = run(src, "batch", tmp_path / "h")
    assert good["ts"].to_list() == [datetime(2024, 5, 1, 9, tzinfo=UTC)]
    assert dead["position"].to_list() == ["line 3"]


# -- CSV -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("on_error", ["fail", "dead_letter"])
def test_a_quoted_field_over_128_kib_is_read(tmp_path: Path, mode: str, on_error: Any) -> None:
    big = "x" * 200_000
    path = write(tmp_path / "big.csv", f'id,text\n1,"{big}"\n2,"a, b"\n')
    good, dead, _ = run(
        rb.files(path, schema={"id": pl.Int64, "text": pl.String}, on_error=on_error), mode, tmp_path / "h"
    )
    assert good["text"].to_list() == [big, "a, b"]
    assert dead.height == 0


UNCLOSED = 'id,name\n1,"ok"\n2,"never closed\n3,fine\n4,"quoted, fine"\n\n5,last\n'


@pytest.mark.parametrize("mode", MODES)
def test_an_unclosed_quote_is_one_bad_line_and_reading_recovers(tmp_path: Path, mode: str) -> None:
    path = write(tmp_path / "q.csv", UNCLOSED)
    src = rb.files(path, schema={"id": pl.Int64, "name": pl.String}, on_error="dead_letter")
    good, dead, result = run(src, mode, tmp_path / "h")
    assert good.rows() == [(1, "ok"), (3, "fine"), (4, "quoted, fine"), (5, "last")]
    assert dead.select("position", "error", "raw").rows() == [
        ("line 3", "unbalanced quotes: a quoted field is not closed", '2,"never closed')
    ]
    assert result.total_read == good.height + dead.height == 5


def test_an_unclosed_quote_fails_naming_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "q.csv", UNCLOSED)
    with pytest.raises(rb.RecordError, match=r"q\.csv: line 3: unbalanced quotes"):
        run(rb.files(path, schema={"id": pl.Int64, "name": pl.String}), "batch", tmp_path / "h")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_invalid_utf8_is_a_dead_letter_not_replaced(tmp_path: Path, mode: str, fmt: str) -> None:
    if fmt == "csv":
        data, line = b"id,name\n1,caf\xe9\n2,ok\n", "line 2"
    else:
        data, line = b'{"id": 1, "name": "caf\xe9"}\n{"id": 2, "name": "ok"}\n', "line 1"
    path = write(tmp_path / f"u.{fmt}", data)
    schema = {"id": pl.Int64, "name": pl.String}
    good, dead, result = run(rb.files(path, schema=schema, on_error="dead_letter"), mode, tmp_path / "h")
    assert good.rows() == [(2, "ok")]
    assert dead.select("position", "error").rows() == [(line, dead["error"][0])]
    assert dead["error"][0].startswith("invalid UTF-8 at byte")
    assert "\\xe9" in dead["raw"][0]
    assert result.total_read == 2
    with pytest.raises(rb.RecordError, match=f"{line}: invalid UTF-8"):
        run(rb.files(path, schema=schema), mode, tmp_path / "h2")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_byte_order_mark_is_skipped(tmp_path: Path, mode: str, fmt: str) -> None:
    body = 'id,name\n1,"a"\n2,b\n' if fmt == "csv" else '{"id": 1, "name": "a"}\n{"id": 2, "name": "b"}\n'
    path = write(tmp_path / f"bom.{fmt}", b"\xef\xbb\xbf" + body.encode())
    good, dead, _ = run(rb.files(path, schema={"id": pl.Int64, "name": pl.String}), mode, tmp_path / "h")
    assert good.rows() == [(1, "a"), (2, "b")]
    assert dead.height == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("content", ["", "\n", "id,name\n"])
def test_an_empty_csv_with_a_schema_has_no_rows(tmp_path: Path, mode: str, content: str) -> None:
    path = write(tmp_path / "empty.csv", content)
    good, dead, result = run(rb.files(path, schema={"id": pl.Int64, "name": pl.String}), mode, tmp_path / "h")
    assert good.height == 0 and dead.height == 0
    assert good.schema == pl.Schema({"id": pl.Int64, "name": pl.String})
    assert result.total_read == 0


def test_dead_letters_without_a_schema_are_refused() -> None:
    with pytest.raises(rb.ConfigError, match="on_error='dead_letter' needs a declared schema"):
        rb.files("x.csv", on_error="dead_letter")


# -- a null event time, rejected by the source with its line ---------------------------------
NULL_TS = {
    "csv": "id,ts\n1,2024-05-01T09:00:00Z\n2,\n3,2024-05-01T09:01:00Z\n",
    "jsonl": (
        '{"id": 1, "ts": "2024-05-01T09:00:00Z"}\n{"id": 2, "ts": null}\n'
        '{"id": 3, "ts": "2024-05-01T09:01:00Z"}\n'
    ),
}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("how", ["scan", "reader", "tail"])
def test_a_null_event_time_fails_with_file_line_and_field(tmp_path: Path, fmt: str, how: str) -> None:
    path = write(tmp_path / f"n.{fmt}", NULL_TS[fmt])
    line = "line 3" if fmt == "csv" else "line 2"
    src = rb.files(path, schema={"id": pl.Int64, "ts": UTC_TS}, tail=how == "tail")
    ctx = SourceContext(mode="batch" if how == "scan" else "stream")
    ctx.event_time = "ts"
    with pytest.raises(
        rb.RecordError, match=rf"n\.{fmt}: {line}, column 'ts': the event time 'ts' is missing"
    ) as err:
        if how == "scan":
            src.scan(ctx)
        else:
            reader_rows(src, 10, ctx)
    assert err.value.field == "ts"
    assert err.value.position == line


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("how", ["scan", "reader", "tail"])
def test_a_null_event_time_dead_letter_holds_the_raw_line(tmp_path: Path, fmt: str, how: str) -> None:
    path = write(tmp_path / f"n.{fmt}", NULL_TS[fmt])
    src = rb.files(path, schema={"id": pl.Int64, "ts": UTC_TS}, on_error="dead_letter", tail=how == "tail")
    ctx = SourceContext(mode="batch" if how == "scan" else "stream", event_time="ts")
    if how == "scan":
        scanned = src.scan(ctx)
        assert scanned is not None
        good, dead = scanned[0].collect(), scanned[1]
        assert dead is not None
    else:
        good, dead = reader_rows(src, 10, ctx)
    assert good["id"].to_list() == [1, 3]
    raw = NULL_TS[fmt].splitlines()[2 if fmt == "csv" else 1]
    line = "line 3" if fmt == "csv" else "line 2"
    assert dead.rows() == [(path, line, "ts", "the event time 'ts' is missing (null or empty)", raw)]


# -- followed files (tail=True) ----------------------------------------------------------------
@pytest.mark.parametrize("declared", [False, True])
def test_tail_csv_with_quotes_bom_and_quoted_header(tmp_path: Path, declared: bool) -> None:
    body = '\ufeff"id","the name"\n1,"a, b"\n2,"multi\nline"\n3,plain\n'
    path = write(tmp_path / "t.csv", body)
    schema = {"id": pl.Int64, "the name": pl.String} if declared else None
    for max_rows in (1, 2, 100):
        good, dead = reader_rows(rb.files(path, tail=True, schema=schema), max_rows)
        assert good.columns == ["id", "the name"]
        assert good.rows() == [(1, "a, b"), (2, "multi\nline"), (3, "plain")]
        assert dead.height == 0


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_tail_reads_a_line_longer_than_its_window(tmp_path: Path, fmt: str) -> None:
    long = "y" * 10_000
    if fmt == "csv":
        path = write(tmp_path / "l.csv", f"id,text\n1,{long}\n2,short\n")
    else:
        path = write(tmp_path / "l.jsonl", f'{{"id": 1, "text": "{long}"}}\n{{"id": 2, "text": "short"}}\n')
    good, _ = reader_rows(rb.files(path, tail=True, schema={"id": pl.Int64, "text": pl.String}), 1)
    assert good.rows() == [(1, long), (2, "short")]


def _drain(r: Any, max_rows: int = 100) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for _ in range(5):
        b = r.next_batch(max_rows, 0.0)
        rows += b.rows()
    return rows


def test_tail_follows_a_truncated_file_from_its_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3}\n')
    r = rb.files(path, tail=True, schema={"id": pl.Int64}).open("0", None, SourceContext(mode="stream"))
    assert _drain(r) == [(1,), (2,), (3,)]
    path.write_text('{"id": 4}\n')  # copy-truncate: the same file, shorter
    with caplog.at_level("WARNING", logger="riverbed.files"):
        assert _drain(r) == [(4,)]
    assert "was truncated; reading it again from the start" in caplog.text
    r.close()


def test_tail_follows_a_rotated_file_after_draining_the_old_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id\n1\n")
    r = rb.files(path, tail=True, schema={"id": pl.Int64}).open("0", None, SourceContext(mode="stream"))
    assert _drain(r) == [(1,)]
    with path.open("a") as fh:
        fh.write("2\n")  # written just before rotation: still read from the old file
    path.rename(tmp_path / "t.csv.1")
    path.write_text("id\n3\n4\n")
    with caplog.at_level("WARNING", logger="riverbed.files"):
        assert _drain(r) == [(2,), (3,), (4,)]
    assert "was replaced (rotated)" in caplog.text
    snap = r.snapshot()
    assert snap["line"] == 4 and snap["header"] == ["id"]
    r.close()


# -- watched directories and Parquet globs ------------------------------------------------------
def _watch(path: Path, **kw: Any) -> Any:
    src = dataclasses.replace(rb.files(path, watch=True, **kw), poll_interval=0.0)
    return src.open("0", None, SourceContext(mode="stream"))


def test_watch_takes_every_waiting_file_in_one_poll(tmp_path: Path) -> None:
    for i in range(50):
        pl.DataFrame({"id": [2 * i, 2 * i + 1]}).write_csv(tmp_path / f"f{i:03d}.csv")
    r = _watch(tmp_path, schema={"id": pl.Int64})
    batch = r.next_batch(1000, 0.0)
    assert batch["id"].to_list() == list(range(100))
    assert len(r.snapshot()["done"]) == 50
    assert r.next_batch(30, 0.0).height == 0


def test_watch_skips_a_stray_file_of_another_format(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pl.DataFrame({"id": [1]}).write_csv(tmp_path / "a.csv")
    pl.DataFrame({"id": [2]}).write_parquet(tmp_path / "b.parquet")
    pl.DataFrame({"id": [3]}).write_csv(tmp_path / "c.csv")
    r = _watch(tmp_path, schema={"id": pl.Int64})
    with caplog.at_level("WARNING", logger="riverbed.files"):
        assert r.next_batch(100, 0.0)["id"].to_list() == [1, 3]
        r.next_batch(100, 0.0)
    assert caplog.text.count("b.parquet: skipped: a parquet file in a watched directory of csv files") == 1


@pytest.mark.parametrize("on_error", ["fail", "dead_letter"])
def test_watch_a_truncated_parquet_file(tmp_path: Path, on_error: Any) -> None:
    pl.DataFrame({"id": [1]}).write_parquet(tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes((tmp_path / "a.parquet").read_bytes()[:40])
    pl.DataFrame({"id": [3]}).write_parquet(tmp_path / "c.parquet")
    r = _watch(tmp_path, schema={"id": pl.Int64}, on_error=on_error)
    if on_error == "fail":
        with pytest.raises(rb.SourceError, match=r"b\.parquet: cannot read"):
            r.next_batch(100, 0.0)
        return
    assert r.next_batch(100, 0.0)["id"].to_list() == [1, 3]
    dead = r.drain_dead_letters()
    assert dead.select("source", "position").rows() == [(str(tmp_path / "b.parquet"), "file")]


@pytest.mark.parametrize("mode", MODES)
def test_parquet_glob_aligns_columns_by_name(tmp_path: Path, mode: str) -> None:
    pl.DataFrame({"a": [1], "b": ["x"]}).write_parquet(tmp_path / "1.parquet")
    pl.DataFrame({"b": ["y"], "a": [2]}).write_parquet(tmp_path / "2.parquet")
    good, _, _ = run(rb.files(tmp_path / "*.parquet"), mode, tmp_path / "h")
    assert good.rows() == [(1, "x"), (2, "y")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", ["extra", "missing", "truncated"])
def test_parquet_glob_whose_files_differ_names_the_file(tmp_path: Path, mode: str, case: str) -> None:
    pl.DataFrame({"a": [1], "b": ["x"]}).write_parquet(tmp_path / "1.parquet")
    odd = tmp_path / "2.parquet"
    if case == "extra":
        pl.DataFrame({"a": [2], "b": ["y"], "c": [0.5]}).write_parquet(odd)
        match = r"2\.parquet: its columns differ from the other files': it has column\(s\) \['c'\]"
    elif case == "missing":
        pl.DataFrame({"a": [2]}).write_parquet(odd)
        match = r"2\.parquet: its columns differ from the other files': it lacks column\(s\) \['b'\]"
    else:
        odd.write_bytes((tmp_path / "1.parquet").read_bytes()[:30])
        match = r"2\.parquet: cannot read as Parquet"
    with pytest.raises(rb.SourceError, match=match):
        run(rb.files(tmp_path / "*.parquet"), mode, tmp_path / "h")


# -- large text files in stream mode: bounded chunks ----------------------------------------------
BIG_CSV = (
    "\ufeffid,name,ts\n"
    + "".join(
        f'{i},"name {i}, with a comma",2024-05-01T09:{i % 60:02d}:00Z\n'
        if i % 7
        else f'{i},"two\nlines {i}",2024-05-01T09:00:00+02:00\n'
        for i in range(200)
    )
    + "x,bad id,2024-05-01T09:00:00Z\n"
    + '201,"never closed,2024-05-01T09:00:00Z\n'
    + "202,last,2024-05-01T10:00:00Z"  # no newline at the end
)
BIG_JSONL = "\ufeff" + "".join(
    f'{{"id": {i}, "name": "n{i}", "ts": "2024-05-01T09:00:00Z"}}\n' if i % 9 else f'{{"id": {i}, "name": \n'
    for i in range(200)
)
BIG_SCHEMA = {"id": pl.Int64, "name": pl.String, "ts": UTC_TS}


def _read_in_chunks(
    path: str, max_rows: int, resume_after: int | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    src = rb.files(path, schema=BIG_SCHEMA, on_error="dead_letter")
    r = src.open("0", None, SourceContext(mode="stream"))
    frames, letters, n = [], [], 0
    while (b := r.next_batch(max_rows, 0.0)) is not None:
        frames.append(b)
        if (d := r.drain_dead_letters()) is not None:
            letters.append(d)
        n += 1
        if resume_after is not None and n == resume_after:  # a crash: resume from the snapshot
            r = src.open("0", json.loads(json.dumps(r.snapshot())), SourceContext(mode="stream"))
    return pl.concat(frames), pl.concat(letters)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(("max_rows", "resume_after"), [(1000, None), (7, None), (7, 3), (5, 11), (50, 2)])
def test_a_large_text_file_is_read_in_bounded_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, max_rows: int, resume_after: int | None
) -> None:
    monkeypatch.setattr(_files_stream, "CHUNK_BYTES", 256)
    path = write(tmp_path / f"big.{fmt}", BIG_CSV if fmt == "csv" else BIG_JSONL)
    batch_good, batch_dead, _ = run(
        rb.files(path, schema=BIG_SCHEMA, on_error="dead_letter"), "batch", tmp_path / "h"
    )
    assert _files_stream._chunkable(path)
    good, dead = _read_in_chunks(path, max_rows, resume_after)
    assert good.equals(batch_good)
    assert dead.equals(batch_dead)
    assert dead.height == (2 if fmt == "csv" else 23)


@pytest.mark.parametrize("schema", [None, {"id": pl.Int64, "ts": pl.Int64}])
def test_a_null_event_time_in_parquet_fails_naming_file_and_row(tmp_path: Path, schema: Any) -> None:
    path = tmp_path / "n.parquet"
    pl.DataFrame({"id": [1, 2, 3], "ts": [10, 20, None]}).write_parquet(path)
    ctx = SourceContext(mode="stream", event_time="ts")
    with pytest.raises(
        rb.RecordError, match=r"n\.parquet: row 3, column 'ts': the event time 'ts' is missing"
    ) as err:
        reader_rows(rb.files(path, schema=schema), 2, ctx)
    assert err.value.position == "row 3"
    assert err.value.raw == '{"id": 3, "ts": null}'


def test_tail_csv_recovers_from_a_quote_left_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from riverbed.connectors import _files_tail

    monkeypatch.setattr(_files_tail, "MAX_PENDING_LINES", 4)
    path = tmp_path / "t.csv"
    path.write_text('id,name\n1,"never closed\n2,ok\n3,"quoted, fine"\n4,b"c\n')
    src = rb.files(path, tail=True, schema={"id": pl.Int64, "name": pl.String}, on_error="dead_letter")
    good, dead = reader_rows(src, 100)
    assert good.rows() == [(2, "ok"), (3, "quoted, fine"), (4, 'b"c')]
    assert dead.select("position", "error").rows() == [
        ("line 2", "unbalanced quotes: a quoted field is not closed")
    ]
    # a quote inside an unquoted field opens nothing; a quote never closed waits, then is one bad line
    path.write_text('id,name\n5,x"y\n6,a\n')
    good, dead = reader_rows(src, 100)
    assert good.rows() == [(5, 'x"y'), (6, "a")]
    assert dead.height == 0
    path.write_text('id,name\n6,"open\n7,a\n8,b\n9,c\n')
    good, dead = reader_rows(src, 100)
    assert good.rows() == [(7, "a"), (8, "b"), (9, "c")]
    assert dead["position"].to_list() == ["line 2"]


def test_a_stray_quote_does_not_turn_the_rest_of_a_large_file_into_one_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_files_stream, "CHUNK_BYTES", 64)
    body = 'id,name\n1,x"y\n' + "".join(f"{i},name {i}\n" for i in range(2, 60))
    path = write(tmp_path / "q.csv", body)
    schema = {"id": pl.Int64, "name": pl.String}
    r = rb.files(path, schema=schema).open("0", None, SourceContext(mode="stream"))
    rows, offsets = [], set()
    while (b := r.next_batch(1, 0.0)) is not None:
        rows += b.rows()
        offsets.add(r.snapshot().get("chunk", {}).get("offset"))
    assert rows == [(1, 'x"y'), *((i, f"name {i}") for i in range(2, 60))]
    assert len(offsets) > 10  # chunks of about 64 bytes, not one chunk to the end


def test_a_watched_directory_is_walked_again_only_when_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from riverbed.connectors import _files_fs

    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    for name in ("b.csv", "a.csv", "sub/c.csv", "_SUCCESS", ".hidden.csv", "notes.txt"):
        (d / name).write_text("id\n1\n")
    for sub in (d, d / "sub"):
        os.utime(sub, (1_000_000_000, 1_000_000_000))  # changed long ago
    walks = []
    real_walk = os.walk
    monkeypatch.setattr(_files_fs.os, "walk", lambda *a, **k: walks.append(1) or real_walk(*a, **k))
    lister = _files_fs.LocalDirLister(str(d))
    assert (
        lister() == _files_fs.list_files(str(d)) == [str(d / "a.csv"), str(d / "b.csv"), str(d / "sub/c.csv")]
    )
    assert lister() == lister() and len(walks) == 1  # nothing changed: no walk
    (d / "sub" / "d.csv").write_text("id\n2\n")
    assert lister()[-1] == str(d / "sub/d.csv") and len(walks) == 2
