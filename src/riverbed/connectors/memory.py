"""In-memory frames as a source: the building block of the testing kit and table sources."""

from __future__ import annotations

from typing import Any

import polars as pl

from riverbed.connectors.base import SourceReader


class FrameReader(SourceReader):
    """Reads a DataFrame in slices of at most ``max_rows``; the position is the row index."""

    def __init__(self, frame: pl.DataFrame, resume: Any = None) -> None:
        self.frame = frame
        self.pos = int(resume or 0)

    def next_batch(self, max_rows: int, timeout: float) -> pl.DataFrame | None:
        if self.pos >= self.frame.height:
            return None
        out = self.frame.slice(self.pos, max_rows)
        self.pos += out.height
        return out

    def snapshot(self) -> Any:
        return self.pos
