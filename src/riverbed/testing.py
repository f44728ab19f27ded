"""A public testing kit: scripted sources, a collecting sink, a manual clock, and a check
that a pipeline gives the same rows in batch and stream mode.

Examples
--------
>>> import polars as pl, riverbed as rb
>>> from riverbed.testing import source, collect
>>> p = rb.Pipeline("t")
>>> out = collect()
>>> _ = p.read(source([pl.DataFrame({"x": [1, 2, 3]})])).filter(pl.col("x") != 2).write(out)
>>> _ = p.run(progress=False)
>>> out.frame()["x"].to_list()
[1, 3]
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import polars as pl

from riverbed._errors import RiverbedError, SourceError
from riverbed.connectors.base import (
    Capabilities,
    Sink,
    SinkContext,
    SinkWriter,
    Source,
    SourceContext,
    SourceReader,
)

__all__ = [
    "CollectSink",
    "CrashError",
    "ManualClock",
    "ResultsDiffer",
    "ScriptedSource",
    "assert_same_results",
    "collect",
    "source",
]


class CrashError(RiverbedError):
    """Raised by a scripted source on cue, to test recovery."""


@dataclass(frozen=True, eq=False)
class ScriptedSource(Source):
    """Emits given batches per partition, in order. Build it with :func:`source`.

    Each partition's script is a list of DataFrames; the strings ``"pause"`` (nothing arrives
    in this poll) and ``"crash"`` (raise :class:`CrashError`) may appear between batches.
    """

    scripts: tuple[tuple[pl.DataFrame | str, ...], ...]
    bounded: bool = True
    name: str = "scripted"
    order: tuple[int, ...] | None = None
    """A pinned interleaving: whose turn each frame (or a partition's end, -1 - p) is."""
    _cursor: list[int] = field(default_factory=lambda: [0], repr=False, compare=False)

    capabilities: ClassVar[Capabilities] = Capabilities(bounded=True, unbounded=True, replayable=True)

    def describe(self) -> str:
        return f"{self.name} ({len(self.scripts)} partition(s))"

    def identity(self) -> str:
        """The name plus a fingerprint of the scripted rows (two scripts differ in id)."""
        h = hashlib.sha1()
        for script in self.scripts:
            for item in script:
                h.update(item.encode() if isinstance(item, str) else str(item.hash_rows().sum()).encode())
                h.update(b"|")
            h.update(b"#")
        return f"{self.name}:{h.hexdigest()[:12]}"

    def schema(self, ctx: SourceContext) -> pl.Schema:
        for script in self.scripts:
            for item in script:
                if isinstance(item, pl.DataFrame):
                    return item.schema
        raise SourceError(f"{self.describe()}: no batches, so no schema")

    def partitions(self, ctx: SourceContext) -> list[str]:
        self._cursor[0] = 0  # a new run starts the pinned interleaving again
        return [str(i) for i in range(len(self.scripts))]

    def scan(self, ctx: SourceContext) -> tuple[pl.LazyFrame, pl.DataFrame | None] | None:
        frames = [b for s in self.scripts for b in s if isinstance(b, pl.DataFrame)]
        return pl.concat(frames, how="vertical_relaxed").lazy(), None

    def open(self, partition: str, resume: Any, ctx: SourceContext) -> SourceReader:
        return _ScriptReader(self, int(partition), resume)


class _ScriptReader(SourceReader):
    def __init__(self, src: ScriptedSource, part: int, resume: Any) -> None:
        self.script = src.scripts[part]
        self.bounded = src.bounded
        self.schema = src.schema(SourceContext())
        state = resume or {"item": 0, "row": 0}
        self.item, self.row = int(state["item"]), int(state["row"])
        self.crashed: set[int] = set(state.get("crashed", []))
        self.part = part
        self.order = src.order
        self.cursor = src._cursor

    def next_batch(self, max_rows: int, timeout: float) -> pl.DataFrame | None:
        if self.order is not None:
            return self._in_turn(max_rows)
        while self.item < len(self.script):
            cur = self.script[self.item]
            if isinstance(cur, str):
                self.item += 1
                if cur == "pause":
                    return pl.DataFrame(schema=self.schema)
                if cur == "crash" and self.item - 1 not in self.crashed:
                    self.crashed.add(self.item - 1)
                    raise CrashError(f"scripted crash at item {self.item - 1}")
                continue
            out = cur.slice(self.row, max_rows)
            self.row += out.height
            if self.row >= cur.height:
                self.item, self.row = self.item + 1, 0
            if out.height:
                return out
        return None if self.bounded else pl.DataFrame(schema=self.schema)

    def _in_turn(self, max_rows: int) -> pl.DataFrame | None:
        """The pinned interleaving: rows only when it is this partition's turn."""
        assert self.order is not None
        pos = self.cursor[0]
        if pos >= len(self.order) or self.order[pos] not in (self.part, -1 - self.part):
            return pl.DataFrame(schema=self.schema)  # not this partition's turn
        if self.order[pos] == -1 - self.part:  # this partition ends here
            self.cursor[0] += 1
            return None
        cur = self.script[self.item]
        assert isinstance(cur, pl.DataFrame)
        out = cur.slice(self.row, max_rows)
        self.row += out.height
        if self.row >= cur.height:
            self.item, self.row = self.item + 1, 0
            self.cursor[0] += 1
        return out

    def snapshot(self) -> Any:
        return {"item": self.item, "row": self.row, "crashed": sorted(self.crashed)}


def source(
    batches: Sequence[pl.DataFrame | str] | None = None,
    *,
    partitions: Sequence[Sequence[pl.DataFrame | str]] | None = None,
    sequence: Sequence[tuple[int, pl.DataFrame]] | None = None,
    bounded: bool = True,
    name: str = "scripted",
) -> ScriptedSource:
    """A source that emits the given batches (one partition) or per-partition scripts.

    Scripts may hold ``"pause"`` (an empty poll) and ``"crash"`` (raise once) between frames.
    ``bounded=False`` keeps the source open (empty polls) after its script ends.

    ``sequence=[(partition, frame), ...]`` pins how several partitions interleave: the frames
    arrive in exactly that order whatever the micro-batch size, and each partition ends right
    after its last frame. Stream results then depend on nothing but the sequence (see
    "Several partitions" in the README).

    Examples
    --------
    >>> import polars as pl
    >>> src = source([pl.DataFrame({"x": [1]}), "pause", pl.DataFrame({"x": [2]})])
    >>> src.partitions(None)
    ['0']
    """
    if sequence is not None:
        if batches is not None or partitions is not None:
            raise ValueError("give one of batches=, partitions= or sequence=")
        n = max(p for p, _ in sequence) + 1
        if {p for p, _ in sequence} != set(range(n)):
            raise ValueError(f"sequence= must give every partition 0..{n - 1} at least one frame")
        per: list[list[pl.DataFrame | str]] = [[] for _ in range(n)]
        order: list[int] = []
        last = {p: i for i, (p, _) in enumerate(sequence)}
        for i, (p, frame) in enumerate(sequence):
            per[p].append(frame)
            order.append(p)
            if last[p] == i:
                order.append(-1 - p)
        return ScriptedSource(tuple(tuple(s) for s in per), bounded, name, tuple(order))
    if (batches is None) == (partitions is None):
        raise ValueError("give either batches=[...] or partitions=[[...], ...]")
    scripts = [list(batches)] if batches is not None else [list(p) for p in partitions or []]
    return ScriptedSource(tuple(tuple(s) for s in scripts), bounded, name)


@dataclass(frozen=True, eq=False)
class CollectSink(Sink):
    """Collects committed rows in memory. Build it with :func:`collect`."""

    name: str = "collect"
    _frames: list[pl.DataFrame] = field(default_factory=list, repr=False)
    _epochs: list[int] = field(default_factory=list, repr=False)

    # an upsert sink in the changelog sense: it keeps every version of an updated window, in
    # commit order (assert_same_results compares the last version of each)
    capabilities: ClassVar[Capabilities] = Capabilities(bounded=True, unbounded=True, upsert=True)

    def describe(self) -> str:
        return f"memory ({self.name})"

    def identity(self) -> str:
        """In-memory sinks are told apart by object: each collect() is a sink of its own."""
        return f"memory {self.name} {id(self):x}"

    def open(self, ctx: SinkContext) -> SinkWriter:
        return _CollectWriter(self)

    def frame(self) -> pl.DataFrame:
        """Every committed row, in commit order."""
        rows = [f for f in self._frames if f.height]
        if rows:
            return pl.concat(rows, how="diagonal_relaxed")
        return self._frames[0] if self._frames else pl.DataFrame()

    def batches(self) -> list[pl.DataFrame]:
        """The committed frames, one per write."""
        return list(self._frames)

    def clear(self) -> None:
        """Forget collected rows (e.g. between two runs)."""
        self._frames.clear()
        self._epochs.clear()


class _CollectWriter(SinkWriter):
    def __init__(self, sink: CollectSink) -> None:
        self.sink = sink
        self.staged: list[pl.DataFrame] = []

    def write(self, df: pl.DataFrame) -> None:
        self.staged.append(df)

    def commit(self, epoch: int) -> None:
        self.sink._frames.extend(self.staged)
        self.sink._epochs.append(epoch)
        self.staged = []

    def last_committed_epoch(self) -> int | None:
        return self.sink._epochs[-1] if self.sink._epochs else None


def collect(name: str = "collect") -> CollectSink:
    """A sink that keeps committed rows in memory; read them with ``.frame()``.

    Examples
    --------
    >>> sink = collect()
    >>> sink.frame().height
    0
    """
    return CollectSink(name)


class ManualClock:
    """A processing-time clock that moves only when told (for idle-timeout tests).

    Examples
    --------
    >>> clock = ManualClock()
    >>> clock.advance(5)
    >>> clock()
    5.0
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds

    def __call__(self) -> float:
        return self.now


class ResultsDiffer(AssertionError):
    """Batch and stream mode wrote different rows."""


def _canonical(df: pl.DataFrame) -> pl.DataFrame:
    if df.width == 0:
        return df
    return df.sort(df.columns, nulls_last=True)


def _latest(df: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    return df.unique(subset=key, keep="last", maintain_order=True) if df.height else df


def _update_key(plan: Any, step: str) -> tuple[str, ...] | None:
    """The upsert key of a step's output (emit='update' windows), through its validation."""
    from riverbed.operators import resolve

    res = resolve(plan, SourceContext(mode="stream"), "stream", SourceContext().home)
    return res.update_keys[step]


def assert_same_results(
    pipeline: Any,
    *,
    batch_sizes: Sequence[int | None] = (None,),
    rel_tol: float = 1e-9,
    home: Any = None,
) -> dict[str, pl.DataFrame]:
    """Run ``pipeline`` in batch mode and in stream mode (once per micro-batch size) and
    check that every sink receives the same rows (in any order; floats within ``rel_tol``).

    Sinks are swapped for in-memory collectors, so nothing is written. In ``update`` emit
    mode the last version of each window is compared. Stream mode must see no late events:
    late data is where the two modes differ by design. Returns the batch outputs by step.

    Examples
    --------
    >>> import polars as pl, riverbed as rb
    >>> ev = pl.DataFrame({"k": [1, 1, 2], "ts": [0, 1_000, 2_000], "v": [1, 2, 3]})
    >>> p = rb.Pipeline("same")
    >>> _ = (p.read(source([ev]), event_time="ts")
    ...       .window(rb.tumbling("1s"), by="k").agg(n=rb.count()).write(collect()))
    >>> out = assert_same_results(p, batch_sizes=[1, 2, None])
    >>> out[p.plan().writes()[0].id].height
    3
    """
    from polars.testing import assert_frame_equal

    plan = pipeline.plan()

    def capture() -> tuple[Any, dict[str, CollectSink]]:
        sinks: dict[str, CollectSink] = {}

        def swap(node: Any) -> CollectSink:
            sinks[node.id] = collect(node.id)
            return sinks[node.id]

        return pipeline.with_sinks(swap), sinks

    batch_p, batch_sinks = capture()
    batch_p.run("batch", progress=False, home=home)
    expected = {k: _canonical(v.frame()) for k, v in batch_sinks.items()}
    for size in batch_sizes:
        stream_p, stream_sinks = capture()
        opts: dict[str, Any] = {"max_batch_rows": size or 1_000_000_000}
        result = stream_p.run("stream", progress=False, home=home, **opts)
        if result.total_late:
            raise ResultsDiffer(
                f"stream mode (max_batch_rows={size}) saw {result.total_late} late event(s); "
                "batch mode sees none, so the results differ by design"
            )
        partly = result.stats.get("late_assignments", {})
        if partly:
            raise ResultsDiffer(
                f"stream mode (max_batch_rows={size}): events were late for some of their windows "
                f"(sliding windows: {partly}) and left out of those; batch mode sees none late, so "
                "the results differ by design.\n  hint: a larger watermark max_delay or allowed_lateness"
            )
        for step, sink in stream_sinks.items():
            got = sink.frame()
            key = _update_key(plan, plan.node(step).inputs[0])
            if key and got.height:
                got = _latest(got, list(key))
            try:
                assert_frame_equal(
                    _canonical(got),
                    expected[step],
                    check_exact=False,
                    rel_tol=rel_tol,
                    check_dtypes=bool(got.height and expected[step].height),
                )
            except AssertionError as exc:
                raise ResultsDiffer(
                    f"step {step!r}: stream mode (max_batch_rows={size}) differs from batch mode:\n{exc}"
                ) from None
    return expected
