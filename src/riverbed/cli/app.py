"""``riverbed`` commands: run, plan, demo, log, status, dashboard."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from riverbed._errors import RiverbedError
from riverbed.cli._help import Command, new_app
from riverbed.cli.log_cmd import log_app
from riverbed.cli.observe_cmd import register as register_observe

app = new_app(
    name="riverbed",
    help=(
        "riverbed: data pipelines written once, run as batch or stream jobs.\n\n"
        "Run a pipeline file with `riverbed run FILE --mode batch|stream -p NAME=VALUE`, "
        "print its plan with `riverbed plan FILE`, or try `riverbed demo`."
    ),
    no_args_is_help=True,
)
err = Console(stderr=True, soft_wrap=True, highlight=False)  # paths and commands stay copyable
out = Console(soft_wrap=True, highlight=False)

Params = Annotated[
    list[str] | None,
    typer.Option(
        "-p", "--param", metavar="NAME=VALUE", help="A value passed to the pipeline function (repeatable)."
    ),
]
Home = Annotated[
    Path | None,
    typer.Option(
        "--home",
        metavar="DIR",
        help="riverbed's data directory.",
        show_default="$RIVERBED_HOME or ./.riverbed",
    ),
]
FileArg = Annotated[str, typer.Argument(metavar="FILE", help="Pipeline file (FILE or FILE:FUNCTION).")]


def _fail(exc: BaseException) -> NoReturn:
    """Print ``error: ...`` (user text escaped, never read as markup) and exit with status 1.

    An exception that is not riverbed's own is shown with its type and the user's frames; set
    RIVERBED_TRACEBACK=1 for the whole traceback."""
    if isinstance(exc, RiverbedError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
        if os.environ.get("RIVERBED_TRACEBACK"):
            text += "\n" + "".join(traceback.format_exception(exc)).rstrip()
        else:
            text += "\n  hint: set RIVERBED_TRACEBACK=1 to see the whole traceback"
    err.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True)
    raise typer.Exit(1)


@app.command(cls=Command)
def run(
    file: FileArg,
    mode: Annotated[str, typer.Option("--mode", "-m", metavar="MODE", help="`batch` or `stream`.")] = "batch",
    param: Params = None,
    home: Home = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Show progress.", show_default="on a terminal"),
    ] = None,
    max_batch_rows: Annotated[
        int | None, typer.Option(metavar="ROWS", help="Stream: most rows per micro-batch.")
    ] = None,
    max_wait: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="Stream: longest wait to fill a micro-batch, e.g. `50ms`."),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics and /healthz on this port.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics server binds to.")] = "127.0.0.1",
    engine: Annotated[
        str, typer.Option(metavar="ENGINE", help="Batch: `polars` (this machine) or `spark`.")
    ] = "polars",
    spark_master: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Spark: `local[N]`, a master URL or a Spark Connect URL `sc://HOST:PORT`.",
            show_default="$RIVERBED_SPARK_MASTER or local[*]",
        ),
    ] = None,
    checkpoint_dir: Annotated[
        str | None,
        typer.Option(
            metavar="DIR", help="Stream: checkpoint here (a directory or fsspec URL) and resume from it."
        ),
    ] = None,
    checkpoint_interval: Annotated[
        str | None, typer.Option(metavar="DURATION", help="Stream: time between checkpoints (default 1s).")
    ] = None,
    stop_at_end: Annotated[
        bool,
        typer.Option(
            "--stop-at-end", help="Stream: end when sources reach the end they had at the job's first start."
        ),
    ] = False,
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
            if checkpoint_dir is not None:
                options["checkpoint_dir"] = checkpoint_dir
            if checkpoint_interval is not None:
                options["checkpoint_interval"] = checkpoint_interval
            if stop_at_end:
                options["stop_at_end"] = True
            # the live view redraws in place: on a terminal only (a log file would get frames)
            options["live"] = progress is not False and sys.stderr.isatty()
        elif max_batch_rows is not None or max_wait is not None or checkpoint_dir or stop_at_end:
            raise RiverbedError(
                "--max-batch-rows, --max-wait, --checkpoint-dir and --stop-at-end are stream options"
            )
        if engine != "polars" or spark_master is not None:
            options["engine"] = "spark" if spark_master is not None and engine == "polars" else engine
            if spark_master is not None:
                options["spark_master"] = spark_master
        from riverbed.cli.observe_cmd import run_observed

        if mode == "batch":  # SIGTERM stops a batch run as Ctrl-C does (stream mode has its own)
            signal.signal(signal.SIGTERM, _interrupt)
        result = run_observed(
            pipeline,
            mode,
            progress=progress,
            home=home,
            options=options,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
        )
    except KeyboardInterrupt:
        err.print("stopped (interrupted)")
        raise typer.Exit(130) from None
    except Exception as exc:
        _fail(exc)
    else:
        err.print(result.summary(), markup=False)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command(cls=Command)
def plan(
    file: FileArg,
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
    except Exception as exc:
        _fail(exc)
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
    steps = f"{len(p.nodes)} step" + ("" if len(p.nodes) == 1 else "s")
    out.print(f"[bold]pipeline[/] {escape(repr(p.name))}: {steps}, valid")
    for node in p.nodes:
        src = f"  [dim]<- {escape(', '.join(node.inputs))}[/]" if node.inputs else ""
        out.print(f"  [cyan]{escape(node.id)}[/]: {escape(node.describe())}{src}")
        schema = schemas.get(node.id)
        cols = ", ".join(f"{k}: {v}" for k, v in schema.items()) if schema else "(known at run time)"
        out.print(f"      [dim]{escape(cols)}[/]")


@app.command(cls=Command)
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", metavar="DIR", help="Where to put the demo data and outputs.")
    ] = Path("riverbed-demo"),
    events: Annotated[
        int, typer.Option(metavar="N", help="Events in the generated day of sales.")
    ] = 1_000_000,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Show progress.", show_default="on a terminal"),
    ] = None,
) -> None:
    """Generate a day of sales and run the end-of-day report as a batch job."""
    from riverbed.cli._demo import run_demo

    try:
        run_demo(directory, events=events, progress=progress, console=out)
    except Exception as exc:  # every failure ends as one `error:` message
        _fail(exc)


@app.command(cls=Command)
def gen(
    out_path: Annotated[
        Path,
        typer.Option("--out", metavar="PATH", help="Output Parquet file (a directory with `--files`)."),
    ],
    events: Annotated[int, typer.Option(metavar="N", help="Number of events.")] = 1_000_000,
    files: Annotated[int, typer.Option(metavar="K", help="Split into K files, in arrival order.")] = 1,
    seed: Annotated[int, typer.Option(metavar="SEED", help="Random seed: the same seed, the same data.")] = 0,
) -> None:
    """Generate sales events (the data the README's examples use) as Parquet.

    Columns: `event_id`, `ts_ms` (epoch milliseconds, a few seconds behind arrival, a few
    stragglers minutes behind), `store_id` (a few hot stores), `product_id`, `amount` (about 2%
    refunds).
    """
    from riverbed._gen import generate, write

    if events < 0 or files < 1:
        _fail(RiverbedError(f"--events must be >= 0 and --files >= 1, got {events} and {files}"))
    try:
        paths = write(generate(events, seed), out_path, files)
    except OSError as exc:
        _fail(RiverbedError(f"cannot write {out_path}: {exc}"))
    where = paths[0] if len(paths) == 1 else f"{out_path} ({len(paths)} files)"
    err.print(f"wrote {events:,} event{'' if events == 1 else 's'} to {escape(str(where))}")


@app.command(cls=Command)
def version() -> None:
    """Print riverbed's version."""
    from riverbed import __version__

    out.print(f"riverbed {__version__}")


register_observe(app)
app.add_typer(log_app, name="log", help="The embedded replayable log: topics, produce, consume.")


def main() -> None:
    """Entry point of the ``riverbed`` console script (and ``python -m riverbed.cli``)."""
    app(prog_name="riverbed")
