"""``riverbed`` commands: run, plan, demo, log, status, dashboard."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from riverbed._errors import RiverbedError
from riverbed.cli.log_cmd import log_app
from riverbed.cli.observe_cmd import register as register_observe

app = typer.Typer(
    name="riverbed",
    help=(
        "riverbed: data pipelines written once, run as batch or stream jobs.\n\n"
        "Run a pipeline file with `riverbed run FILE --mode batch|stream -p NAME=VALUE`, "
        "print its plan with `riverbed plan FILE`, or try `riverbed demo`."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True, soft_wrap=True)  # paths and commands stay copyable
out = Console(soft_wrap=True)

Params = Annotated[
    list[str] | None,
    typer.Option("-p", "--param", help="NAME=VALUE passed to the pipeline function (repeatable)."),
]
Home = Annotated[
    Path | None,
    typer.Option("--home", help="riverbed's data directory [default: $RIVERBED_HOME or ./.riverbed]"),
]


def _fail(exc: BaseException) -> None:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def run(
    file: Annotated[str, typer.Argument(help="Pipeline file (FILE or FILE:FUNCTION).")],
    mode: Annotated[str, typer.Option("--mode", "-m", help="batch or stream.")] = "batch",
    param: Params = None,
    home: Home = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress display [default: on a terminal]."),
    ] = None,
    max_batch_rows: Annotated[int | None, typer.Option(help="Stream: most rows per micro-batch.")] = None,
    max_wait: Annotated[
        str | None, typer.Option(help="Stream: longest wait to fill a micro-batch, e.g. 50ms.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics and /healthz on this port.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics server binds to.")] = "127.0.0.1",
) -> None:
    """Run a pipeline file as a batch or stream job."""
    from riverbed.cli._load import load_pipeline, parse_params

    if mode not in ("batch", "stream"):
        _fail(RiverbedError(f"--mode must be batch or stream, got {mode!r}"))
    try:
        pipeline = load_pipeline(file, parse_params(param or []))
        options: dict[str, object] = {}
        if mode == "stream":
            if max_batch_rows is not None:
                options["max_batch_rows"] = max_batch_rows
            if max_wait is not None:
                options["max_wait"] = max_wait
            options["live"] = progress if progress is not None else sys.stderr.isatty()
        elif max_batch_rows is not None or max_wait is not None:
            raise RiverbedError("--max-batch-rows and --max-wait are stream options")
        from riverbed.cli.observe_cmd import run_observed

        result = run_observed(
            pipeline,
            mode,
            progress=progress,
            home=home,
            options=options,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
        )
    except RiverbedError as exc:
        _fail(exc)
    else:
        err.print(result.summary(), highlight=False)


@app.command()
def plan(
    file: Annotated[str, typer.Argument(help="Pipeline file (FILE or FILE:FUNCTION).")],
    param: Params = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    home: Home = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text, json, mermaid or svg.")] = "text",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the picture here.")] = None,
) -> None:
    """Validate a pipeline and print its plan with every step's output columns."""
    from riverbed.cli._load import load_pipeline, parse_params

    try:
        pipeline = load_pipeline(file, parse_params(param or []))
        schemas = pipeline.validate(home=home)
    except RiverbedError as exc:
        _fail(exc)
        return
    if as_json:
        out.print_json(pipeline.to_json())
        return
    if fmt != "text" or output is not None:
        from riverbed.cli.observe_cmd import print_plan

        try:
            print_plan(pipeline.to_json(), fmt, output)
        except RiverbedError as exc:
            _fail(exc)
        return
    p = pipeline.plan()
    out.print(f"[bold]pipeline[/] {p.name!r}: {len(p.nodes)} steps, valid", highlight=False)
    for node in p.nodes:
        src = f"  [dim]<- {', '.join(node.inputs)}[/]" if node.inputs else ""
        out.print(f"  [cyan]{node.id}[/]: {node.describe()}{src}", highlight=False)
        schema = schemas.get(node.id)
        cols = ", ".join(f"{k}: {v}" for k, v in schema.items()) if schema else "(known at run time)"
        out.print(f"      [dim]{cols}[/]", highlight=False)


@app.command()
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where to put the demo data and outputs.")] = Path(
        "riverbed-demo"
    ),
    events: Annotated[int, typer.Option(help="Events in the generated day of sales.")] = 1_000_000,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Generate a day of sales and run the end-of-day report as a batch job."""
    from riverbed.cli._demo import run_demo

    try:
        run_demo(directory, events=events, progress=progress, console=out)
    except RiverbedError as exc:
        _fail(exc)


@app.command()
def version() -> None:
    """Print riverbed's version."""
    from riverbed import __version__

    out.print(f"riverbed {__version__}")


register_observe(app)
app.add_typer(log_app, name="log", help="The embedded replayable log: topics, produce, consume.")


def main() -> None:
    """Entry point of the ``riverbed`` console script."""
    app()
