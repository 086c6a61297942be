"""CLI for federations, nodes and the registry: create, request to join, approve, run, list.

The command line loads the services, the Kafka client and the cryptography only inside the commands that use
them: a command's start stays quick (``interfed --help``, a read answered from the running node's view).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from mesh.cli import command
from mesh.clock import now_ms
from mesh.errors import ConfigurationError

if TYPE_CHECKING:
    from mesh.brokers.acls import AclBinding, AclChange
    from mesh.bus import KafkaBus
    from mesh.home import NodeHome
    from mesh.membership import Membership
    from mesh.service import Service
    from mesh.settings import MeshSettings
    from mesh.snapshot import Snapshot
    from services.registry.acls import AclKeeper
    from services.registry.service import RegistryService

out = Console(highlight=False)
note = Console(stderr=True, highlight=False)  # where an answer comes from: stderr, so --json stays JSON


class AccelMode(StrEnum):
    """Where a node's Paillier work runs (services/accel/placement.py)."""

    workers = "workers"
    service = "service"
    in_process = "in-process"


HomeOpt = Annotated[Path, typer.Option("--home", envvar="INTERFED_HOME", help="the node's home directory")]
BootstrapOpt = Annotated[
    str | None, typer.Option("--bootstrap", envvar="INTERFED_BOOTSTRAP", help="Kafka bootstrap address host:port")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
LogOpt = Annotated[bool, typer.Option("--log-json", help="print the JSON log to stderr instead of the home's log file")]

federation_app = typer.Typer(help="Create a federation (its root certificate and operator).", no_args_is_help=True)
node_app = typer.Typer(help="Create a node, request to join, run its services.", no_args_is_help=True)
registry_app = typer.Typer(help="The node directory and the operator's decisions.", no_args_is_help=True)


def _settings(bootstrap: str | None, **extra: object) -> MeshSettings:
    from mesh.settings import load_settings

    settings = load_settings(bootstrap=bootstrap, **extra)
    if not settings.bootstrap:
        raise ConfigurationError(
            "no broker given: pass --bootstrap HOST:PORT or set INTERFED_BOOTSTRAP "
            "(start one with 'interfed broker up')"
        )
    return settings


def _open_home(path: Path, log_json: bool = False) -> NodeHome:
    from mesh import logs
    from mesh.home import NodeHome

    home = NodeHome(path)
    cfg = home.config()
    logs.configure(path=home.log_path / f"{cfg.node_id}.jsonl", to_stderr=log_json)
    return home


@contextlib.asynccontextmanager
async def registry_session(
    home: NodeHome, settings: MeshSettings, readonly: bool, *, applicant: bool | None = None
) -> AsyncIterator[RegistryService]:
    """A registry service for one command: caught up with the registry topic, stopped afterwards.

    It does not announce the node or beat for it: a node ending its own contract from the command line
    would otherwise announce itself again beside its termination (from its own cut on). An operator's
    deciding (not ``readonly``) session keeps the broker's ACLs in step with what it decides when
    ``settings.applies_acls``.
    """
    from mesh.node import connect, open_context, running
    from services.registry.service import RegistryService

    assert settings.bootstrap
    async with connect(settings, settings.bootstrap, home, applicant=applicant) as bus:
        keeper = None if readonly else acl_keeper(home, bus, settings)
        svc = RegistryService(
            open_context(home, bus, settings),
            readonly=readonly,
            unreachable_after=settings.unreachable_after,
            beat=False,
            acls=keeper,
        )
        svc.reports_refusals = False  # the running node reports them; a command would report them all again
        async with running(svc) as caught_up:
            yield caught_up  # type: ignore[misc]


def acl_keeper(home: NodeHome, bus: KafkaBus, settings: MeshSettings) -> AclKeeper | None:
    """The ACL keeper of an operator's registry when it applies ACLs (``INTERFED_APPLY_ACLS``, default: with TLS)."""
    from services.registry.acls import AclKeeper

    return AclKeeper(bus, home) if settings.applies_acls and home.config().role == "operator" else None


@federation_app.command("create")
def federation_create(
    home: HomeOpt,
    name: Annotated[str, typer.Option(help="the federation's name")],
    operator_id: Annotated[str, typer.Option(help="node id of the operator")] = "operator",
    institution: Annotated[str, typer.Option(help="the operating institution")] = "federation operator",
) -> None:
    """Create a federation: root key and certificate, and the operator's home."""
    from mesh.home import NodeConfig, create_federation

    cfg = NodeConfig(node_id=operator_id, name=name, institution=institution, platform="interfed", role="operator")
    created = create_federation(home, name, cfg)
    out.print(f"federation [bold]{name}[/] created; operator home {created.path}")
    out.print(f"give members this folder (public material only): {created.federation_path}")


@node_app.command("create")
def node_create(
    home: HomeOpt,
    federation: Annotated[Path, typer.Option(help="the federation folder the operator gave you")],
    node_id: Annotated[str, typer.Option(help="this node's id: lower-case letters, digits, . _ -")],
    institution: Annotated[str, typer.Option(help="the institution running the node")],
    platform: Annotated[str, typer.Option(help="the FL platform this node runs, e.g. fate")],
    name: Annotated[str | None, typer.Option(help="display name (default: the node id)")] = None,
    platform_version: Annotated[str, typer.Option(help="the platform's version")] = "unknown",
    address: Annotated[str, typer.Option(help="where the node's operators can be reached")] = "",
) -> None:
    """Create a node home with a fresh key."""
    from pydantic import ValidationError

    from mesh.home import NODE_ID_HINT, NodeConfig, NodeHome

    try:
        cfg = NodeConfig(
            node_id=node_id,
            name=name or node_id,
            institution=institution,
            platform=platform,
            platform_version=platform_version,
            address=address,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "--" + str(err["loc"][0]).replace("_", "-")
        hint = NODE_ID_HINT if err["loc"][0] == "node_id" else err["msg"]
        raise ConfigurationError(f"bad {field} {err.get('input')!r}: {hint}") from None
    created = NodeHome.create(home, cfg, federation)
    out.print(f"node [bold]{node_id}[/] created in {created.path}; next: interfed node join --home {created.path}")


@command(node_app, "join", formerly="apply")
def node_join(home: HomeOpt, bootstrap: BootstrapOpt = None, days: int = 365, log_json: LogOpt = False) -> None:
    """Request to join the federation: publishes a signed join request, which the operator approves or rejects."""
    settings, node = _settings(bootstrap), _open_home(home, log_json)

    async def go() -> str:
        # A node applying again after a termination still holds its old certificate, which the broker no longer lets in.
        async with registry_session(node, settings, readonly=True, applicant=True) as svc:
            return await svc.request_join(days)

    contract_id = asyncio.run(go())
    out.print(
        f"join requested: contract {contract_id}; the operator approves with 'interfed registry approve {contract_id}'"
    )


@node_app.command("up")
def node_up(
    home: HomeOpt,
    bootstrap: BootstrapOpt = None,
    accel: Annotated[
        AccelMode | None,
        typer.Option(
            "--accel",
            help="where Paillier work runs: workers (the node's own worker processes), service (running "
            "'interfed accel up' instances) or in-process (default: HOME/accelerator.toml, else workers)",
        ),
    ] = None,
    accel_workers: Annotated[
        int | None, typer.Option("--accel-workers", min=0, max=256, help="worker processes; 0: one per core")
    ] = None,
    log_json: LogOpt = False,
) -> None:
    """Run the node's services until Ctrl-C; with no bootstrap, start the embedded broker (no TLS, no ACLs: for
    parties that trust each other). With INTERFED_TLS and no certificate yet, follow the registry as an applicant
    until approved, then start."""
    from mesh.brokers import TansuBroker
    from mesh.node import connect, open_context, run_services, stop_on_signals
    from mesh.settings import load_settings
    from mesh.tls import credential_of
    from services.accel.placement import AcceleratorSettings, node_accelerator
    from services.catalog.service import CatalogService
    from services.components.service import ComponentsService
    from services.evidence.service import EvidenceService
    from services.executor.service import ExecutorService
    from services.registry.service import RegistryService, await_certificate
    from services.views import keep_views

    node = _open_home(home, log_json)
    settings = load_settings(bootstrap=bootstrap)
    accel_settings = AcceleratorSettings.of_home(
        node.path, mode=None if accel is None else accel.value, workers=accel_workers
    )

    async def go(address: str) -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        if settings.tls and credential_of(node).kind == "applicant":
            out.print(
                "no certificate yet: following the registry as an applicant until the operator approves this node"
            )
            if not await await_certificate(node, settings, address, stop):
                return
            out.print(f"approved: certificate stored in {node.cert_path}; the node's services start")
        async with connect(settings, address, node) as bus:
            ctx = open_context(node, bus, settings)
            catalog = CatalogService(ctx)  # decides requests by HOME/catalog-policy.toml, if there is one
            store = ComponentsService(ctx)  # installs every component that passes the checks of protocol §15.5
            accelerator = node_accelerator(ctx, accel_settings)  # where the executor's Paillier work runs
            services: list[Service] = [
                RegistryService(
                    ctx,
                    heartbeat_interval=settings.heartbeat_interval,
                    unreachable_after=settings.unreachable_after,
                    acls=acl_keeper(node, bus, settings),
                ),
                EvidenceService(ctx, head_interval=settings.head_interval),
                catalog,
                store,
                # decides jobs by HOME/job-policy.toml, if there is one; runs the components `store` installed
                ExecutorService(ctx, catalog=catalog, components=store, accel=accelerator.client),
                *accelerator.services,
            ]
            out.print(
                f"node [bold]{ctx.config.node_id}[/] up on {address} "
                f"(services: {', '.join(s.name for s in services)}); "
                f"Paillier work on {accelerator.client.description}; logs in {node.log_path}; Ctrl-C stops"
            )
            # HOME/run/views.json, what read commands answer from while the node runs, and node status shows
            async with keep_views(
                node.path,
                services,
                node_id=ctx.config.node_id,
                bootstrap=address,
                topic_prefix=settings.topic_prefix,
                accelerator=accelerator.describe(),
            ):
                await run_services(services, stop)

    if settings.bootstrap:
        asyncio.run(go(settings.bootstrap))
        return
    with TansuBroker(node.path / "broker") as broker:
        out.print(f"embedded broker at {broker.bootstrap}: other parties join with --bootstrap {broker.bootstrap}")
        asyncio.run(go(broker.bootstrap))


@node_app.command("status")
def node_status(home: HomeOpt, as_json: JsonOpt = False) -> None:
    """Whether the node's 'node up' runs (exit 0) or not (exit 1): its pid, since when, its broker, its services
    and accelerator, and what its view holds. Reads HOME/run only: no broker needed."""
    from mesh.snapshot import FRESH_SECONDS, node_running, pid_alive, read_snapshot

    snapshot = read_snapshot(home)
    if snapshot is None and node_running(home):  # it holds the home but has not caught up with its topics yet
        if as_json:
            print(json.dumps({"up": True, "home": str(home), "catching_up": True}, indent=2))
        else:
            out.print(f"{home}: [yellow]up, catching up[/] (its view comes once its services have read their topics)")
        return
    if snapshot is None or not node_running(home) or not pid_alive(snapshot.pid):
        why = "no 'node up' runs with this home" if snapshot is None or not node_running(home) else "its pid is gone"
        if as_json:
            print(json.dumps({"up": False, "home": str(home), "why": why}, indent=2))
        else:
            out.print(f"{home}: [red]down[/] ({why}); start it with 'interfed node up --home {home}'")
        raise typer.Exit(1)
    held = {name: len(rows) for name, rows in sorted(snapshot.views.items())}
    why = (
        f"its view was last checked {snapshot.age():.0f} s ago: the node seems stuck"
        if (snapshot.age() > FRESH_SECONDS)
        else ""
    )
    status = {
        "up": True,
        "node_id": snapshot.node_id,
        "pid": snapshot.pid,
        "since": dt.datetime.fromtimestamp(snapshot.started_at, dt.UTC).isoformat(timespec="seconds"),
        "up_s": round(time.time() - snapshot.started_at, 1),
        "broker": snapshot.bootstrap,
        "topic_prefix": snapshot.topic_prefix,
        "services": snapshot.services,
        "accelerator": snapshot.accelerator,
        "view_age_s": round(snapshot.age(), 1),
        "view": held,
        **({"warning": why} if why else {}),
    }
    if as_json:
        print(json.dumps(status, indent=2))
        return
    accel = snapshot.accelerator
    out.print(
        f"node [bold]{snapshot.node_id}[/] [green]up[/] (pid {snapshot.pid}) since {status['since']} "
        f"({status['up_s']:.0f} s)"
    )
    out.print(f"  broker       {snapshot.bootstrap} (topic prefix {snapshot.topic_prefix!r})")
    out.print(f"  services     {', '.join(snapshot.services)}")
    described = f"{accel.get('mode')}: Paillier work on {accel.get('runs_on')}" if accel else "not reported"
    out.print(f"  accelerator  {described}", markup=False)
    counts = ", ".join(f"{n} {name}" for name, n in held.items())
    out.print(f"  view         {counts}; checked {status['view_age_s']} s ago")
    if why:
        out.print(f"  [yellow]warning[/]: {why}")


def directory_entries(directory: Membership, unreachable_after_ms: int, now: int) -> list[dict[str, Any]]:
    """The directory's rows at ``now``, each with when the node was last seen (``last_seen_ms``): what a
    running node keeps for the command line, where ``with_ages`` makes them ``directory_rows``."""
    rows = []
    for e in sorted(directory.nodes.values(), key=lambda e: e.node_id):
        seen = max(e.last_heartbeat or 0, e.announced_at or 0)
        rows.append(
            {
                "node_id": e.node_id,
                "name": e.name,
                "institution": e.institution,
                "platform": f"{e.platform} {e.platform_version}",
                "contract": e.contract.value,
                "contract_id": e.contract_id,
                "health": e.health(now, unreachable_after_ms).value,
                "last_seen_ms": seen or None,
            }
        )
    return rows


def with_ages(entries: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
    """``directory_entries`` as the command prints them: how long ago each node was last seen (``last_seen_s``)."""
    rows = []
    for entry in entries:
        row = {k: v for k, v in entry.items() if k != "last_seen_ms"}
        seen = entry["last_seen_ms"]
        row["last_seen_s"] = round((now - seen) / 1000, 1) if seen else None
        rows.append(row)
    return rows


def directory_rows(directory: Membership, unreachable_after_ms: int) -> list[dict[str, Any]]:
    """The node directory as ``interfed registry nodes`` prints it."""
    now = now_ms()
    return with_ages(directory_entries(directory, unreachable_after_ms, now), now)


ReplayOpt = Annotated[
    bool,
    typer.Option(
        "--replay", help="replay the topics from the broker even when the node's running 'node up' could answer"
    ),
]


def node_view(home: Path, bootstrap: str | None, replay: bool, view: str) -> Snapshot | None:
    """The running node's snapshot (mesh/snapshot.py) if it holds ``view``, saying so on stderr; None when the
    command must replay instead (with ``replay``, or when no live snapshot of the same broker has it)."""
    from mesh.snapshot import live_snapshot

    if replay:
        return None
    snapshot, _ = live_snapshot(home, bootstrap)
    if snapshot is None or view not in snapshot.views:
        return None
    note.print(
        f"[dim]from the running node's view ({snapshot.node_id}, pid {snapshot.pid}), "
        f"{snapshot.age():.1f} s old; --replay reads the broker[/]"
    )
    return snapshot


def replayed(bootstrap: str | None) -> None:
    """Say on stderr that the answer was replayed from the broker."""
    note.print(f"[dim]replayed from the broker at {bootstrap}[/]")


def print_directory(rows: list[dict[str, object]], title: str, console: Console = out) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("node", "institution", "platform", "contract", "health", "last seen"):
        table.add_column(col, no_wrap=col in ("node", "health", "last seen"))
    colours = {
        "HEALTHY": "green",
        "UNREACHABLE": "red",
        "REVOKED": "red",
        "TERMINATED": "yellow",
        "REJECTED": "yellow",
        "PENDING": "cyan",
    }
    for r in rows:
        health = str(r["health"])
        seen = "-" if r["last_seen_s"] is None else f"{r['last_seen_s']} s ago"
        table.add_row(
            str(r["node_id"]),
            str(r["institution"]),
            str(r["platform"]),
            str(r["contract"]),
            f"[{colours.get(health, 'white')}]{health}[/]",
            seen,
        )
    console.print(table)


@registry_app.command("nodes")
def registry_nodes(
    home: HomeOpt, bootstrap: BootstrapOpt = None, as_json: JsonOpt = False, replay: ReplayOpt = False
) -> None:
    """List the federation's nodes with their contract and health, as this node sees them (from its running
    ``node up``'s view when there is one, else replayed from the broker)."""
    seen = node_view(home, bootstrap, replay, "nodes")
    if seen is not None:
        rows = with_ages(seen.views["nodes"], now_ms())
        me = seen.node_id
    else:
        settings, node = _settings(bootstrap), _open_home(home)

        async def go() -> list[dict[str, Any]]:
            async with registry_session(node, settings, readonly=True) as svc:
                return directory_rows(svc.directory, svc.unreachable_after_ms)

        rows = asyncio.run(go())
        replayed(settings.bootstrap)
        me = node.config().node_id
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_directory(rows, f"nodes as {me} sees them")


def _operator_command(home: Path, bootstrap: str | None, action: str, target: str, reason: str) -> None:
    settings, node = _settings(bootstrap), _open_home(home)

    async def go() -> str:
        async with registry_session(node, settings, readonly=False) as svc:
            entry = await getattr(svc, action)(target, *([reason] if action != "approve" else []))
            return str(entry.node_id)

    node_id = asyncio.run(go())
    out.print(f"{action}: {target} ({node_id}) published")


@registry_app.command("approve")
def registry_approve(contract_id: str, home: HomeOpt, bootstrap: BootstrapOpt = None) -> None:
    """Operator: approve a join request and issue the node's certificate."""
    _operator_command(home, bootstrap, "approve", contract_id, "")


@registry_app.command("reject")
def registry_reject(
    contract_id: str, home: HomeOpt, reason: Annotated[str, typer.Option()], bootstrap: BootstrapOpt = None
) -> None:
    """Operator: reject a join request."""
    _operator_command(home, bootstrap, "reject", contract_id, reason)


@registry_app.command("terminate")
def registry_terminate(
    node_id: str, home: HomeOpt, reason: Annotated[str, typer.Option()], bootstrap: BootstrapOpt = None
) -> None:
    """End a node's contract (the operator, or the node itself); its events are refused afterwards."""
    _operator_command(home, bootstrap, "terminate", node_id, reason)


@registry_app.command("revoke")
def registry_revoke(
    node_id: str,
    home: HomeOpt,
    reason: Annotated[str, typer.Option()],
    since: Annotated[
        dt.datetime | None,
        typer.Option(help="refuse what it signed from this time on (UTC; default: now), e.g. when the key leaked"),
    ] = None,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Operator: revoke a node's certificate; what it signed from --since on is refused everywhere."""
    settings, node = _settings(bootstrap), _open_home(home)
    since_ms = int(since.replace(tzinfo=since.tzinfo or dt.UTC).timestamp() * 1000) if since else None

    async def go() -> None:
        async with registry_session(node, settings, readonly=False) as svc:
            await svc.revoke(node_id, reason, since_ms)

    asyncio.run(go())
    out.print(f"revoke: {node_id} published")


def broker_acls(
    home: HomeOpt,
    bootstrap: BootstrapOpt = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="set them on the broker (and create the members' topics)")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Operator: the broker ACLs the directory calls for (applicants, members, auditors); --apply sets exactly them.

    Apply owns every ACL on this federation's topics and groups (its topic prefix): others there are deleted.
    A terminated or revoked node loses its grants on the next apply."""
    from mesh.node import connect, open_context, running
    from services.registry.acls import AclKeeper
    from services.registry.service import RegistryService

    settings, node = _settings(bootstrap), _open_home(home)
    if node.config().role != "operator":
        raise ConfigurationError("the broker's ACLs are the operator's to set: pass the operator's --home")

    async def go() -> tuple[set[AclBinding], AclChange | None]:
        assert settings.bootstrap
        async with connect(settings, settings.bootstrap, node) as bus:
            keeper = AclKeeper(bus, node)
            async with running(RegistryService(open_context(node, bus, settings), readonly=True)) as svc:
                assert isinstance(svc, RegistryService)
                change = await keeper.apply(svc.directory) if apply else None
                return keeper.wanted(svc.directory), change

    wanted, change = asyncio.run(go())
    if as_json:
        listed: dict[str, Any] = {"acls": [b.to_json() for b in sorted(wanted)]}
        if change is not None:
            listed |= {"created": [str(b) for b in change.created], "deleted": [str(b) for b in change.deleted]}
        print(json.dumps(listed, indent=2))
        return
    for binding in sorted(wanted):
        out.print(str(binding), markup=False)
    if change is None:
        out.print(f"{len(wanted)} ACLs; set them with --apply")
        return
    for binding in change.deleted:
        out.print(f"deleted: {binding}", markup=False)
    out.print(f"applied: {len(change.created)} created, {len(change.deleted)} deleted, {change.kept} kept")


def broker_auditor(
    name: Annotated[str, typer.Argument(help="the auditor's name (lower-case letters, digits, . _ -)")],
    home: HomeOpt,
    to: Annotated[Path, typer.Option("--to", help="the auditor's node home ('interfed node create' made it)")],
    days: Annotated[int, typer.Option(min=1, help="how long the credential lasts")] = 365,
) -> None:
    """Operator: issue an auditor a TLS credential that reads the federation's shared topics on a secured broker."""
    from mesh.home import NodeHome
    from services.registry.acls import issue_auditor

    node = _open_home(home)
    if node.config().role != "operator" or not node.root_key_path.is_file():
        raise ConfigurationError("an auditor's credential is issued by the operator: pass the operator's --home")
    auditor = NodeHome(to)
    auditor.config()  # a home, or one line saying how to make one
    try:
        cert = issue_auditor(node, name, auditor, days)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    out.print(f"auditor credential in {cert.parent}; grant it: interfed broker acls --apply --home {home}")
