"""The package layout keeps its rules (docs/architecture.md, "Layout"):

- ``kernel_side/`` is shipped into the user's kernel as source: it imports only the standard library;
- only ``server/`` talks to jupyter_server / tornado, so the core runs without a server (CLI, API, magic);
- modules and functions stay small enough to read: no module over 500 lines, no function over 60.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "taskweaver_lab"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "labextension" not in p.parts and p.name != "_version.py")
SERVER_ONLY = ("jupyter_server", "tornado")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 500, 60


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every import in the module, nested ones (inside functions) included."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add("." if node.level else (node.module or "").split(".")[0])
    return roots


def rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def test_the_rules_see_every_module() -> None:
    names = {rel(p) for p in MODULES}
    assert "taskweaver_lab/kernel_side/guard.py" in names and "taskweaver_lab/server/turns.py" in names


@pytest.mark.parametrize("path", [p for p in MODULES if p.parent.name == "kernel_side"], ids=rel)
def test_kernel_side_imports_only_the_standard_library(path: Path) -> None:
    foreign = {name for name in imported_roots(path) if name not in sys.stdlib_module_names and name != "__future__"}
    assert not foreign, f"{rel(path)} imports {sorted(foreign)}: kernel-side code must be stdlib-only"


@pytest.mark.parametrize("path", [p for p in MODULES if p.parent.name != "server"], ids=rel)
def test_only_the_server_package_imports_jupyter_server(path: Path) -> None:
    found = imported_roots(path) & set(SERVER_ONLY)
    assert not found, f"{rel(path)} imports {sorted(found)}: move that code into taskweaver_lab/server/"


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_modules_and_functions_stay_small(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{rel(path)} has over {MAX_MODULE_LINES} lines: split it"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"  # type: ignore[operator]
            for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]  # type: ignore[operator]
    assert not long, f"{rel(path)}: functions over {MAX_FUNCTION_LINES} lines: {long}"
