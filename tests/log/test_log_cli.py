"""``riverbed log ...`` commands through typer's CliRunner, on an app built here."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from riverbed.cli.log_cmd import log_app
from riverbed.eventlog import Log

app = typer.Typer()
app.add_typer(log_app, name="log")
runner = CliRunner()


def cli(home: Path, *args: str, input: str | None = None, code: int = 0) -> Any:
    result = runner.invoke(app, ["log", *args, "--home", str(home)], input=input)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def orders(tmp_path: Path) -> Path:
    cli(tmp_path, "create", "orders", "--partitions", "3")
    return tmp_path


def test_create_and_list(tmp_path: Path) -> None:
    assert "no topics" in cli(tmp_path, "topics").stdout
    out = cli(tmp_path, "create", "orders", "--partitions", "4", "--retention", "7d").stdout
    assert "created topic 'orders': 4 partitions, retention 7d" in out
    cli(tmp_path, "create", "clicks", "--retention-bytes", "1048576")
    listing = cli(tmp_path, "topics").stdout
    assert "orders" in listing and "clicks" in listing
    assert "1.0 MiB/partition" in listing
    with Log(tmp_path) as log:
        assert log.topic("orders").retention_ms == 7 * 86_400_000


def test_create_errors(tmp_path: Path) -> None:
    cli(tmp_path, "create", "orders")
    err = cli(tmp_path, "create", "orders", code=1).stderr
    assert "error:" in err and "already exists" in err
    err = cli(tmp_path, "create", "x", "--retention", "soon", code=1).stderr
    assert "--retention: cannot read 'soon' as a duration" in err


def test_produce_files_of_each_format(orders: Path, tmp_path: Path) -> None:
    df = pl.DataFrame({"id": [1, 2, 3], "store": ["a", "b", "a"], "amount": [1.5, 2.0, 3.25]})
    df.write_ndjson(tmp_path / "a.jsonl")
    df.with_columns(pl.col("id") + 10).write_csv(tmp_path / "b.csv")
    df.with_columns(pl.col("id") + 20).write_parquet(tmp_path / "c.parquet")
    for name in ("a.jsonl", "b.csv", "c.parquet"):
        result = cli(orders, "produce", "orders", "--key", "store", str(tmp_path / name))
        assert "produced 3 records to 'orders'" in result.stderr
    got = records(cli(orders, "consume", "orders", "--from-beginning").stdout)
    assert sorted(r["id"] for r in got) == [1, 2, 3, 11, 12, 13, 21, 22, 23]
    assert {r["amount"] for r in got} == {1.5, 2.0, 3.25}


def test_produce_from_stdin(orders: Path) -> None:
    lines = "".join(json.dumps({"id": i, "store": f"s{i % 2}"}) + "\n" for i in range(50))
    assert "produced 50 records" in cli(orders, "produce", "orders", "-", input=lines).stderr
    got = records(cli(orders, "consume", "orders", "--from-beginning", "--meta").stdout)
    assert sorted(r["id"] for r in got) == list(range(50))
    assert {"_partition", "_offset", "_timestamp"} <= set(got[0])


def test_produce_errors(orders: Path, tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    assert (
        "cannot tell the format" in cli(orders, "produce", "orders", str(tmp_path / "x.txt"), code=1).stderr
    )
    assert "no such file" in cli(orders, "produce", "orders", "missing.jsonl", code=1).stderr
    cli(orders, "produce", "orders", "-", input='{"id": 1}\n')
    err = cli(orders, "produce", "orders", "-", input='{"id": "one"}\n', code=1).stderr
    assert "stdin: line 1: does not fit the topic's schema: cannot parse 'one'" in err
    assert "nothing was appended" in err
    (tmp_path / "other.csv").write_text("name\nx\n")
    err = cli(orders, "produce", "orders", str(tmp_path / "other.csv"), code=1).stderr
    assert "topic schema:  {id: Int64}" in err
    assert "append schema: {name: String}" in err


def test_consume_positions_and_groups(orders: Path) -> None:
    lines = "".join(json.dumps({"id": i}) + "\n" for i in range(10))
    cli(orders, "produce", "orders", "-", input=lines)
    assert cli(orders, "consume", "orders").stdout == ""  # default: from the end
    first = records(cli(orders, "consume", "orders", "--group", "g", "--from-beginning", "--max", "4").stdout)
    assert len(first) == 4
    rest = records(cli(orders, "consume", "orders", "--group", "g").stdout)
    assert sorted(r["id"] for r in first + rest) == list(range(10))
    assert cli(orders, "consume", "orders", "--group", "g").stdout == ""
    with Log(orders) as log:
        t = log.topic("orders")
        assert t.committed("g") == t.end_offsets()
    described = cli(orders, "describe", "orders").stdout
    assert "lag g" in described
    assert "schema {id: Int64}" in described


def test_consume_follow_waits_for_new_records(orders: Path) -> None:
    cli(orders, "produce", "orders", "-", input='{"id": 0}\n')

    def produce_later() -> None:
        with Log(orders) as log:
            t = log.topic("orders")
            while t.committed("f") == {}:  # wait until the consumer has caught up once
                threading.Event().wait(0.01)
            t.append(pl.DataFrame({"id": [1, 2]}))

    thread = threading.Thread(target=produce_later)
    thread.start()
    out = cli(orders, "consume", "orders", "--from-beginning", "--group", "f", "--follow", "--max", "3")
    thread.join()
    assert sorted(r["id"] for r in records(out.stdout)) == [0, 1, 2]


def test_describe(orders: Path) -> None:
    out = cli(orders, "describe", "orders").stdout
    assert "topic orders" in out
    assert "schema {(none yet)}" in out
    assert "forever" in out
    assert "unknown topic 'nope'" in cli(orders, "describe", "nope", code=1).stderr
