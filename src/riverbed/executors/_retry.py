"""Retries of transient failures: exponential backoff with jitter, bounded in time.

A source or sink that raises an error mixing in :class:`riverbed._errors.Transient` (a refused
connection, a timeout, a commit whose outcome is unknown) is retried after 50 ms, 100 ms,
200 ms ... (at most 5 s apart, each pause drawn between half and all of it), until the bound
has passed; then the job stops with a clear error, and its last checkpoint is where a restart
resumes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from riverbed._errors import RiverbedError, Transient

T = TypeVar("T")
logger = logging.getLogger("riverbed.retry")

FIRST_PAUSE_S = 0.05
MAX_PAUSE_S = 5.0


class RetriesExhausted(RiverbedError):
    """A transient failure lasted longer than the retry bound."""


def retry(fn: Callable[[], T], what: str, bound_s: float, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn`` until it succeeds, retrying transient failures for up to ``bound_s`` seconds.

    Examples
    --------
    >>> from riverbed._errors import TransientError
    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise TransientError("not yet")
    ...     return "done"
    >>> retry(flaky, "a flaky call", 10.0, sleep=lambda s: None), len(calls)
    ('done', 3)
    """
    deadline = time.monotonic() + bound_s
    pause = FIRST_PAUSE_S
    tries = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not isinstance(exc, Transient):
                raise
            tries += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise RetriesExhausted(
                    f"{what} kept failing for {bound_s:g} s ({tries} tries); last error: {exc}\n"
                    "  hint: the job stopped at its last checkpoint; run it again (same "
                    "--checkpoint-dir) once the server is back, or raise retry_timeout"
                ) from exc
            wait = min(pause, left) * random.uniform(0.5, 1.0)
            logger.warning("%s failed (%s); retry %d in %.2f s", what, exc, tries, wait)
            sleep(wait)
            pause = min(pause * 2, MAX_PAUSE_S)
