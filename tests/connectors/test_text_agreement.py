"""The text parsers agree with Python's ``csv`` and ``json`` on valid input, however the input
is cut: whole files, files parsed together, and a followed file read in chunks of any size."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import riverbed as rb
from riverbed.connectors.base import SourceContext

SCHEMA = {"id": pl.Int64, "text": pl.String, "x": pl.Float64}
# text fields with separators, quotes, newlines, non-ASCII; never empty (empty means null)
TEXT = st.text(
    alphabet=st.sampled_from(list('ab ,"\n;xyzé€😀\t')),
    min_size=1,
    max_size=12,
).filter(lambda t: t != "")
ROW = st.tuples(
    st.integers(-(10**12), 10**12), TEXT, st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)
)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def render(rows: list[tuple[int, str, float]], fmt: str) -> str:
    if fmt == "csv":
        buf = io.StringIO(newline="")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "text", "x"])
        w.writerows(rows)
        return buf.getvalue()
    return "".join(json.dumps({"id": i, "text": t, "x": x}) + "\n" for i, t, x in rows)


def python_reads(data: str, fmt: str) -> list[tuple[Any, ...]]:
    """What Python's own csv/json modules make of the text."""
    if fmt == "csv":
        records = list(csv.reader(io.StringIO(data, newline="")))[1:]
        return [(int(i), t, float(x)) for i, t, x in records]
    return [(o["id"], o["text"], float(o["x"])) for o in map(json.loads, data.splitlines())]


def tail_read(path: Path, max_rows: int) -> list[tuple[Any, ...]]:
    r = rb.files(path, tail=True, schema=SCHEMA).open("0", None, SourceContext(mode="stream"))
    rows: list[tuple[Any, ...]] = []
    idle = 0
    while idle < 2:
        b = r.next_batch(max_rows, 0.0)
        assert b is not None
        idle = idle + 1 if b.height == 0 else 0
        assert b.height <= max_rows
        rows += b.rows()
        assert r.drain_dead_letters() is None
    r.close()
    return rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@SETTINGS
@given(rows=st.lists(ROW, min_size=1, max_size=30), max_rows=st.integers(1, 40))
def test_parsers_agree_with_python_whatever_the_chunks(
    tmp_path: Path, fmt: str, rows: list[tuple[int, str, float]], max_rows: int
) -> None:
    data = render(rows, fmt)
    expected = python_reads(data, fmt)
    path = tmp_path / f"a.{fmt}"
    path.write_text(data, newline="")
    assert tail_read(path, max_rows) == expected
    p = rb.Pipeline("agree")
    out = rb.testing.collect()
    p.read(rb.files(path, schema=SCHEMA)).write(out)
    p.run(progress=False, home=tmp_path / "h")
    assert out.frame().rows() == expected


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@SETTINGS
@given(
    files=st.lists(st.lists(ROW, max_size=6), min_size=1, max_size=6),
    mode=st.sampled_from(["batch", "stream"]),
)
def test_many_files_parsed_together_agree_with_one_at_a_time(
    tmp_path: Path, fmt: str, files: list[list[tuple[int, str, float]]], mode: str
) -> None:
    folder = tmp_path / f"d{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    expected: list[tuple[Any, ...]] = []
    for n, rows in enumerate(files):
        data = render(rows, fmt)
        (folder / f"{n:03d}.{fmt}").write_text(data, newline="")
        expected += python_reads(data, fmt)
    p = rb.Pipeline("agree")
    out = rb.testing.collect()
    p.read(rb.files(folder, schema=SCHEMA)).write(out)
    p.run(mode, progress=False, home=tmp_path / "h")  # type: ignore[arg-type]
    assert out.frame().rows() == expected


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_files_parsed_together_keep_their_own_names_and_lines(tmp_path: Path, mode: str) -> None:
    (tmp_path / "a.csv").write_text("id,x\n1,1.0\nbad,2\n")
    (tmp_path / "b.csv").write_text("x,id\n3.0,3\n4.0,oops\n")  # another column order
    (tmp_path / "c.csv").write_text('id,x\n5,"5.5"\n6\n')
    p = rb.Pipeline("names")
    out, dead = rb.testing.collect(), rb.testing.collect()
    s = p.read(rb.files(tmp_path, schema={"id": pl.Int64, "x": pl.Float64}, on_error="dead_letter"))
    s.write(out)
    s.dead_letters().write(dead)
    p.run(mode, progress=False, home=tmp_path / "h")  # type: ignore[arg-type]
    assert out.frame().rows() == [(1, 1.0), (3, 3.0), (5, 5.5)]
    assert dead.frame().select("source", "position", "field").rows() == [
        (str(tmp_path / "a.csv"), "line 3", "id"),
        (str(tmp_path / "b.csv"), "line 3", "id"),
        (str(tmp_path / "c.csv"), "line 3", None),
    ]
    with pytest.raises(rb.RecordError, match=r"a\.csv: line 3, column 'id'"):
        p2 = rb.Pipeline("names")
        p2.read(rb.files(tmp_path, schema={"id": pl.Int64, "x": pl.Float64})).write(rb.testing.collect())
        p2.run(mode, progress=False, home=tmp_path / "h2")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@SETTINGS
@given(
    rows=st.lists(ROW, min_size=1, max_size=30),
    chunk=st.integers(1, 400),
    max_rows=st.integers(1, 40),
)
def test_a_large_file_read_in_chunks_of_any_size_agrees_with_python(
    tmp_path: Path, fmt: str, rows: list[tuple[int, str, float]], chunk: int, max_rows: int
) -> None:
    from unittest import mock

    from riverbed.connectors import _files_stream

    data = render(rows, fmt)
    path = tmp_path / f"big.{fmt}"
    path.write_text(data, newline="")
    with mock.patch.object(_files_stream, "CHUNK_BYTES", chunk):
        assert _files_stream._chunkable(str(path)) == (len(data.encode()) > chunk)
        r = rb.files(path, schema=SCHEMA).open("0", None, SourceContext(mode="stream"))
        got: list[tuple[Any, ...]] = []
        while (b := r.next_batch(max_rows, 0.0)) is not None:
            got += b.rows()
            assert r.drain_dead_letters() is None
    assert got == python_reads(data, fmt)
