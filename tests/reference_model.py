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
        elif kind in ("first", "last"):  # ties: the smallest / largest non-null value
            edge = min(t for _, t, _ in rows) if kind == "first" else max(t for _, t, _ in rows)
            tied = [e[col] for _, t, e in rows if t == edge and e[col] is not None]
            out[name] = (min(tied) if kind == "first" else max(tied)) if tied else None
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
    # sessions: per key, open sessions as [start, end, rows]; emitted ones; last emitted end
    open_s: dict[tuple[Any, ...], list[list[Any]]] = defaultdict(list)
    emitted: list[tuple[tuple[Any, ...], list[Any]]] = []
    last_end: dict[tuple[Any, ...], int] = {}

    def close_sessions(upto: float) -> None:
        for key, sessions in open_s.items():
            for s in [s for s in sessions if s[1] + lateness <= upto]:
                sessions.remove(s)
                emitted.append((key, s))
                last_end[key] = max(last_end.get(key, s[1]), s[1])

    for arrival, e in enumerate(events):
        t = e[ts]
        key = tuple(e[k] for k in by)
        if kind == "session":
            close_sessions(wm)
            if t + a + lateness <= wm or t < last_end.get(key, -math.inf):
                late.append(e)
            else:
                new = [t, t + a, [(arrival, t, e)]]
                for s in [s for s in open_s[key] if s[0] < new[1] and new[0] < s[1]]:
                    open_s[key].remove(s)
                    new = [min(s[0], new[0]), max(s[1], new[1]), s[2] + new[2]]
                open_s[key].append(new)
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
    close_sessions(math.inf)
    out: list[dict[str, Any]] = []
    if kind == "session":
        for key, (start, end, rows) in emitted:
            out.append(_row(by, key, start, end, rows, aggs))
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
