"""The main job: a real federation of three parties on a real broker, walked through every stage built so far."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mesh import logs
from mesh.brokers import TansuBroker
from mesh.bus import KafkaBus
from mesh.home import NodeConfig, NodeHome, create_federation
from mesh.node import connect, open_context, run_services, until_caught_up
from mesh.settings import MeshSettings, load_settings
from services.registry.cli import directory_rows, print_directory
from services.registry.service import RegistryService

out = Console(highlight=False)

PARTIES = (
    NodeConfig(
        node_id="bank",
        name="Bank of Example",
        institution="Example Bank",
        platform="fate",
        platform_version="2.1",
        address="fl.bank.example",
    ),
    NodeConfig(
        node_id="hospital",
        name="City Hospital",
        institution="City Hospital",
        platform="secretflow",
        platform_version="1.9",
        address="fl.hospital.example",
    ),
    NodeConfig(
        node_id="telecom",
        name="Telco Research",
        institution="Telco",
        platform="flower",
        platform_version="1.12",
        address="fl.telco.example",
    ),
)


class StepFailedError(Exception):
    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__(f"step '{step}' failed: {type(cause).__name__}: {cause}")
        self.step = step


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Show a step while it runs and its time when done; a failure names the step."""
    started = time.perf_counter()
    with out.status(name + " ..."):
        try:
            yield
        except Exception as exc:
            out.print(f"[red]✗[/] {name}")
            raise StepFailedError(name, exc) from exc
    out.print(f"[green]✓[/] {name} [dim]({time.perf_counter() - started:.1f} s)[/]")


@dataclass
class Party:
    home: NodeHome
    bus: KafkaBus
    registry: RegistryService


async def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def federation(root: Path, settings: MeshSettings, bootstrap: str) -> AsyncIterator[list[Party]]:
    """The operator and the parties, each with its own home and its own connection, all services running."""
    with step("create the federation and three parties (keys, homes)"):
        op_home = create_federation(
            root / "operator",
            "demo-federation",
            NodeConfig(
                node_id="operator", name="Demo operator", institution="Demo", platform="interfed", role="operator"
            ),
        )
        homes = [op_home] + [NodeHome.create(root / cfg.node_id, cfg, op_home.federation_path) for cfg in PARTIES]
    async with contextlib.AsyncExitStack() as stack:
        parties = []
        for home in homes:
            bus = await stack.enter_async_context(connect(settings, bootstrap))
            svc = RegistryService(
                open_context(home, bus, settings),
                heartbeat_interval=settings.heartbeat_interval,
                unreachable_after=settings.unreachable_after,
            )
            parties.append(Party(home, bus, svc))
        stop = asyncio.Event()
        runner = asyncio.create_task(run_services([p.registry for p in parties], stop))
        try:
            yield parties
        finally:
            stop.set()
            await runner


async def walk(parties: list[Party]) -> None:
    operator, members = parties[0], parties[1:]
    with step("every party catches up with the registry"):
        await until_caught_up([p.registry for p in parties], timeout=60)
    contracts = {}
    for party in members:
        with step(f"{party.registry.me} applies to join (signed join request with CSR)"):
            contracts[party.registry.me] = await party.registry.apply()
    with step("the operator sees the three requests"):
        await wait_for(
            lambda: all(c in operator.registry.directory.contracts for c in contracts.values()),
            30,
            "receipt of the join requests",
        )
    for node_id, contract_id in contracts.items():
        with step(f"the operator approves {node_id} and issues its certificate"):
            await operator.registry.approve(contract_id)
    with step("each party stores its certificate, announces itself and beats"):
        for party in members:
            await wait_for(party.home.cert_path.exists, 30, f"{party.registry.me}'s certificate")
        for viewer in parties:
            for member in members:
                await wait_for(
                    lambda v=viewer, m=member: (
                        (v.registry.directory.nodes.get(m.registry.me) or _NO).last_heartbeat is not None
                    ),
                    30,
                    f"{viewer.registry.me} hearing {member.registry.me}",
                )
    with step("every party sees every member HEALTHY"):
        for viewer in parties:
            rows = directory_rows(viewer.registry.directory, viewer.registry.unreachable_after_ms)
            unhealthy = [r["node_id"] for r in rows if r["health"] != "HEALTHY"]
            if len(rows) != len(members) or unhealthy:
                raise AssertionError(f"{viewer.registry.me} sees {len(rows)} nodes, not healthy: {unhealthy}")
            refused = {k: v for k, v in viewer.registry.counts.items() if k.startswith("dead:")}
            if refused:
                raise AssertionError(f"{viewer.registry.me} refused events: {refused}")
    for viewer in parties:
        rows = directory_rows(viewer.registry.directory, viewer.registry.unreachable_after_ms)
        print_directory(rows, f"node directory as {viewer.registry.me} sees it")


class _Missing:
    last_heartbeat = None


_NO = _Missing()


def demo(
    bootstrap: Annotated[
        str | None,
        typer.Option(
            "--bootstrap", envvar="INTERFED_BOOTSTRAP", help="use this broker instead of starting the embedded one"
        ),
    ] = None,
    workdir: Annotated[Path | None, typer.Option(help="keep homes and logs here (default: a temporary folder)")] = None,
) -> None:
    """Run the main job: a three-party federation on the embedded broker, from join to healthy directory."""
    settings = load_settings(bootstrap=bootstrap, heartbeat_interval=0.5, unreachable_after=5.0)
    with contextlib.ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="interfed-demo-")))
        root.mkdir(parents=True, exist_ok=True)
        logs.configure(path=root / "demo.jsonl")
        address = settings.bootstrap
        if address is None:
            with step("start the embedded broker (tansu)"):
                broker = stack.enter_context(TansuBroker(root / "broker"))
            address = broker.bootstrap
        out.print(f"broker {address}; homes and logs in {root}")

        async def go() -> None:
            async with federation(root, settings, address) as parties:
                await walk(parties)

        try:
            asyncio.run(go())
        except StepFailedError as exc:
            out.print(f"[red]demo failed[/]: {exc}; logs: {root / 'demo.jsonl'}")
            raise typer.Exit(1) from None
    out.print("[green]demo complete[/]: three parties joined, approved, announced and healthy")
