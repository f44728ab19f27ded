"""riverbed's data directory: ``--home DIR``, else ``$RIVERBED_HOME``, else ``./.riverbed``."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """Return riverbed's data directory (not created).

    Examples
    --------
    >>> str(resolve_home("/tmp/rb"))
    '/tmp/rb'
    """
    if home is not None:
        return Path(home)
    env = os.environ.get("RIVERBED_HOME")
    if env:
        return Path(env)
    return Path(".riverbed")
