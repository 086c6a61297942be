"""``interfed federation up``: homes made once, the embedded broker started, every node joined by the ordinary
signed path and run as its own ``interfed node up`` process until Ctrl-C.

Each node runs as a child ``interfed node up``: the very command a party runs on its own machine, so what a team
tries is what it deploys; each node's output and crash stay its own, and a node's view file tells this process
when it is ready (mesh/snapshot.py). The joins, approvals and dataset publications are the commands' own
sessions (``node join``, ``registry approve``, ``catalog publish``), run here in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO

from rich.console import Console
from rich.table import Table

from mesh.errors import ConfigurationError, MeshError
from mesh.home import NodeHome, create_federation
from mesh.membership import ContractStatus, Health
from mesh.settings import MeshSettings, load_settings
from mesh.snapshot import live_snapshot
from services.catalog.cli import POLICY_FILE as CATALOG_POLICY
from services.catalog.cli import _local_name, catalog_session
from services.executor.service import POLICY_FILE as JOB_POLICY
from services.federation.plan import Member, Plan
from services.registry.cli import registry_session

out = Console(highlight=False)

#: How long the nodes have to start, join and show each other HEALTHY.
READY_TIMEOUT = 180.0
#: How long a node has to stop on SIGTERM before it is killed.
STOP_TIMEOUT = 30.0


class NodeStoppedError(MeshError):
    """A node's ``node up`` ended while the federation ran."""

    reason = "NODE_STOPPED"


def make_homes(plan: Plan) -> list[str]:
    """Create the homes that do not exist yet; check those that do belong to this federation. Returns what it made."""
    made = []
    operator = NodeHome(plan.operator_home)
    if not operator.exists():
        create_federation(plan.operator_home, plan.name, plan.operator)
        made.append(plan.operator.node_id)
    elif operator.config().node_id != plan.operator.node_id or operator.config().role != "operator":
        raise ConfigurationError(f"{plan.operator_home} is not the home of operator {plan.operator.node_id}")
    root = (operator.federation_path / "root.pem").read_bytes()
    for m in plan.members:
        home = NodeHome(m.home)
        if not home.exists():
            NodeHome.create(m.home, m.config, operator.federation_path)
            made.append(m.config.node_id)
        elif home.config().node_id != m.config.node_id:
            raise ConfigurationError(f"{m.home} is the home of {home.config().node_id}, not {m.config.node_id}")
        elif (home.federation_path / "root.pem").read_bytes() != root:
            raise ConfigurationError(f"{m.home} belongs to another federation than {plan.operator_home}")
        for source, name in ((m.catalog_policy, CATALOG_POLICY), (m.job_policy, JOB_POLICY)):
            if source is not None:
                shutil.copyfile(source, m.home / name)
    return made


async def admit(plan: Plan, settings: MeshSettings) -> list[str]:
    """Each member not approved in the broker's registry requests to join; the operator approves it."""
    admitted = []
    async with registry_session(NodeHome(plan.operator_home), settings, readonly=False) as operator:
        for m in plan.members:
            entry = operator.directory.nodes.get(m.config.node_id)
            if entry is not None and entry.contract is ContractStatus.APPROVED and NodeHome(m.home).cert_path.exists():
                continue  # approved on this broker already (a broker that keeps its topics)
            async with registry_session(NodeHome(m.home), settings, readonly=True, applicant=True) as member:
                contract = await member.request_join()
            deadline = time.monotonic() + 60
            while contract not in operator.directory.contracts:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the operator did not receive {m.config.node_id}'s join request")
                await asyncio.sleep(0.1)
            await operator.approve(contract)
            admitted.append(m.config.node_id)
    return admitted


async def publish_datasets(plan: Plan, settings: MeshSettings) -> list[str]:
    """Publish each member's datasets (metadata only) that its catalog does not hold yet."""
    published = []
    for m in plan.members:
        if not m.datasets:
            continue
        async with catalog_session(m.home, settings) as catalog:
            for path in m.datasets:
                name = _local_name(path)
                known = catalog.catalog.datasets.get(f"{m.config.node_id}/{name}")
                if known is None or known.status != "PUBLISHED":
                    published.append(await catalog.publish(path, name))
    return published


class Nodes:
    """The ``interfed node up`` children, one per home, each writing to HOME/logs/node-up.out."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self._outputs: list[IO[bytes]] = []

    def start(self, node_id: str, home: Path, accel_workers: int = 1) -> None:
        (home / "logs").mkdir(parents=True, exist_ok=True)
        output = (home / "logs" / "node-up.out").open("ab")
        self._outputs.append(output)
        command = [
            *(sys.executable, "-m", "interfed", "node", "up", "--home", str(home), "--bootstrap", self.bootstrap),
            *("--accel-workers", str(accel_workers)),
        ]
        self.procs[node_id] = (subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT), home)

    def check(self) -> None:
        """Raise if a node's process has ended."""
        for node_id, (proc, home) in self.procs.items():
            if proc.poll() is not None:
                raise NodeStoppedError(
                    f"node {node_id} stopped (exit {proc.returncode}); see {home / 'logs' / 'node-up.out'}"
                )

    def stop(self) -> list[str]:
        """SIGTERM each node, wait for it, kill one that does not stop; the nodes that did not exit cleanly."""
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        unclean = []
        deadline = time.monotonic() + STOP_TIMEOUT
        for node_id, (proc, _) in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.returncode != 0:
                unclean.append(f"{node_id} (exit {proc.returncode})")
        for output in self._outputs:
            output.close()
        return unclean


def wait_ready(plan: Plan, nodes: Nodes, bootstrap: str) -> None:
    """Until every node's view is live and shows every member HEALTHY (joined, announced, beating)."""
    homes = {plan.operator.node_id: plan.operator_home} | {m.config.node_id: m.home for m in plan.members}
    members = {m.config.node_id for m in plan.members}
    deadline = time.monotonic() + READY_TIMEOUT
    waiting = "the nodes' views"
    while time.monotonic() < deadline:
        nodes.check()
        views = {node_id: live_snapshot(home, bootstrap)[0] for node_id, home in homes.items()}
        missing = sorted(n for n, v in views.items() if v is None)
        if missing:
            waiting = f"the view of {', '.join(missing)}"
        else:
            unhealthy = {
                viewer: members - {r["node_id"] for r in v.views.get("nodes", []) if r["health"] == Health.HEALTHY}
                for viewer, v in views.items()
                if v is not None
            }
            if not any(unhealthy.values()):
                return
            waiting = "; ".join(f"{v} to see {', '.join(sorted(u))} HEALTHY" for v, u in unhealthy.items() if u)
        time.sleep(0.2)
    raise TimeoutError(f"the federation was not ready within {READY_TIMEOUT:.0f} s (waiting for {waiting})")


class _StopSignalledError(Exception):
    """SIGINT or SIGTERM while the federation runs."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _StopSignalledError(signal.Signals(signum).name)


@contextlib.contextmanager
def _broker(plan: Plan) -> Iterator[str]:
    if plan.bootstrap is not None:
        yield plan.bootstrap
        return
    from mesh.brokers import TansuBroker

    with TansuBroker(plan.homes / "_broker") as broker:
        yield broker.bootstrap


def run(plan: Plan) -> None:
    """Bring the federation of ``plan`` up and keep it running until SIGINT or SIGTERM; then stop it all."""
    made = make_homes(plan)
    if made:
        out.print(f"created the homes of {', '.join(made)} in {plan.homes}")
    with _broker(plan) as bootstrap:
        settings = load_settings(bootstrap=bootstrap)
        if plan.bootstrap is None:
            out.print(f"embedded broker at {bootstrap} (memory only: each run starts the federation's history anew)")
        admitted = asyncio.run(admit(plan, settings))
        if admitted:
            out.print(f"joined and approved (signed join requests, certificates issued): {', '.join(admitted)}")
        nodes = Nodes(bootstrap)
        unclean: list[str] = []
        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            nodes.start(plan.operator.node_id, plan.operator_home)
            for m in plan.members:
                nodes.start(m.config.node_id, m.home, m.accel_workers)
            with out.status("starting every node's services ..."):
                wait_ready(plan, nodes, bootstrap)
            published = asyncio.run(publish_datasets(plan, settings))
            if published:
                out.print(f"published (metadata only): {', '.join(published)}")
            _print_ready(plan, nodes, bootstrap)
            while True:
                nodes.check()
                time.sleep(0.3)
        except _StopSignalledError:
            out.print("stopping every node ...")
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean stop short
                signal.signal(sig, signal.SIG_IGN)
            unclean = nodes.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if unclean:
        raise NodeStoppedError(f"not stopped cleanly: {', '.join(unclean)}")
    out.print(f"federation {plan.name} stopped; homes kept in {plan.homes} (run again to reuse them)")


def _print_ready(plan: Plan, nodes: Nodes, bootstrap: str) -> None:
    table = Table(title=f"federation {plan.name}: every node up, joined and HEALTHY", title_justify="left")
    for column in ("node", "institution", "platform", "pid", "home"):
        table.add_column(column, no_wrap=column in ("node", "pid"))
    everyone: list[tuple[str, str, str, Path]] = [
        (plan.operator.node_id, plan.operator.institution, "interfed (operator)", plan.operator_home),
        *((m.config.node_id, m.config.institution, m.config.platform, m.home) for m in plan.members),
    ]
    for node_id, institution, platform, home in everyone:
        table.add_row(node_id, institution, platform, str(nodes.procs[node_id][0].pid), str(home))
    out.print(table)
    first: Member = plan.members[0]
    h, b = f"--home {first.home}", f"--bootstrap {bootstrap}"
    out.print("try, against any node's home (the read commands answer from the running node's view):")
    for command in (
        f"interfed node status {h}",
        f"interfed registry nodes {h} {b}",
        f"interfed catalog list {h} {b}",
        f"interfed components list {h} {b}",
        f"interfed job list {h} {b}",
        f"interfed components publish-builtin {h} {b}",
        f"interfed audit --home {plan.operator_home} {b}",
    ):
        out.print(f"  {command}", markup=False, soft_wrap=True)
    out.print(f"federation {plan.name} ready: {len(everyone)} nodes up on {bootstrap}; Ctrl-C stops them all")
    sys.stdout.flush()
