"""One table of exit codes: the codes mesh.cli gives are exactly the ones docs/operations.md documents."""

from __future__ import annotations

import re
from pathlib import Path

from mesh import cli

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def documented_codes() -> set[int]:
    section = OPERATIONS.read_text(encoding="utf-8").split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(code) for code in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)}


def test_every_exit_code_is_documented_and_every_documented_code_exists() -> None:
    given = {value for name, value in vars(cli).items() if name.startswith("EXIT_")}
    assert documented_codes() == given | {0}
