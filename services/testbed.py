"""A federation of in-process parties for tests, demos and benchmarks: an operator and members, each with
its own home and broker connection, running its registry, evidence and any other services."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh.bus import KafkaBus
from mesh.home import NodeConfig, NodeHome, create_federation
from mesh.node import connect, open_context, run_services, until_caught_up
from mesh.service import Context, Service
from mesh.settings import MeshSettings
from mesh.testing import eventually, fresh_settings, read_topic
from mesh.tls import credential_of
from services.evidence.cli import replay
from services.evidence.heads import TreeHead
from services.evidence.service import EvidenceService
from services.registry.acls import AclKeeper, issue_auditor
from services.registry.service import RegistryService

#: Builds a member's other services (besides its registry) from its context; the context is the
#: member's own, so they share its identity and publisher, as in ``interfed node up``.
ServiceFactory = Callable[[Context], Sequence[Service]]


@dataclass
class Member:
    """One party of a test federation: its home, its connection, its registry, evidence and any other services.

    On a secured broker a party without a certificate starts as an applicant: its registry only, read-only,
    with the federation's applicant credential; once its approval brings its certificate, it is opened again
    with it and runs everything (``federation`` does this), so its services are those of its current opening.
    """

    home: NodeHome
    bus: KafkaBus
    registry: RegistryService
    evidence: EvidenceService | None = None
    extra: list[Service] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    connection: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    def service(self, name: str) -> Service:
        """The member's service called ``name`` (its registry, or one the federation's factory made)."""
        return next(s for s in self.services if s.name == name)

    @property
    def services(self) -> list[Service]:
        """Every service this member runs: its registry, its evidence service if any, then the others."""
        return [self.registry, *([self.evidence] if self.evidence is not None else []), *self.extra]

    async def start(self) -> None:
        self.task = asyncio.create_task(run_services(self.services, self.stop), name=self.home.path.name)

    @property
    def node_id(self) -> str:
        return self.registry.me

    async def halt(self) -> None:
        """Stop this party's services (it goes silent; the others keep running)."""
        self.stop.set()
        if self.task is not None:
            await self.task


@dataclass
class TestFederation:
    operator: Member
    members: list[Member]
    settings: MeshSettings
    bootstrap: str

    def member(self, node_id: str) -> Member:
        return next(m for m in self.members if m.node_id == node_id)

    @property
    def everyone(self) -> list[Member]:
        return [self.operator, *self.members]


def party_configs(n: int, platforms: tuple[str, ...] = ("fate", "secretflow", "flower")) -> list[NodeConfig]:
    """``n`` member configurations named party0..party{n-1}, on platforms in turn."""
    return [
        NodeConfig(
            node_id=f"party{i}",
            name=f"Party {i}",
            institution=f"Institution {i}",
            platform=platforms[i % len(platforms)],
            platform_version="1.0",
        )
        for i in range(n)
    ]


def create_homes(
    root: Path, parties: Sequence[NodeConfig], name: str = "test", operator: NodeHome | None = None
) -> list[NodeHome]:
    """An operator home (first) and one home per member configuration, all under ``root``.

    With ``operator``, the federation is that one (a secured broker trusts its root): its operator home is
    copied without its state and logs, so each test starts its operator afresh under the same identity."""
    if operator is None:
        op = create_federation(
            root / "operator",
            name,
            NodeConfig(
                node_id="operator", name=f"{name} operator", institution=name, platform="interfed", role="operator"
            ),
        )
    else:
        shutil.copytree(operator.path, root / "operator", ignore=shutil.ignore_patterns("state", "logs"))
        op = NodeHome(root / "operator")
    return [op] + [NodeHome.create(root / cfg.node_id, cfg, op.federation_path) for cfg in parties]


async def open_member(
    home: NodeHome,
    settings: MeshSettings,
    bootstrap: str,
    evidence: float | None = None,
    services: ServiceFactory | None = None,
) -> Member:
    """Connect a party and build its services, not started: an applicant's registry alone on a secured broker
    (``Member``), else its registry (an operator's keeping the broker's ACLs if ``settings.applies_acls``),
    its evidence service with ``evidence``, and what ``services`` builds."""
    member_connection = contextlib.AsyncExitStack()
    bus = await member_connection.enter_async_context(connect(settings, bootstrap, home))
    ctx = open_context(home, bus, settings)
    if settings.tls and credential_of(home).kind == "applicant":
        applicant = RegistryService(ctx, readonly=True, unreachable_after=settings.unreachable_after)
        return Member(home, bus, applicant, connection=member_connection)
    keeper = AclKeeper(bus, home) if settings.applies_acls and ctx.config.role == "operator" else None
    svc = RegistryService(
        ctx, heartbeat_interval=settings.heartbeat_interval, unreachable_after=settings.unreachable_after, acls=keeper
    )
    witness = None
    if evidence is not None:
        witness = EvidenceService(svc.ctx, head_interval=evidence)  # one node: one publisher
    return Member(home, bus, svc, witness, list(services(ctx)) if services else [], connection=member_connection)


async def _promote(member: Member, reopen: Callable[[], Awaitable[Member]]) -> None:
    """Once an applicant's certificate is stored, stop it and open it again as the member it now is."""
    await member.registry.certified.wait()
    await member.halt()
    await member.connection.aclose()
    fresh = await reopen()
    member.bus, member.registry, member.evidence, member.extra = fresh.bus, fresh.registry, fresh.evidence, fresh.extra
    member.connection, member.stop = fresh.connection, asyncio.Event()
    await member.start()


@contextlib.asynccontextmanager
async def federation(
    root: Path,
    bootstrap: str,
    n: int | Sequence[NodeConfig] = 3,
    *,
    settings: MeshSettings | None = None,
    join: bool = True,
    name: str = "test",
    evidence: float | None = None,
    services: ServiceFactory | None = None,
    operator: NodeHome | None = None,
) -> AsyncIterator[TestFederation]:
    """A running federation of ``n`` parties plus its operator; with ``join``, all approved and beating.

    With ``evidence`` (a head interval in seconds), every party also runs its evidence service.
    ``services`` builds each party's other services (the operator's too); they run beside its
    registry, on the same connection and identity, until the federation ends.

    Each party has its own home, its own broker connection and its own services,
    as separate processes would; they share nothing but the broker.

    On a secured broker (``settings.tls``; ``operator``, the home of the federation it trusts, is then
    needed) the operator sets the ACLs first, the parties start as applicants and each is opened again
    with its certificate once approved (``Member``).
    """
    settings = settings or fresh_settings(heartbeat_interval=0.3, unreachable_after=3.0)
    if settings.tls and operator is None:
        raise ValueError("a federation on a secured broker is the broker's: pass its operator's home")
    homes = create_homes(root, party_configs(n) if isinstance(n, int) else n, name, operator)
    members: list[Member] = []
    promotions: list[asyncio.Task[None]] = []
    try:
        for home in homes:

            def reopen(home: NodeHome = home) -> Awaitable[Member]:
                return open_member(home, settings, bootstrap, evidence, services)

            member = await reopen()
            members.append(member)
            if member.registry.acls is not None:
                await member.registry.acls.apply(member.registry.directory)  # the applicants' grants, before them
            if settings.tls and credential_of(home).kind == "applicant":
                promotions.append(asyncio.create_task(_promote(member, reopen), name=f"promote {home.path.name}"))
        fed = TestFederation(members[0], members[1:], settings, bootstrap)
        for m in members:
            await m.start()
        try:
            await until_caught_up([s for m in members for s in m.services])
            if join:
                await join_all(fed)
            yield fed
        finally:
            for task in promotions:
                task.cancel()
            failed = [e for e in await asyncio.gather(*promotions, return_exceptions=True) if isinstance(e, Exception)]
            for m in members:
                m.stop.set()
            await asyncio.gather(*(m.task for m in members if m.task is not None))
            if failed:
                raise failed[0]  # a party that could not be opened with its certificate
    finally:
        for m in reversed(members):
            await m.connection.aclose()


async def join_all(fed: TestFederation) -> None:
    """Every member applies, the operator approves all, and every member is heard beating by the operator."""
    contracts = [await m.registry.request_join() for m in fed.members]
    op = fed.operator.registry
    await eventually(lambda: all(c in op.directory.contracts for c in contracts), what="join requests received")
    for contract in contracts:
        await op.approve(contract)
    for m in fed.members:

        def heard(node_id: str = m.node_id) -> bool:
            return op.directory.nodes[node_id].last_heartbeat is not None

        await eventually(heard, what=f"heartbeat of {m.node_id}")


TestFederation.__test__ = False  # type: ignore[attr-defined]  # not a pytest class


async def dead_letters(fed: TestFederation, reason: str | None = None) -> list[dict[str, Any]]:
    """The DeadLetter payloads on the federation's dead-letter topic, optionally of one reason."""
    letters = [p for _, p in await read_topic(fed.bootstrap, fed.settings, "deadletter")]
    return [p for p in letters if reason is None or p["reason"] == reason]


def evidence_settled(fed: TestFederation, among: Sequence[Member] | None = None) -> bool:
    """Every party's (or every one of ``among``'s) evidence log holds the same leaves, has seen the head of
    that size of every party that can still sign (a terminated or revoked party's last head stays where it
    was), and, if it can sign, has published its countersignatures of every head it read and its receipts of
    every join request it read."""
    witnesses = [m.evidence for m in (fed.everyone if among is None else among) if m.evidence is not None]
    if not witnesses:
        return False
    size = witnesses[0].size
    root = witnesses[0].log_state.tree.root()
    signers = [w.me for w in witnesses if w.trust.can_sign(w.me)]
    return all(
        w.size == size
        and w.log_state.tree.root() == root
        and all((head := w.latest_head.get(other)) is not None and head.tree_size == size for other in signers)
        and (w.pending_cosignatures == w.pending_receipts == 0 or w.me not in signers)
        for w in witnesses
    )


def auditor_home(root: Path, fed: TestFederation, node_id: str = "auditor") -> NodeHome:
    """A home for a read-only auditor: the federation folder and a key, never a certificate."""
    cfg = NodeConfig(node_id=node_id, name="Auditor", institution="Audit office", platform="interfed")
    return NodeHome.create(root / node_id, cfg, fed.operator.home.federation_path)


async def admitted_auditor(root: Path, fed: TestFederation, node_id: str = "auditor") -> NodeHome:
    """An auditor's home (``auditor_home``); on a secured broker also its TLS credential, granted by the operator."""
    home = auditor_home(root, fed, node_id)
    keeper = fed.operator.registry.acls
    if fed.settings.tls:
        if keeper is None:
            raise ValueError("an auditor is let in by the operator's ACLs: the operator's registry keeps none")
        issue_auditor(fed.operator.home, node_id, home)
        await keeper.apply(fed.operator.registry.directory)
    return home


@dataclass
class AuditedHistory:
    """One genuine federation run, audited: its topics, an auditor's home, a member's home, the final head."""

    bootstrap: str
    settings: MeshSettings
    auditor: NodeHome
    member: NodeHome
    final: TreeHead


async def audited_history(root: Path, bootstrap: str, n: int = 2) -> AuditedHistory:
    """Run a federation of ``n`` with evidence until the logs agree, audit it, and stop it (its topics stay)."""
    async with federation(root, bootstrap, n=n, evidence=0.3) as fed:
        await eventually(lambda: evidence_settled(fed), 60, "the evidence logs agreeing")
        home = auditor_home(root, fed)
        auditor = await replay(home, fed.settings, bootstrap)
        report = auditor.report()
        final = auditor.final_head()
        if not report["passed"] or final is None:
            raise AssertionError(f"the genuine history fails its audit: {report['violations']}")
        return AuditedHistory(bootstrap, fed.settings, home, fed.members[0].home, final)
