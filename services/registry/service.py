"""The registry service: join, approve, announce, heartbeat, terminate and revoke, over the registry topic."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Coroutine
from typing import Any, ClassVar

from aiokafka.errors import KafkaError
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mesh import events
from mesh.clock import now_ms
from mesh.errors import ConfigurationError, InvalidTransitionError, MeshError
from mesh.events import (
    CERTIFICATE_REVOKED,
    CONTRACT_TERMINATED,
    HEARTBEAT,
    JOIN_APPROVED,
    JOIN_REJECTED,
    JOIN_REQUESTED,
    NODE_ANNOUNCED,
)
from mesh.evidence import GOVERNED
from mesh.home import NodeHome
from mesh.identity import issue_certificate, load_certificate_der, load_csr, load_private_key
from mesh.membership import ContractStatus, Membership, NodeEntry
from mesh.node import connect, open_context
from mesh.service import Context, Event, Service, handles
from mesh.settings import MeshSettings
from services.registry.acls import AclKeeper

DEFAULT_CONTRACT_DAYS = 365


class RegistryService(Service):
    """Keeps the node directory; for its own node, announces and beats; for an operator, decides.

    An operator's registry given ``acls`` keeps the broker's ACLs in step with the directory: once caught
    up, and at every approval, termination and revocation it reads or makes (services/registry/acls.py).
    """

    name: ClassVar[str] = "registry"
    topics: ClassVar[tuple[str, ...]] = ("registry", "heartbeats")
    also_reports: ClassVar[tuple[str, ...]] = ("schemas",)

    def __init__(
        self,
        ctx: Context,
        *,
        readonly: bool = False,
        heartbeat_interval: float = 10.0,
        unreachable_after: float = 30.0,
        beat: bool = True,
        acls: AclKeeper | None = None,
    ) -> None:
        """``beat``: announce this node and send its heartbeats once caught up (off for a one-off command,
        which must not speak for the node beside what it was asked to publish)."""
        super().__init__(ctx, readonly=readonly)
        self.beats = beat and not readonly and ctx.config.role != "operator"
        self.heartbeat_interval = heartbeat_interval
        self.unreachable_after_ms = int(unreachable_after * 1000)
        self.me = ctx.config.node_id
        self._announced = False
        self.certified = asyncio.Event()  # this node's certificate is stored in its home
        if acls is not None and ctx.config.role != "operator":
            raise ConfigurationError("only an operator sets the broker's ACLs")
        self.acls = acls

    @property
    def directory(self) -> Membership:
        """The node directory: the membership every service keeps, as this service sees it."""
        return self.trust.members

    # -- handlers: membership is already updated (by the service base); these add side effects --

    @handles(JOIN_REQUESTED, JOIN_REJECTED, CONTRACT_TERMINATED, CERTIFICATE_REVOKED)
    async def on_contract_change(
        self,
        ev: Event[events.JoinRequested | events.JoinRejected | events.ContractTerminated | events.CertificateRevoked],
    ) -> None:
        entry = self.directory.nodes[ev.payload["node_id"]]
        self.log.info(
            "contract_changed",
            change=ev.envelope.payload_type.rsplit(".", 1)[1],
            node_id=entry.node_id,
            contract_id=entry.contract_id,
            status=entry.contract.value,
            reason=entry.revoked or entry.reason,
        )
        if ev.envelope.payload_type in (CONTRACT_TERMINATED, CERTIFICATE_REVOKED):
            await self._keep_acls()

    @handles(JOIN_APPROVED)
    async def on_join_approved(self, ev: Event[events.JoinApproved]) -> None:
        node_id = ev.payload["node_id"]
        self.log.info("join_approved", node_id=node_id, contract_id=ev.payload["contract_id"])
        if node_id == self.me:
            await self._take_certificate(ev.payload["certificate"])
        await self._keep_acls()

    async def on_start(self) -> None:
        await self._keep_acls()

    async def _keep_acls(self) -> None:
        """Set the broker's ACLs from the directory (an operator given ``acls``, once caught up); a failure is logged
        and the next change (or 'interfed broker acls --apply') sets them again."""
        if self.acls is None or not self.caught_up.is_set():
            return
        try:
            await self.acls.apply(self.directory)
            self.counts["acls_applied"] += 1
        except (KafkaError, MeshError, OSError) as exc:
            self.counts["acls_failed"] += 1
            self.log.error("acls_failed", error=f"{type(exc).__name__}: {exc}")

    # -- own node --------------------------------------------------------------------

    async def _take_certificate(self, der: bytes) -> None:
        home = self.ctx.home
        cert = load_certificate_der(der)
        own = home.key().public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) != own:
            self.log.error("certificate_for_other_key", node_id=self.me)
            return
        if not home.cert_path.exists() or home.cert_path.read_bytes() != cert.public_bytes(serialization.Encoding.PEM):
            home.store_certificate(cert)
            self.log.info("certificate_stored", path=str(home.cert_path))
        self.certified.set()

    def my_entry(self) -> NodeEntry | None:
        return self.directory.nodes.get(self.me)

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self._beat()] if self.beats else []

    async def _beat(self) -> None:
        """Announce once the contract is approved, then beat every interval while it stands."""
        while True:
            entry = self.my_entry()
            if entry is None or entry.contract is not ContractStatus.APPROVED or entry.revoked is not None:
                self._announced = False
                await asyncio.sleep(0.2)
                continue
            try:
                if not self._announced:
                    await self.announce(entry)
                await self.ctx.publisher.publish(
                    "heartbeats",
                    HEARTBEAT,
                    events.Heartbeat({"node_id": self.me, "interval_ms": int(self.heartbeat_interval * 1000)}),
                    subject=self.me,
                )
            except (KafkaError, TimeoutError) as exc:
                # The broker may come back; others see this node UNREACHABLE meanwhile, which is the truth.
                self.log.warning("heartbeat_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.heartbeat_interval)

    async def announce(self, entry: NodeEntry) -> None:
        cfg = self.ctx.config
        await self.ctx.publisher.publish(
            "registry",
            NODE_ANNOUNCED,
            {
                "node_id": cfg.node_id,
                "contract_id": entry.contract_id,
                "name": cfg.name,
                "institution": cfg.institution,
                "platform": cfg.platform,
                "platform_version": cfg.platform_version,
                "address": cfg.address,
                "services": ["registry"],
            },
            subject=cfg.node_id,
            evidence=GOVERNED[NODE_ANNOUNCED],
        )
        self._announced = True
        self.log.info("announced", contract_id=entry.contract_id)

    # -- commands ------------------------------------------------------------------------

    async def request_join(self, days: int = DEFAULT_CONTRACT_DAYS) -> str:
        """Publish this node's join request; returns the new contract id."""
        cfg, home = self.ctx.config, self.ctx.home
        if cfg.role == "operator":
            raise ConfigurationError("an operator is a member by the federation folder; it does not apply")
        entry = self.my_entry()
        if entry is not None and entry.contract in (ContractStatus.REQUESTED, ContractStatus.APPROVED):
            raise InvalidTransitionError(f"{cfg.node_id} already has contract {entry.contract_id} ({entry.contract})")
        contract_id = str(uuid.uuid4())
        expires = now_ms() + days * 86_400_000
        await self.ctx.publisher.publish(
            "registry",
            JOIN_REQUESTED,
            {
                "contract_id": contract_id,
                "node_id": cfg.node_id,
                "name": cfg.name,
                "institution": cfg.institution,
                "platform": cfg.platform,
                "platform_version": cfg.platform_version,
                "address": cfg.address,
                "description": cfg.description,
                "csr": home.csr_der(),
                "agreement_sha256": self.ctx.federation.agreement_sha256,
                "expires_at": expires,
            },
            subject=cfg.node_id,
        )
        home.state_path.mkdir(parents=True, exist_ok=True)
        (home.state_path / "contract.json").write_text(json.dumps({"contract_id": contract_id}), encoding="utf-8")
        return contract_id

    def _operator_key(self) -> tuple[x509.Certificate, object]:
        if self.ctx.config.role != "operator" or not self.ctx.home.root_key_path.exists():
            raise ConfigurationError(
                "only the federation operator's home holds the root key; use the operator's --home"
            )
        return self.ctx.federation.root, load_private_key(self.ctx.home.root_key_path)

    def pending(self, contract_id: str) -> NodeEntry:
        node_id = self.directory.contracts.get(contract_id)
        entry = self.directory.nodes.get(node_id) if node_id else None
        if entry is None or entry.contract_id != contract_id:
            raise InvalidTransitionError(f"no contract {contract_id}; list them with 'interfed registry nodes'")
        if entry.contract is not ContractStatus.REQUESTED:
            raise InvalidTransitionError(f"contract {contract_id} is {entry.contract}, not REQUESTED")
        return entry

    async def approve(self, contract_id: str) -> NodeEntry:
        """Operator: issue the applicant's certificate and publish the approval.

        With ``acls``, the node's grants are on the broker before its approval is: the certificate it finds
        there is its broker credential (mesh/tls.py), so it may use it at once."""
        root, root_key = self._operator_key()
        entry = self.pending(contract_id)
        self._refuse_topic_clash(entry.node_id)
        if self.acls is not None:
            self.acls.admit(entry.node_id, entry.contract_id)
            await self.acls.apply(self.directory)
        csr = load_csr(entry.csr)
        not_after = dt.datetime.fromtimestamp(entry.expires_at / 1000, dt.UTC)
        cert = issue_certificate(root_key, root, csr, "node", not_after)  # type: ignore[arg-type]
        await self.ctx.publisher.publish(
            "registry",
            JOIN_APPROVED,
            {
                "contract_id": contract_id,
                "node_id": entry.node_id,
                "certificate": cert.public_bytes(serialization.Encoding.DER),
                "expires_at": int(cert.not_valid_after_utc.timestamp() * 1000),
            },
            subject=entry.node_id,
            evidence=GOVERNED[JOIN_APPROVED],
        )
        return entry

    def _refuse_topic_clash(self, node_id: str) -> None:
        # Kafka refuses a topic whose name differs from an existing one only by '.' and '_' (their metric
        # names would collide), so two such node ids could not both have their node topics (protocol §3.1).
        folded = node_id.replace(".", "_")
        for other in self.directory.nodes.values():
            if other.node_id != node_id and other.node_id.replace(".", "_") == folded:
                raise InvalidTransitionError(
                    f"{node_id} and {other.node_id} differ only by '.' and '_': Kafka cannot hold both their topics"
                )

    async def reject(self, contract_id: str, reason: str) -> NodeEntry:
        self._operator_key()
        entry = self.pending(contract_id)
        await self.ctx.publisher.publish(
            "registry",
            JOIN_REJECTED,
            events.JoinRejected({"contract_id": contract_id, "node_id": entry.node_id, "reason": reason}),
            subject=entry.node_id,
            evidence=GOVERNED[JOIN_REJECTED],
        )
        return entry

    def _member(self, node_id: str) -> NodeEntry:
        entry = self.directory.nodes.get(node_id)
        if entry is None:
            raise InvalidTransitionError(f"no node {node_id}; list them with 'interfed registry nodes'")
        return entry

    async def terminate(self, node_id: str, reason: str) -> NodeEntry:
        """The operator, or the node itself, ends a contract."""
        if node_id != self.me:
            self._operator_key()
        entry = self._member(node_id)
        await self.ctx.publisher.publish(
            "registry",
            CONTRACT_TERMINATED,
            events.ContractTerminated({"contract_id": entry.contract_id, "node_id": node_id, "reason": reason}),
            subject=node_id,
            evidence=GOVERNED[CONTRACT_TERMINATED],
        )
        if self.acls is not None:
            self.acls.drop(node_id, entry.contract_id)
            await self.acls.apply(self.directory)
        return entry

    async def revoke(self, node_id: str, reason: str, since_ms: int | None = None) -> NodeEntry:
        """Operator: revoke a node's certificate for events it issued from ``since_ms`` (default: now)."""
        self._operator_key()
        entry = self._member(node_id)
        if entry.certificate_serial is None:
            raise InvalidTransitionError(f"{node_id} holds no certificate to revoke")
        await self.ctx.publisher.publish(
            "registry",
            CERTIFICATE_REVOKED,
            {
                "node_id": node_id,
                "serial": entry.certificate_serial,
                "reason": reason,
                "revoked_at": now_ms() if since_ms is None else since_ms,
            },
            subject=node_id,
            evidence=GOVERNED[CERTIFICATE_REVOKED],
        )
        if self.acls is not None:
            self.acls.drop(node_id, entry.contract_id)
            await self.acls.apply(self.directory)
        return entry


async def await_certificate(home: NodeHome, settings: MeshSettings, bootstrap: str, stop: asyncio.Event) -> bool:
    """Follow the registry with the federation's applicant credential (a secured broker lets an applicant in for
    that only) until this node's approval brings its certificate, or ``stop`` is set; whether it came."""
    async with connect(settings, bootstrap, home, applicant=True) as bus:
        applicant = RegistryService(
            open_context(home, bus, settings), readonly=True, unreachable_after=settings.unreachable_after
        )
        done = asyncio.Event()
        task = asyncio.create_task(applicant.run(done))
        waits = [asyncio.create_task(applicant.certified.wait()), asyncio.create_task(stop.wait())]
        try:
            await asyncio.wait([task, *waits], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            done.set()
            await task
    return applicant.certified.is_set()
