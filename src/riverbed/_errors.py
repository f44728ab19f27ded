"""The error hierarchy: one root, terminal vs transient as types."""

from __future__ import annotations


class RiverbedError(Exception):
    """Root of every error riverbed raises on purpose.

    Messages say what was expected, what arrived, where, and give a hint.
    """


class PlanError(RiverbedError):
    """The pipeline definition is invalid (unknown column, wrong type, bad option)."""


class ConfigError(RiverbedError):
    """A connector, URI or option cannot be understood."""


class SourceError(RiverbedError):
    """A source cannot be read (missing file, unreadable data)."""


class RecordError(SourceError):
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


class SinkError(RiverbedError):
    """A sink cannot write or commit."""


class TransientError(RiverbedError):
    """A failure that may go away on retry (a broker or server not reachable yet)."""


class MissingExtraError(RiverbedError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the package {package!r}, which is not installed.\n"
            f'  hint: pip install "riverbed[{extra}]"'
        )
        self.package = package
        self.extra = extra
