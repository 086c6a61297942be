"""Federation membership: the node-contract state machine every receiver applies from the registry topic."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from mesh import events
from mesh.errors import InvalidTransitionError, UnauthorisedError


class ContractStatus(StrEnum):
    """The BFIA node-contract states."""

    REQUESTED = "REQUESTED"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    TERMINATED = "TERMINATED"


class Health(StrEnum):
    """A member's state as the directory shows it, from its contract and its heartbeats."""

    PENDING = "PENDING"  # applied, not yet approved
    APPROVED = "APPROVED"  # approved, not yet announced
    HEALTHY = "HEALTHY"
    UNREACHABLE = "UNREACHABLE"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"
    REJECTED = "REJECTED"
    TERMINATED = "TERMINATED"


@dataclass
class NodeEntry:
    """One node as the directory knows it."""

    node_id: str
    name: str
    institution: str
    platform: str
    platform_version: str
    address: str
    description: str
    contract_id: str
    contract: ContractStatus
    applied_at: int
    csr: bytes
    expires_at: int
    certificate_serial: str | None = None
    revoked: str | None = None
    announced_at: int | None = None
    services: list[str] = field(default_factory=list)
    last_heartbeat: int | None = None
    heartbeat_interval: int | None = None
    reason: str = ""

    def health(self, now_ms: int, unreachable_after_ms: int) -> Health:
        """Health at ``now_ms``: silent longer than ``unreachable_after_ms`` means UNREACHABLE."""
        if self.contract is ContractStatus.REQUESTED:
            return Health.PENDING
        if self.contract is ContractStatus.REJECTED:
            return Health.REJECTED
        if self.contract is ContractStatus.TERMINATED:
            return Health.TERMINATED
        if self.revoked is not None:
            return Health.REVOKED
        if now_ms > self.expires_at:
            return Health.EXPIRED
        seen = max(self.last_heartbeat or 0, self.announced_at or 0)
        if not seen:
            return Health.APPROVED
        return Health.HEALTHY if now_ms - seen <= unreachable_after_ms else Health.UNREACHABLE


class Membership:
    """Contracts by id and nodes by id; every method applies one verified event or raises why not.

    Each method checks everything before it changes anything, so a refused event
    leaves the membership exactly as it was.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, NodeEntry] = {}
        self.contracts: dict[str, str] = {}

    def _entry(self, node_id: str, contract_id: str) -> NodeEntry:
        entry = self.nodes.get(node_id)
        if entry is None or entry.contract_id != contract_id:
            raise InvalidTransitionError(f"no contract {contract_id} for node {node_id}")
        return entry

    def join_requested(self, p: events.JoinRequested, issued_at: int) -> NodeEntry:
        """Record a node's application under a new contract (it may not have one applied or approved already)."""
        if p["contract_id"] in self.contracts:
            raise InvalidTransitionError(f"contract {p['contract_id']} already exists")
        current = self.nodes.get(p["node_id"])
        if current is not None and current.contract in (ContractStatus.REQUESTED, ContractStatus.APPROVED):
            raise InvalidTransitionError(
                f"{p['node_id']} already has contract {current.contract_id} ({current.contract})"
            )
        entry = NodeEntry(
            node_id=p["node_id"],
            name=p["name"],
            institution=p["institution"],
            platform=p["platform"],
            platform_version=p["platform_version"],
            address=p["address"],
            description=p["description"],
            contract_id=p["contract_id"],
            contract=ContractStatus.REQUESTED,
            applied_at=issued_at,
            csr=p["csr"],
            expires_at=p["expires_at"],
        )
        self.nodes[entry.node_id] = entry
        self.contracts[entry.contract_id] = entry.node_id
        return entry

    def pending(self, node_id: str, contract_id: str) -> NodeEntry:
        """The REQUESTED contract ``contract_id`` of ``node_id``, or why there is none."""
        entry = self._entry(node_id, contract_id)
        if entry.contract is not ContractStatus.REQUESTED:
            raise InvalidTransitionError(f"contract {entry.contract_id} is {entry.contract}, not REQUESTED")
        return entry

    def join_approved(self, p: events.JoinApproved, serial: str) -> NodeEntry:
        """Approve a pending contract, with the serial of the certificate issued for it."""
        entry = self.pending(p["node_id"], p["contract_id"])
        entry.contract = ContractStatus.APPROVED
        entry.certificate_serial = serial
        entry.expires_at = p["expires_at"]
        return entry

    def join_rejected(self, p: events.JoinRejected) -> NodeEntry:
        """Reject a pending contract, with the operator's reason."""
        entry = self.pending(p["node_id"], p["contract_id"])
        entry.contract = ContractStatus.REJECTED
        entry.reason = p["reason"]
        return entry

    def announced(self, p: events.NodeAnnounced, sender: str, issued_at: int) -> NodeEntry:
        """Record a node's announcement under its approved contract (only the node speaks for itself)."""
        _speaks_for(sender, p["node_id"])
        entry = self._entry(p["node_id"], p["contract_id"])
        if entry.contract is not ContractStatus.APPROVED:
            raise InvalidTransitionError(f"{entry.node_id} announced under a contract that is {entry.contract}")
        entry.name, entry.institution, entry.address = p["name"], p["institution"], p["address"]
        entry.platform, entry.platform_version = p["platform"], p["platform_version"]
        entry.services = list(p["services"])
        entry.announced_at = issued_at
        return entry

    def heartbeat(self, p: events.Heartbeat, sender: str, issued_at: int) -> NodeEntry:
        """Record a node's heartbeat (only the node speaks for itself, under an approved contract)."""
        _speaks_for(sender, p["node_id"])
        entry = self.nodes.get(p["node_id"])
        if entry is None or entry.contract is not ContractStatus.APPROVED:
            raise InvalidTransitionError(f"heartbeat from {p['node_id']}, which has no approved contract")
        entry.last_heartbeat = max(entry.last_heartbeat or 0, issued_at)
        entry.heartbeat_interval = p["interval_ms"]
        return entry

    def terminated(self, p: events.ContractTerminated) -> NodeEntry:
        """End an applied or approved contract."""
        entry = self._entry(p["node_id"], p["contract_id"])
        if entry.contract not in (ContractStatus.REQUESTED, ContractStatus.APPROVED):
            raise InvalidTransitionError(f"contract {entry.contract_id} is already {entry.contract}")
        entry.contract = ContractStatus.TERMINATED
        entry.reason = p["reason"]
        return entry

    def revoked(self, p: events.CertificateRevoked) -> NodeEntry:
        """Mark a node's certificate revoked, with the reason."""
        entry = self.nodes.get(p["node_id"])
        if entry is None or entry.certificate_serial != p["serial"]:
            raise InvalidTransitionError(f"{p['node_id']} has no certificate {p['serial']}")
        entry.revoked = p["reason"] or "revoked"
        return entry


def _speaks_for(sender: str, node_id: str) -> None:
    if sender != node_id:
        raise UnauthorisedError(f"{sender} may not speak for {node_id}")
