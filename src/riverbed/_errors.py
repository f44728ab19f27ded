"""The error hierarchy: one root, and *transient* vs *terminal* as mixins.

A failure that may go away on retry (a refused connection, a timeout) mixes in
:class:`Transient`; everything else is terminal. The mixins cut across the kinds, so a
transient sink failure is still a :class:`SinkError`::

    try:
        writer.commit(epoch)
    except Transient:
        ...  # back off and retry

Every error survives pickling (errors cross process boundaries: workers, subprocess tests).
"""

from __future__ import annotations

from typing import Any


class RiverbedError(Exception):
    """Root of every error riverbed raises on purpose.

    Messages say what was expected, what arrived, where, and give a hint.

    Examples
    --------
    >>> import pickle
    >>> err = pickle.loads(pickle.dumps(SinkUnavailable("db down")))
    >>> isinstance(err, SinkError), isinstance(err, Transient), str(err)
    (True, True, 'db down')
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuild from the message and every attribute set in __init__, whatever its signature
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[RiverbedError], args: tuple[Any, ...], state: dict[str, Any]) -> RiverbedError:
    err = Exception.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class Transient:
    """Mixin: the failure may go away on retry (a server not reachable yet, a timeout)."""


class Terminal:
    """Mixin: retrying will not help (bad input, a wrong definition)."""


class PlanError(RiverbedError, Terminal):
    """The pipeline definition is invalid (unknown column, wrong type, bad option)."""


class ConfigError(RiverbedError, Terminal):
    """A connector, URI or option cannot be understood."""


class SourceError(RiverbedError):
    """A source cannot be read (missing file, unreadable data)."""


class SinkError(RiverbedError):
    """A sink cannot write or commit."""


class TransientError(RiverbedError, Transient):
    """A failure that may go away on retry, of no more specific kind."""


class SourceUnavailable(SourceError, Transient):
    """A source's server or storage cannot be reached right now."""


class SinkUnavailable(SinkError, Transient):
    """A sink's server or storage cannot be reached right now, or a commit's outcome is unknown."""


class RecordError(SourceError, Terminal):
    """One record does not parse or does not fit the declared schema.

    Carries where the record came from so a user can find it.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str,
        position: str,
        field: str | None = None,
        raw: str | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.position = position
        self.field = field
        self.raw = raw


class UserFunctionError(RiverbedError, Terminal):
    """A user function (map_batches / map_rows / an aggregate) raised or returned something unusable."""


class MissingExtraError(RiverbedError, Terminal):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the package {package!r}, which is not installed.\n"
            f'  hint: pip install "riverbed[{extra}]"'
        )
        self.package = package
        self.extra = extra
