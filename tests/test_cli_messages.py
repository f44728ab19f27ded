"""What the CLI says when things go wrong, and its help pages: one `error:` line naming the
file and line, user text never read as markup, click-style help, plain progress off a terminal."""

from __future__ import annotations

import io
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import riverbed as rb
from riverbed._progress import Progress
from riverbed.cli import app, log_cmd
from riverbed.eventlog import Log

runner = CliRunner()


def invoke(*args: str, input: str | None = None, code: int = 1) -> str:
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.stderr


def pipeline_file(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(body)
    return str(path)


# -- pipeline files that do not load -----------------------------------------------------------
def test_a_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    f = pipeline_file(tmp_path, "syn.py", "import riverbed as rb\n\ndef pipeline(:\n    pass\n")
    err = invoke("run", f)
    assert err.startswith(f"error: {f}, line 3: syntax error:")
    assert "def pipeline(:" in err
    assert "Traceback" not in err


def test_an_exception_at_import_names_the_users_line(tmp_path: Path) -> None:
    f = pipeline_file(tmp_path, "boom.py", 'import riverbed as rb\nx = 1\nraise ValueError("boom [/x]")\n')
    err = invoke("run", f)
    assert "error: " in err and "ValueError: boom [/x] (while loading it)" in err
    assert f'File "{f}", line 3, in <module>' in err
    assert "importlib" not in err and "riverbed/cli" not in err


def test_an_exception_in_the_factory_shows_the_users_frames(tmp_path: Path) -> None:
    body = (
        'import riverbed as rb\ndef helper():\n    return {}["nokey"]\ndef pipeline():\n    return helper()\n'
    )
    f = pipeline_file(tmp_path, "fac.py", body)
    err = invoke("plan", f)
    assert "KeyError: 'nokey' (in " in err
    assert f'File "{f}", line 5, in pipeline' in err
    assert f'File "{f}", line 3, in helper' in err


def test_sys_exit_at_import_is_not_silent(tmp_path: Path) -> None:
    f = pipeline_file(tmp_path, "ex.py", "import sys\nsys.exit(3)\n")
    err = invoke("run", f)
    assert "called sys.exit(3) while loading it" in err
    assert f'File "{f}", line 2' in err


# -- user text is never markup ----------------------------------------------------------------------
def test_paths_with_brackets_are_printed_verbatim(tmp_path: Path) -> None:
    missing = tmp_path / "no[/x]here" / "[red]f[/red].csv"
    body = f"import riverbed as rb\np = rb.Pipeline('m')\np.read(rb.files({str(missing)!r}))"
    body += ".write(rb.console())\n"
    err = invoke("run", pipeline_file(tmp_path, "mark.py", body))
    assert f"error: no files match '{missing}'" in err


def test_plan_prints_descriptions_verbatim(tmp_path: Path) -> None:
    data = tmp_path / "[b]x[red] \\[i].parquet"
    pl.DataFrame({"a": [1]}).write_parquet(data)
    body = (
        f"import riverbed as rb\np = rb.Pipeline('m')\np.read(rb.files({str(data)!r})).write(rb.console())\n"
    )
    result = runner.invoke(app, ["plan", pipeline_file(tmp_path, "plan.py", body)])
    assert result.exit_code == 0, result.output
    assert f"files {data}" in result.stdout


# -- connectors ---------------------------------------------------------------------------------------
def test_a_sink_typo_gets_a_did_you_mean() -> None:
    with pytest.raises(rb.ConfigError, match="unknown sink 'consol': did you mean 'console'"):
        rb.sink("consol")


def test_an_unreachable_server_is_a_source_error() -> None:
    import fsspec.implementations.ftp  # noqa: F401 - part of fsspec (stdlib ftplib); never skipped

    with pytest.raises(
        rb.SourceError, match=r"cannot open 'ftp://127\.0\.0\.1:1/x/a\.csv': ConnectionRefusedError"
    ):
        rb.files("ftp://127.0.0.1:1/x/a.csv").files()


# -- help -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [["--help"], ["run", "--help"], ["plan", "--help"], ["log", "consume", "--help"], ["gen", "--help"]],
)
def test_help_pages_show_click_style_value_names(args: list[str]) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": "120"})
    assert result.exit_code == 0
    text = result.stdout
    for label in ("<bool>", "<str>", "<int>", "<path>", "<list[str]>", "``"):
        assert label not in text
    if args[0] in ("run", "plan", "log"):
        assert "[default: ($RIVERBED_HOME or ./.riverbed)]" in text
    if args[0] == "run":
        assert "NAME=VALUE" in text and "[default: (on a terminal)]" in text


# -- riverbed log produce -------------------------------------------------------------------------
def test_produce_names_the_bad_line_and_what_was_appended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_cmd, "_STDIN_CHUNK", 4096)  # stdin arrives in several chunks
    home = str(tmp_path)
    invoke("log", "create", "t", "--home", home, code=0)
    good = "".join(json.dumps({"id": i}) + "\n" for i in range(1000))
    err = invoke("log", "produce", "t", "-", "--home", home, input=good + '{"id": 1000}\n{"id": oops}\n')
    assert "error: stdin: line 1002: invalid JSON" in err
    assert '  record: {"id": oops}' in err
    with Log(tmp_path) as log:
        appended = sum(log.topic("t").end_offsets().values())
    assert 0 < appended < 1001
    assert f"{appended:,} records from the lines before line {appended + 1} were appended; " in err
    assert f"nothing from line {appended + 1} on" in err
    err = invoke("log", "produce", "t", "-", "--home", home, input='{"id": 1}\n{"id": "x"}\n')
    assert "error: stdin: line 2: does not fit the topic's schema" in err
    assert "nothing was appended" in err


def test_produce_a_file_names_the_line_that_does_not_fit(tmp_path: Path) -> None:
    home = str(tmp_path)
    invoke("log", "create", "t", "--home", home, code=0)
    invoke("log", "produce", "t", "-", "--home", home, input='{"id": 1}\n', code=0)
    bad = tmp_path / "more.jsonl"
    bad.write_text('{"id": 2}\n{"id": 3}\n{"id": "four"}\n')
    err = invoke("log", "produce", "t", str(bad), "--home", home)
    assert f"error: {bad}: line 3: does not fit the topic's schema" in err
    assert "nothing was appended" in err


# -- generator and progress ------------------------------------------------------------------------
def test_gen_writes_the_examples_data(tmp_path: Path) -> None:
    err = invoke("gen", "--events", "1000", "--out", str(tmp_path / "s.parquet"), code=0)
    assert f"wrote 1,000 events to {tmp_path / 's.parquet'}" in err
    df = pl.read_parquet(tmp_path / "s.parquet")
    assert df.columns == ["event_id", "ts_ms", "store_id", "product_id", "amount"]
    assert df.height == 1000


def test_progress_off_a_terminal_prints_plain_lines() -> None:
    out = io.StringIO()
    with Progress(True, stream=out) as prog:
        task = prog.task("read 3 files", total=3)
        for _ in range(3):
            task.advance(1)
        spin = prog.task("run the query")
        spin.finish()
        prog.log("a note [red]verbatim[/red]")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("read 3 files: 3/3, done (")
    assert lines[1].startswith("run the query: done (")
    assert lines[2] == "a note [red]verbatim[/red]"
    assert "\x1b" not in out.getvalue()


def test_importing_riverbed_and_the_cli_loads_no_heavy_dependency() -> None:
    """Start-up time: the CLI's `version` and `--help` need neither Polars nor PyArrow (the
    benchmark is benchmarks/startup.py; this only checks what gets imported)."""
    import subprocess
    import sys

    code = (
        "import sys, riverbed, riverbed.cli; "
        "print(sorted(m for m in ('polars', 'pyarrow', 'numpy', 'riverbed.eventlog', 'riverbed.testing', "
        "'confluent_kafka') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
    code = "import riverbed as rb; print(rb.testing.__name__, rb.files.__module__)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.split() == ["riverbed.testing", "riverbed.connectors.files"]


def test_produce_a_csv_file_names_the_line_and_column(tmp_path: Path) -> None:
    home = str(tmp_path)
    invoke("log", "create", "t", "--home", home, code=0)
    invoke("log", "produce", "t", "-", "--home", home, input='{"id": 1, "name": "a"}\n', code=0)
    bad = tmp_path / "more.csv"
    bad.write_text('id,name\n2,"b, c"\nthree,d\n')
    err = invoke("log", "produce", "t", str(bad), "--home", home)
    assert f"error: {bad}: line 3: column 'id': cannot parse 'three' as Int64" in err
    assert "  record: three,d" in err
