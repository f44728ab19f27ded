"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a live
stream job. Without chromium or playwright the test skips, except under CI=true, where it fails.

Set RIVERBED_UPDATE_SCREENSHOT=1 to also copy the screenshot to docs/dashboard.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riverbed.dashboard import DashboardServer
from tests.live_job import STEPS, live_stream_job

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium from Debian, never a browser downloaded by `playwright install`."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    if not os.path.exists(CHROMIUM):
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page that records console errors and uncaught exceptions in ``page.problems``."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.problems = problems
    try:
        yield pg
    finally:
        context.close()


def test_dashboard_shows_a_live_stream_job(page: Any, tmp_path: Path) -> None:
    with live_stream_job(tmp_path, "--metrics-port", "0") as job:
        server = DashboardServer(job.home, port=0)
        server.start()
        try:
            page.goto(server.url)
            page.wait_for_function(
                f"document.querySelectorAll('#graph svg g.rb-step').length === {len(STEPS)}"
            )
            ids = [t.text_content() for t in page.locator("#graph svg text.rb-id").all()]
            assert ids == STEPS
            page.wait_for_function(
                "document.querySelector('#graph text.rb-rate[data-step=\"clicks\"]').textContent"
            )
            assert page.locator("#job-state").text_content() == "running"

            series = "#chart-rate path.rb-series"
            page.wait_for_selector(series, state="attached")
            first = page.locator(series).get_attribute("d")
            events_first = page.locator("[data-figure='events'] .v").text_content()
            page.wait_for_function(
                "([sel, before]) => document.querySelector(sel).getAttribute('d') !== before",
                arg=[series, first],
                timeout=20_000,
            )
            assert page.locator(series).get_attribute("d") != first
            assert page.locator("[data-figure='events'] .v").text_content() != events_first
            assert page.locator("#chart-late .rb-last").text_content().startswith("late ")

            page.wait_for_timeout(3000)  # a few seconds of history in the charts for the picture
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("RIVERBED_UPDATE_SCREENSHOT") == "1":
                shutil.copy(shot, ROOT / "docs" / "dashboard.png")

            job.proc.terminate()  # SIGTERM: the job stops cleanly, the page gets the end event
            job.proc.communicate(timeout=30)
            page.wait_for_function("document.querySelector('#job-state').textContent === 'stopped'")
            assert page.problems == []
        finally:
            page.close()
            server.stop()
