"""``interfed federation up FILE``: the command (the work loads only when it runs, for a quick start)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def federation_up(
    file: Annotated[Path, typer.Argument(help="the federation file (TOML), e.g. examples/federation.toml")],
) -> None:
    """Bring a whole local federation up from one file, for trying interfed: create the homes that do not exist
    yet, start the embedded broker (or use the file's), have each node join and the operator approve it, run
    every node's services (one 'interfed node up' each), publish the file's datasets, print the nodes and the
    commands to try; Ctrl-C stops everything. Run again to reuse the homes (docs/operations.md)."""
    from mesh import logs
    from services.federation.plan import load_plan
    from services.federation.up import run

    plan = load_plan(file)
    plan.homes.mkdir(parents=True, exist_ok=True)
    logs.configure(path=plan.homes / "federation-up.jsonl")
    run(plan)
