"""The dashboard's web app (Starlette) and its server (uvicorn).

Routes: ``/`` the page; ``/static/*`` its assets (shipped in this package, no build step);
``/api/jobs`` every job's latest figures; ``/api/jobs/NAME`` one job's whole status;
``/api/jobs/NAME/plan.svg`` its pipeline graph; ``/api/jobs/NAME/events`` server-sent events:
a ``status`` event whenever the status file changes, then one ``end`` event when the job is no
longer running (so the page stops reconnecting); ``/healthz`` the dashboard itself.

With a token every ``/api`` route wants ``?token=T`` or ``Authorization: Bearer T``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from riverbed._errors import MissingExtraError, RiverbedError
from riverbed.observe.status import find_job, list_jobs, status_path

STATIC = Path(__file__).parent / "static"
POLL_S = 0.25
"""How often an event stream looks at its status file."""
KEEPALIVE_S = 15.0


def _summary(status: dict[str, Any]) -> dict[str, Any]:
    """A job without its bulky parts (chart samples, plan, timeline), for the job list."""
    from riverbed.observe.status import state_label

    keep = ("pipeline", "state", "mode", "started", "updated", "ended", "elapsed_s", "error", "metrics_url")
    out = {k: status.get(k) for k in keep}
    out["label"] = state_label(status)
    out["figures"] = status.get("figures") or {}
    samples = status.get("samples") or []
    out["rate"] = samples[-1]["rate"] if samples else None
    return out


def create_app(home: Path, token: str | None = None) -> Any:
    """The Starlette app serving the dashboard of every job under ``home``.

    Examples
    --------
    >>> import tempfile
    >>> from starlette.testclient import TestClient
    >>> client = TestClient(create_app(Path(tempfile.mkdtemp()), token="s3cret"))
    >>> client.get("/api/jobs").status_code, client.get("/api/jobs?token=s3cret").json()
    (401, [])
    """
    try:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles
    except ImportError:
        raise MissingExtraError("starlette", "dashboard") from None

    home = Path(home)

    def allowed(request: Request) -> bool:
        if token is None:
            return True
        given = request.query_params.get("token") or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def inner(request: Request) -> Any:
            if not allowed(request):
                return JSONResponse({"error": "a token is needed: add ?token=T to the URL"}, status_code=401)
            return await handler(request)

        return inner

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def favicon(request: Request) -> Response:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "home": str(home)})

    async def jobs(request: Request) -> Response:
        return JSONResponse([_summary(j) for j in list_jobs(home)])

    def one(request: Request) -> dict[str, Any] | None:
        return find_job(home, request.path_params["name"])

    def missing(request: Request) -> Response:
        return JSONResponse({"error": f"no job named {request.path_params['name']!r} under {home}"}, 404)

    async def job(request: Request) -> Response:
        status = one(request)
        return missing(request) if status is None else JSONResponse(status)

    async def plan_svg(request: Request) -> Response:
        from riverbed.observe.render import to_svg

        status = one(request)
        if status is None or not isinstance(status.get("plan"), dict):
            return missing(request)
        return Response(to_svg(status["plan"]), media_type="image/svg+xml")

    async def events(request: Request) -> Response:
        name = request.path_params["name"]
        if one(request) is None:
            return missing(request)
        path = status_path(home, name)

        async def stream() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            seen: float | None = None
            quiet = 0.0
            while True:
                try:
                    mtime = path.stat().st_mtime
                except OSError:
                    mtime = None
                status = find_job(home, name) if mtime != seen else None
                if status is not None:
                    seen = mtime
                    quiet = 0.0
                    yield f"event: status\ndata: {json.dumps(status, separators=(',', ':'))}\n\n"
                    if status.get("state") != "running":
                        yield f"event: end\ndata: {json.dumps({'state': status.get('state')})}\n\n"
                        return
                elif quiet >= KEEPALIVE_S:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(POLL_S)
                quiet += POLL_S

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    routes = [
        Route("/", index),
        Route("/favicon.ico", favicon),
        Route("/healthz", health),
        Route("/api/jobs", guarded(jobs)),
        Route("/api/jobs/{name}", guarded(job)),
        Route("/api/jobs/{name}/plan.svg", guarded(plan_svg)),
        Route("/api/jobs/{name}/events", guarded(events)),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RiverbedError(
            f"the dashboard cannot listen on {host}:{port}: {exc.strerror or exc}\n"
            "  hint: pick another --port (0 picks a free one)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class DashboardServer:
    """The dashboard served by uvicorn on ``host:port`` (0: a free port), in the foreground
    (:meth:`run`) or in a background thread (:meth:`start` / :meth:`stop`).

    Examples
    --------
    >>> import tempfile, urllib.request
    >>> server = DashboardServer(Path(tempfile.mkdtemp()), port=0)
    >>> server.start()
    >>> urllib.request.urlopen(server.url + "api/jobs").read()
    b'[]'
    >>> server.stop()
    """

    def __init__(
        self, home: Path, host: str = "127.0.0.1", port: int = 8765, token: str | None = None
    ) -> None:
        try:
            import uvicorn
        except ImportError:
            raise MissingExtraError("uvicorn", "dashboard") from None
        self.app = create_app(home, token)
        self.sock = _bind(host, port)
        bound = self.sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,  # an open event stream must not block shutdown
        )
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    def run(self) -> None:
        """Serve until Ctrl-C or SIGTERM."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.sock.close()

    def start(self) -> None:
        """Serve in a daemon thread; returns once the server accepts connections."""
        self.thread = threading.Thread(target=self.run, name="riverbed-dashboard", daemon=True)
        self.thread.start()
        for _ in range(500):
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not self.server.started:
            raise RiverbedError(f"the dashboard did not start on {self.url}")

    def stop(self) -> None:
        """Stop the background server and wait for it."""
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)


def serve(
    home: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    announce: Callable[[str], Any] = print,
) -> None:
    """Serve the dashboard in the foreground until Ctrl-C; ``announce`` gets the URL to open."""
    server = DashboardServer(home, host=host, port=port, token=token)
    announce(f"riverbed dashboard of {home}: {server.url}  (Ctrl-C stops it)")
    server.run()
