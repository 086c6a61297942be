"""CLI for the component store: publish a component folder or the built-ins, list, inspect, install, enable, disable."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from services.registry.cli import BootstrapOpt, HomeOpt, JsonOpt, ReplayOpt, _open_home, _settings, node_view, replayed

if TYPE_CHECKING:
    from mesh.settings import MeshSettings
    from services.components.service import ComponentsService
    from services.components.state import Published

out = Console(highlight=False)
T = TypeVar("T")

components_app = typer.Typer(
    help="Algorithm components: signed, content-addressed artifacts, installed and verified by every party.",
    no_args_is_help=True,
)
RefArg = Annotated[str, typer.Argument(help="CODE:VERSION, e.g. stats:1.0.0")]
ReasonOpt = Annotated[str, typer.Option(help="why, recorded in the event")]


@contextlib.asynccontextmanager
async def components_session(home: Path, settings: MeshSettings) -> AsyncIterator[ComponentsService]:
    """A components service for one command, caught up with components and artifacts. It installs only when
    told to: installing what arrives is the running node's job (``interfed node up``)."""
    from mesh.node import connect, open_context, running
    from services.components.service import ComponentsService

    assert settings.bootstrap
    node = _open_home(home)
    async with connect(settings, settings.bootstrap, node, applicant=False) as bus:
        svc = ComponentsService(open_context(node, bus, settings), readonly=True)
        async with running(svc) as caught_up:
            yield caught_up  # type: ignore[misc]


def _run(home: Path, bootstrap: str | None, action: Callable[[ComponentsService], Awaitable[T]]) -> T:
    settings = _settings(bootstrap)

    async def go() -> T:
        async with components_session(home, settings) as svc:
            return await action(svc)

    return asyncio.run(go())


def _ref(ref: str) -> str:
    code, sep, version = ref.partition(":")
    if not sep or not code or not version:
        raise typer.BadParameter(f"{ref!r}: give CODE:VERSION (list them with 'interfed components list')")
    return ref


def component_row(svc: ComponentsService, p: Published) -> dict[str, Any]:
    mine = svc.installed(p.spec.code, p.spec.version)
    return {
        "ref": p.spec.ref,
        "code": p.spec.code,
        "version": p.spec.version,
        "category": p.spec.category,
        "developer": p.spec.developer,
        "engine": p.spec.engine,
        "roles": list(p.spec.roles),
        "publisher": p.publisher,
        "artifact_sha256": p.artifact_sha256.hex(),
        "artifact_size": p.artifact_size,
        "retracted": p.retracted,
        "installed_here": mine is not None and mine.artifact_sha256 == p.artifact_sha256,
        "enabled_here": mine is not None and mine.enabled,
        "installations": dict(sorted(p.installations.items())),
    }


@components_app.command("publish")
def publish(
    folder: Annotated[Path, typer.Argument(help="a component folder: a Python package with its component.json")],
    home: HomeOpt,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Pack, sign and publish a component folder (artifact on 'artifacts', spec on 'components')."""
    if not (folder / "component.json").is_file():
        raise typer.BadParameter(f"{folder} has no component.json")
    done = _run(home, bootstrap, lambda svc: svc.publish_folder(folder))
    out.print(f"published [bold]{done.spec.ref}[/] artifact {done.artifact_sha256.hex()[:16]} ({done.artifact_size} B)")


@components_app.command("publish-builtin")
def publish_builtin(home: HomeOpt, bootstrap: BootstrapOpt = None) -> None:
    """Publish every built-in algorithm (services/executor/algorithms/*/component.json) not yet published."""
    done = _run(home, bootstrap, lambda svc: svc.publish_builtin())
    for p in done:
        out.print(f"published [bold]{p.spec.ref}[/] artifact {p.artifact_sha256.hex()[:16]}")
    if not done:
        out.print("every built-in component is published already")


@components_app.command("list")
def list_components(
    home: HomeOpt, as_json: JsonOpt = False, bootstrap: BootstrapOpt = None, replay: ReplayOpt = False
) -> None:
    """The federation's components, and who installed and enabled each."""
    from rich.table import Table

    async def rows(svc: ComponentsService) -> list[dict[str, Any]]:
        return [component_row(svc, p) for _, p in sorted(svc.components.published.items())]

    seen = node_view(home, bootstrap, replay, "components")
    if seen is not None:
        found = seen.views["components"]
    else:
        found = _run(home, bootstrap, rows)
        replayed(bootstrap)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    table = Table(title=f"components ({len(found)})", title_justify="left")
    for col in ("component", "category", "roles", "publisher", "digest", "here", "installed by (enabled)"):
        table.add_column(col, no_wrap=col in ("component", "digest"))
    for r in found:
        here = (
            "[yellow]retracted[/]"
            if r["retracted"]
            else (("enabled" if r["enabled_here"] else "disabled") if r["installed_here"] else "-")
        )
        parties = ", ".join(n + ("" if on else " (off)") for n, on in r["installations"].items()) or "-"
        table.add_row(
            r["ref"], r["category"], ", ".join(r["roles"]), r["publisher"], r["artifact_sha256"][:12], here, parties
        )
    out.print(table)


@components_app.command("inspect")
def inspect(
    ref: Annotated[str, typer.Argument(help="CODE or CODE:VERSION (default: the newest version)")],
    home: HomeOpt,
    as_json: JsonOpt = False,
    bootstrap: BootstrapOpt = None,
) -> None:
    """One component's spec: roles, parameters (type, default, validator), inputs and outputs."""
    from rich.table import Table

    async def row(svc: ComponentsService) -> dict[str, Any] | None:
        p = svc.components.get(ref) if ":" in ref else svc.components.latest(ref)
        return None if p is None else component_row(svc, p) | {"spec": p.spec.model_dump(mode="json")}

    found = _run(home, bootstrap, row)
    if found is None:
        raise typer.BadParameter(f"no component {ref}; list them with 'interfed components list'")
    if as_json:
        print(json.dumps(found, indent=2))
        return
    spec = found["spec"]
    out.print(f"[bold]{found['ref']}[/] {spec['title']} — {spec['description']}")
    out.print(
        f"category {spec['category']}, developer {spec['developer']}, engine {spec['engine']}, roles "
        f"{', '.join(spec['roles'])}, entrypoint {spec['entrypoint']}"
    )
    out.print(f"artifact {found['artifact_sha256']} ({found['artifact_size']} B) signed by {found['publisher']}")
    params = Table(title="parameters", title_justify="left")
    for col in ("name", "type", "default", "validator", "required", "description"):
        params.add_column(col)
    for p in spec["parameters"]:
        default = "-" if p["default"] is None else json.dumps(p["default"])
        params.add_row(
            p["name"], p["type"], default, p["validator"] or "-", "no" if p["optional"] else "yes", p["description"]
        )
    out.print(params)
    data = Table(title="data", title_justify="left")
    for col in ("direction", "name", "category", "formats", "roles"):
        data.add_column(col)
    for direction in ("inputs", "outputs"):
        for d in spec[direction]:
            roles = ", ".join(d["roles"]) or "all"
            data.add_row(direction[:-1], d["name"], d["category"], ", ".join(d["formats"]), roles)
    out.print(data)


@components_app.command("install")
def install(ref: RefArg, home: HomeOpt, bootstrap: BootstrapOpt = None) -> None:
    """Verify (digest, publisher signature, publisher not revoked) and install a component in this node's home."""
    done = _run(home, bootstrap, lambda svc: svc.install(_ref(ref)))
    out.print(f"installed [bold]{done.spec.ref}[/] in {done.path} (artifact {done.artifact_sha256.hex()[:16]})")


@components_app.command("enable")
def enable(ref: RefArg, home: HomeOpt, reason: ReasonOpt = "", bootstrap: BootstrapOpt = None) -> None:
    """Let this node run an installed component (re-verifies the installed copy first)."""
    done = _run(home, bootstrap, lambda svc: svc.enable(_ref(ref), reason))
    out.print(f"enabled [bold]{done.spec.ref}[/] on this node")


@components_app.command("disable")
def disable(ref: RefArg, home: HomeOpt, reason: ReasonOpt = "", bootstrap: BootstrapOpt = None) -> None:
    """Stop this node running an installed component (it stays installed)."""
    done = _run(home, bootstrap, lambda svc: svc.disable(_ref(ref), reason))
    out.print(f"disabled [bold]{done.spec.ref}[/] on this node")
