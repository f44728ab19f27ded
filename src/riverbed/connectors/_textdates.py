"""Text to dates and times, value by value, so a result never depends on which value came first
(or on how the input was cut into chunks).

Accepted without ``formats=``: ISO 8601 with ``T`` or a space between date and time, optional
seconds and fraction (to nanoseconds), and an optional ``Z`` or ``±HH:MM``/``±HHMM`` offset;
or a bare date (midnight). A value with an offset is converted to the column's time zone
(UTC when the declared type has none); a value without one is taken as the column's time zone.
"""

from __future__ import annotations

import polars as pl

ISO_WITH_OFFSET = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%d %H:%M%#z",
)
ISO_LOCAL = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


def _has_offset(fmt: str) -> bool:
    return "%z" in fmt or "%#z" in fmt or "%:z" in fmt


def parse_datetime(text: pl.Expr, dtype: pl.Datetime, formats: tuple[str, ...] | None = None) -> pl.Expr:
    """Parse a string expression into ``dtype``, each value on its own (null where none fits).

    ``formats`` (strftime patterns, tried in order) replaces the ISO 8601 defaults.

    Examples
    --------
    >>> import polars as pl
    >>> s = pl.Series(["2024-05-01T09:00:00Z", "2024-05-01 11:00:00+02:00", "bad"])
    >>> pl.select(parse_datetime(pl.lit(s), pl.Datetime("us", "UTC"))).to_series().to_list()[1]
    datetime.datetime(2024, 5, 1, 9, 0, tzinfo=zoneinfo.ZoneInfo(key='UTC'))
    """
    unit = dtype.time_unit or "us"
    tz = dtype.time_zone
    value = text.str.strip_chars()
    candidates: list[pl.Expr] = []
    for fmt in formats or (*ISO_WITH_OFFSET, *ISO_LOCAL):
        parsed = value.str.to_datetime(fmt, time_unit=unit, strict=False, exact=True)
        if _has_offset(fmt):  # parsed as UTC: convert into the column's zone
            parsed = parsed.dt.convert_time_zone(tz) if tz else parsed.dt.replace_time_zone(None)
        elif tz:
            parsed = parsed.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
        candidates.append(parsed)
    return pl.coalesce(candidates) if len(candidates) > 1 else candidates[0]
