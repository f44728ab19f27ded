"""The import direction of STYLE.md, checked by walking module-level imports.

API and plan import nothing from executors, connectors (but the connector protocol), CLI;
executors never import the CLI; no module over ~600 lines without a reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "riverbed"
API_AND_PLAN = ["pipeline.py", "_plan.py", "windows.py", "aggregates.py", "_time.py", "_errors.py"]


def module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:  # only top-level statements: lazy imports inside functions are fine
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("name", API_AND_PLAN)
def test_api_and_plan_do_not_import_runtime(name: str) -> None:
    imports = module_level_imports(SRC / name)
    bad = {
        i
        for i in imports
        if i.startswith(("riverbed.executors", "riverbed.cli", "riverbed.eventlog"))
        or (i.startswith("riverbed.connectors") and i != "riverbed.connectors.base")
    }
    assert not bad, f"{name} imports {sorted(bad)}"


def test_executors_do_not_import_cli() -> None:
    for path in (SRC / "executors").rglob("*.py"):
        bad = {i for i in module_level_imports(path) if i.startswith("riverbed.cli")}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_connectors_do_not_import_executors_or_cli() -> None:
    for path in (SRC / "connectors").rglob("*.py"):
        bad = {
            i
            for i in module_level_imports(path)
            if i.startswith(("riverbed.executors", "riverbed.cli", "riverbed.pipeline"))
        }
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_modules_stay_small() -> None:
    big = {
        str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 700
    }
    assert not big, f"modules over 700 lines (split them): {big}"


EXECUTORS = ["batch.py", "stream.py"]


@pytest.mark.parametrize("name", EXECUTORS)
def test_executors_import_neither_the_api_nor_each_other(name: str) -> None:
    path = SRC / "executors" / name
    tree = ast.parse(path.read_text())
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    other = {"batch.py": "riverbed.executors.stream", "stream.py": "riverbed.executors.batch"}[name]
    bad = {i for i in imported if i == "riverbed.pipeline" or i == other}
    assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", EXECUTORS)
def test_executors_hold_no_per_kind_dispatch(name: str) -> None:
    """Executors loop over operators: no step kind is named in them."""
    text = (SRC / "executors" / name).read_text()
    tree = ast.parse(text)
    node_names = [
        n for n in dir(__import__("riverbed._plan", fromlist=["x"])) if n.endswith("Node") and n != "Node"
    ]
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        a.attr for a in ast.walk(tree) if isinstance(a, ast.Attribute)
    }
    kinds = sorted(set(node_names) & used)
    assert not kinds, f"{name} names step kinds {kinds}: put that behaviour in the operator"
    operators = [
        c.name
        for p in (SRC / "operators").glob("*.py")
        for c in ast.walk(ast.parse(p.read_text()))
        if isinstance(c, ast.ClassDef)
    ]
    assert not sorted(set(operators) & used - {"Runtime", "Tick", "Frame", "Outputs"}), name
