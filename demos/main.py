"""The main job: a real federation of three parties on a real broker, walked through every stage built so far."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from demos.catalog import share_data
from demos.jobs import demo_services, train_and_release
from demos.vertical import VerticalFigures, vertical
from mesh import logs
from mesh.brokers import TansuBroker
from mesh.cli import EXIT_FAILED
from mesh.home import NodeConfig, NodeHome
from mesh.settings import MeshSettings, load_settings
from mesh.testing import eventually
from services.evidence.cli import print_summary, replay
from services.registry.cli import directory_rows, print_directory
from services.testbed import Member, TestFederation, admitted_auditor, evidence_settled, federation

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


async def walk(fed: TestFederation) -> None:
    """Request to join, approve, announce, beat: each step checked, then the directory as each party sees it."""
    operator, members = fed.operator.registry, [m.registry for m in fed.members]
    contracts = {}
    for member in members:
        with step(f"{member.me} requests to join (signed join request with CSR)"):
            contracts[member.me] = await member.request_join()
    with step("the operator sees the three requests"):
        await eventually(
            lambda: all(c in operator.directory.contracts for c in contracts.values()),
            30,
            "receipt of the join requests",
        )
    for node_id, contract_id in contracts.items():
        with step(f"the operator approves {node_id} and issues its certificate"):
            await operator.approve(contract_id)
    with step("each party stores its certificate, announces itself and beats"):
        for party in fed.members:
            await eventually(party.home.cert_path.exists, 30, f"{party.node_id}'s certificate")
        for viewer in fed.everyone:
            for member in members:
                await eventually(partial(_heard, viewer, member.me), 30, f"{viewer.node_id} hearing {member.me}")
    with step("every party sees every member HEALTHY and refused nothing"):
        for viewer in fed.everyone:
            rows = directory_rows(viewer.registry.directory, viewer.registry.unreachable_after_ms)
            unhealthy = [r["node_id"] for r in rows if r["health"] != "HEALTHY"]
            if len(rows) != len(members) or unhealthy:
                raise AssertionError(f"{viewer.node_id} sees {len(rows)} nodes, not healthy: {unhealthy}")
            refused = {k: v for k, v in viewer.registry.counts.items() if k.startswith("dead:")}
            if refused:
                raise AssertionError(f"{viewer.node_id} refused events: {refused}")
    for viewer in fed.everyone:
        rows = directory_rows(viewer.registry.directory, viewer.registry.unreachable_after_ms)
        print_directory(rows, f"node directory as {viewer.node_id} sees it")


async def audit(fed: TestFederation, root: Path) -> None:
    """The evidence logs agree; an auditor with no certificate replays everything and finds nothing wrong."""
    with step("every party's evidence log agrees, its head countersigned by the others"):
        await eventually(partial(evidence_settled, fed), 60, "the evidence logs agreeing")
    with step("an auditor replays the evidence and governed topics read-only and checks everything"):
        auditor = await replay(await admitted_auditor(root, fed), fed.settings, fed.bootstrap)
        report = auditor.report()
        final = auditor.final_head()
        report["final_head"] = final.to_json() if final else None
        (root / "audit.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        if not report["passed"] or final is None:
            print_summary(report, out)  # each violation where it is, the refused input, what went unread
            raise AssertionError(f"audit failed: {report['violations_by_reason']}")
    print_summary(report, out)
    out.print("final signed tree head (verify offline as docs/audit.md shows):")
    out.print_json(json.dumps(final.to_json()))


def summary(figures: VerticalFigures, stages: list[tuple[str, float]], total: float) -> None:
    """The closing table: the vertical job's figures beside the centralised reference, and time per stage."""
    table = Table(title="main job summary", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.rows():
        table.add_row(name, value)
    for name, seconds in stages:
        table.add_row(f"time: {name}", f"{seconds:.1f} s")
    table.add_row("time: total (with the broker start)", f"{total:.1f} s")
    out.print(table)


def _heard(viewer: Member, node_id: str) -> bool:
    # The viewer's registry of now: on a secured broker a party is opened again once approved (services.testbed.Member).
    entry = viewer.registry.directory.nodes.get(node_id)
    return entry is not None and entry.last_heartbeat is not None


async def main_job(
    root: Path, address: str, settings: MeshSettings, operator: NodeHome | None = None
) -> tuple[VerticalFigures, list[tuple[str, float]]]:
    """The whole main job on a running broker: the federation and its parties under ``root``, every stage in turn;
    its figures and the time of each stage. ``operator``: the home of the federation a secured broker trusts."""
    async with contextlib.AsyncExitStack() as stack:
        with step("create the federation and three parties (keys, homes); every party catches up"):
            fed = await stack.enter_async_context(
                federation(
                    root,
                    address,
                    PARTIES,
                    settings=settings,
                    join=False,
                    name="demo-federation",
                    services=demo_services,
                    evidence=0.5,
                    operator=operator,
                )
            )
        stages: list[tuple[str, float]] = []
        figures = None
        for name, run in (
            ("join", lambda: walk(fed)),
            ("datasets and permits", lambda: share_data(fed, root, step, out)),
            ("component migration, HFL job", lambda: train_and_release(fed, root, step, out)),
            ("vertical: PSI job, hetero LR job, release", lambda: vertical(fed, root, step, out)),
            ("audit", lambda: audit(fed, root)),
        ):
            started = time.perf_counter()
            figures = await run() or figures
            stages.append((name, time.perf_counter() - started))
        assert isinstance(figures, VerticalFigures)
        return figures, stages


def run_demo(bootstrap: str | None, workdir: Path | None) -> None:
    """The main job as ``interfed demo`` runs it (demos/cli.py): on ``bootstrap``'s broker or the embedded one."""
    settings = load_settings(bootstrap=bootstrap, heartbeat_interval=0.5, unreachable_after=5.0)
    with contextlib.ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="interfed-demo-")))
        root.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        logs.configure(path=root / "demo.jsonl")
        address = settings.bootstrap
        if address is None:
            with step("start the embedded broker (tansu)"):
                broker = stack.enter_context(TansuBroker(root / "broker"))
            address = broker.bootstrap
        out.print(f"broker {address}; homes and logs in {root}")

        async def go() -> None:
            figures, stages = await main_job(root, address, settings)
            summary(figures, stages, time.perf_counter() - began)

        try:
            asyncio.run(go())
        except StepFailedError as exc:
            out.print(f"[red]demo failed[/]: {exc}; logs: {root / 'demo.jsonl'}")
            raise typer.Exit(EXIT_FAILED) from None
    out.print(
        "[green]demo complete[/]: three parties joined, approved, announced and healthy; "
        "datasets published, one permit granted and one rejected by policy, one use recorded; "
        "the bank's built-in components installed by every party after verifying them; "
        "an HFL job (FedAvg, masked updates) accepted by all, trained over the broker and its model released; "
        "a PSI job and a hetero LR job on its intersection (Paillier on each party's accelerator workers), "
        "the model's parts released by digest; every step evidenced and audited"
    )
