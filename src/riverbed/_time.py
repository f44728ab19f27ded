"""Durations: '10s', '1m', '1d', timedelta or integer milliseconds, all to milliseconds."""

from __future__ import annotations

import re
from datetime import timedelta

from riverbed._errors import PlanError

_UNITS_MS = {
    "ms": 1,
    "s": 1_000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 7 * 86_400_000,
}
_PART = re.compile(r"(\d+)(ms|min|s|m|h|d|w)")

Duration = str | int | timedelta


def to_ms(value: Duration, *, what: str = "duration") -> int:
    """Convert a duration to integer milliseconds.

    Examples
    --------
    >>> to_ms("1m30s")
    90000
    >>> to_ms("1d")
    86400000
    >>> to_ms(250)
    250
    """
    if isinstance(value, bool):
        raise PlanError(f"{what}: expected a duration like '10s', got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        pos = 0
        total = 0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            total += int(match.group(1)) * _UNITS_MS[match.group(2)]
            pos = match.end()
        if pos == len(text) and text:
            return total
    raise PlanError(
        f"{what}: cannot read {value!r} as a duration.\n"
        "  hint: use e.g. '500ms', '10s', '1m', '2h', '1d', '1h30m', a timedelta or int milliseconds"
    )


def format_ms(ms: int) -> str:
    """Render milliseconds as a short duration string.

    Examples
    --------
    >>> format_ms(90000)
    '1m30s'
    """
    if ms == 0:
        return "0s"
    out = []
    rest = ms
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    if rest:
        out.append(f"{rest}ms")
    return "".join(out)
