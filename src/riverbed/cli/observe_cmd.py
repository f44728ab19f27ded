"""``riverbed status`` and ``riverbed dashboard``; the observer around ``riverbed run``; plan
pictures for ``riverbed plan --format``."""

from __future__ import annotations

import ipaddress
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from riverbed._errors import RiverbedError

if TYPE_CHECKING:
    from riverbed.executors.result import RunResult
    from riverbed.pipeline import Pipeline

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

Home = Annotated[
    Path | None,
    typer.Option("--home", help="riverbed's data directory [default: $RIVERBED_HOME or ./.riverbed]"),
]


def _fail(exc: BaseException) -> None:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(1)


# -- riverbed status ---------------------------------------------------------------------
def status(
    job: Annotated[str | None, typer.Argument(help="One job (its pipeline name); default: all.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    home: Home = None,
) -> None:
    """Show every job under the home (running, finished, failed) with its latest figures."""
    from riverbed._home import resolve_home
    from riverbed.observe import find_job, list_jobs

    resolved = resolve_home(home)
    if job is not None:
        one = find_job(resolved, job)
        if one is None:
            names = [j["pipeline"] for j in list_jobs(resolved)]
            _fail(
                RiverbedError(
                    f"no job named {job!r} under {resolved}; jobs there: {', '.join(names) or 'none'}\n"
                    "  hint: a job is named after its pipeline; pass --home if it ran elsewhere"
                )
            )
            return
        jobs = [one]
    else:
        jobs = list_jobs(resolved)
    if as_json:
        for j in jobs:  # the chart samples are for the dashboard; scripts want the figures
            j.pop("samples", None)
        sys.stdout.write(json.dumps(jobs[0] if job is not None else jobs, indent=2) + "\n")
        return
    if not jobs:
        out.print(f"no jobs under {resolved} (a job appears here once `riverbed run` starts it)")
        return
    # off a terminal (a pipe, a file) the width is not the reader's: never squeeze columns away
    console = out if out.is_terminal else Console(width=200, soft_wrap=True)
    console.print(_table(jobs))


def _table(jobs: list[dict[str, Any]]) -> Table:
    from riverbed.observe import state_label

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("job", "mode", "state", "started", "elapsed", "events", "ev/s", "wm delay", "late", "dead"):
        right = col in ("elapsed", "events", "ev/s", "wm delay", "late", "dead")
        wide = min(max((len(str(j.get("pipeline"))) for j in jobs), default=3), 32) if col == "job" else None
        table.add_column(col, justify="right" if right else "left", no_wrap=col != "job", min_width=wide)
    colours = {"running": "green", "finished": "blue", "failed": "red", "stopped": "yellow"}
    notes = []
    for j in jobs:
        f = j.get("figures") or {}
        samples = j.get("samples") or []
        rate = samples[-1]["rate"] if samples and j.get("state") == "running" else f.get("events_per_s")
        delay = f.get("watermark_delay_s")
        table.add_row(
            str(j.get("pipeline")),
            str(j.get("mode", "")),
            f"[{colours.get(str(j.get('state')), 'white')}]{state_label(j)}[/]",
            _when(j.get("started")),
            f"{float(j.get('elapsed_s') or 0):,.1f}s",
            f"{int(f.get('events') or 0):,}",
            f"{float(rate or 0):,.0f}",
            "-" if delay is None else f"{float(delay):,.1f}s",
            f"{int(f.get('late') or 0):,}",
            f"{int(f.get('dead_letters') or 0):,}",
        )
        if j.get("error"):
            notes.append(f"{j.get('pipeline')}: [red]{str(j['error']).splitlines()[0][:200]}[/]")
        elif j.get("metrics_url") and j.get("state") == "running":
            notes.append(f"{j.get('pipeline')}: metrics {j['metrics_url']}/metrics")
    table.caption = "\n".join(notes) or None
    table.caption_justify = "left"
    return table


def _when(t: object) -> str:
    if not isinstance(t, int | float):
        return "-"
    return datetime.fromtimestamp(t, tz=UTC).strftime("%m-%d %H:%M:%S")


# -- riverbed dashboard ------------------------------------------------------------------
def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            help="Require ?token=T (or 'Authorization: Bearer T'); needed off loopback.",
            envvar="RIVERBED_DASHBOARD_TOKEN",
        ),
    ] = None,
    home: Home = None,
) -> None:
    """Serve a live web dashboard of every job under the home."""
    from riverbed._home import resolve_home

    if not _loopback(host) and not token:
        _fail(
            RiverbedError(
                f"--host {host} makes the dashboard reachable from other machines, so it needs a token.\n"
                "  hint: pass --token SECRET (or set $RIVERBED_DASHBOARD_TOKEN), or keep --host 127.0.0.1"
            )
        )
    try:
        from riverbed.dashboard import serve

        serve(resolve_home(home), host=host, port=port, token=token, announce=err.print)
    except RiverbedError as exc:
        _fail(exc)


# -- riverbed run --metrics-port -----------------------------------------------------------
def run_observed(
    pipeline: Pipeline,
    mode: str,
    *,
    progress: bool | None,
    home: Path | None,
    options: dict[str, object],
    metrics_port: int | None,
    metrics_host: str = "127.0.0.1",
) -> RunResult:
    """Run ``pipeline`` with a :class:`~riverbed.observe.JobObserver`: a status file under the
    home, and Prometheus metrics when ``metrics_port`` is given."""
    from riverbed._home import resolve_home
    from riverbed.observe import JobObserver

    plan_json = pipeline.to_json()
    observer = JobObserver(
        resolve_home(home), pipeline.name, mode, plan_json, metrics_port, metrics_host=metrics_host
    )
    if observer.metrics_url is not None:
        err.print(
            f"metrics: {observer.metrics_url}/metrics  health: {observer.metrics_url}/healthz",
            highlight=False,
        )
    options = {**options, "observer": observer}
    observer.on_start()
    try:
        result = pipeline.run(mode, progress=progress, home=home, **options)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        observer.on_end("stopped", "interrupted")
        raise
    except BaseException as exc:
        observer.on_end("failed", str(exc) or type(exc).__name__)
        raise
    stopped = any(n.startswith("stopped on request") for n in result.notes)
    observer.on_end("stopped" if stopped else "finished")
    return result


# -- riverbed plan --format ---------------------------------------------------------------
def print_plan(plan_json: str, fmt: str, output: Path | None) -> None:
    """Write the plan in ``fmt`` to ``output`` or stdout."""
    from riverbed.observe.render import render

    text = render(plan_json, fmt)
    if output is not None:
        output.write_text(text + "\n")
        err.print(f"plan written to {output}", highlight=False)
    else:
        sys.stdout.write(text + "\n")


def register(app: typer.Typer) -> None:
    """Add ``status`` and ``dashboard`` to the ``riverbed`` command."""
    app.command()(status)
    app.command()(dashboard)
