"""Keyed window state for stream mode: partial aggregates per open window, held columnar.

Each micro-batch: assign windows (vectorized), split off late rows by comparing each row's
window end (+ allowed lateness) with the watermark *at that row's arrival* (column
``__rb_wm``), aggregate the on-time rows into partial state, merge with the open windows,
then emit and free the windows the job watermark has passed.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from riverbed._plan import WindowAggNode
from riverbed.windows import (
    Session,
    T,
    Tumbling,
    assign_windows,
    event_time_expr,
    from_ms_expr,
    window_start_expr,
)

WM = "__rb_wm"
"""Hidden column: the watermark at each row's arrival (int64 ms), set at the source."""
IDX = "__rb_idx"
START = "window_start"
END = "window_end"


@dataclass
class Emitted:
    """What one micro-batch of a window step produced."""

    windows: pl.DataFrame
    late: pl.DataFrame
    late_assignments: int = 0


class WindowState:
    """Open windows of one window step."""

    def __init__(self, node: WindowAggNode, et: str, et_type: pl.DataType) -> None:
        self.node = node
        self.et = et
        self.et_type = et_type
        self.by = list(node.by)
        self.keys = [*self.by, START]
        self.state_cols = [c for n, a in node.aggs for c in a.state_columns(n)]
        self.state: pl.DataFrame | None = None
        self.lateness = node.allowed_lateness_ms
        self.session = isinstance(node.window, Session)

    # -- sizes ------------------------------------------------------------------------
    @property
    def open_windows(self) -> int:
        return 0 if self.state is None else self.state.height

    @property
    def state_bytes(self) -> int:
        return 0 if self.state is None else int(self.state.estimated_size())

    # -- one micro-batch --------------------------------------------------------------
    def process(self, rows: pl.LazyFrame | pl.DataFrame, job_wm: int | None, *, final: bool) -> Emitted:
        """Add a batch's rows, then emit what ``job_wm`` (None = -inf) closes.

        ``final=True`` (bounded input ended) flushes every open window.
        """
        late_assignments = 0
        self._changed: pl.DataFrame | None = None
        if isinstance(rows, pl.DataFrame) and rows.width == 0:  # no rows, no columns known
            return Emitted(self._emit(job_wm, final, None), pl.DataFrame(), 0)
        lf = rows.lazy().with_columns(event_time_expr(self.et, self.et_type).alias(T))
        spec = self.node.window
        if isinstance(spec, Tumbling):
            # one query per micro-batch: assign, split late rows, aggregate, fold into the
            # open windows, emit the closed ones
            partial_q, late_q = self._tumbling(lf, spec)
            emitted, late = self._fold_and_emit(partial_q, job_wm, final, extra=late_q)
            assert late is not None
            return Emitted(emitted, late, late.height)
        df = lf.collect()
        if isinstance(spec, Session):
            on_time, late = self._split_session(df)
            if on_time.height:
                self._merge_sessions(on_time)
            return Emitted(self._emit(job_wm, final, self._changed), late, 0)
        on_time, late, late_assignments = self._split_sliding(df)
        emitted, _ = self._fold_and_emit(self._partial(on_time).lazy(), job_wm, final)
        return Emitted(emitted, late, late_assignments)

    def _partial(self, on_time: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
        q = on_time.lazy().group_by(self.keys).agg(*(e for n, a in self.node.aggs for e in a.partial(n)))
        return q.collect()

    # -- tumbling and sliding ---------------------------------------------------------
    def _tumbling(self, lf: pl.LazyFrame, spec: Tumbling) -> tuple[pl.LazyFrame, pl.LazyFrame]:
        """Queries for the partial aggregates of on-time rows and for the late rows."""
        late_mask = pl.col(START) + (spec.size_ms + self.lateness) <= pl.col(WM)
        rows = lf.with_columns(window_start_expr(spec, pl.col(T)).alias(START)).with_columns(
            late_mask.alias("__rb_late")
        )
        partial_q = (
            rows.filter(~pl.col("__rb_late"))
            .group_by(self.keys)
            .agg(*(e for n, a in self.node.aggs for e in a.partial(n)))
        )
        late_q = rows.filter(pl.col("__rb_late")).drop(START, T, "__rb_late")
        return partial_q, late_q

    def _split_sliding(self, df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
        spec = self.node.window
        assert not isinstance(spec, Session)
        closes = pl.col(START) + (spec.size_ms + self.lateness)
        rows = df.with_row_index(IDX)
        assigned = assign_windows(rows, spec).with_columns(__rb_late=closes <= pl.col(WM)).collect()
        dropped = int(assigned["__rb_late"].sum())
        if dropped == 0:
            return assigned.drop("__rb_late"), df.clear().drop(T), 0
        on_time = assigned.filter(~pl.col("__rb_late")).drop("__rb_late")
        # an event is late when every window it belongs to is late (as in Flink)
        kept = on_time.select(IDX).unique()
        late = rows.join(kept, on=IDX, how="anti").sort(IDX).drop(IDX, T)
        return on_time, late, dropped

    def _fold_and_emit(
        self,
        partial_q: pl.LazyFrame,
        job_wm: int | None,
        final: bool,
        extra: pl.LazyFrame | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """Fold partial aggregates into the open windows, then split off and finish the
        windows ``job_wm`` closes. Returns the emitted windows and ``extra`` collected."""
        found = pl.collect_all([partial_q] if extra is None else [partial_q, extra])
        partial = found[0]
        if self.state is None or self.state.height == 0:
            merged = partial
        else:
            # only windows the state can hold need the join: newer ones are simply appended
            newest = self.state.get_column(START).max()
            overlap = partial.get_column(START) <= newest
            old, new = partial.filter(overlap), partial.filter(~overlap)
            merged = self.state
            if old.height:
                merged = self.state.join(old, on=self.keys, how="full", coalesce=True, suffix="__r").select(
                    *self.keys, *(e for n, a in self.node.aggs for e in a.combine(n, "__r"))
                )
            if new.height:
                merged = pl.concat([merged, new], how="vertical_relaxed")
        close = merged.with_columns(__rb_close=self._closing(job_wm, final)).get_column("__rb_close")
        self.state = merged.filter(~close)
        if self.node.emit == "final":
            out = merged.filter(close)
        else:
            out = merged.join(partial.select(self.keys), on=self.keys, how="semi")
        emitted = self._finish(out.lazy()).collect()
        return emitted, (found[1] if extra is not None else None)

    # -- sessions ---------------------------------------------------------------------
    def _split_session(self, df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        # a session event is late when t + allowed_lateness <= watermark: a session it could
        # extend may already have been emitted
        late_mask = (pl.col(T) + self.lateness) <= pl.col(WM)
        late = df.filter(late_mask)
        return df.filter(~late_mask), late.drop(T)

    def _merge_sessions(self, on_time: pl.DataFrame) -> None:
        spec = self.node.window
        assert isinstance(spec, Session)
        gap = spec.gap_ms
        by = self.by
        # 1) sessions among the new events
        rows = on_time.with_row_index(IDX).sort([*by, T], maintain_order=True)
        prev = pl.col(T).shift(1).over(by) if by else pl.col(T).shift(1)
        new = (pl.col(T) - prev >= gap).fill_null(True).cast(pl.Int64)
        sid = new.cum_sum().over(by) if by else new.cum_sum()
        rows = rows.with_columns(__rb_sid=sid).sort(IDX)
        partial = (
            rows.group_by([*by, "__rb_sid"], maintain_order=True)
            .agg(
                pl.col(T).min().alias(START),
                (pl.col(T).max() + gap).alias(END),
                *(e for n, a in self.node.aggs for e in a.partial(n)),
            )
            .drop("__rb_sid")
        )
        # 2) merge intervals with the open sessions (state first: it arrived earlier)
        parts = [partial] if self.state is None else [self.state, partial]
        both = pl.concat(parts, how="vertical_relaxed").with_row_index(IDX)
        ordered = both.sort([*by, START, IDX])
        prev_end = pl.col(END).shift(1).cum_max().over(by) if by else pl.col(END).shift(1).cum_max()
        brk = (pl.col(START) >= prev_end).fill_null(True).cast(pl.Int64)
        gid = brk.cum_sum().over(by) if by else brk.cum_sum()
        ordered = ordered.with_columns(__rb_gid=gid).sort(IDX)
        touched = ordered.filter(pl.col(IDX) >= (0 if self.state is None else self.state.height))
        self.state = ordered.group_by([*by, "__rb_gid"], maintain_order=True).agg(
            pl.col(START).min(),
            pl.col(END).max(),
            *(e for n, a in self.node.aggs for e in a.merge(n)),
        )
        changed_gids = touched.select([*by, "__rb_gid"]).unique()
        self._changed_sessions = self.state.join(changed_gids, on=[*by, "__rb_gid"], how="semi")
        self.state = self.state.drop("__rb_gid")
        self._changed = self._changed_sessions.select(self.keys)

    # -- emit -------------------------------------------------------------------------
    def _end_expr(self) -> pl.Expr:
        if self.session:
            return pl.col(END)
        spec = self.node.window
        assert not isinstance(spec, Session)
        return pl.col(START) + spec.size_ms

    def _finish(self, rows: pl.LazyFrame) -> pl.LazyFrame:
        names = [n for n, _ in self.node.aggs]
        out = rows.with_columns(__rb_end=self._end_expr()).with_columns(
            *(a.finish(n) for n, a in self.node.aggs)
        )
        return out.sort([START, *self.by]).select(
            *self.by,
            from_ms_expr(pl.col(START), self.et_type).alias(START),
            from_ms_expr(pl.col("__rb_end"), self.et_type).alias(END),
            *names,
        )

    def _closing(self, job_wm: int | None, final: bool) -> pl.Expr:
        if final:
            return pl.lit(True)
        if job_wm is None:
            return pl.lit(False)
        return (self._end_expr() + self.lateness) <= job_wm

    def _emit(self, job_wm: int | None, final: bool, changed: pl.DataFrame | None) -> pl.DataFrame:
        """Split off and finish the windows ``job_wm`` closes (sessions; batches with no rows)."""
        if self.state is None:
            return pl.DataFrame()
        flagged = self.state.lazy().with_columns(__rb_close=self._closing(job_wm, final))
        state_q = flagged.filter(~pl.col("__rb_close")).drop("__rb_close")
        if self.node.emit == "final":
            out_q = flagged.filter(pl.col("__rb_close"))
        elif changed is None or changed.height == 0:
            out_q = flagged.clear()
        else:
            out_q = flagged.join(changed.lazy(), on=self.keys, how="semi")
        self.state, emitted = pl.collect_all([state_q, self._finish(out_q.drop("__rb_close"))])
        return emitted
