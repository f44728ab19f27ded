"""The dashboard's web app: job list, one job, its graph, server-sent events, the token."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from riverbed.dashboard import DashboardServer, create_app
from riverbed.observe import JobObserver, status_path
from riverbed.observe.status import write_status

PLAN = json.dumps(
    {
        "pipeline": "p",
        "steps": [
            {"id": "read_1", "kind": "read", "inputs": [], "description": "read x"},
            {"id": "write_2", "kind": "write", "inputs": ["read_1"], "description": "write y"},
        ],
    }
)


def finished_job(home: Path, name: str = "p") -> None:
    obs = JobObserver(home, name, "batch", PLAN.replace('"p"', f'"{name}"'))
    obs.on_start()
    obs.on_batch({"events": 5}, {"read_1": {"rows_in": 5, "rows_out": 5}})
    obs.on_step_timing("read_1", 0.1)
    obs.on_end("finished")


def events_of(text: str) -> list[tuple[str, str]]:
    """(event, data) pairs of a server-sent event stream."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
        )
        if "event" in fields:
            out.append((fields["event"], fields.get("data", "")))
    return out


def test_pages_and_assets(tmp_path: Path) -> None:
    client = TestClient(create_app(tmp_path))
    page = client.get("/")
    assert page.status_code == 200 and 'src="static/app.js"' in page.text and 'rel="icon"' in page.text
    for asset in ("static/app.js", "static/style.css", "static/favicon.svg", "favicon.ico"):
        assert client.get("/" + asset).status_code == 200, asset
    assert client.get("/healthz").json()["ok"] is True


def test_job_list_one_job_and_its_graph(tmp_path: Path) -> None:
    finished_job(tmp_path, "a")
    finished_job(tmp_path, "b")
    client = TestClient(create_app(tmp_path))
    jobs = client.get("/api/jobs").json()
    assert sorted(j["pipeline"] for j in jobs) == ["a", "b"]
    assert all(j["label"] == "finished" and j["figures"]["events"] == 5 for j in jobs)
    one = client.get("/api/jobs/a").json()
    assert one["timeline"][0]["step"] == "read_1" and one["steps"]["read_1"]["rows_out"] == 5
    svg = client.get("/api/jobs/a/plan.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and svg.text.count('class="rb-step"') == 2
    missing = client.get("/api/jobs/nope")
    assert missing.status_code == 404 and "no job named 'nope'" in missing.json()["error"]
    assert client.get("/api/jobs/nope/events").status_code == 404


def test_events_of_a_finished_job_end_the_stream(tmp_path: Path) -> None:
    finished_job(tmp_path)
    client = TestClient(create_app(tmp_path))
    with client.stream("GET", "/api/jobs/p/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = events_of(text)
    assert [e for e, _ in events] == ["status", "end"]
    assert json.loads(events[0][1])["state"] == "finished"
    assert json.loads(events[1][1]) == {"state": "finished"}


def test_events_follow_a_running_job_until_it_ends(tmp_path: Path) -> None:
    obs = JobObserver(tmp_path, "p", "stream", PLAN, write_interval=0)
    obs.on_start()
    client = TestClient(create_app(tmp_path))

    def later() -> None:
        for k in range(1, 4):
            time.sleep(0.4)  # a status poll is 0.25 s: each write is a new event
            obs.on_batch({"events": 10 * k})
        time.sleep(0.4)
        obs.on_end("finished")

    writer = threading.Thread(target=later)
    writer.start()
    try:
        with client.stream("GET", "/api/jobs/p/events") as r:
            text = "".join(r.iter_text())
    finally:
        writer.join()
    events = events_of(text)
    assert events[-1][0] == "end"
    statuses = [json.loads(d) for e, d in events if e == "status"]
    assert statuses[0]["state"] == "running" and statuses[-1]["state"] == "finished"
    seen = [s["figures"].get("events") for s in statuses]
    assert len(set(seen)) >= 3  # the stream carried the figures as they moved


def test_a_vanished_job_ends_its_stream(tmp_path: Path) -> None:
    write_status(
        status_path(tmp_path, "p"),
        {"pipeline": "p", "state": "running", "pid": 2**22 + 12345, "host": os.uname().nodename, "plan": {}},
    )
    client = TestClient(create_app(tmp_path))
    with client.stream("GET", "/api/jobs/p/events") as r:
        events = events_of("".join(r.iter_text()))
    assert [e for e, _ in events] == ["status", "end"]
    assert json.loads(events[0][1])["process_gone"] is True
    assert client.get("/api/jobs").json()[0]["label"] == "failed (process gone)"


def test_token(tmp_path: Path) -> None:
    finished_job(tmp_path)
    client = TestClient(create_app(tmp_path, token="s3cret"))
    assert client.get("/api/jobs").status_code == 401
    assert client.get("/api/jobs?token=wrong").status_code == 401
    assert client.get("/api/jobs/p/events").status_code == 401
    assert client.get("/api/jobs?token=s3cret").status_code == 200
    assert client.get("/api/jobs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/").status_code == 200  # the page itself asks for the data with the token


def test_server_in_a_thread_stops_with_an_open_event_stream(tmp_path: Path) -> None:
    import http.client

    obs = JobObserver(tmp_path, "p", "stream", PLAN)
    obs.on_start()
    server = DashboardServer(tmp_path, port=0)
    server.start()
    host, port = server.sock.getsockname()[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/api/jobs/p/events")
    response = conn.getresponse()
    assert response.status == 200
    assert b"event: status" in response.read1(65536) + response.read1(65536)
    server.stop()  # timeout_graceful_shutdown: the open stream does not keep it alive
    assert server.thread is not None and not server.thread.is_alive()
    conn.close()
    obs.on_end("finished")


def test_port_in_use(tmp_path: Path) -> None:
    from riverbed._errors import RiverbedError

    server = DashboardServer(tmp_path, port=0)
    try:
        with pytest.raises(RiverbedError, match=r"cannot listen on 127\.0\.0\.1"):
            DashboardServer(tmp_path, port=server.sock.getsockname()[1])
    finally:
        server.sock.close()
