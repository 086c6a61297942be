"""The command line's words follow the glossary (docs/architecture.md); each old name still works for one release,
hidden from the help and marked deprecated, and runs the very command of its new name."""

from __future__ import annotations

import typer
from typer.main import get_command

from interfed.cli import app

RENAMED = [
    (("job",), ("task",)),
    (("node", "join"), ("node", "apply")),
    (("catalog", "grant"), ("catalog", "approve")),
    (("catalog", "permits"), ("catalog", "requests")),
]


def resolve(path: tuple[str, ...]) -> typer.core.TyperCommand | typer.core.TyperGroup:
    found = get_command(app)
    for name in path:
        found = found.commands[name]  # type: ignore[attr-defined]
    return found  # type: ignore[return-value]


def origin(callback: object) -> object:
    """The function a command runs (Typer wraps it)."""
    while hasattr(callback, "__wrapped__"):
        callback = callback.__wrapped__
    return callback


def test_each_old_name_is_a_hidden_deprecated_alias_of_its_new_name() -> None:
    for new, old in RENAMED:
        current, former = resolve(new), resolve(old)
        assert not current.hidden
        assert not current.deprecated
        assert former.hidden
        assert former.deprecated
        if isinstance(current, typer.core.TyperGroup):
            assert sorted(former.commands) == sorted(current.commands)  # type: ignore[attr-defined]
        else:
            assert origin(former.callback) is origin(current.callback)


def test_the_help_lists_only_the_new_names() -> None:
    groups = {name: cmd for name, cmd in get_command(app).commands.items() if not cmd.hidden}  # type: ignore[attr-defined]
    assert "job" in groups
    assert "task" not in groups
    visible = {(g, n) for g, cmd in groups.items() for n, c in getattr(cmd, "commands", {}).items() if not c.hidden}
    assert {("node", "join"), ("catalog", "grant"), ("catalog", "permits")} <= visible
    assert not {("node", "apply"), ("catalog", "approve"), ("catalog", "requests")} & visible
