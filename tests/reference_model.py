"""A simple pure-Python model of riverbed's event-time semantics, one event at a time.

It is the yardstick the vectorized executors are tested against: slow, obvious, and written
straight from the rules in ARCHITECTURE.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

Event = dict[str, Any]


def fixed_windows(t: int, size: int, every: int) -> list[int]:
    """Starts of every window [s, s + size) with s aligned to ``every`` that contains t."""
    last = (t // every) * every
    out = []
    s = last
    while s > t - size:
        out.append(s)
        s -= every
    return sorted(out)


def aggregate(rows: list[tuple[int, int, Event]], aggs: dict[str, tuple[str, str | None]]) -> dict[str, Any]:
    """rows: (arrival, t, event). aggs: name -> (kind, column)."""
    out: dict[str, Any] = {}
    for name, (kind, col) in aggs.items():
        vals = [e[col] for _, _, e in rows] if col else []
        nn = [v for v in vals if v is not None]
        if kind == "count":
            out[name] = len(rows) if col is None else len(nn)
        elif kind == "sum":
            out[name] = sum(nn) if nn else 0
        elif kind == "min":
            out[name] = min(nn) if nn else None
        elif kind == "max":
            out[name] = max(nn) if nn else None
        elif kind == "mean":
            out[name] = sum(nn) / len(nn) if nn else None
        elif kind == "first":
            tmin = min(t for _, t, _ in rows)
            out[name] = next(e[col] for _, t, e in sorted(rows, key=lambda r: r[0]) if t == tmin)
        elif kind == "last":
            tmax = max(t for _, t, _ in rows)
            out[name] = [e[col] for _, t, e in sorted(rows, key=lambda r: r[0]) if t == tmax][-1]
        elif kind == "count_distinct":
            out[name] = len(set(nn))
    return out


def run_reference(
    events: list[Event],
    *,
    window: tuple[str, int, int],
    by: list[str],
    aggs: dict[str, tuple[str, str | None]],
    ts: str = "ts",
    max_delay: int | None = None,
    lateness: int = 0,
) -> tuple[list[dict[str, Any]], list[Event]]:
    """Windows and late events of a stream job over ``events`` in arrival order (one
    partition). ``max_delay=None`` means batch mode: nothing is late.

    ``window`` is ("tumbling", size, size), ("sliding", size, every) or ("session", gap, 0).
    """
    kind, a, b = window
    wm = -math.inf
    max_t: int | None = None
    late: list[Event] = []
    buckets: dict[tuple[Any, ...], list[tuple[int, int, Event]]] = defaultdict(list)
    session_rows: dict[tuple[Any, ...], list[tuple[int, int, Event]]] = defaultdict(list)
    for arrival, e in enumerate(events):
        t = e[ts]
        key = tuple(e[k] for k in by)
        if kind == "session":
            if t + lateness <= wm:
                late.append(e)
            else:
                session_rows[key].append((arrival, t, e))
        else:
            starts = fixed_windows(t, a, b)
            on_time = [s for s in starts if not (s + a + lateness <= wm)]
            if not on_time:
                late.append(e)
            for s in on_time:
                buckets[(*key, s)].append((arrival, t, e))
        if max_delay is not None:
            max_t = t if max_t is None else max(max_t, t)
            wm = max_t - max_delay
    out: list[dict[str, Any]] = []
    if kind == "session":
        for key, rows in session_rows.items():
            rows = sorted(rows, key=lambda r: (r[1], r[0]))
            current: list[tuple[int, int, Event]] = []
            for r in rows:
                if current and r[1] - current[-1][1] >= a:
                    out.append(
                        _row(
                            by, key, min(x[1] for x in current), max(x[1] for x in current) + a, current, aggs
                        )
                    )
                    current = []
                current.append(r)
            if current:
                out.append(
                    _row(by, key, min(x[1] for x in current), max(x[1] for x in current) + a, current, aggs)
                )
    else:
        for full_key, rows in buckets.items():
            key, s = full_key[:-1], full_key[-1]
            out.append(_row(by, key, s, s + a, rows, aggs))
    return out, late


def _row(
    by: list[str],
    key: tuple[Any, ...],
    start: int,
    end: int,
    rows: list[tuple[int, int, Event]],
    aggs: dict[str, tuple[str, str | None]],
) -> dict[str, Any]:
    return {
        **dict(zip(by, key, strict=True)),
        "window_start": start,
        "window_end": end,
        **aggregate(rows, aggs),
    }
