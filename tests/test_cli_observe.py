"""``riverbed status``, ``riverbed plan --format``, ``riverbed dashboard`` and
``riverbed run --metrics-port`` against real jobs."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from riverbed.cli import app
from tests.live_job import STEPS, live_stream_job

ROOT = Path(__file__).resolve().parents[1]
DAILY = str(ROOT / "examples" / "daily_revenue.py")
MINUTES = str(ROOT / "examples" / "minute_windows.py")


@pytest.fixture
def sales(tmp_path: Path) -> Path:
    path = tmp_path / "sales.parquet"
    pl.DataFrame(
        {"ts_ms": [0, 1_000, 61_000, 90_000], "store_id": [1, 2, 1, 2], "amount": [1.0, 2.0, -3.0, 4.0]}
    ).write_parquet(path)
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_plan_formats(sales: Path, tmp_path: Path) -> None:
    args = [
        "-p",
        f"source={sales}",
        "-p",
        f"sink={tmp_path / 'out.parquet'}",
        "-p",
        f"late={tmp_path / 'l.jsonl'}",
    ]
    code, out, err = invoke("plan", MINUTES, *args, "--format", "mermaid")
    assert code == 0, err
    assert (
        out.startswith("flowchart TD\n")
        and "sales --> per_minute" in out
        and "per_minute_late --> late_events" in out
    )
    code, out, err = invoke("plan", MINUTES, *args, "--format", "json")
    assert code == 0, err
    assert [s["id"] for s in json.loads(out)["steps"]] == [
        "sales",
        "per_minute",
        "minutes",
        "per_minute.late",
        "late_events",
    ]
    picture = tmp_path / "plan.svg"
    code, out, err = invoke("plan", MINUTES, *args, "--format", "svg", "-o", str(picture))
    assert code == 0, err
    root = ET.fromstring(picture.read_text())
    assert len(root.findall(".//{http://www.w3.org/2000/svg}g[@class='rb-step']")) == 5
    code, out, err = invoke("plan", MINUTES, *args)  # text stays the default, with columns
    assert code == 0 and "store_id: Int64" in out
    code, out, err = invoke("plan", MINUTES, *args, "--format", "png")
    assert code == 1 and "--format must be one of text, json, mermaid, svg, got 'png'" in err


def test_status_of_batch_runs(sales: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    code, out, err = invoke("status", "--home", str(home))
    assert code == 0 and "no jobs under" in out
    code, _, err = invoke(
        "run", DAILY, "-p", f"source={sales}", "-p", f"sink={tmp_path / 'd.parquet'}", "--home", str(home),
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = invoke("status", "--home", str(home))
    assert code == 0, err
    assert "daily_revenue" in out and "batch" in out and "finished" in out
    code, out, err = invoke("status", "daily_revenue", "--json", "--home", str(home))
    assert code == 0, err
    status = json.loads(out)
    assert status["state"] == "finished" and status["figures"]["events"] == 4
    assert status["steps"]["sales"]["rows_out"] == 4 and "samples" not in status
    code, out, err = invoke("status", "nope", "--home", str(home))
    assert code == 1 and "no job named 'nope'" in err and "daily_revenue" in err


def test_a_failed_run_says_so_in_its_status(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import polars as pl, riverbed as rb\n"
        "def boom(df):\n    raise ValueError('no good')\n"
        "def pipeline(source: str) -> rb.Pipeline:\n"
        "    p = rb.Pipeline('bad')\n"
        "    p.read(source).map_batches(boom, schema={'x': pl.Int64}).write('console')\n"
        "    return p\n"
    )
    (tmp_path / "in.csv").write_text("x\n1\n")
    result = CliRunner().invoke(
        app, ["run", str(bad), "-p", f"source={tmp_path / 'in.csv'}", "--home", str(home)]
    )
    assert result.exit_code != 0
    _, out, _ = invoke("status", "bad", "--json", "--home", str(home))
    status = json.loads(out)
    assert status["state"] == "failed" and "no good" in status["error"]


def test_dashboard_off_loopback_needs_a_token(tmp_path: Path) -> None:
    code, _, err = invoke("dashboard", "--host", "0.0.0.0", "--home", str(tmp_path))
    assert code == 1 and "needs a token" in err and "--token" in err


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_stream_run_with_metrics_port(tmp_path: Path) -> None:
    with live_stream_job(tmp_path, "--metrics-port", "0") as job:
        url = job.status()["metrics_url"]
        assert url and url.startswith("http://127.0.0.1:")
        code, first = get(url + "/metrics")
        assert (
            code == 200 and 'riverbed_job_info{mode="stream",pipeline="clicks",state="running"} 1.0' in first
        )
        code, health = get(url + "/healthz")
        assert code == 200 and json.loads(health)["live"] is True
        code, out, _ = invoke("status", "--home", str(job.home))
        assert code == 0 and "clicks" in out and "running" in out and f"metrics {url}/metrics" in out
        status = job.status()
        assert [s["id"] for s in status["plan"]["steps"]] == STEPS
        assert status["steps"]["clicks"]["rows_out"] > 0 and status["figures"]["events"] > 0
        job.proc.send_signal(signal.SIGTERM)
        _, stderr = job.proc.communicate(timeout=30)
        assert job.proc.returncode == 0, stderr
        assert f"metrics: {url}/metrics" in stderr
    final = job.status()
    assert final["state"] == "stopped" and final["figures"]["late"] > 0
    assert final["figures"]["events"] == final["steps"]["clicks"]["rows_out"]
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/metrics", timeout=5)  # the server went with the job
