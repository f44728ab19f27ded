"""The job status file: written atomically under ``<home>/jobs/<pipeline>/status.json``.

One file per pipeline name (a new run of the same pipeline replaces it). The writer is
:class:`riverbed.observe.JobObserver`; the readers here serve ``riverbed status`` and the
dashboard. A status says::

    {"version": 1, "pipeline": "...", "state": "running|finished|failed|stopped",
     "pid": 1234, "host": "...", "mode": "stream|batch", "started": 1.7e9, "updated": 1.7e9,
     "ended": null | 1.7e9, "error": null | "...", "metrics_url": null | "http://...",
     "plan": {"pipeline": "...", "steps": [{"id", "kind", "inputs", "description"}]},
     "figures": {... latest figures, see riverbed.observe.Figures ...},
     "steps": {step_id: {"rows_in", "rows_out", "rate_in", "rate_out", "seconds"}},
     "samples": [{"t", "events", "rate", "watermark_delay_s", "lag", "late", "dead_letters",
                  "batch_rows", "batch_seconds", "open_windows", "state_bytes"}, ...],
     "checkpoints": [{"t", "epoch", "duration_s", "size_bytes"}, ...],
     "timeline": [{"step", "start_s", "seconds"}, ...]}

Times are Unix epoch seconds (floats). A job whose state is ``running`` but whose process is
gone (killed, crashed hard) is reported with state ``failed`` and ``error`` "process gone".
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"
STATES = ("running", "finished", "failed", "stopped")


def jobs_dir(home: Path) -> Path:
    """Where the jobs' status files live under riverbed's home.

    Examples
    --------
    >>> jobs_dir(Path("/tmp/rb")).as_posix()
    '/tmp/rb/jobs'
    """
    return Path(home) / "jobs"


def status_path(home: Path, pipeline: str) -> Path:
    """The status file of ``pipeline`` under ``home``.

    Examples
    --------
    >>> status_path(Path("/tmp/rb"), "q2").as_posix()
    '/tmp/rb/jobs/q2/status.json'
    """
    return jobs_dir(home) / _safe(pipeline) / STATUS_FILE


def _safe(name: str) -> str:
    """A pipeline name as one path component (no separators, no leading dot)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cleaned.lstrip(".") or "_"


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Write ``status`` as JSON to ``path`` atomically: a temporary file in the same
    directory, flushed and fsynced, then renamed over the old one. A reader sees the old
    file or the new one, never half of one.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "jobs" / "x" / "status.json"
    >>> write_status(target, {"state": "running"})
    >>> json.loads(target.read_text())["state"]
    'running'
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(status, separators=(",", ":"), default=_jsonable).encode()
    fd, tmp = tempfile.mkstemp(prefix=".status-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _jsonable(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine.

    Examples
    --------
    >>> pid_alive(os.getpid())
    True
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    """A killed child that its parent has not reaped yet is a zombie: gone for us."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def read_status(path: Path) -> dict[str, Any] | None:
    """Read one status file; ``None`` when it is missing or unreadable. A ``running`` job
    whose process is gone (same host) comes back as ``failed`` with ``error`` "process gone".

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "status.json"
    >>> write_status(target, {"state": "running", "pid": 0, "host": socket.gethostname()})
    >>> s = read_status(target)
    >>> s["state"], s["error"]
    ('failed', 'process gone')
    """
    try:
        status: dict[str, Any] = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(status, dict):
        return None
    if status.get("state") == "running" and status.get("host", socket.gethostname()) == socket.gethostname():
        pid = status.get("pid")
        if not isinstance(pid, int) or not pid_alive(pid):
            status["state"] = "failed"
            status["error"] = "process gone"
            status["process_gone"] = True
    return status


def list_jobs(home: Path) -> list[dict[str, Any]]:
    """Every job with a status file under ``home``, newest start first.

    Examples
    --------
    >>> import tempfile
    >>> home = Path(tempfile.mkdtemp())
    >>> write_status(status_path(home, "a"), {"pipeline": "a", "state": "finished", "started": 1.0})
    >>> [j["pipeline"] for j in list_jobs(home)]
    ['a']
    """
    root = jobs_dir(home)
    if not root.is_dir():
        return []
    jobs = []
    for path in sorted(root.glob(f"*/{STATUS_FILE}")):
        status = read_status(path)
        if status is not None:
            status.setdefault("pipeline", path.parent.name)
            jobs.append(status)
    jobs.sort(key=lambda s: -float(s.get("started") or 0))
    return jobs


def find_job(home: Path, name: str) -> dict[str, Any] | None:
    """The status of the job named ``name`` (its pipeline name), or ``None``.

    Examples
    --------
    >>> import tempfile
    >>> find_job(Path(tempfile.mkdtemp()), "nothing") is None
    True
    """
    return read_status(status_path(home, name))


def state_label(status: dict[str, Any]) -> str:
    """The state as shown to a person: ``failed (process gone)`` for a vanished process.

    Examples
    --------
    >>> state_label({"state": "failed", "process_gone": True})
    'failed (process gone)'
    >>> state_label({"state": "finished"})
    'finished'
    """
    state = str(status.get("state", "unknown"))
    if status.get("process_gone"):
        return f"{state} (process gone)"
    return state
