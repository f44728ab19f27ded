"""Numbers for people: counts with the right plural, durations in the largest sensible units."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` and ``word``, plural unless ``n`` is 1 (``many``: an irregular plural).

    Examples
    --------
    >>> plural(1, "row"), plural(1_500, "dead letter"), plural(2, "entry", "entries")
    ('1 row', '1,500 dead letters', '2 entries')
    """
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def duration(seconds: float) -> str:
    """A duration as people say it: ``850 ms``, ``4.2 s``, ``3 min 20 s``, ``26 h 44 min``,
    ``1,113 days 21 h``.

    Examples
    --------
    >>> duration(0.85), duration(4.24), duration(200), duration(96_240), duration(96_241_368.8)
    ('850 ms', '4.2 s', '3 min 20 s', '26 h 44 min', '1,113 days 21 h')
    >>> duration(-3)
    '-3.0 s'
    """
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days:,} days {hours} h"
