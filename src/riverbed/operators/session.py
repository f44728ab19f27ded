"""Session windows in stream mode: per key, an event at ``t`` opens ``[t, t + gap)`` and
overlapping intervals merge; a session is emitted once, when
``window_end + allowed_lateness <= watermark``.

Lateness rule (emit-once, and no more lossy than that needs): an event is late when

* ``t + gap + allowed_lateness <= watermark at its arrival`` — the session it would open
  alone would already be closed; or
* ``t`` is before the end of the last session already emitted for its key — it could only
  join (or reorder) a session that was already written out.

Otherwise it joins the key's open sessions, even when it is older than the watermark. Example
with gap 10 s, no allowed lateness, watermark delay 0: events ``a@0s, a@30s`` then ``a@25s``
(watermark 30 s): the session ``[0s, 10s)`` was emitted at 30 s; ``25 + 10 > 30`` and
``25 >= 10``, so ``a@25s`` joins the open session ``[30s, 40s)``, making it ``[25s, 40s)``.
An event ``a@5s`` arriving then is late (before the emitted end 10 s). The second condition
is exact whatever the micro-batch size: a micro-batch is merged in the longest runs of rows
before which no session can close, and sessions are emitted between runs.

The state per key is the open sessions' partial aggregates plus one integer: the end of the
last emitted session, forgotten once ``end + gap + allowed_lateness <= watermark`` (then the
first condition covers it).
"""

from __future__ import annotations

import polars as pl

from riverbed._cols import CLOSE, EMITTED, END, GID, IDX, LATE, SID, WM, T
from riverbed._plan import WindowAggNode
from riverbed.aggregates import merge_exprs, partial_exprs
from riverbed.operators.base import Tick
from riverbed.operators.window import START, KeyedWindows
from riverbed.windows import US, Session

INF = 2**62


class SessionState(KeyedWindows):
    """Open sessions of one step, plus each key's last emitted end."""

    def __init__(self, node: WindowAggNode, snap: dict[str, pl.DataFrame | None]) -> None:
        super().__init__(node)
        spec = node.window
        assert isinstance(spec, Session)
        self.gap = spec.gap_ms * US
        self.state = snap.get("state")
        self.emitted: pl.DataFrame | None = snap.get("emitted")

    def frames(self) -> dict[str, pl.DataFrame | None]:
        return {"state": self.state, "emitted": self.emitted}

    def process(self, rows: pl.LazyFrame, tick: Tick) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
        df = rows.collect()
        emitted: list[pl.DataFrame] = []
        late: list[pl.DataFrame] = [df.clear().drop(T)]
        # Exact at any micro-batch size: take the longest prefix of rows before which no
        # session can close, emit what closes before the next row, and go on.
        while df.height:
            first_wm = df.get_column(WM)[0]
            if first_wm is not None:
                emitted.append(self._emit(int(first_wm), final=False))
            n = self._safe_prefix(df)
            late.append(self._absorb(df.slice(0, n)))
            df = df.slice(n)
        emitted.append(self.emit_only(tick))
        kept = [f for f in emitted if f.width]
        out = pl.concat(kept, how="vertical_relaxed") if kept else pl.DataFrame()
        late_rows = pl.concat(late, how="vertical_relaxed")
        return out, late_rows, {"late": late_rows.height}

    def _safe_prefix(self, df: pl.DataFrame) -> int:
        """How many leading rows arrive before any session (open or formed by those rows)
        could close: all of them can be merged before anything is emitted."""
        state_close = INF
        if self.state is not None and self.state.height:
            state_close = int(self.state.get_column(END).min()) + self.lateness  # type: ignore[arg-type]
        reach = pl.col(T) + (self.gap + self.lateness)
        opens = pl.when(reach > pl.col(WM)).then(reach).otherwise(INF)
        bound = pl.min_horizontal(opens.cum_min().shift(1).fill_null(INF), pl.lit(state_close))
        flags = df.select((pl.col(WM) >= bound).fill_null(False).arg_true()).to_series()
        later = flags.filter(flags > 0)
        return int(later[0]) if later.len() else df.height

    def _absorb(self, df: pl.DataFrame) -> pl.DataFrame:
        """Split late rows off, merge the others into the open sessions; return the late rows."""
        late_mask = pl.col(T) + (self.gap + self.lateness) <= pl.col(WM)
        if self.emitted is not None and self.emitted.height and df.height:
            if self.by:
                df = df.join(self.emitted, on=self.by, how="left", maintain_order="left", nulls_equal=True)
            else:
                df = df.with_columns(pl.lit(self.emitted[EMITTED][0]).alias(EMITTED))
            late_mask = late_mask | (pl.col(T) < pl.col(EMITTED)).fill_null(False)
        else:
            df = df.with_columns(pl.lit(None, pl.Int64).alias(EMITTED))
        flagged = df.with_columns(late_mask.alias(LATE))
        on_time = flagged.filter(~pl.col(LATE)).drop(EMITTED, LATE)
        if on_time.height:
            self._merge(on_time)
        return flagged.filter(pl.col(LATE)).drop(T, EMITTED, LATE)

    def _merge(self, on_time: pl.DataFrame) -> None:
        gap, by = self.gap, self.by
        # 1) sessions among the new events
        rows = on_time.with_row_index(IDX).sort([*by, T], maintain_order=True, nulls_last=True)
        prev = pl.col(T).shift(1).over(by) if by else pl.col(T).shift(1)
        new = (pl.col(T) - prev >= gap).fill_null(True).cast(pl.Int64)
        sid = new.cum_sum().over(by) if by else new.cum_sum()
        rows = rows.with_columns(sid.alias(SID)).sort(IDX)
        partial = (
            rows.group_by([*by, SID], maintain_order=True)
            .agg(
                pl.col(T).min().alias(START),
                (pl.col(T).max() + gap).alias(END),
                *(e for n, a in self.node.aggs for e in partial_exprs(n, a)),
            )
            .drop(SID)
        )
        # 2) merge intervals with the open sessions (state first: it arrived earlier)
        parts = [partial] if self.state is None else [self.state, partial]
        both = pl.concat(parts, how="vertical_relaxed").with_row_index(IDX)
        ordered = both.sort([*by, START, IDX], nulls_last=True)
        prev_end = pl.col(END).shift(1).cum_max().over(by) if by else pl.col(END).shift(1).cum_max()
        brk = (pl.col(START) >= prev_end).fill_null(True).cast(pl.Int64)
        gid = brk.cum_sum().over(by) if by else brk.cum_sum()
        ordered = ordered.with_columns(gid.alias(GID)).sort(IDX)
        self.state = (
            ordered.group_by([*by, GID], maintain_order=True)
            .agg(
                pl.col(START).min(),
                pl.col(END).max(),
                *(e for n, a in self.node.aggs for e in merge_exprs(n, a)),
            )
            .drop(GID)
        )

    def emit_only(self, tick: Tick) -> pl.DataFrame:
        if tick.final:
            return self._emit(None, final=True)
        if tick.watermark is None:
            return pl.DataFrame()
        return self._emit(tick.watermark, final=False)

    def _emit(self, watermark: int | None, *, final: bool) -> pl.DataFrame:
        """Split off the sessions ``watermark`` closes (all when ``final``)."""
        if self.state is None:
            return pl.DataFrame()
        close = pl.lit(True) if final else pl.col(END) + self.lateness <= (watermark or 0)
        flagged = self.state.with_columns(close.alias(CLOSE))
        self.state = flagged.filter(~pl.col(CLOSE)).drop(CLOSE)
        out = flagged.filter(pl.col(CLOSE)).drop(CLOSE)
        self._remember(out, watermark)
        return out

    def _remember(self, out: pl.DataFrame, watermark: int | None) -> None:
        """Keep each key's last emitted end; forget those the first lateness rule covers."""
        if out.height:
            ends = (
                out.group_by(self.by).agg(pl.col(END).max().alias(EMITTED))
                if self.by
                else out.select(pl.col(END).max().alias(EMITTED))
            )
            if self.emitted is not None and self.emitted.height:
                both = pl.concat([self.emitted, ends], how="vertical_relaxed")
                ends = (
                    both.group_by(self.by).agg(pl.col(EMITTED).max())
                    if self.by
                    else both.select(pl.col(EMITTED).max())
                )
            self.emitted = ends
        if self.emitted is not None and watermark is not None:
            self.emitted = self.emitted.filter(pl.col(EMITTED) + (self.gap + self.lateness) > watermark)
