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
