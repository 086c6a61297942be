"""``interfed demo``: the command; the main job (demos/main.py) loads only when it runs, for a quick start."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    bootstrap: Annotated[
        str | None,
        typer.Option(
            "--bootstrap", envvar="INTERFED_BOOTSTRAP", help="use this broker instead of starting the embedded one"
        ),
    ] = None,
    workdir: Annotated[Path | None, typer.Option(help="keep homes and logs here (default: a temporary folder)")] = None,
) -> None:
    """Run the main job: a three-party federation on the embedded broker, from join to a released vertical model.

    The embedded broker has neither TLS nor ACLs: it is for one machine, never for parties that do not trust each
    other (docs/operations.md, "Securing the broker")."""
    from demos.main import run_demo

    run_demo(bootstrap, workdir)
