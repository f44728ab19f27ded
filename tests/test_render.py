"""Plan pictures: text, Mermaid and the hand-laid SVG."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from riverbed._errors import PlanError
from riverbed.observe.render import BOX_H, BOX_W, layers, layout, render, to_svg

SVG = "{http://www.w3.org/2000/svg}"


def step(sid: str, *inputs: str, kind: str = "map") -> dict[str, Any]:
    return {"id": sid, "kind": kind, "inputs": list(inputs), "description": f'{kind} <{sid}> & "q"'}


def plan(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"pipeline": "demo", "steps": list(steps)}


DIAMOND = plan(
    step("read_1", kind="read"),
    step("filter_2", "read_1"),
    step("window_3", "filter_2", kind="window"),
    step("late_4", "window_3", kind="late"),
    step("write_5", "window_3", kind="write"),
    step("write_6", "late_4", kind="write"),
    step("union_7", "read_1", "write_6"),
)


def test_longest_path_layering() -> None:
    assert layers(DIAMOND) == {
        "read_1": 0, "filter_2": 1, "window_3": 2, "late_4": 3, "write_5": 3, "write_6": 4, "union_7": 5,
    }  # fmt: skip


def test_svg_has_every_step_and_edge_and_no_overlaps() -> None:
    svg = to_svg(DIAMOND)
    root = ET.fromstring(svg)  # well-formed, descriptions escaped
    groups = root.findall(f".//{SVG}g[@class='rb-step']")
    assert [g.get("data-step") for g in groups] == [s["id"] for s in DIAMOND["steps"]]
    ids = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "rb-id"]
    assert sorted(ids) == sorted(s["id"] for s in DIAMOND["steps"])  # type: ignore[type-var]
    edges = root.findall(f".//{SVG}path[@class='rb-edge']")
    assert sorted((e.get("data-from"), e.get("data-to")) for e in edges) == sorted(
        (i, s["id"]) for s in DIAMOND["steps"] for i in s["inputs"]
    )
    boxes = list(layout(DIAMOND).boxes.items())
    for k, (a, (ax, ay)) in enumerate(boxes):
        for b, (bx, by) in boxes[k + 1 :]:
            assert abs(ax - bx) >= BOX_W or abs(ay - by) >= BOX_H, (a, b)


def test_a_step_is_drawn_below_its_inputs() -> None:
    boxes = layout(DIAMOND).boxes
    for s in DIAMOND["steps"]:
        for i in s["inputs"]:
            assert boxes[s["id"]][1] > boxes[i][1]


def test_a_long_edge_bends_through_the_layers_it_crosses() -> None:
    lay = layout(DIAMOND)
    (points,) = [p for a, b, p in lay.edges if (a, b) == ("read_1", "union_7")]
    assert len(points) == 2 + 4  # through layers 1..4
    svg = to_svg(DIAMOND)
    root = ET.fromstring(svg)
    (edge,) = [
        e for e in root.iter(f"{SVG}path") if e.get("data-from") == "read_1" and e.get("data-to") == "union_7"
    ]
    assert (edge.get("d") or "").count("C") == 5


def test_crossings_are_reduced() -> None:
    # in step order c and d would cross (a->d, b->c); the barycenter sweep swaps them
    crossed = plan(step("a", kind="read"), step("b", kind="read"), step("c", "b"), step("d", "a"))
    boxes = layout(crossed).boxes
    assert (boxes["a"][0] < boxes["b"][0]) == (boxes["d"][0] < boxes["c"][0])


def test_mermaid_lists_every_step_and_edge() -> None:
    text = render(DIAMOND, "mermaid")
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    assert "  read_1 --> union_7" in lines and "  write_6 --> union_7" in lines
    assert sum(1 for line in lines if "-->" in line) == 7
    assert '"q"' not in text and "#quot;q#quot;" in text  # quotes cannot end a label
    sink = render(plan(step("w", kind="write") | {"description": "write out.duckdb#t"}), "mermaid")
    assert "out.duckdb#35;t" in sink


def test_text_and_json_formats() -> None:
    assert render(DIAMOND, "text").splitlines()[-1] == '  union_7: map <union_7> & "q" <- read_1, write_6'
    assert json.loads(render(json.dumps(DIAMOND), "json")) == DIAMOND


def test_bad_formats_and_plans_are_errors() -> None:
    with pytest.raises(PlanError, match="--format must be one of text, json, mermaid, svg"):
        render(DIAMOND, "png")
    with pytest.raises(PlanError, match="not an earlier step"):
        render(plan(step("b", "a")), "svg")
    with pytest.raises(PlanError, match="'steps' list"):
        render("[]", "svg")


def test_an_empty_plan_draws_an_empty_picture() -> None:
    root = ET.fromstring(to_svg(plan()))
    assert not root.findall(f".//{SVG}g")
