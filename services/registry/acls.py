"""The broker's ACLs, generated from the registry's directory: who may read and write which topic (protocol §3.5).

Members (contract APPROVED, certificate not revoked, not expired) read and write every shared topic, and
write `deadletter` without reading it. Each member alone reads its own node topics (its accelerator's
requests, the replies to its own requests) and joins its accelerator's consumer group; every member may
write to them, since any member may ask any accelerator for public-key work and any accelerator answers
there. Applicants (the federation's one applicant credential) read `registry`, `heartbeats` and `schemas`
and write `registry`: enough to publish a join request and read its answer. Auditors the operator issued a
credential to read every shared topic. Operators and the broker are super users and need no grant.
Anyone else (a terminated, rejected or revoked node included) gets nothing: Kafka's authorizer denies
what no ACL allows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path

import structlog
from cryptography.x509.oid import NameOID

from mesh.brokers.acls import AclAdmin, AclBinding, AclChange, Operation, ResourceType
from mesh.bus import KafkaBus
from mesh.clock import now_ms
from mesh.home import NodeHome
from mesh.identity import load_cert_pem, load_private_key
from mesh.membership import ContractStatus, Membership, NodeEntry
from mesh.tls import (
    APPLICANT,
    AUDITOR,
    CLIENT_CERT,
    CLIENT_DIR,
    CLIENT_KEY,
    generate_tls_key,
    issue_tls_certificate,
    principal,
    write_credential,
)
from mesh.topics import NODE_ID, NODE_TOPICS, TOPICS, TopicNames, node_topic, parse_node_topic

log = structlog.get_logger("interfed.acls")

APPLICANT_PRINCIPAL = principal(APPLICANT, APPLICANT)
#: Shared topics an applicant reads (a registry service reads these three whatever it serves), and writes.
APPLICANT_READS = ("registry", "heartbeats", "schemas")
APPLICANT_WRITES = ("registry",)
#: Shared topics a member writes but does not read: others' refusals, with the bytes they refused.
WRITE_ONLY = ("deadletter",)
#: The consumer group of a node's accelerator instances (``Service.consumer_group`` of ``accel``).
ACCEL_GROUP = "accel"
#: Where the operator's home keeps the certificates it issued to auditors (their names are their CN).
AUDITORS_DIR = Path("state") / "broker" / "auditors"


def is_member(entry: NodeEntry, now_ms: int) -> bool:
    """A node the broker lets in: approved, not revoked, not expired, and a node id a principal can carry."""
    return (
        entry.contract is ContractStatus.APPROVED
        and entry.revoked is None
        and now_ms <= entry.expires_at
        and NODE_ID.fullmatch(entry.node_id) is not None
    )


def members(
    directory: Membership,
    now_ms: int,
    admitted: Mapping[str, str] | None = None,
    dropped: Mapping[str, str] | None = None,
) -> list[str]:
    """The node ids with grants: the directory's members; and, by contract id, those whose approval the operator
    has sent (``admitted``) or whose termination or revocation it has sent (``dropped``) before its directory
    reads them back, so two decisions in a row never undo each other's grants."""
    admitted, dropped = admitted or {}, dropped or {}
    found = set()
    for entry in directory.nodes.values():
        if dropped.get(entry.node_id) == entry.contract_id:
            continue
        approving = admitted.get(entry.node_id) == entry.contract_id and entry.contract is ContractStatus.REQUESTED
        if is_member(entry, now_ms) or (approving and NODE_ID.fullmatch(entry.node_id) is not None):
            found.add(entry.node_id)
    return sorted(found)


def node_group(names: TopicNames, node_id: str) -> str:
    return f"{names.prefix}{ACCEL_GROUP}.{node_id}"


def federation_acls(names: TopicNames, member_ids: Iterable[str], auditors: Iterable[str] = ()) -> set[AclBinding]:
    """Every grant of one federation (one topic prefix) on the broker."""
    acls: set[AclBinding] = set()

    def grant(who: str, topic: str, *operations: Operation) -> None:
        acls.update(AclBinding(who, ResourceType.TOPIC, names(topic), op) for op in operations)

    for topic in APPLICANT_READS:
        grant(APPLICANT_PRINCIPAL, topic, Operation.READ)
    for topic in APPLICANT_WRITES:
        grant(APPLICANT_PRINCIPAL, topic, Operation.WRITE)
    ids = list(member_ids)
    for node_id in ids:
        who = principal(node_id, "node")
        for topic in TOPICS:
            grant(who, topic, *((Operation.WRITE,) if topic in WRITE_ONLY else (Operation.READ, Operation.WRITE)))
        for family in NODE_TOPICS:
            grant(who, node_topic(family, node_id), Operation.READ)
            for other in ids:
                grant(who, node_topic(family, other), Operation.WRITE)
        acls.add(AclBinding(who, ResourceType.GROUP, node_group(names, node_id), Operation.READ))
    for name in auditors:
        for topic in TOPICS:
            grant(principal(name, AUDITOR), topic, Operation.READ)
    return acls


def is_managed(names: TopicNames, binding: AclBinding) -> bool:
    """Whether a binding is one this federation's apply owns: any grant on one of its topics or groups."""
    if not binding.resource.startswith(names.prefix):
        return False
    name = binding.resource[len(names.prefix) :]
    if binding.resource_type is ResourceType.TOPIC:
        return name in TOPICS or parse_node_topic(name) is not None
    head, _, node_id = name.partition(".")
    is_group = binding.resource_type is ResourceType.GROUP
    return is_group and head == ACCEL_GROUP and NODE_ID.fullmatch(node_id) is not None


def auditor_names(operator: NodeHome, now: dt.datetime | None = None) -> list[str]:
    """The auditors the operator issued a credential to that has not expired."""
    folder = operator.path / AUDITORS_DIR
    when = now or dt.datetime.now(dt.UTC)
    names = []
    for path in sorted(folder.glob("*.pem")):
        cert = load_cert_pem(path)
        if cert.not_valid_after_utc >= when:
            names.append(str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value))
    return names


def issue_auditor(operator: NodeHome, name: str, home: NodeHome, days: int = 365) -> Path:
    """Give ``home`` a TLS credential that reads the federation's shared topics; the operator keeps its certificate
    (the next apply grants it). Returns where the certificate went."""
    if NODE_ID.fullmatch(name) is None:
        raise ValueError(f"an auditor's name is a node id (lower-case letters, digits, . _ -), not {name!r}")
    federation = operator.federation()
    key = generate_tls_key()
    not_after = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
    root_key = load_private_key(operator.root_key_path)
    cert = issue_tls_certificate(root_key, federation.root, key, cn=name, ou=AUDITOR, not_after=not_after)
    folder = home.path / CLIENT_DIR
    write_credential(key, cert, folder / CLIENT_KEY, folder / CLIENT_CERT)
    kept = operator.path / AUDITORS_DIR / f"{name}.pem"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes((folder / CLIENT_CERT).read_bytes())
    return folder / CLIENT_CERT


class AclKeeper:
    """Keeps a broker's ACLs for one federation in step with the operator's directory and its own decisions."""

    def __init__(self, bus: KafkaBus, operator: NodeHome) -> None:
        self.bus = bus
        self.operator = operator
        self._admitted: dict[str, str] = {}
        self._dropped: dict[str, str] = {}

    def admit(self, node_id: str, contract_id: str) -> None:
        """The operator is about to approve this contract: grant it before the directory shows it APPROVED."""
        self._admitted[node_id] = contract_id
        self._dropped.pop(node_id, None)

    def drop(self, node_id: str, contract_id: str) -> None:
        """The operator has terminated this contract or revoked its certificate: no grant for it from now on."""
        self._dropped[node_id] = contract_id
        self._admitted.pop(node_id, None)

    def members(self, directory: Membership) -> list[str]:
        return members(directory, now_ms(), self._admitted, self._dropped)

    def wanted(self, directory: Membership) -> set[AclBinding]:
        """The grants the directory calls for now."""
        return federation_acls(self.bus.names, self.members(directory), auditor_names(self.operator))

    async def apply(self, directory: Membership) -> AclChange:
        """Create the topics of the members (the operator may, they may not), then set exactly their grants."""
        ids = self.members(directory)
        await self.bus.ensure_topics([*TOPICS, *(node_topic(family, n) for family in NODE_TOPICS for n in ids)])
        wanted = federation_acls(self.bus.names, ids, auditor_names(self.operator))
        async with AclAdmin(self.bus.bootstrap, self.bus.security) as admin:
            change = await admin.apply(wanted, lambda b: is_managed(self.bus.names, b))
        log.info(
            "acls_applied", created=len(change.created), deleted=len(change.deleted), kept=change.kept, members=ids
        )
        return change
