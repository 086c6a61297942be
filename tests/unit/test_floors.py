"""The floors of the code: each package imports only from the floors below it (docs/architecture.md).

    interfed (the command line) > bench > demos > services > accel (arithmetic, client) > mesh (the runtime)

``mesh`` is the library a service author, or a foreign platform's Python adapter, builds on: it imports
nothing above it. Imports inside functions count too: a floor that reaches up at run time is still tied up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOORS = ["mesh", "accel", "services", "demos", "bench", "interfed"]


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """The top-level packages a module imports, with the line of each import (relative imports: its own)."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def upward_imports(floor: str) -> list[str]:
    above = set(FLOORS[FLOORS.index(floor) + 1 :])
    return [
        f"{path.relative_to(ROOT)}:{line} imports {package}"
        for path in sorted((ROOT / floor).rglob("*.py"))
        for package, line in sorted(imported_packages(path))
        if package in above
    ]


@pytest.mark.parametrize("floor", FLOORS[:-1])
def test_no_floor_imports_a_floor_above_it(floor: str) -> None:
    assert upward_imports(floor) == []


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from services.registry import service\n    import bench.cli\n", encoding="utf-8")
    assert imported_packages(module) == {("services", 2), ("bench", 3)}
