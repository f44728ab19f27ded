"""Pictures of a plan from its JSON (``Plan.to_json()``): text, Mermaid and SVG.

The SVG is drawn here, with no JavaScript: a layered layout (each step on the layer after its
deepest input, long edges routed through invisible points on the layers they cross), a few
barycenter sweeps to reduce crossings, boxes with the step's id, kind and description, and
arrows. The dashboard shows the same SVG and fills each step's ``rb-rate`` text live.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from riverbed._errors import PlanError

FORMATS = ("text", "json", "mermaid", "svg")

BOX_W, BOX_H = 230, 62
GAP_X, GAP_Y = 36, 54
MARGIN = 16
DESC_CHARS = 34


def parse_plan(plan: str | dict[str, Any]) -> dict[str, Any]:
    """The plan as a dict, checked: ``{"pipeline": str, "steps": [{"id", "kind", "inputs",
    "description"}]}`` with every input naming an earlier step.

    Examples
    --------
    >>> parse_plan('{"pipeline": "p", "steps": []}')["pipeline"]
    'p'
    """
    data = json.loads(plan) if isinstance(plan, str) else plan
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise PlanError(f"expected a plan as JSON with a 'steps' list, got {str(data)[:80]!r}")
    seen: set[str] = set()
    for step in data["steps"]:
        for i in step.get("inputs", []):
            if i not in seen:
                raise PlanError(
                    f"step {step.get('id')!r} reads {i!r}, which is not an earlier step of the plan\n"
                    "  hint: pass the JSON of Plan.to_json(), whose steps come in order"
                )
        seen.add(step["id"])
    return data


def render(plan: str | dict[str, Any], fmt: str) -> str:
    """The plan drawn in ``fmt``: ``text``, ``json``, ``mermaid`` or ``svg``.

    Examples
    --------
    >>> plan = {"pipeline": "p", "steps": [
    ...     {"id": "read_1", "kind": "read", "inputs": [], "description": "read a.parquet"},
    ...     {"id": "write_2", "kind": "write", "inputs": ["read_1"], "description": "write b"}]}
    >>> print(render(plan, "mermaid"))
    flowchart TD
      read_1["<b>read_1</b><br/>read a.parquet"]
      write_2["<b>write_2</b><br/>write b"]
      read_1 --> write_2
    """
    data = parse_plan(plan)
    if fmt == "text":
        return to_text(data)
    if fmt == "json":
        return json.dumps(data, indent=2)
    if fmt == "mermaid":
        return to_mermaid(data)
    if fmt == "svg":
        return to_svg(data)
    raise PlanError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def to_text(plan: dict[str, Any]) -> str:
    """One line per step, with its inputs.

    Examples
    --------
    >>> print(to_text({"pipeline": "p", "steps": [{"id": "r", "kind": "read", "inputs": [],
    ...                "description": "read x"}]}))
    pipeline 'p'
      r: read x
    """
    lines = [f"pipeline {plan.get('pipeline')!r}"]
    for s in plan["steps"]:
        src = f" <- {', '.join(s['inputs'])}" if s["inputs"] else ""
        lines.append(f"  {s['id']}: {s.get('description') or s['kind']}{src}")
    return "\n".join(lines)


def _mermaid_id(step_id: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in step_id) or "_"


def _mermaid_text(text: str) -> str:
    """Label text: Mermaid's own entity codes for '#' and '"', HTML escapes for the rest."""
    return escape(text.replace("#", "#35;")).replace('"', "#quot;")


def to_mermaid(plan: dict[str, Any]) -> str:
    """A Mermaid flowchart (renders on GitHub and in many Markdown viewers)."""
    lines = ["flowchart TD"]
    for s in plan["steps"]:
        label = f"<b>{_mermaid_text(s['id'])}</b><br/>{_mermaid_text(s.get('description') or s['kind'])}"
        lines.append(f'  {_mermaid_id(s["id"])}["{label}"]')
    for s in plan["steps"]:
        for i in s["inputs"]:
            lines.append(f"  {_mermaid_id(i)} --> {_mermaid_id(s['id'])}")
    return "\n".join(lines)


# -- layout -------------------------------------------------------------------------------
@dataclass
class Layout:
    """Where each step's box goes, and each edge's points (box centres and bend points)."""

    width: int
    height: int
    boxes: dict[str, tuple[float, float]] = field(default_factory=dict)  # top-left corner
    edges: list[tuple[str, str, list[tuple[float, float]]]] = field(default_factory=list)


def layers(plan: dict[str, Any]) -> dict[str, int]:
    """Longest-path layering: a source is on layer 0, every other step one below its deepest
    input.

    Examples
    --------
    >>> layers({"steps": [{"id": "a", "inputs": []}, {"id": "b", "inputs": ["a"]},
    ...                   {"id": "c", "inputs": ["a", "b"]}]})
    {'a': 0, 'b': 1, 'c': 2}
    """
    layer: dict[str, int] = {}
    for s in plan["steps"]:
        layer[s["id"]] = 1 + max((layer[i] for i in s["inputs"]), default=-1)
    return layer


def layout(plan: dict[str, Any]) -> Layout:
    """Place the steps in layers (top to bottom) and order each layer to reduce crossings.

    Examples
    --------
    >>> lay = layout({"steps": [{"id": "a", "inputs": []}, {"id": "b", "inputs": ["a"]}]})
    >>> lay.boxes["a"][1] < lay.boxes["b"][1]
    True
    """
    layer = layers(plan)
    depth = 1 + max(layer.values(), default=-1)
    rows: list[list[str]] = [[] for _ in range(depth)]
    for s in plan["steps"]:
        rows[layer[s["id"]]].append(s["id"])
    # long edges get a dummy node on every layer they cross
    chains: list[tuple[str, str, list[str]]] = []
    ups: dict[str, list[str]] = {n: [] for row in rows for n in row}
    for s in plan["steps"]:
        for src in s["inputs"]:
            chain = [src]
            for lv in range(layer[src] + 1, layer[s["id"]]):
                dummy = f"\0{src}\0{s['id']}\0{lv}"
                rows[lv].append(dummy)
                ups[dummy] = [chain[-1]]
                chain.append(dummy)
            ups[s["id"]].append(chain[-1])
            chains.append((src, s["id"], chain[1:]))
    downs: dict[str, list[str]] = {n: [] for n in ups}
    for n, us in ups.items():
        for u in us:
            downs[u].append(n)
    _order(rows, ups, downs)
    width = max((len(r) for r in rows), default=0)
    total_w = width * BOX_W + max(width - 1, 0) * GAP_X + 2 * MARGIN
    lay = Layout(int(total_w), int(depth * BOX_H + max(depth - 1, 0) * GAP_Y + 2 * MARGIN))
    centre: dict[str, tuple[float, float]] = {}
    for lv, row in enumerate(rows):
        row_w = len(row) * BOX_W + (len(row) - 1) * GAP_X
        x0 = (total_w - row_w) / 2
        y = MARGIN + lv * (BOX_H + GAP_Y)
        for k, n in enumerate(row):
            x = x0 + k * (BOX_W + GAP_X)
            centre[n] = (x + BOX_W / 2, y + BOX_H / 2)
            if not n.startswith("\0"):
                lay.boxes[n] = (x, y)
    for src, dst, dummies in chains:
        lay.edges.append((src, dst, [centre[src], *(centre[d] for d in dummies), centre[dst]]))
    return lay


def _order(rows: list[list[str]], ups: dict[str, list[str]], downs: dict[str, list[str]]) -> None:
    """Barycenter sweeps, down then up, keeping the order with the fewest crossings."""

    def crossings() -> int:
        count = 0
        for lv in range(1, len(rows)):
            pos = {n: k for k, n in enumerate(rows[lv - 1])}
            edges = [(pos[u], k) for k, n in enumerate(rows[lv]) for u in ups[n]]
            count += sum(1 for a in edges for b in edges if a[0] < b[0] and a[1] > b[1])
        return count

    best = [list(r) for r in rows]
    best_count = crossings()
    for _ in range(4):
        for lv in range(1, len(rows)):
            _sort_by(rows[lv], rows[lv - 1], ups)
        for lv in range(len(rows) - 2, -1, -1):
            _sort_by(rows[lv], rows[lv + 1], downs)
        count = crossings()
        if count < best_count:
            best, best_count = [list(r) for r in rows], count
        if best_count == 0:
            break
    rows[:] = best


def _sort_by(row: list[str], fixed: list[str], links: dict[str, list[str]]) -> None:
    pos = {n: k for k, n in enumerate(fixed)}
    here = {n: k for k, n in enumerate(row)}

    def key(n: str) -> float:
        near = [pos[m] for m in links[n] if m in pos]
        return sum(near) / len(near) if near else float(here[n])

    row.sort(key=key)


# -- SVG ----------------------------------------------------------------------------------
_KIND_COLOURS = {
    "read": "#e3f2fd",
    "write": "#e8f5e9",
    "window": "#fff3e0",
    "late": "#fce4ec",
    "dead_letters": "#fce4ec",
}


def _short(text: str, n: int = DESC_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def to_svg(plan: dict[str, Any]) -> str:
    """The plan as a standalone SVG document.

    Each step is a ``<g class="rb-step" data-step="ID">`` holding its box, its id, kind and
    description (the whole description in a ``<title>``), and an empty
    ``<text class="rb-rate">`` the dashboard fills with live rates.

    Examples
    --------
    >>> svg = to_svg({"pipeline": "p", "steps": [
    ...     {"id": "read_1", "kind": "read", "inputs": [], "description": "read a"},
    ...     {"id": "write_2", "kind": "write", "inputs": ["read_1"], "description": "write b"}]})
    >>> svg.startswith("<svg") and svg.count('class="rb-step"') == 2 and "marker-end" in svg
    True
    """
    lay = layout(plan)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="rb-plan" width="{lay.width}" '
        f'height="{lay.height}" viewBox="0 0 {lay.width} {lay.height}" '
        'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="12">',
        f"<title>{escape(str(plan.get('pipeline', 'plan')))}</title>",
        '<defs><marker id="rb-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#546e7a"/>'
        "</marker></defs>",
        f'<rect width="{lay.width}" height="{lay.height}" fill="#ffffff"/>',
    ]
    for src, dst, points in lay.edges:
        out.append(_edge(src, dst, points))
    kinds = {s["id"]: s for s in plan["steps"]}
    for sid, (x, y) in lay.boxes.items():
        s = kinds[sid]
        kind = str(s.get("kind", ""))
        desc = str(s.get("description") or kind)
        fill = _KIND_COLOURS.get(kind, "#f5f5f5")
        out.append(
            f'<g class="rb-step" data-step="{escape(sid)}" transform="translate({x:.1f},{y:.1f})">'
            f"<title>{escape(sid)}: {escape(desc)}</title>"
            f'<rect width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" stroke="#546e7a"/>'
            f'<text x="10" y="18" font-weight="bold" class="rb-id">{escape(_short(sid, 24))}</text>'
            f'<text x="{BOX_W - 10}" y="18" text-anchor="end" fill="#607d8b" class="rb-kind">'
            f"{escape(kind)}</text>"
            f'<text x="10" y="36" fill="#37474f" class="rb-desc">{escape(_short(desc))}</text>'
            f'<text x="10" y="54" fill="#1565c0" class="rb-rate" data-step="{escape(sid)}"></text>'
            "</g>"
        )
    out.append("</svg>")
    return "".join(out)


def _edge(src: str, dst: str, points: list[tuple[float, float]]) -> str:
    """A path from the bottom of ``src``'s box to the top of ``dst``'s, through bend points."""
    (x0, y0), (x1, y1) = points[0], points[-1]
    pts = [(x0, y0 + BOX_H / 2), *points[1:-1], (x1, y1 - BOX_H / 2)]
    d = f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"
    for (ax, ay), (bx, by) in itertools.pairwise(pts):
        mid = (ay + by) / 2
        d += f" C{ax:.1f},{mid:.1f} {bx:.1f},{mid:.1f} {bx:.1f},{by:.1f}"
    return (
        f'<path class="rb-edge" data-from="{escape(src)}" data-to="{escape(dst)}" d="{d}" '
        'fill="none" stroke="#546e7a" stroke-width="1.4" marker-end="url(#rb-arrow)"/>'
    )
