"""Who may speak: certificates, membership, revocations and replay windows every envelope is checked against."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, cast

from mesh import events
from mesh.clock import now_ms
from mesh.envelope import Envelope
from mesh.errors import (
    BadSignatureError,
    InvalidCertificateError,
    KeyMismatchError,
    NoValidCertificateError,
    ReplayedSequenceError,
    RevokedSenderError,
    UnauthorisedError,
    UnknownSenderError,
    UnmatchedSignatureError,
)
from mesh.home import Federation
from mesh.identity import NodeCertificate, check_certificate, load_certificate_der, load_csr, raw_public_key
from mesh.membership import Membership
from mesh.signing import Verifier

OPERATOR_ONLY = frozenset({events.JOIN_APPROVED, events.JOIN_REJECTED, events.CERTIFICATE_REVOKED})

#: The clock tolerance (docs/protocol.md §6.2, §14.8): how far a sender's clock may be from the issuer's
#: (certificate validity, at both ends) or from an accelerator's (request deadlines), in ms.
SKEW_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class Applicant:
    """The speaker of a JoinRequested: a key proven by its CSR, not yet a certificate."""

    node_id: str
    public_key: bytes
    role: str = "applicant"


Speaker = NodeCertificate | Applicant


class TrustStore:
    """Membership and certificates learned from the registry topic, checked against the federation root.

    Operators come from the federation folder every member holds; a node becomes
    known when an operator's JoinApproved for its pending contract carries a
    certificate for the key in its CSR. A revoked or terminated certificate stays
    known, so its events are refused with that reason.

    Revocation cuts by signed time, not by arrival: events issued at or after
    ``revoked_at`` (or the termination's issued_at) are refused, earlier ones stay
    valid, and an auditor can still verify what a node signed while its certificate
    was good. An operator who fears a key was stolen earlier revokes from that
    earlier time.

    Every certificate a node was ever approved with is kept: an event is verified under
    the one whose validity covers its issued_at and whose key its signature verifies
    with, so a node approved again under a new key does not make its earlier events
    unverifiable to whoever reads the new approval first (docs/protocol.md §6.2).
    """

    def __init__(self, federation: Federation) -> None:
        self.federation = federation
        self.members = Membership()
        # node id -> every certificate it was approved with, oldest first (operators: the folder's)
        self._certs: dict[str, list[NodeCertificate]] = {c.node_id: [c] for c in federation.operators}
        self._revoked: dict[str, tuple[int, str]] = {}  # serial -> (from issued_at, reason)
        self._keys: dict[bytes, Verifier] = {}

    def certificate(self, node_id: str) -> NodeCertificate | None:
        """The node's current certificate: the one it was approved with last."""
        certs = self._certs.get(node_id)
        return certs[-1] if certs else None

    def certificates(self, node_id: str) -> tuple[NodeCertificate, ...]:
        """Every certificate the node was approved with, oldest first."""
        return tuple(self._certs.get(node_id, ()))

    def can_sign(self, node_id: str, at_ms: int | None = None) -> bool:
        """Whether what ``node_id`` signs now (or at ``at_ms``) would be accepted: known, unrevoked, valid."""
        cert = self.certificate(node_id)
        if cert is None:
            return False
        when = at_ms if at_ms is not None else now_ms()
        cut = self.revoked_from(cert.serial)
        return cert.valid_at(when) and (cut is None or when < cut)

    def revoked_from(self, serial: str) -> int | None:
        """The time (ms) from which events signed under ``serial`` are revoked, as far as read so far."""
        revoked = self._revoked.get(serial)
        return revoked[0] if revoked is not None else None

    def _public_key(self, raw: bytes) -> Verifier:
        key = self._keys.get(raw)
        if key is None:
            key = self._keys[raw] = Verifier(raw)
        return key

    def verify(self, env: Envelope, *, revocation: bool = True) -> NodeCertificate:
        """Check a certified sender's envelope (docs/protocol.md §6.2).

        The sender is known, a certificate valid then has the key its signature verifies with, and
        (with ``revocation``) that certificate is not revoked then.

        Returns the certificate it verified under. Without ``revocation`` (the evidence topic) the
        caller judges revocation itself, from ``revoked_from(cert.serial)``.
        """
        certs = self._certs.get(env.sender)
        if not certs:
            raise UnknownSenderError(f"no certificate known for {env.sender!r}")
        valid = [c for c in reversed(certs) if c.not_before - SKEW_MS <= env.issued_at <= c.not_after + SKEW_MS]
        if not valid:
            raise NoValidCertificateError(f"{env.sender}'s certificate is not valid at issued_at {env.issued_at}")
        cert = self._signed_under(env, valid)
        revoked = self._revoked.get(cert.serial)
        if revocation and revoked is not None and env.issued_at >= revoked[0]:
            raise RevokedSenderError(f"{env.sender}'s certificate {cert.serial} was revoked: {revoked[1]}")
        return cert

    def _signed_under(self, env: Envelope, candidates: list[NodeCertificate]) -> NodeCertificate:
        """The first of ``candidates`` (newest first) whose key the envelope's signature verifies with."""
        for cert in candidates[:-1]:
            try:
                env.verify(self._public_key(cert.public_key))
            except BadSignatureError:
                continue
            return cert
        try:
            env.verify(self._public_key(candidates[-1].public_key))
        except BadSignatureError as exc:
            raise UnmatchedSignatureError(f"{env.sender}: {exc}") from None  # unless a newer certificate comes
        return candidates[-1]

    def verify_applicant(self, env: Envelope, payload: dict[str, Any]) -> Applicant:
        """A JoinRequested is signed by the key in its own CSR, which must name the sender."""
        csr = load_csr(payload["csr"])
        cn = [a.value for a in csr.subject if a.oid.dotted_string == "2.5.4.3"]
        if cn != [env.sender] or payload["node_id"] != env.sender:
            raise UnauthorisedError(f"join request for {payload['node_id']!r} with CSR for {cn} sent by {env.sender!r}")
        applicant = Applicant(node_id=env.sender, public_key=raw_public_key(csr.public_key()))  # type: ignore[arg-type]
        env.verify(self._public_key(applicant.public_key))
        return applicant

    def apply(self, env: Envelope, payload: dict[str, Any], speaker: Speaker) -> None:
        """Apply a verified registry event to membership and trust, or refuse it unchanged.

        ``payload`` is the decoded record of ``env.payload_type``; each branch reads it as that record's TypedDict.
        """
        kind, members = env.payload_type, self.members
        if env.subject != payload.get("node_id"):
            # Keyed by the node it is about, so all of one node's registry events share a partition.
            raise KeyMismatchError(f"registry event about {payload.get('node_id')!r} under subject {env.subject!r}")
        if kind in OPERATOR_ONLY and speaker.role != "operator":
            raise UnauthorisedError(f"{kind.rsplit('.', 1)[1]} may only be signed by an operator, not {env.sender}")
        if kind == events.JOIN_REQUESTED:
            requested = cast(events.JoinRequested, payload)
            if requested["node_id"] in self.federation.operator_ids:
                raise UnauthorisedError(f"{requested['node_id']} is an operator of this federation; it cannot apply")
            members.join_requested(requested, env.issued_at)
        elif kind == events.JOIN_APPROVED:
            approved = cast(events.JoinApproved, payload)
            cert = self._approved_certificate(approved)
            members.join_approved(approved, cert.serial)
            self._learn(cert)
        elif kind == events.JOIN_REJECTED:
            members.join_rejected(cast(events.JoinRejected, payload))
        elif kind == events.NODE_ANNOUNCED:
            members.announced(cast(events.NodeAnnounced, payload), env.sender, env.issued_at)
        elif kind == events.HEARTBEAT:
            members.heartbeat(cast(events.Heartbeat, payload), env.sender, env.issued_at)
        elif kind == events.CONTRACT_TERMINATED:
            self._terminated(env, cast(events.ContractTerminated, payload), speaker)
        elif kind == events.CERTIFICATE_REVOKED:
            revoked = cast(events.CertificateRevoked, payload)
            entry = members.revoked(revoked)
            self._revoke(revoked["serial"], revoked["revoked_at"], entry.revoked or "revoked")

    def _terminated(self, env: Envelope, payload: events.ContractTerminated, speaker: Speaker) -> None:
        """End a contract, by an operator or by the node itself; its certificate is revoked from then on."""
        if speaker.role != "operator" and payload["node_id"] != env.sender:
            raise UnauthorisedError(f"{env.sender} may not terminate {payload['node_id']}'s contract")
        entry = self.members.terminated(payload)
        if entry.certificate_serial is not None:
            self._revoke(entry.certificate_serial, env.issued_at, f"contract terminated: {payload['reason']}")

    def _learn(self, cert: NodeCertificate) -> None:
        """Keep a node's newly approved certificate beside its earlier ones; it becomes the current one."""
        known = self._certs.setdefault(cert.node_id, [])
        if all(c.serial != cert.serial for c in known):
            known.append(cert)

    def _approved_certificate(self, payload: events.JoinApproved) -> NodeCertificate:
        """The certificate a JoinApproved carries, if it is exactly what the pending contract asked for."""
        entry = self.members.pending(payload["node_id"], payload["contract_id"])
        cert = check_certificate(load_certificate_der(payload["certificate"]), self.federation.root)
        csr_key = raw_public_key(load_csr(entry.csr).public_key())  # type: ignore[arg-type]
        if cert.node_id != entry.node_id or cert.role != "node" or cert.public_key != csr_key:
            raise InvalidCertificateError(
                f"approval of {entry.node_id} carries a certificate for another node, role or key than its request"
            )
        if payload["expires_at"] != cert.not_after:
            raise InvalidCertificateError("approval's expires_at is not its certificate's notAfter")
        return cert

    def _revoke(self, serial: str, since: int, reason: str) -> None:
        # The earliest cut wins: a later revocation never re-validates events an earlier one refused.
        current = self._revoked.get(serial)
        if current is None or since < current[0]:
            self._revoked[serial] = (since, reason)


class ReplayGuard:
    """Per (sender, signing key, topic, partition): the window that tells a duplicate from a replay.

    A record whose event id was already applied is a duplicate (at-least-once
    delivery, producer retries): it is skipped quietly. A new event id with a
    sequence number already used, or older than the window, is a replay. Scoping
    by the signing key keeps an impostor's join request (signed by its own key)
    from spending the real node's sequence numbers.
    """

    def __init__(self, window: int = 4096) -> None:
        self.window = window
        self._scopes: dict[tuple[str, bytes, str, int], _Scope] = {}

    def check(self, env: Envelope, key: bytes, topic: str, partition: int) -> bool:
        """True if new; False if a duplicate of an applied event; ReplayedSequenceError otherwise."""
        scope = self._scopes.get((env.sender, key, topic, partition))
        if scope is None:
            return True
        seen = scope.seen.get(env.sequence)
        if seen == env.event_id:
            return False
        if seen is not None:
            raise ReplayedSequenceError(f"{env.sender} sequence {env.sequence} already used by event {seen}")
        if env.sequence <= scope.high - self.window:
            raise ReplayedSequenceError(
                f"{env.sender} sequence {env.sequence} is older than the window (latest {scope.high})"
            )
        return True

    def record(self, env: Envelope, key: bytes, topic: str, partition: int) -> None:
        """Remember that the sender used this sequence for this event, in the window of its key, topic and partition."""
        scope = self._scopes.setdefault((env.sender, key, topic, partition), _Scope())
        scope.seen[env.sequence] = env.event_id
        scope.high = max(scope.high, env.sequence)
        floor = scope.high - self.window
        while scope.seen and next(iter(scope.seen)) <= floor:
            scope.seen.popitem(last=False)


class _Scope:
    __slots__ = ("high", "seen")

    def __init__(self) -> None:
        self.high = 0
        self.seen: OrderedDict[int, str] = OrderedDict()
