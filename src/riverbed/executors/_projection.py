"""Which columns of a read step the rest of the plan uses (projection pushdown for stream
sources: a Parquet replay then decodes only those columns)."""

from __future__ import annotations

import polars as pl

from riverbed._plan import (
    DedupeNode,
    FilterNode,
    LookupJoinNode,
    Plan,
    ReadNode,
    SelectNode,
    WindowAggNode,
    WithColumnsNode,
)

ALL = None
"""Every column is needed."""


def _roots(exprs: tuple[pl.Expr, ...]) -> set[str] | None:
    names: set[str] = set()
    for e in exprs:
        if e.meta.has_multiple_outputs() or e.meta.is_regex_projection():
            return ALL
        names.update(e.meta.root_names())
    return names


def _outputs(exprs: tuple[pl.Expr, ...]) -> set[str]:
    return {e.meta.output_name(raise_if_undetermined=False) or "" for e in exprs}


def needed_columns(plan: Plan, node_id: str) -> set[str] | None:
    """Columns of ``node_id``'s output that some later step reads; None means all of them."""
    need: set[str] = set()
    for consumer in plan.consumers(node_id):
        got = _needed_by(plan, consumer)
        if got is ALL:
            return ALL
        need |= got
    node = plan.node(node_id)
    if isinstance(node, ReadNode) and node.event_time:
        need.add(node.event_time)
    return need


def _needed_by(plan: Plan, node: object) -> set[str] | None:
    """Columns a step needs from its input."""
    if isinstance(node, FilterNode):
        down, roots = needed_columns(plan, node.id), _roots((node.predicate,))
        return ALL if down is ALL or roots is ALL else down | roots
    if isinstance(node, WithColumnsNode):
        down, roots = needed_columns(plan, node.id), _roots(node.exprs)
        if down is ALL or roots is ALL:
            return ALL
        return (down - _outputs(node.exprs)) | roots
    if isinstance(node, SelectNode):
        return _roots(node.exprs)
    if isinstance(node, WindowAggNode):
        et = plan.event_time(node.inputs[0])
        if plan.consumers(node.id) and any(c.kind == "late" for c in plan.consumers(node.id)):
            return ALL  # late events are written whole
        cols = {*node.by, *(a.column for _, a in node.aggs if a.column)}
        return cols | ({et} if et else set())
    if isinstance(node, DedupeNode):
        down = needed_columns(plan, node.id)
        et = plan.event_time(node.inputs[0])
        return ALL if down is ALL else down | set(node.key) | ({et} if et else set())
    if isinstance(node, LookupJoinNode):
        down = needed_columns(plan, node.id)
        return ALL if down is ALL else down | set(node.on)
    return ALL  # writes, user functions, unions, dead letters: every column
