"""riverbed's hidden columns, named in one place.

Every internal column starts with ``__rb_`` so user columns never collide with them, and so
sinks and user functions can be shown frames without them (:func:`visible`).
"""

from __future__ import annotations

import polars as pl

PREFIX = "__rb_"
WM = "__rb_wm"
"""The watermark each row is judged against (int64 µs since the epoch), set at the source."""
T = "__rb_t"
"""A row's event time as int64 microseconds since the epoch (int event times: ms x 1000)."""
LATE = "__rb_late"
"""Row flag: the row is late for its window."""
IDX = "__rb_idx"
"""A row index inside one micro-batch."""
SID = "__rb_sid"
"""A session id inside one micro-batch."""
GID = "__rb_gid"
"""A group id when sessions merge."""
CLOSE = "__rb_close"
"""Row flag: the window closes now."""
END = "__rb_end"
"""A window's end while it is emitted."""
SEEN = "__rb_seen"
"""Dedupe state: the event time of a key's previous arrival."""
KEEP = "__rb_keep"
"""Dedupe flag: the row is kept."""
EMITTED = "__rb_emitted"
"""Session state: per key, the end of the last emitted session (µs)."""
OCC = "__rb_occ"
"""The n-th occurrence of identical rows (matching a user function's rows to its input's)."""
RIGHT = "__r"
"""Suffix of the right-hand state columns when two partial states are joined."""


def is_hidden(name: str) -> bool:
    """Whether ``name`` is one of riverbed's internal columns.

    Examples
    --------
    >>> is_hidden("__rb_wm"), is_hidden("amount")
    (True, False)
    """
    return name.startswith(PREFIX)


def visible(df: pl.DataFrame, keep: tuple[str, ...] = ()) -> pl.DataFrame:
    """``df`` without riverbed's internal columns (but those in ``keep``).

    Examples
    --------
    >>> visible(pl.DataFrame({"x": [1], "__rb_wm": [0]})).columns
    ['x']
    """
    drop = [c for c in df.columns if is_hidden(c) and c not in keep]
    return df.drop(drop) if drop else df
