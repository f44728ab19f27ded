"""Named kill points for crash tests.

``RIVERBED_KILL_AT="POINT:N"`` (several separated by commas) makes the process SIGKILL itself
the N-th time it reaches :func:`kill_point` ``(POINT)``; the crash harness in
``tests/recovery`` uses it to stop a job in the middle of a checkpoint write, between a sink's
commit and the checkpoint, in the middle of a PostgreSQL COPY... Without the variable a kill
point costs one dictionary look-up.

Examples
--------
>>> kill_point("nowhere")  # no RIVERBED_KILL_AT: nothing happens
"""

from __future__ import annotations

import os
import signal

ENV = "RIVERBED_KILL_AT"

POINTS = (
    "offsets-written",
    "sink-committed",
    "before-checkpoint",
    "checkpoint-write",
    "after-checkpoint",
    "mid-copy",
    "file-appended",
)
"""Every named point (the crash test checks each is hit)."""

_hits: dict[str, int] = {}
_targets: dict[str, int] | None = None


def _parse() -> dict[str, int]:
    targets: dict[str, int] = {}
    for item in os.environ.get(ENV, "").split(","):
        name, _, nth = item.strip().partition(":")
        if name:
            targets[name] = int(nth or 1)
    return targets


def kill_point(name: str) -> None:
    """SIGKILL this process if ``RIVERBED_KILL_AT`` names ``name`` and this is its N-th hit."""
    global _targets
    if _targets is None:
        _targets = _parse()
    if name not in _targets:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == _targets[name]:
        os.kill(os.getpid(), signal.SIGKILL)
