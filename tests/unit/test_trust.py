"""mesh.trust: who may speak (TrustStore) and the replay window (ReplayGuard)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh.codec import SchemaStore
from mesh.envelope import Envelope, new_envelope
from mesh.errors import (
    BadSignatureError,
    InvalidCertificateError,
    InvalidTransitionError,
    KeyMismatchError,
    RejectedEventError,
    ReplayedSequenceError,
    RevokedSenderError,
    UnauthorisedError,
    UnknownSenderError,
)
from mesh.home import NodeConfig, NodeHome, create_federation
from mesh.identity import generate_key, issue_certificate, load_csr, load_private_key, make_csr, make_root
from mesh.membership import ContractStatus
from mesh.trust import SKEW_MS, ReplayGuard, TrustStore

STORE = SchemaStore.load()
R = "interfed.registry."
DAY_MS = 24 * 3600 * 1000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Fed:
    """A federation in tmp_path: the operator's home, member homes, and one receiver's TrustStore."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.op = create_federation(
            root / "op",
            "example-fed",
            NodeConfig(node_id="op", name="Operator", institution="Consortium", platform="interfed", role="operator"),
        )
        self.fed = self.op.federation()
        self.root_key = load_private_key(self.op.root_key_path)
        self.trust = TrustStore(self.fed)
        self.homes: dict[str, NodeHome] = {}
        self.contracts: dict[str, str] = {}
        self._sequence = itertools.count(1)

    def key(self, sender: str) -> Ed25519PrivateKey:
        return self.op.key() if sender == "op" else self.homes[sender].key()

    def event(
        self,
        sender: str,
        kind: str,
        record: dict[str, Any],
        *,
        issued_at: int | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> tuple[Envelope, dict[str, Any]]:
        """A signed envelope as a receiver sees it (through the wire), and its decoded payload."""
        schema, data = STORE.encode(R + kind, record)
        env = new_envelope(
            payload_type=schema.full_name,
            payload_fingerprint=schema.fingerprint,
            payload=data,
            sender=sender,
            sequence=next(self._sequence),
            subject=record.get("node_id", sender),
            issued_at=now_ms() if issued_at is None else issued_at,
        )
        env = Envelope.decode(env.signed(key or self.key(sender)).encode())
        return env, STORE.decode(env.payload_type, env.payload_fingerprint, env.payload)

    def receive(self, env: Envelope, payload: dict[str, Any]) -> None:
        """What a service does with a registry event: verify its speaker, then apply it."""
        if env.payload_type == R + "JoinRequested":
            speaker = self.trust.verify_applicant(env, payload)
        else:
            speaker = self.trust.verify(env)  # type: ignore[assignment]
        self.trust.apply(env, payload, speaker)

    def join_request(self, node_id: str, /, **overrides: Any) -> tuple[Envelope, dict[str, Any]]:
        """node_id's join request, signed by its key; ``overrides`` replace payload fields (or ``key``)."""
        if node_id not in self.homes:
            config = NodeConfig(node_id=node_id, name=node_id, institution="Example Hospital", platform="fate")
            self.homes[node_id] = NodeHome.create(self.root / node_id, config, self.op.federation_path)
        self.contracts[node_id] = str(uuid.uuid4())
        record = {
            "contract_id": self.contracts[node_id],
            "node_id": node_id,
            "name": node_id,
            "institution": "Example Hospital",
            "platform": "fate",
            "platform_version": "2.1",
            "address": "",
            "description": "",
            "csr": self.homes[node_id].csr_der(),
            "agreement_sha256": self.fed.agreement_sha256,
            "expires_at": now_ms() + 30 * DAY_MS,
        }
        key = overrides.pop("key", None)
        return self.event(node_id, "JoinRequested", {**record, **overrides}, key=key)

    def approval(
        self,
        node_id: str,
        *,
        by: str = "op",
        csr: bytes | None = None,
        root: tuple[Ed25519PrivateKey, Any] | None = None,
    ) -> tuple[Envelope, dict[str, Any]]:
        root_key, root_cert = root or (self.root_key, self.fed.root)
        csr_obj = load_csr(csr or self.homes[node_id].csr_der())
        cert = issue_certificate(root_key, root_cert, csr_obj, "node", dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
        return self.event(
            by,
            "JoinApproved",
            {
                "contract_id": self.contracts[node_id],
                "node_id": node_id,
                "certificate": cert.public_bytes(serialization.Encoding.DER),
                "expires_at": int(cert.not_valid_after_utc.timestamp() * 1000),
            },
        )

    def admit(self, node_id: str) -> None:
        """Join request and its approval, both received."""
        self.receive(*self.join_request(node_id))
        self.receive(*self.approval(node_id))

    def heartbeat(self, sender: str, **kw: Any) -> tuple[Envelope, dict[str, Any]]:
        return self.event(sender, "Heartbeat", {"node_id": sender, "interval_ms": 1000}, **kw)

    def serial(self, node_id: str) -> str:
        cert = self.trust.certificate(node_id)
        assert cert is not None
        return cert.serial


@pytest.fixture
def fed(tmp_path: Path) -> Fed:
    return Fed(tmp_path)


# -- TrustStore: operators, unknown senders --------------------------------------------------


def test_operator_is_known_from_the_federation_folder(fed: Fed) -> None:
    cert = fed.trust.certificate("op")
    assert cert is not None
    assert cert.role == "operator"
    assert fed.trust.verify(fed.heartbeat("op")[0]) == cert


def test_unknown_sender_is_refused_and_retriable(fed: Fed) -> None:
    env, _ = fed.event("stranger", "Heartbeat", {"node_id": "stranger", "interval_ms": 1}, key=generate_key())
    with pytest.raises(UnknownSenderError) as info:
        fed.trust.verify(env)
    assert info.value.retriable


def test_applicant_is_unknown_until_approved(fed: Fed) -> None:
    fed.receive(*fed.join_request("node-a"))
    with pytest.raises(UnknownSenderError):
        fed.trust.verify(fed.heartbeat("node-a")[0])


def test_envelope_claiming_the_operator_but_signed_by_another_key_is_bad_signature(fed: Fed) -> None:
    env, _ = fed.heartbeat("op", key=generate_key())
    with pytest.raises(BadSignatureError):
        fed.trust.verify(env)


# -- join requests ---------------------------------------------------------------------------


def test_join_request_is_verified_with_the_key_in_its_csr(fed: Fed) -> None:
    env, payload = fed.join_request("node-a")
    applicant = fed.trust.verify_applicant(env, payload)
    assert applicant.node_id == "node-a"
    assert applicant.role == "applicant"
    assert applicant.public_key == fed.homes["node-a"].key().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    fed.trust.apply(env, payload, applicant)
    assert fed.trust.members.nodes["node-a"].contract is ContractStatus.REQUESTED


def test_join_request_signed_by_another_key_than_its_csr_is_bad_signature(fed: Fed) -> None:
    env, payload = fed.join_request("node-a", key=generate_key())
    with pytest.raises(BadSignatureError):
        fed.trust.verify_applicant(env, payload)


def test_join_request_whose_csr_names_another_node_than_the_sender_is_unauthorised(fed: Fed) -> None:
    """node-b sends a request (as itself, about itself) carrying node-a's CSR."""
    csr_a = make_csr(generate_key(), "node-a", "Example Hospital").public_bytes(serialization.Encoding.DER)
    fed.join_request("node-b")  # creates node-b's home
    env, payload = fed.join_request("node-b", csr=csr_a)
    with pytest.raises(UnauthorisedError):
        fed.trust.verify_applicant(env, payload)


def test_join_request_about_another_node_than_the_sender_is_unauthorised(fed: Fed) -> None:
    env, payload = fed.join_request("node-a", node_id="node-z")
    with pytest.raises(UnauthorisedError):
        fed.trust.verify_applicant(env, payload)


def test_join_request_with_a_forged_csr_is_invalid_certificate(fed: Fed) -> None:
    csr = fed.join_request("node-a")[1]["csr"]
    forged = csr[:-64] + generate_key().sign(load_csr(csr).tbs_certrequest_bytes)
    env, payload = fed.join_request("node-a", csr=forged)
    with pytest.raises(InvalidCertificateError):
        fed.trust.verify_applicant(env, payload)


def test_join_request_with_a_corrupt_csr_is_refused_with_a_rejection_reason(fed: Fed) -> None:
    """Anyone may send a JoinRequested: whatever byte of its CSR is wrong, the error carries a rejection reason.

    (An unexpected library exception would be dead-lettered as HANDLER_FAILED instead.)
    """
    csr = fed.join_request("node-a")[1]["csr"]
    others = []
    for position in range(len(csr)):
        env, payload = fed.join_request("node-a", csr=csr[:position] + bytes([csr[position] ^ 1]) + csr[position + 1 :])
        try:
            fed.trust.verify_applicant(env, payload)
        except RejectedEventError:
            continue
        except Exception as exc:  # collected, reported below
            others.append((position, type(exc).__name__))
    assert others == [], f"(byte position, exception) pairs: {others}"


def test_join_request_under_an_operators_id_is_refused(fed: Fed) -> None:
    """An operator's node id is taken: a stranger's application under it must not enter membership.

    Otherwise one approval by mistake replaces the operator's certificate in every receiver's
    trust store with a node certificate for the stranger's key.
    """
    key = generate_key()
    env, payload = fed.event(
        "op",
        "JoinRequested",
        {
            "contract_id": str(uuid.uuid4()),
            "node_id": "op",
            "name": "op",
            "institution": "Consortium",
            "platform": "fate",
            "platform_version": "1",
            "address": "",
            "description": "",
            "csr": make_csr(key, "op", "Consortium").public_bytes(serialization.Encoding.DER),
            "agreement_sha256": fed.fed.agreement_sha256,
            "expires_at": now_ms() + DAY_MS,
        },
        key=key,
    )
    with pytest.raises(RejectedEventError):
        fed.receive(env, payload)
    assert "op" not in fed.trust.members.nodes


# -- approval --------------------------------------------------------------------------------


def test_after_join_approved_the_nodes_envelopes_verify(fed: Fed) -> None:
    fed.admit("node-a")
    cert = fed.trust.verify(fed.heartbeat("node-a")[0])
    assert (cert.node_id, cert.role) == ("node-a", "node")
    assert fed.trust.members.nodes["node-a"].contract is ContractStatus.APPROVED
    assert fed.trust.members.nodes["node-a"].certificate_serial == cert.serial


def test_join_approved_signed_by_a_node_is_unauthorised_and_changes_nothing(fed: Fed) -> None:
    fed.admit("node-a")
    fed.receive(*fed.join_request("node-b"))
    env, payload = fed.approval("node-b", by="node-a")
    speaker = fed.trust.verify(env)  # node-a may speak ...
    with pytest.raises(UnauthorisedError):
        fed.trust.apply(env, payload, speaker)  # ... but not approve
    assert fed.trust.certificate("node-b") is None
    assert fed.trust.members.nodes["node-b"].contract is ContractStatus.REQUESTED


def test_join_approved_for_a_key_other_than_the_requests_csr_is_invalid_certificate(fed: Fed) -> None:
    fed.receive(*fed.join_request("node-a"))
    other = make_csr(generate_key(), "node-a", "Example Hospital").public_bytes(serialization.Encoding.DER)
    env, payload = fed.approval("node-a", csr=other)
    with pytest.raises(InvalidCertificateError):
        fed.receive(env, payload)
    assert fed.trust.certificate("node-a") is None


def test_join_approved_with_a_certificate_from_another_root_is_invalid_certificate(fed: Fed) -> None:
    fed.receive(*fed.join_request("node-a"))
    rogue_key = generate_key()
    env, payload = fed.approval("node-a", root=(rogue_key, make_root("example-fed", rogue_key)))
    with pytest.raises(InvalidCertificateError):
        fed.receive(env, payload)
    assert fed.trust.certificate("node-a") is None


def test_join_approved_without_a_pending_request_is_an_invalid_transition(fed: Fed) -> None:
    fed.join_request("node-a")  # made, never received
    with pytest.raises(InvalidTransitionError):
        fed.receive(*fed.approval("node-a"))
    assert fed.trust.certificate("node-a") is None


# -- revocation and termination --------------------------------------------------------------


def test_events_issued_after_certificate_revoked_are_refused(fed: Fed) -> None:
    fed.admit("node-a")
    cut = now_ms()
    fed.receive(
        *fed.event(
            "op",
            "CertificateRevoked",
            {"node_id": "node-a", "serial": fed.serial("node-a"), "reason": "key lost", "revoked_at": cut},
        )
    )
    with pytest.raises(RevokedSenderError, match="key lost"):
        fed.trust.verify(fed.heartbeat("node-a", issued_at=cut)[0])
    with pytest.raises(RevokedSenderError):
        fed.trust.verify(fed.heartbeat("node-a", issued_at=cut + 60_000)[0])
    # Cut by signed time: what node-a signed before revoked_at still verifies (e.g. for an audit).
    fed.trust.verify(fed.heartbeat("node-a", issued_at=cut - 1)[0])


def test_the_earliest_revocation_cut_wins(fed: Fed) -> None:
    fed.admit("node-a")
    cut, serial = now_ms(), fed.serial("node-a")
    for revoked_at in (cut - 10_000, cut):
        fed.receive(
            *fed.event(
                "op",
                "CertificateRevoked",
                {"node_id": "node-a", "serial": serial, "reason": "stolen", "revoked_at": revoked_at},
            )
        )
    with pytest.raises(RevokedSenderError):
        fed.trust.verify(fed.heartbeat("node-a", issued_at=cut - 5_000)[0])


def test_certificate_revoked_by_a_node_is_unauthorised(fed: Fed) -> None:
    fed.admit("node-a")
    fed.admit("node-b")
    env, payload = fed.event(
        "node-a",
        "CertificateRevoked",
        {"node_id": "node-b", "serial": fed.serial("node-b"), "reason": "spite", "revoked_at": now_ms()},
    )
    with pytest.raises(UnauthorisedError):
        fed.receive(env, payload)
    fed.trust.verify(fed.heartbeat("node-b")[0])


@pytest.mark.parametrize("by", ["op", "node-a"])
def test_events_issued_after_contract_terminated_are_refused(fed: Fed, by: str) -> None:
    """By the operator or by the node itself, a termination revokes the node's certificate from then on."""
    fed.admit("node-a")
    env, payload = fed.event(
        by, "ContractTerminated", {"contract_id": fed.contracts["node-a"], "node_id": "node-a", "reason": "leaving"}
    )
    fed.receive(env, payload)
    assert fed.trust.members.nodes["node-a"].contract is ContractStatus.TERMINATED
    with pytest.raises(RevokedSenderError, match="terminated"):
        fed.trust.verify(fed.heartbeat("node-a", issued_at=env.issued_at)[0])
    with pytest.raises(RevokedSenderError):
        fed.trust.verify(fed.heartbeat("node-a", issued_at=env.issued_at + 1)[0])


def test_contract_terminated_by_another_node_is_unauthorised(fed: Fed) -> None:
    fed.admit("node-a")
    fed.admit("node-b")
    env, payload = fed.event(
        "node-b", "ContractTerminated", {"contract_id": fed.contracts["node-a"], "node_id": "node-a", "reason": "spite"}
    )
    with pytest.raises(UnauthorisedError):
        fed.receive(env, payload)
    assert fed.trust.members.nodes["node-a"].contract is ContractStatus.APPROVED
    fed.trust.verify(fed.heartbeat("node-a")[0])


def test_a_forged_event_of_a_revoked_sender_is_a_bad_signature_not_a_revoked_sender(fed: Fed) -> None:
    """The signature decides which certificate an event is judged under, so it is checked before revocation:
    REVOKED_SENDER always names an event the revoked certificate's key really signed."""
    fed.admit("node-a")
    terminated, payload = fed.event(
        "op", "ContractTerminated", {"contract_id": fed.contracts["node-a"], "node_id": "node-a", "reason": "gone"}
    )
    fed.receive(terminated, payload)
    with pytest.raises(BadSignatureError):
        fed.trust.verify(fed.heartbeat("node-a", key=generate_key())[0])


def test_without_the_revocation_check_a_revoked_senders_event_verifies_and_names_its_cut(fed: Fed) -> None:
    """What the evidence topic does (docs/protocol.md §6.2, §13.3): the receiver judges revocation itself."""
    fed.admit("node-a")
    terminated, payload = fed.event(
        "node-a", "ContractTerminated", {"contract_id": fed.contracts["node-a"], "node_id": "node-a", "reason": "bye"}
    )
    fed.receive(terminated, payload)
    late = fed.heartbeat("node-a", issued_at=terminated.issued_at + 1)[0]
    with pytest.raises(RevokedSenderError):
        fed.trust.verify(late)
    cert = fed.trust.verify(late, revocation=False)
    assert cert.serial == fed.serial("node-a")
    assert fed.trust.revoked_from(cert.serial) == terminated.issued_at
    with pytest.raises(BadSignatureError):
        fed.trust.verify(fed.heartbeat("node-a", key=generate_key())[0], revocation=False)


def approved_again_under_a_new_key(fed: Fed, node_id: str) -> tuple[Ed25519PrivateKey, Envelope]:
    """Admit ``node_id``, terminate it, and admit it again from a new home (a new key); return the old
    key and the termination."""
    fed.admit(node_id)
    old_key = fed.homes[node_id].key()
    terminated, payload = fed.event(
        "op", "ContractTerminated", {"contract_id": fed.contracts[node_id], "node_id": node_id, "reason": "rekey"}
    )
    fed.receive(terminated, payload)
    config = NodeConfig(node_id=node_id, name=node_id, institution="Example Hospital", platform="fate")
    fed.homes[node_id] = NodeHome.create(fed.root / f"{node_id}-again", config, fed.op.federation_path)
    fed.admit(node_id)
    return old_key, terminated


def test_a_node_approved_again_under_a_new_key_keeps_its_earlier_certificate(fed: Fed) -> None:
    """Events signed under the first certificate while it was good verify after the second approval is read,
    as they did before it: a receiver's verdict does not depend on how far it has read registry."""
    old_key, terminated = approved_again_under_a_new_key(fed, "node-a")
    first, second = fed.trust.certificates("node-a")
    assert fed.trust.certificate("node-a") == second
    before = fed.heartbeat("node-a", key=old_key, issued_at=terminated.issued_at - 1)[0]
    assert fed.trust.verify(before) == first
    assert fed.trust.verify(fed.heartbeat("node-a")[0]) == second
    # Revocations stay per serial: the first certificate's cut does not touch the second.
    with pytest.raises(RevokedSenderError):
        fed.trust.verify(fed.heartbeat("node-a", key=old_key, issued_at=terminated.issued_at + 1)[0])
    assert fed.trust.verify(fed.heartbeat("node-a", issued_at=terminated.issued_at + 1)[0]) == second
    assert fed.trust.can_sign("node-a")


def test_an_event_signed_by_neither_of_a_nodes_keys_is_a_bad_signature(fed: Fed) -> None:
    approved_again_under_a_new_key(fed, "node-a")
    with pytest.raises(BadSignatureError):
        fed.trust.verify(fed.heartbeat("node-a", key=generate_key())[0])


# -- certificate validity --------------------------------------------------------------------


def test_issued_at_outside_the_certificates_validity_is_invalid_certificate(fed: Fed) -> None:
    """The tolerance of §6.2 (5 minutes) applies at both ends of the validity, and not one ms more."""
    fed.admit("node-a")
    cert = fed.trust.certificate("node-a")
    assert cert is not None
    skew = 5 * 60 * 1000
    for issued_at in (cert.not_before - skew - 1, cert.not_after + skew + 1):
        with pytest.raises(InvalidCertificateError, match="not valid"):
            fed.trust.verify(fed.heartbeat("node-a", issued_at=issued_at)[0])
    for issued_at in (cert.not_before - skew, cert.not_after + skew):
        fed.trust.verify(fed.heartbeat("node-a", issued_at=issued_at)[0])


@pytest.mark.parametrize("skew_minutes", range(-10, 11))
def test_clock_skew_sweep_no_false_refusal_within_the_tolerance_and_a_refusal_beyond_it(
    fed: Fed, skew_minutes: int
) -> None:
    """A sender whose clock is ``skew_minutes`` off signs at the first and the last instant of its
    certificate's validity (and in the middle): within 5 minutes of skew every event is accepted; beyond
    it, the event at the edge the clock runs past is refused (INVALID_CERTIFICATE), the other accepted."""
    fed.admit("node-a")
    cert = fed.trust.certificate("node-a")
    assert cert is not None
    skew = skew_minutes * 60_000
    tolerated = abs(skew) <= SKEW_MS
    for true_time, past_this_edge in (
        (cert.not_before, skew < 0),
        ((cert.not_before + cert.not_after) // 2, False),
        (cert.not_after, skew > 0),
    ):
        env = fed.heartbeat("node-a", issued_at=true_time + skew)[0]
        if tolerated or not past_this_edge:
            assert fed.trust.verify(env) is cert
        else:
            with pytest.raises(InvalidCertificateError, match="not valid"):
                fed.trust.verify(env)


# -- ReplayGuard -----------------------------------------------------------------------------

KEY_A, KEY_B = b"\x0a" * 32, b"\x0b" * 32


def _env(sequence: int, sender: str = "node-a", event_id: str | None = None) -> Envelope:
    return new_envelope(
        payload_type=R + "Heartbeat",
        payload_fingerprint=bytes(8),
        payload=b"",
        sender=sender,
        sequence=sequence,
        subject=sender,
        event_id=event_id or str(uuid.uuid4()),
        issued_at=0,
    )


def _seen(guard: ReplayGuard, env: Envelope, key: bytes = KEY_A, topic: str = "t", partition: int = 0) -> bool:
    """What a service does: check, and record what was new."""
    new = guard.check(env, key, topic, partition)
    if new:
        guard.record(env, key, topic, partition)
    return new


def test_replay_guard_skips_a_duplicate_of_an_applied_event() -> None:
    guard, env = ReplayGuard(), _env(1)
    assert _seen(guard, env)
    assert not _seen(guard, env)
    assert not _seen(guard, dataclasses.replace(env))


def test_replay_guard_refuses_a_reused_sequence_with_a_new_event_id() -> None:
    guard = ReplayGuard()
    _seen(guard, _env(7))
    with pytest.raises(ReplayedSequenceError, match="already used"):
        guard.check(_env(7), KEY_A, "t", 0)


def test_replay_guard_refuses_a_sequence_older_than_the_window() -> None:
    guard = ReplayGuard(window=4)
    _seen(guard, _env(10))
    with pytest.raises(ReplayedSequenceError, match="older than the window"):
        guard.check(_env(6), KEY_A, "t", 0)
    assert guard.check(_env(7), KEY_A, "t", 0)


def test_replay_guard_accepts_out_of_order_sequences_within_the_window() -> None:
    guard = ReplayGuard(window=8)
    for sequence in (5, 3, 8, 1, 2, 7, 4, 6):
        assert _seen(guard, _env(sequence))
    with pytest.raises(ReplayedSequenceError):
        guard.check(_env(3), KEY_A, "t", 0)


def test_replay_guard_forgets_nothing_inside_the_window_as_it_slides() -> None:
    guard = ReplayGuard(window=4)
    for sequence in (10, 8, 12, 9, 14):
        _seen(guard, _env(sequence))
    for reused in (12, 14):  # inside the window (latest 14): remembered as used
        with pytest.raises(ReplayedSequenceError, match="already used"):
            guard.check(_env(reused), KEY_A, "t", 0)
    assert guard.check(_env(11), KEY_A, "t", 0)
    assert guard.check(_env(13), KEY_A, "t", 0)


@pytest.mark.parametrize(
    ("sender", "key", "topic", "partition"),
    [
        ("node-b", KEY_A, "t", 0),
        ("node-a", KEY_B, "t", 0),
        ("node-a", KEY_A, "u", 0),
        ("node-a", KEY_A, "t", 1),
    ],
)
def test_replay_scopes_are_independent(sender: str, key: bytes, topic: str, partition: int) -> None:
    """Per (sender, signing key, topic, partition): a sequence used in one scope is free in every other."""
    guard = ReplayGuard(window=4)
    for sequence in (1, 100):
        _seen(guard, _env(sequence))
    assert _seen(guard, _env(1, sender=sender), key, topic, partition)
    assert _seen(guard, _env(100, sender=sender), key, topic, partition)


def test_join_approved_whose_expiry_is_not_its_certificates_is_refused_and_changes_nothing(fed: Fed) -> None:
    fed.receive(*fed.join_request("node-a"))
    env, payload = fed.approval("node-a")
    payload = {**payload, "expires_at": payload["expires_at"] + 1}
    with pytest.raises(InvalidCertificateError, match="notAfter"):
        fed.trust.apply(env, payload, fed.trust.verify(env))
    assert fed.trust.certificate("node-a") is None


def test_registry_event_under_a_subject_other_than_its_node_is_key_mismatch(fed: Fed) -> None:
    env, payload = fed.join_request("node-a")
    with pytest.raises(KeyMismatchError):
        fed.trust.apply(dataclasses.replace(env, subject="node-b"), payload, fed.trust.verify_applicant(env, payload))
    assert "node-a" not in fed.trust.members.nodes


def test_a_node_approved_again_under_the_same_key_waits_for_its_new_approval_rather_than_be_refused(fed: Fed) -> None:
    """A node terminated and approved again from the same home (the same key): its new events verify under the
    old, cut certificate until the receiver reads the new approval. The refusal is retriable (it waits for a fence
    over registry, docs/protocol.md §6.5), so a receiver that reads the new event first does not refuse it for
    good; once the approval is read the event verifies under the new certificate."""
    fed.admit("node-a")
    terminated, payload = fed.event(
        "op", "ContractTerminated", {"contract_id": fed.contracts["node-a"], "node_id": "node-a", "reason": "pause"}
    )
    fed.receive(terminated, payload)
    fed.receive(*fed.join_request("node-a"))  # the same home: the same key in the new CSR
    approval = fed.approval("node-a")
    later = fed.heartbeat("node-a", issued_at=terminated.issued_at + 1)[0]
    with pytest.raises(RevokedSenderError) as refused:
        fed.trust.verify(later)
    assert refused.value.retriable
    assert refused.value.waits_for == ("registry",)
    fed.receive(*approval)
    first, second = fed.trust.certificates("node-a")
    assert first.public_key == second.public_key
    assert fed.trust.verify(later) == second
