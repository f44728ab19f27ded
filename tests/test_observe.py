"""riverbed.observe: the observer, the status file, Prometheus metrics and /healthz."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from riverbed._errors import MissingExtraError, RiverbedError
from riverbed.observe import JobObserver, list_jobs, read_status, state_label, status_path
from riverbed.observe import observer as observer_mod
from riverbed.observe.status import write_status

ROOT = Path(__file__).resolve().parents[1]
PLAN = json.dumps(
    {
        "pipeline": "p",
        "steps": [
            {"id": "read_1", "kind": "read", "inputs": [], "description": "read x"},
            {"id": "filter_2", "kind": "filter", "inputs": ["read_1"], "description": "filter"},
            {"id": "write_3", "kind": "write", "inputs": ["filter_2"], "description": "write y"},
        ],
    }
)


def status_of(home: Path) -> dict[str, object]:
    return json.loads(status_path(home, "p").read_text())


def test_status_follows_the_job_and_adds_up_steps(tmp_path: Path) -> None:
    obs = JobObserver(tmp_path, "p", "stream", PLAN, write_interval=0)
    obs.on_start()
    assert status_of(tmp_path)["state"] == "running"
    for k in range(1, 4):
        obs.on_batch(
            {
                "events": 10 * k,
                "batch_rows": 10,
                "watermark": 1_000 * k,
                "late": k,
                "source_lag": {"0": 5, "1": 2},
            },
            {"read_1": {"rows_in": 10, "rows_out": 10}, "write_3": {"rows_in": 7, "rows_out": 7}},
        )
    obs.on_checkpoint(0.25, 4096, 7)
    obs.on_end("finished")
    s = status_of(tmp_path)
    assert s["state"] == "finished" and s["error"] is None and s["pid"] == os.getpid()
    assert s["plan"] == json.loads(PLAN)
    assert s["figures"]["events"] == 30 and s["figures"]["watermark"] == 3_000  # type: ignore[index]
    steps = s["steps"]
    assert steps["read_1"]["rows_out"] == 30 and steps["write_3"]["rows_in"] == 21  # type: ignore[index]
    assert steps["filter_2"]["rows_out"] is None  # type: ignore[index]  # not reported: unknown, not 0
    assert [c["epoch"] for c in s["checkpoints"]] == [7]  # type: ignore[attr-defined]
    samples = s["samples"]
    assert samples[-1]["events"] == 30 and samples[-1]["lag"] == 7 and samples[-1]["late"] == 3  # type: ignore[index]
    assert not [p for p in status_path(tmp_path, "p").parent.iterdir() if p.name != "status.json"]


def test_status_writes_are_rate_limited_but_the_end_is_always_written(tmp_path: Path) -> None:
    obs = JobObserver(tmp_path, "p", "stream", PLAN, write_interval=3600)
    obs.on_start()
    first = status_path(tmp_path, "p").read_bytes()
    for k in range(200):
        obs.on_batch({"events": k})
    assert status_path(tmp_path, "p").read_bytes() == first  # no write within the interval
    obs.on_end("failed", "boom")
    s = status_of(tmp_path)
    assert (s["state"], s["error"], s["figures"]["events"]) == ("failed", "boom", 199)  # type: ignore[index]


def test_chart_samples_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observer_mod, "SAMPLES", 5)
    obs = JobObserver(tmp_path, "p", "stream", PLAN, write_interval=0)
    obs.on_start()
    for k in range(20):
        obs.on_batch({"events": k})
    obs.on_end("stopped")
    s = status_of(tmp_path)
    assert [x["events"] for x in s["samples"]] == [16, 17, 18, 19, 19]  # type: ignore[attr-defined]
    assert s["state"] == "stopped"


def test_batch_timeline(tmp_path: Path) -> None:
    obs = JobObserver(tmp_path, "p", "batch", PLAN)
    obs.on_start()
    obs.on_step_timing("read_1", 0.5)
    obs.on_step_timing("write_3", 0.25)
    obs.on_end("finished")
    s = status_of(tmp_path)
    assert [t["step"] for t in s["timeline"]] == ["read_1", "write_3"]  # type: ignore[attr-defined]
    assert s["steps"]["write_3"]["seconds"] == 0.25  # type: ignore[index]


def test_a_running_job_whose_process_died_shows_as_failed(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from riverbed.observe import JobObserver
        obs = JobObserver(Path({str(tmp_path)!r}), "p", "stream", {PLAN!r})
        obs.on_start()
        print("started", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        running = read_status(status_path(tmp_path, "p"))
        assert running is not None and state_label(running) == "running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    gone = read_status(status_path(tmp_path, "p"))
    assert gone is not None and state_label(gone) == "failed (process gone)"
    assert [state_label(j) for j in list_jobs(tmp_path)] == ["failed (process gone)"]


def test_unreadable_status_files_are_skipped(tmp_path: Path) -> None:
    write_status(status_path(tmp_path, "good"), {"pipeline": "good", "state": "finished", "started": 2.0})
    bad = status_path(tmp_path, "bad")
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert [j["pipeline"] for j in list_jobs(tmp_path)] == ["good"]
    assert list_jobs(tmp_path / "nowhere") == []


def test_pipeline_names_stay_inside_the_jobs_directory(tmp_path: Path) -> None:
    path = status_path(tmp_path, "../../etc/x")
    assert path.parent.parent == tmp_path / "jobs"


# -- Prometheus and /healthz ----------------------------------------------------------------
def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_endpoint_serves_job_and_step_figures(tmp_path: Path) -> None:
    obs = JobObserver(tmp_path, "p", "stream", PLAN, metrics_port=0)
    assert obs.metrics_url is not None
    try:
        obs.on_start()
        obs.on_batch(
            {"events": 42, "watermark": 5_000, "watermark_delay_s": 1.5, "source_lag": {"t/0": 9}, "late": 2},
            {"read_1": {"rows_in": 42, "rows_out": 42}},
        )
        obs.on_checkpoint(0.5, 1234, 3)
        code, text = get(obs.metrics_url + "/metrics")
        assert code == 200
        for line in (
            'riverbed_events_total{pipeline="p"} 42.0',
            'riverbed_late_events_total{pipeline="p"} 2.0',
            'riverbed_watermark_seconds{pipeline="p"} 5.0',
            'riverbed_watermark_delay_seconds{pipeline="p"} 1.5',
            'riverbed_source_lag{partition="t/0",pipeline="p"} 9.0',
            'riverbed_step_rows_out_total{pipeline="p",step="read_1"} 42.0',
            'riverbed_checkpoint_size_bytes{pipeline="p"} 1234.0',
            'riverbed_checkpoints_total{pipeline="p"} 1.0',
            'riverbed_job_info{mode="stream",pipeline="p",state="running"} 1.0',
        ):
            assert line in text.splitlines(), line
        code, body = get(obs.metrics_url + "/healthz")
        assert code == 200 and json.loads(body)["making_progress"] is True
        assert get(obs.metrics_url + "/other")[0] == 404
    finally:
        obs.on_end("finished")


def test_healthz_is_503_when_the_job_stalls_or_checkpoints_age(tmp_path: Path) -> None:
    obs = JobObserver(tmp_path, "p", "stream", PLAN, metrics_port=0, stall_after=30, checkpoint_max_age=60)
    assert obs.metrics_url is not None
    try:
        obs.on_start()
        obs.on_batch({"events": 1})
        obs.on_checkpoint(0.1, 10, 1)
        assert get(obs.metrics_url + "/healthz")[0] == 200
        assert obs.last_batch_mono is not None and obs.last_checkpoint_mono is not None
        obs.last_batch_mono -= 31  # as if the loop hung for 31 s
        code, body = get(obs.metrics_url + "/healthz")
        assert code == 503 and json.loads(body)["making_progress"] is False
        obs.last_batch_mono += 31
        obs.last_checkpoint_mono -= 61  # checkpoints stopped
        code, body = get(obs.metrics_url + "/healthz")
        assert code == 503 and json.loads(body)["checkpoint_ok"] is False
    finally:
        obs.on_end("failed", "stalled")
    ok, body = obs.health()
    assert not ok and not body["live"]


def test_a_taken_metrics_port_is_a_clear_error(tmp_path: Path) -> None:
    first = JobObserver(tmp_path, "a", "stream", PLAN, metrics_port=0)
    assert first.metrics is not None
    try:
        with pytest.raises(RiverbedError, match=r"cannot serve metrics on 127\.0\.0\.1"):
            JobObserver(tmp_path, "b", "stream", PLAN, metrics_port=first.metrics.port)
    finally:
        first.on_end("finished")


def test_missing_prometheus_client_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingExtraError, match=r"riverbed\[metrics\]"):
        JobObserver(tmp_path, "p", "stream", PLAN, metrics_port=0)


def test_importing_riverbed_and_observe_stays_cheap() -> None:
    code = (
        "import sys, riverbed, riverbed.observe, riverbed.cli; "
        "print(sorted(m for m in ('prometheus_client', 'starlette', 'uvicorn', 'riverbed.dashboard') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    ).stdout
    assert out.strip() == "[]"


def test_status_writes_per_micro_batch_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a timing assertion: counts status-file writes over many quick micro-batches."""
    writes: list[dict[str, object]] = []

    def counted(path: Path, status: dict[str, object]) -> None:
        writes.append(status)
        write_status(path, status)

    monkeypatch.setattr(observer_mod, "write_status", counted)
    obs = JobObserver(tmp_path, "p", "stream", PLAN)
    obs.on_start()
    started = time.monotonic()
    for k in range(2_000):
        obs.on_batch({"events": k}, {"read_1": {"rows_in": 1, "rows_out": 1}})
    elapsed = time.monotonic() - started
    obs.on_end("finished")
    # at most one write per 0.5 s of calls, plus the first and the last
    assert 2 <= len(writes) <= 2 + int(elapsed / 0.5) + 1
    assert writes[-1]["state"] == "finished" and status_of(tmp_path)["figures"] == {"events": 1_999}


def test_the_writer_thread_writes_while_the_job_runs(tmp_path: Path) -> None:
    obs = JobObserver(tmp_path, "p", "stream", PLAN, write_interval=0)
    obs.on_start()
    obs.on_batch({"events": 7})
    deadline = time.monotonic() + 30
    while status_of(tmp_path)["figures"] != {"events": 7}:
        assert time.monotonic() < deadline, "the status was not written in the background"
        time.sleep(0.01)
    assert obs._writer is not None and obs._writer.is_alive()
    obs.on_end("finished")
    assert obs._writer is None and status_of(tmp_path)["state"] == "finished"


def test_observe_imports_neither_dashboard_nor_cli_nor_executors() -> None:
    """Executors import riverbed.observe; it must not pull the dashboard or the CLI in."""
    from tests.test_layout import SRC, module_level_imports

    for path in (SRC / "observe").rglob("*.py"):
        bad = {
            i
            for i in module_level_imports(path)
            if i.startswith(("riverbed.dashboard", "riverbed.cli", "riverbed.executors", "riverbed.pipeline"))
        }
        assert not bad, f"{path.name} imports {sorted(bad)}"
