"""CLI for the catalog: publish, update and retract datasets, list them, request, decide, terminate and use access."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from mesh.cli import command
from mesh.clock import now_ms
from services.registry.cli import BootstrapOpt, HomeOpt, JsonOpt, ReplayOpt, _open_home, _settings, node_view, replayed

if TYPE_CHECKING:
    from mesh.settings import MeshSettings
    from services.catalog.service import CatalogService
    from services.catalog.state import Catalog

out = Console(highlight=False)
T = TypeVar("T")

catalog_app = typer.Typer(
    help="Datasets as metadata (rows stay home) and governed access to them.", no_args_is_help=True
)
ReasonOpt = Annotated[str, typer.Option(help="why, recorded in the event")]
#: services.catalog.service.POLICY_FILE, named here without loading the service (a unit test keeps them equal).
POLICY_FILE = "catalog-policy.toml"


@contextlib.asynccontextmanager
async def catalog_session(home: Path, settings: MeshSettings) -> AsyncIterator[CatalogService]:
    """A catalog service for one command, caught up with the catalog topic. It neither dead-letters nor
    decides by policy: that is the running node's job (``interfed node up``)."""
    from mesh.node import connect, open_context, running
    from services.catalog.policy import Policy
    from services.catalog.service import CatalogService

    assert settings.bootstrap
    node = _open_home(home)
    async with connect(settings, settings.bootstrap, node, applicant=False) as bus:
        svc = CatalogService(open_context(node, bus, settings), readonly=True, policy=Policy())
        async with running(svc) as caught_up:
            yield caught_up  # type: ignore[misc]


def _run(home: Path, bootstrap: str | None, action: Callable[[CatalogService], Awaitable[T]]) -> T:
    settings = _settings(bootstrap)

    async def go() -> T:
        async with catalog_session(home, settings) as svc:
            return await action(svc)

    return asyncio.run(go())


def _local_name(path: Path) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._")[:63] or "dataset"


@catalog_app.command("publish")
def publish(
    file: Annotated[Path, typer.Argument(help="a local .csv or .parquet file; its rows never leave this node")],
    home: HomeOpt,
    name: Annotated[str | None, typer.Option(help="local name; the id is NODE/NAME (default: from the file)")] = None,
    title: Annotated[str | None, typer.Option(help="display name (default: the local name)")] = None,
    description: str = "",
    category: str = "",
    id_column: Annotated[list[str] | None, typer.Option("--id", help="an id column (default: one named 'id')")] = None,
    label: Annotated[list[str] | None, typer.Option(help="a label column (repeat for more)")] = None,
    stats: Annotated[bool, typer.Option("--stats", help="also publish per-column statistics (off by default)")] = False,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Publish a dataset's metadata: columns, row count, digest (statistics only with --stats)."""
    dataset_id = _run(
        home,
        bootstrap,
        lambda svc: svc.publish(
            file,
            name or _local_name(file),
            name=title,
            description=description,
            category=category,
            id_columns=tuple(id_column or ()),
            label_columns=tuple(label or ()),
            with_stats=stats,
        ),
    )
    out.print(f"published [bold]{dataset_id}[/]; others see it with 'interfed catalog list'")


@catalog_app.command("update")
def update(
    dataset_id: str,
    home: HomeOpt,
    file: Annotated[Path | None, typer.Option(help="a new file for the dataset (default: the same one)")] = None,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Describe the dataset's file again and publish the new metadata and digest."""
    version = _run(home, bootstrap, lambda svc: svc.update(dataset_id, file))
    out.print(f"updated {dataset_id} to version {version}")


@catalog_app.command("retract")
def retract(dataset_id: str, home: HomeOpt, reason: ReasonOpt, bootstrap: BootstrapOpt = None) -> None:
    """Withdraw a dataset: no new requests, and no use under any permit from now on."""
    _run(home, bootstrap, lambda svc: svc.retract(dataset_id, reason))
    out.print(f"retracted {dataset_id}")


def dataset_rows(
    catalog: Catalog,
    *,
    owner: str | None = None,
    category: str | None = None,
    text: str | None = None,
    retracted: bool = False,
) -> list[dict[str, Any]]:
    """The datasets to show, filtered; with ``retracted``, retracted ones too."""
    every = [
        {
            "dataset_id": ds.dataset_id,
            "owner": ds.owner,
            "name": ds.name,
            "description": ds.description,
            "category": ds.category,
            "format": ds.format,
            "rows": ds.row_count,
            "columns": ds.columns,
            "content_sha256": ds.content_sha256.hex(),
            "version": ds.version,
            "status": ds.status.value,
        }
        for ds in sorted(catalog.datasets.values(), key=lambda d: d.dataset_id)
    ]
    return filter_datasets(every, owner=owner, category=category, text=text, retracted=retracted)


def filter_datasets(
    rows: list[dict[str, Any]],
    *,
    owner: str | None = None,
    category: str | None = None,
    text: str | None = None,
    retracted: bool = False,
) -> list[dict[str, Any]]:
    """The dataset rows to show (a node's view keeps them all); with ``retracted``, retracted ones too."""

    def keep(r: dict[str, Any]) -> bool:
        blob = f"{r['dataset_id']} {r['name']} {r['description']} {' '.join(c['name'] for c in r['columns'])}".lower()
        return (
            (retracted or r["status"] == "PUBLISHED")
            and (owner is None or r["owner"] == owner)
            and (category is None or r["category"] == category)
            and (text is None or text.lower() in blob)
        )

    return [r for r in rows if keep(r)]


def print_datasets(rows: list[dict[str, Any]], title: str, console: Console = out) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("dataset", "owner", "category", "format", "rows", "columns (role)", "digest", "v", "status"):
        table.add_column(col, no_wrap=col in ("dataset", "digest", "rows"))
    for r in rows:
        roles = ", ".join(f"{c['name']}" + ("" if c["role"] == "feature" else f" ({c['role']})") for c in r["columns"])
        table.add_row(
            r["dataset_id"],
            r["owner"],
            r["category"] or "-",
            r["format"],
            str(r["rows"]),
            roles,
            r["content_sha256"][:12],
            str(r["version"]),
            r["status"] if r["status"] == "PUBLISHED" else f"[yellow]{r['status']}[/]",
        )
    console.print(table)


@catalog_app.command("list")
def list_datasets(
    home: HomeOpt,
    owner: Annotated[str | None, typer.Option(help="only this node's datasets")] = None,
    category: Annotated[str | None, typer.Option(help="only this category")] = None,
    search: Annotated[str | None, typer.Option(help="text in the id, name, description or a column name")] = None,
    all_: Annotated[bool, typer.Option("--all", help="include retracted datasets")] = False,
    as_json: JsonOpt = False,
    bootstrap: BootstrapOpt = None,
    replay: ReplayOpt = False,
) -> None:
    """List the federation's datasets, as this node's catalog sees them."""

    async def rows(svc: CatalogService) -> list[dict[str, Any]]:
        return dataset_rows(svc.catalog, owner=owner, category=category, text=search, retracted=all_)

    seen = node_view(home, bootstrap, replay, "datasets")
    if seen is not None:
        found = filter_datasets(seen.views["datasets"], owner=owner, category=category, text=search, retracted=all_)
    else:
        found = _run(home, bootstrap, rows)
        replayed(bootstrap)
    if as_json:
        print(json.dumps(found, indent=2))
    else:
        print_datasets(found, f"datasets ({len(found)})")


@catalog_app.command("show")
def show(
    dataset_id: str, home: HomeOpt, as_json: JsonOpt = False, bootstrap: BootstrapOpt = None, replay: ReplayOpt = False
) -> None:
    """One dataset's columns: type, role, distribution and (if its owner published them) statistics."""
    from rich.table import Table

    async def row(svc: CatalogService) -> list[dict[str, Any]]:
        return [r for r in dataset_rows(svc.catalog, retracted=True) if r["dataset_id"] == dataset_id]

    seen = node_view(home, bootstrap, replay, "datasets")
    found = [] if seen is None else [r for r in seen.views["datasets"] if r["dataset_id"] == dataset_id]
    if not found:  # not in the running node's view (yet: published a moment ago?): the broker decides
        seen, found = None, _run(home, bootstrap, row)
    if not found:
        raise typer.BadParameter(f"no dataset {dataset_id}; list them with 'interfed catalog list'")
    if seen is None:
        replayed(bootstrap)
    if as_json:
        print(json.dumps(found[0], indent=2))
        return
    r = found[0]
    table = Table(title=f"{dataset_id}: {r['name']}, {r['rows']} rows, {r['status']}", title_justify="left")
    for col in ("column", "type", "role", "distribution", "missing", "distinct", "min", "max", "mean"):
        table.add_column(col)
    for c in r["columns"]:
        s = c["stats"] or {}
        cells = ["-" if s.get(k) is None else f"{s[k]:.4g}" for k in ("missing", "distinct", "min", "max", "mean")]
        table.add_row(c["name"], c["data_type"], c["role"], c["distribution"], *cells)
    out.print(table)


def _scope(value: str) -> tuple[str, list[str]]:
    from services.catalog.state import SCOPE_TYPES

    kind, _, ids = value.partition(":")
    scope_ids = [i for i in ids.split(",") if i]
    if kind.upper() not in SCOPE_TYPES or not scope_ids:
        raise typer.BadParameter(f"--scope {value!r}: KIND:ID[,ID...] with KIND one of {', '.join(SCOPE_TYPES)}")
    return kind.upper(), scope_ids


@catalog_app.command("request")
def request(
    dataset_id: str,
    home: HomeOpt,
    purpose: Annotated[str, typer.Option(help="what the data is for; the owner's policy may match on it")],
    scope: Annotated[str, typer.Option(help="what it is for: NODE:id, PROJECT:id[,id] or COMPONENT:name")],
    days: Annotated[float, typer.Option(min=0.0001, help="how long the permit should last")] = 30,
    uses: Annotated[int, typer.Option(min=1, help="how many uses it should allow")] = 1,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Apply for access to another node's dataset; prints the request (and permit) id."""
    from services.catalog.policy import DAY_MS

    scope_type, scope_ids = _scope(scope)
    not_after = now_ms() + int(days * DAY_MS)
    request_id = _run(
        home,
        bootstrap,
        lambda svc: svc.request(
            dataset_id, purpose, scope_type=scope_type, scope_ids=scope_ids, not_after=not_after, use_limit=uses
        ),
    )
    out.print(f"requested: {request_id}; see its state with 'interfed catalog permits'")


def permit_rows(catalog: Catalog, now_ms: int) -> list[dict[str, Any]]:
    return [
        {
            "request_id": p.request_id,
            "dataset_id": p.dataset_id,
            "requester": p.requester,
            "purpose": p.purpose,
            "scope": f"{p.scope_type}:{','.join(p.scope_ids)}",
            "status": p.standing(now_ms),
            "decided_by": p.decided_by,
            "reason": p.reason,
            "uses": p.uses,
            "use_limit": p.use_limit if p.use_limit is not None else p.requested_use_limit,
            "not_after": p.not_after if p.not_after is not None else p.requested_not_after,
        }
        for p in sorted(catalog.permits.values(), key=lambda p: (p.dataset_id, p.requested_at))
    ]


def print_permits(rows: list[dict[str, Any]], title: str, console: Console = out) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("request", "dataset", "requester", "purpose", "scope", "status", "decided by", "uses", "until (UTC)"):
        table.add_column(col, no_wrap=col in ("request", "status", "uses"))
    colours = {"GRANTED": "green", "REJECTED": "red", "TERMINATED": "yellow", "EXPIRED": "yellow", "REQUESTED": "cyan"}
    for r in rows:
        until = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["not_after"] / 1000))
        table.add_row(
            r["request_id"][:8],
            r["dataset_id"],
            r["requester"],
            r["purpose"],
            r["scope"],
            f"[{colours.get(r['status'], 'white')}]{r['status']}[/]",
            r["decided_by"] or "-",
            f"{r['uses']}/{r['use_limit']}",
            until,
        )
    console.print(table)


@command(catalog_app, "permits", formerly="requests")
def permits(
    home: HomeOpt,
    dataset: Annotated[str | None, typer.Option(help="only requests for this dataset")] = None,
    as_json: JsonOpt = False,
    bootstrap: BootstrapOpt = None,
    replay: ReplayOpt = False,
) -> None:
    """List access requests and permits with their state (REQUESTED, GRANTED, EXPIRED, EXHAUSTED, ...)."""

    async def rows(svc: CatalogService) -> list[dict[str, Any]]:
        found = permit_rows(svc.catalog, now_ms())
        return [r for r in found if dataset is None or r["dataset_id"] == dataset]

    seen = node_view(home, bootstrap, replay, "permits")
    if seen is not None:
        found = [r for r in seen.views["permits"] if dataset is None or r["dataset_id"] == dataset]
    else:
        found = _run(home, bootstrap, rows)
        replayed(bootstrap)
    if as_json:
        print(json.dumps(found, indent=2))
    else:
        print_permits(found, f"access requests ({len(found)})")


@command(catalog_app, "grant", formerly="approve")
def grant(request_id: str, home: HomeOpt, bootstrap: BootstrapOpt = None) -> None:
    """Owner: grant a requested permit as asked."""
    permit = _run(home, bootstrap, lambda svc: svc.grant(request_id))
    out.print(f"granted {request_id}: {permit.requester} may use {permit.dataset_id}")


@catalog_app.command("reject")
def reject(request_id: str, home: HomeOpt, reason: ReasonOpt, bootstrap: BootstrapOpt = None) -> None:
    """Owner: reject a request."""
    permit = _run(home, bootstrap, lambda svc: svc.reject(request_id, reason))
    out.print(f"rejected {request_id} of {permit.requester}")


@catalog_app.command("terminate")
def terminate(request_id: str, home: HomeOpt, reason: ReasonOpt, bootstrap: BootstrapOpt = None) -> None:
    """The owner or the requester ends a request or permit; later uses are refused."""
    _run(home, bootstrap, lambda svc: svc.terminate(request_id, reason))
    out.print(f"terminated {request_id}")


@catalog_app.command("use")
def use(
    request_id: str,
    home: HomeOpt,
    for_: Annotated[str, typer.Option("--for", help="the node, project or component of the permit's scope")],
    bootstrap: BootstrapOpt = None,
) -> None:
    """Record one use of a dataset under a permit; refused with the reason if the permit does not allow it."""
    use_id = _run(home, bootstrap, lambda svc: svc.use(request_id, for_))
    out.print(f"use {use_id} recorded under permit {request_id}")


@catalog_app.command("policy-check")
def policy_check(
    file: Annotated[Path, typer.Argument(help=f"a policy file (a node reads HOME/{POLICY_FILE})")],
) -> None:
    """Check a policy file and print its rules in the order they are tried."""
    from rich.table import Table

    from services.catalog.policy import Policy

    policy = Policy.load(file)
    table = Table(title=f"{file}: first matching rule decides; otherwise {policy.default}", title_justify="left")
    for col in ("rule", "decision", "datasets", "requesters", "purposes", "scope", "max uses", "max days"):
        table.add_column(col)
    for r in policy.rules:
        table.add_row(
            r.name,
            r.decision,
            ", ".join(r.datasets),
            ", ".join(r.requesters),
            ", ".join(r.purposes),
            f"{'/'.join(r.scope_types)}: {', '.join(r.scope_ids)}",
            "-" if r.max_uses is None else str(r.max_uses),
            "-" if r.max_days is None else f"{r.max_days:g}",
        )
    out.print(table)
