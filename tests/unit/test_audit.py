"""services.evidence.audit without a broker: completeness from GOVERNED alone (synthetic governed types too), heads,
one evidence record per event and recorder, refused input, and what a revoked party signed after its cut (and the
evidence service's side of that)."""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console

from mesh import evidence as evidence_module
from mesh.bus import KafkaBus, Record
from mesh.codec import SchemaStore
from mesh.envelope import Envelope, new_envelope
from mesh.errors import MeshError
from mesh.events import CONTRACT_TERMINATED, EVIDENCE_RECORDED, JOIN_REQUESTED, TREE_HEAD, TREE_HEAD_COSIGNED
from mesh.evidence import GOVERNED, evidence_of
from mesh.home import NodeConfig, NodeHome, create_federation
from mesh.identity import NodeCertificate
from mesh.node import open_context
from mesh.service import Event
from mesh.settings import load_settings
from mesh.signing import NodeSigner
from mesh.topics import topic_for
from mesh.trust import Applicant, Speaker
from services.evidence.audit import Auditor, governed_topics
from services.evidence.cli import print_summary
from services.evidence.heads import TreeHead, cosign
from services.evidence.service import EvidenceService

#: A governed type of a service that does not exist yet: the auditor must need no change for it.
SYNTHETIC = "interfed.catalog.DatasetPublished"
KEYS = {name: NodeSigner(Ed25519PrivateKey.generate()) for name in ("alice", "bob", "operator")}
_sequence = itertools.count(1)


@pytest.fixture(autouse=True)
def synthetic_governed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(evidence_module.GOVERNED, SYNTHETIC, "catalog.publish")


def auditor_context(tmp_path: Path) -> Any:
    op = create_federation(
        tmp_path / "operator",
        "unit",
        NodeConfig(node_id="operator", name="op", institution="unit", platform="interfed", role="operator"),
    )
    cfg = NodeConfig(node_id="auditor", name="Auditor", institution="unit", platform="interfed")
    home = NodeHome.create(tmp_path / "auditor", cfg, op.federation_path)
    return open_context(home, KafkaBus("unused:9092"), load_settings())  # the bus is never started


@pytest.fixture
def auditor(tmp_path: Path) -> Auditor:
    auditor = Auditor(auditor_context(tmp_path))
    auditor.caught_up.set()  # as if its replay had read every partition to its end: the events come by hand
    return auditor


def envelope(sender: str, payload_type: str, subject: str = "ds-1", issued_at: int | None = None) -> Envelope:
    return new_envelope(
        payload_type=payload_type,
        payload_fingerprint=bytes(8),
        payload=b"synthetic",
        sender=sender,
        sequence=next(_sequence),
        subject=subject,
        issued_at=issued_at,
    ).signed(KEYS[sender])


def event(env: Envelope, payload: dict[str, Any], topic: str, speaker: Speaker | None = None) -> Event:
    speaker = speaker or Applicant(env.sender, KEYS[env.sender].public_key)
    return Event(env, payload, speaker, topic, 0, next(_sequence))


async def publish(
    auditor: Auditor, sender: str = "alice", speaker: Speaker | None = None, at: int | None = None
) -> Envelope:
    env = envelope(sender, SYNTHETIC, issued_at=at)
    await auditor.on_governed(event(env, {}, "catalog", speaker))
    return env


async def record(
    auditor: Auditor,
    env: Envelope,
    recorder: str | None = None,
    speaker: Speaker | None = None,
    at: int | None = None,
    **changes: Any,
) -> None:
    topic = topic_for(env.payload_type)
    assert topic is not None
    payload = {**evidence_of(GOVERNED[env.payload_type], topic, env), **changes}
    leaf = envelope(recorder or env.sender, EVIDENCE_RECORDED, issued_at=at)
    await auditor.on_evidence(event(leaf, payload, "evidence", speaker))


async def head(auditor: Auditor, size: int | None = None, root: bytes | None = None, by: str = "alice") -> TreeHead:
    size = auditor.tree.size if size is None else size
    root = root if root is not None else auditor.tree.root(min(size, auditor.tree.size))
    h = TreeHead(by, size, root, 1).signed(KEYS[by])
    await auditor.on_tree_head(event(envelope(by, "interfed.evidence.TreeHead", by), h.payload(), "evidence"))
    return h


def reasons(auditor: Auditor) -> dict[str, int]:
    return dict(auditor.report()["violations_by_reason"])


def test_the_audited_topics_come_from_governed() -> None:
    assert governed_topics() == ("catalog", "components", "registry", "tasks")


async def test_a_governed_event_with_its_evidence_and_a_head_passes(auditor: Auditor) -> None:
    await record(auditor, await publish(auditor))
    await head(auditor)
    assert reasons(auditor) == {}
    assert auditor.report()["by_action"] == {"catalog.publish": 1}


async def test_a_governed_event_without_evidence_is_missing_evidence(auditor: Auditor) -> None:
    await record(auditor, await publish(auditor))
    await publish(auditor)
    await head(auditor)
    assert reasons(auditor) == {"MISSING_EVIDENCE": 1}


@pytest.mark.parametrize(
    "change",
    [
        {"event_sha256": bytes(32)},
        {"action": "catalog.retract"},
        {"event_topic": "registry"},
        {"event_type": "interfed.catalog.DatasetRetracted"},
    ],
)
async def test_evidence_that_misstates_its_event_is_a_mismatch(auditor: Auditor, change: dict[str, Any]) -> None:
    await record(auditor, await publish(auditor), **change)
    await head(auditor)
    assert reasons(auditor) == {"EVIDENCE_MISMATCH": 1}


async def test_evidence_recorded_by_a_third_party_is_unauthorised_but_an_operator_may_record(auditor: Auditor) -> None:
    await record(auditor, await publish(auditor), recorder="bob")
    await record(auditor, await publish(auditor), recorder="operator")
    await head(auditor)
    assert reasons(auditor) == {"UNAUTHORISED_EVIDENCE": 1}


async def test_evidence_of_no_event_is_dangling(auditor: Auditor) -> None:
    await record(auditor, envelope("alice", SYNTHETIC))  # never seen on its topic
    await head(auditor)
    assert reasons(auditor) == {"DANGLING_EVIDENCE": 1}


async def test_leaves_without_any_signed_head_fail(auditor: Auditor) -> None:
    await record(auditor, await publish(auditor))
    assert reasons(auditor) == {"NO_TREE_HEAD": 1}


async def test_heads_beyond_the_log_wrong_shrinking_or_forked_are_each_named(auditor: Auditor) -> None:
    for _ in range(3):
        await record(auditor, await publish(auditor))
    await head(auditor, size=2)
    await head(auditor, size=5, root=bytes(32))  # beyond the 3 leaves on the topic
    await head(auditor, size=3, root=bytes(32))  # wrong root, and not an extension of size 2
    await head(auditor, size=1)  # shrinks
    await head(auditor, size=2, root=bytes(32))  # a second root for size 2
    assert reasons(auditor) == {
        "HEAD_BEYOND_LOG": 1,
        "HEAD_MISMATCH": 2,
        "INCONSISTENT_HEADS": 3,
        "SPLIT_VIEW": 1,
    }


async def test_a_trusted_head_longer_than_the_log_is_a_truncation(auditor: Auditor, tmp_path: Path) -> None:
    await record(auditor, await publish(auditor))
    await head(auditor)
    operator_key = NodeSigner(NodeHome(tmp_path / "operator").key())  # the key the federation certifies
    auditor.trusted = [TreeHead("operator", 2, bytes(32), 1).signed(operator_key)]
    assert reasons(auditor) == {"TRUNCATED": 1}


async def test_a_trusted_head_with_a_bad_signature_is_refused(auditor: Auditor) -> None:
    await record(auditor, await publish(auditor))
    await head(auditor)
    auditor.trusted = [TreeHead("operator", 1, auditor.tree.root(), 1).signed(KEYS["operator"])]  # not its key
    assert reasons(auditor) == {"HEAD_MISMATCH": 1}


# -- one evidence record per event and recorder ------------------------------------------------


async def test_a_second_evidence_record_by_the_same_recorder_is_duplicate_evidence(auditor: Auditor) -> None:
    env = await publish(auditor)
    await record(auditor, env)
    await record(auditor, env)  # a new record (its own event id), the same claim
    await head(auditor)
    report = auditor.report()
    assert reasons(auditor) == {"DUPLICATE_EVIDENCE": 1}
    [violation] = report["violations"]
    assert "evidence leaf 1" in violation["detail"]
    assert "alice already recorded this event" in violation["detail"]


async def test_one_event_evidenced_by_its_sender_and_by_operators_is_no_duplicate(auditor: Auditor) -> None:
    """One record per (event, recorder): an operator's receipt beside the sender's own is allowed (§13.7)."""
    env = await publish(auditor)
    await record(auditor, env)
    await record(auditor, env, recorder="operator")
    await head(auditor)
    assert reasons(auditor) == {}


# -- refused input ------------------------------------------------------------------------------


def junk(auditor: Auditor, topic: str, offset: int, partition: int = 0) -> Record:
    return Record(auditor.ctx.bus.names(topic), partition, offset, b"k", b"\x00junk")


async def test_refused_input_is_counted_by_reason_and_topic_with_offsets_and_is_no_violation(auditor: Auditor) -> None:
    await record(auditor, await publish(auditor))
    await head(auditor)
    await auditor.dead_letter(junk(auditor, "registry", 7, 2), "MALFORMED_ENVELOPE", "not an envelope")
    await auditor.dead_letter(junk(auditor, "evidence", 3), "BAD_SIGNATURE", "forged")
    await auditor.dead_letter(junk(auditor, "catalog", 5), "BAD_SIGNATURE", "forged")
    await auditor.dead_letter(junk(auditor, "heartbeats", 1), "BAD_SIGNATURE", "not an audited topic")
    report = auditor.report()
    assert report["passed"]
    refused = report["refused_input"]
    assert refused["count"] == 3
    assert refused["by_reason"] == {"BAD_SIGNATURE": 2, "MALFORMED_ENVELOPE": 1}
    assert refused["by_topic"] == {
        "catalog": {"BAD_SIGNATURE": 1},
        "evidence": {"BAD_SIGNATURE": 1},
        "registry": {"MALFORMED_ENVELOPE": 1},
    }
    assert [(r["topic"], r["partition"], r["offset"]) for r in refused["records"]] == [
        ("catalog", 0, 5),
        ("evidence", 0, 3),
        ("registry", 2, 7),
    ]
    console = Console(record=True, width=200)
    print_summary(report, console)
    text = console.export_text()
    assert "refused input, not violations: 3 records nobody accepted" in text
    assert "MALFORMED_ENVELOPE" in text
    assert "audit passed" in text


async def test_a_record_the_auditor_failed_to_handle_is_a_violation(auditor: Auditor) -> None:
    """HANDLER_FAILED is the auditor's own failure, not the input's: it cannot vouch for what it did not judge."""
    await auditor.dead_letter(junk(auditor, "evidence", 3), "HANDLER_FAILED", "KeyError: 'x'")
    assert reasons(auditor) == {"HANDLER_FAILED": 1}
    assert auditor.report()["refused_input"]["count"] == 0


# -- what a revoked party signed after its cut ----------------------------------------------------
#
# The operator stands in for any certified party here: its certificate is the one the federation
# folder gives, and revoking its serial in the auditor's trust is what reading a termination does.

#: A revocation cut within the validity of the certificates each test makes (from 5 min before its start):
#: set afresh for every test (``fresh_cut``), since a whole suite can take longer than that validity margin.
CUT = time.time_ns() // 1_000_000


@pytest.fixture(autouse=True)
def fresh_cut() -> None:
    global CUT  # noqa: PLW0603 - the tests read it as a constant; only its moment must be the test's own
    CUT = time.time_ns() // 1_000_000


def operator_key(tmp_path: Path) -> NodeSigner:
    return NodeSigner(NodeHome(tmp_path / "operator").key())  # the key the federation certifies


def operator_cert(service: Auditor | EvidenceService) -> NodeCertificate:
    cert = service.trust.certificate("operator")
    assert cert is not None
    return cert


def revoke_operator(service: Auditor | EvidenceService, since: int) -> None:
    service.trust._revoke(operator_cert(service).serial, since, "contract terminated: unit")


async def operator_head(
    auditor: Auditor, key: NodeSigner, at: int, size: int | None = None, root: bytes | None = None
) -> TreeHead:
    """The operator's head of the log (by default as it is), its envelope and head both stamped ``at``."""
    size = auditor.tree.size if size is None else size
    h = TreeHead("operator", size, root or auditor.tree.root(size), at).signed(key)
    env = envelope("operator", TREE_HEAD, "operator", issued_at=at)
    await auditor.on_tree_head(event(env, h.payload(), "evidence", operator_cert(auditor)))
    return h


async def cosigned_by_alice(auditor: Auditor, h: TreeHead) -> None:
    payload = cosign(h, "alice", KEYS["alice"])
    await auditor.on_cosigned(event(envelope("alice", TREE_HEAD_COSIGNED, h.log_id), payload, "evidence"))


async def test_a_head_signed_after_its_keepers_cut_is_reported_and_vouches_for_nothing(
    auditor: Auditor, tmp_path: Path
) -> None:
    key = operator_key(tmp_path)
    await record(auditor, await publish(auditor))
    await operator_head(auditor, key, CUT - 1)
    await record(auditor, await publish(auditor))
    late = await operator_head(auditor, key, CUT + 1)
    await cosigned_by_alice(auditor, late)  # alice read the head before she read the termination
    revoke_operator(auditor, CUT)
    report = auditor.report()
    assert report["violations"] == []
    assert report["logs"]["operator"] == {
        "heads": 1,
        "late_heads": 1,
        "latest": TreeHead("operator", 1, auditor.tree.root(1), CUT - 1).signed(key).to_json(),
        "cosigned_by": [],
    }
    [entry] = report["after_revocation"]
    assert (entry["kind"], entry["sender"], entry["cut"]) == ("tree_head", "operator", CUT)
    assert "countersigned by ['alice']" in entry["detail"]
    final = auditor.final_head()
    assert final is not None
    assert final.tree_size == 1  # a revoked key's head is no ground for a later audit


async def test_without_any_head_signed_before_the_cut_the_log_has_no_signed_head(
    auditor: Auditor, tmp_path: Path
) -> None:
    await record(auditor, await publish(auditor))
    await operator_head(auditor, operator_key(tmp_path), CUT)
    revoke_operator(auditor, CUT)
    assert reasons(auditor) == {"NO_TREE_HEAD": 1}


@pytest.mark.parametrize("fork", ["second root", "wrong root"])
async def test_a_revoked_keeper_that_forks_its_log_is_still_caught(auditor: Auditor, tmp_path: Path, fork: str) -> None:
    key = operator_key(tmp_path)
    for _ in range(2):
        await record(auditor, await publish(auditor))
    if fork == "second root":
        await operator_head(auditor, key, CUT - 1)
        await operator_head(auditor, key, CUT + 1, root=bytes(32))
        expected = {"SPLIT_VIEW": 1, "HEAD_MISMATCH": 1, "INCONSISTENT_HEADS": 1}
    else:
        await operator_head(auditor, key, CUT + 1, size=1, root=bytes(32))
        expected = {"HEAD_MISMATCH": 1, "NO_TREE_HEAD": 1}
    revoke_operator(auditor, CUT)
    assert reasons(auditor) == expected


async def test_a_countersignature_of_a_head_its_log_never_signed_is_a_mismatch(
    auditor: Auditor, tmp_path: Path
) -> None:
    await record(auditor, await publish(auditor))
    await operator_head(auditor, operator_key(tmp_path), CUT - 1)
    await cosigned_by_alice(auditor, TreeHead("operator", 0, auditor.tree.root(0), CUT - 1))  # right root, never signed
    assert reasons(auditor) == {"COSIGNATURE_MISMATCH": 1}
    assert "never signed" in auditor.report()["violations"][0]["detail"]


@pytest.mark.parametrize("claim", ["true", "dangling", "mismatched"])
async def test_evidence_recorded_after_the_recorders_cut_is_reported_never_a_violation(
    auditor: Auditor, claim: str
) -> None:
    """Whatever it claims: nobody could verify it as the recorder's word any more, so it counts for nothing."""
    op = operator_cert(auditor)
    env = await publish(auditor, "operator", op, at=CUT - 1)
    await record(auditor, env, speaker=op, at=CUT - 1)
    target = env if claim != "dangling" else envelope("operator", SYNTHETIC, issued_at=CUT - 1)
    changes = {"event_sha256": bytes(32)} if claim == "mismatched" else {}
    await record(auditor, target, speaker=op, at=CUT, **changes)  # a second record too: still no violation
    await head(auditor)
    revoke_operator(auditor, CUT)
    report = auditor.report()
    assert report["violations"] == []
    assert report["evidence_records"] == 1
    [entry] = report["after_revocation"]
    assert (entry["kind"], entry["topic"], entry["issued_at"], entry["cut"]) == ("evidence", "evidence", CUT, CUT)
    assert "evidence leaf 1" in entry["detail"]


async def test_an_event_signed_before_the_cut_whose_evidence_came_after_it_is_reported_not_missing(
    auditor: Auditor,
) -> None:
    """The sender published the event, then was terminated, then recorded its evidence: an honest race."""
    op = operator_cert(auditor)
    env = await publish(auditor, "operator", op, at=CUT - 1)
    await record(auditor, env, speaker=op, at=CUT + 1)
    await head(auditor)
    revoke_operator(auditor, CUT)
    assert reasons(auditor) == {}
    assert [e["kind"] for e in auditor.report()["after_revocation"]] == ["evidence"]


async def test_a_late_record_that_misstates_an_event_signed_before_the_cut_leaves_it_missing(auditor: Auditor) -> None:
    op = operator_cert(auditor)
    env = await publish(auditor, "operator", op, at=CUT - 1)
    await record(auditor, env, speaker=op, at=CUT + 1, event_sha256=bytes(32))
    await head(auditor)
    revoke_operator(auditor, CUT)
    assert reasons(auditor) == {"MISSING_EVIDENCE": 1}


async def test_a_governed_event_signed_after_its_senders_cut_is_reported_and_needs_no_evidence(
    auditor: Auditor,
) -> None:
    """Off registry, the auditor accepts it by signature and judges the cut at the end, whatever it read first."""
    op = operator_cert(auditor)
    await record(auditor, await publish(auditor))
    await publish(auditor, "operator", op, at=CUT + 5)
    await head(auditor)
    revoke_operator(auditor, CUT)
    assert reasons(auditor) == {}
    [entry] = auditor.report()["after_revocation"]
    assert (entry["kind"], entry["topic"], entry["sender"]) == ("event", "catalog", "operator")


async def test_the_evidence_of_a_partys_own_termination_counts_though_it_follows_the_cut(auditor: Auditor) -> None:
    op = operator_cert(auditor)
    terminated = envelope("operator", CONTRACT_TERMINATED, "operator", issued_at=CUT)
    await auditor.on_governed(event(terminated, {}, "registry", op))
    await record(auditor, terminated, speaker=op, at=CUT + 1)
    await head(auditor)
    revoke_operator(auditor, CUT)  # what applying the termination did
    report = auditor.report()
    assert report["violations"] == []
    assert report["by_action"] == {"registry.terminate": 1}
    assert report["after_revocation"] == []


async def test_evidence_of_an_event_refused_as_revoked_sender_is_reported_not_dangling(
    auditor: Auditor, tmp_path: Path
) -> None:
    """On registry the pipeline still refuses a revoked sender (membership); the evidence naming it is reported."""
    revoke_operator(auditor, CUT)
    schema, body = SchemaStore.load().encode(
        "interfed.registry.NodeAnnounced",
        {
            "node_id": "operator",
            "contract_id": "c",
            "name": "n",
            "institution": "i",
            "platform": "p",
            "platform_version": "1",
            "address": "",
            "services": [],
        },
    )
    announced = new_envelope(
        payload_type="interfed.registry.NodeAnnounced",
        payload_fingerprint=schema.fingerprint,
        payload=body,
        sender="operator",
        sequence=next(_sequence),
        subject="operator",
        issued_at=CUT + 1,  # valid, and after the cut
    ).signed(operator_key(tmp_path))
    value = announced.encode()
    refused = Record(auditor.ctx.bus.names("registry"), 1, 4, b"operator", value)
    with pytest.raises(MeshError) as failure:
        await auditor._apply_value(refused, value, [])
    assert failure.value.reason == "REVOKED_SENDER"
    await auditor.dead_letter(refused, failure.value.reason, str(failure.value))
    payload = evidence_of("registry.announce", "registry", announced)
    await auditor.on_evidence(event(envelope("operator", EVIDENCE_RECORDED), payload, "evidence"))
    await head(auditor)
    report = auditor.report()
    assert report["violations"] == []
    assert report["refused_input"]["by_reason"] == {"REVOKED_SENDER": 1}
    assert [e["kind"] for e in report["after_revocation"]] == ["evidence_of_refused"]


# -- the witness's side -----------------------------------------------------------------------------


async def test_a_witness_drops_pending_countersignatures_of_heads_signed_from_a_revocation_on(tmp_path: Path) -> None:
    witness = EvidenceService(auditor_context(tmp_path), persist=False)
    key = operator_key(tmp_path)
    cert = operator_cert(witness)
    t0 = time.time_ns() // 1_000_000  # times within the operator's certificate's validity

    async def read_head(timestamp: int, issued_at: int) -> None:
        """A leaf, then the operator's head of the log so far (each head its own size)."""
        leaf = envelope("alice", EVIDENCE_RECORDED)
        await witness.on_evidence(event(leaf, {"event_id": leaf.event_id}, "evidence"))
        h = TreeHead("operator", witness.size, witness.log_state.tree.root(), t0 + timestamp).signed(key)
        env = envelope("operator", TREE_HEAD, "operator", issued_at=t0 + issued_at)
        await witness.on_tree_head(Event(env, h.payload(), cert, "evidence", 0, 0))

    await read_head(10, 10)
    await read_head(20, 20)
    assert witness.pending_cosignatures == 2
    revoke_operator(witness, t0 + 15)  # what applying the termination does to trust, before the handler runs
    terminated = envelope("operator", CONTRACT_TERMINATED, "operator")
    await witness.on_revocation(Event(terminated, {}, cert, "registry", 0, 1))
    assert witness.pending_cosignatures == 1  # the head of 10 is still countersigned; the one of 20 is not
    assert witness.counts["cosignature_dropped"] == 1
    await read_head(30, 12)  # an envelope stamped before the cut around a head stamped after it
    await read_head(12, 30)  # and the other way round
    assert witness.pending_cosignatures == 1
    assert not witness.split_views  # accepted and judged against the log all the same


class AckLostOnce:
    """A bus whose first evidence send reaches the broker but whose acknowledgement is lost (a timeout)."""

    def __init__(self, bus: KafkaBus) -> None:
        self.names, self.max_record_bytes = bus.names, bus.max_record_bytes
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, value))
        if topic == self.names("evidence") and len(self.evidence()) == 1:
            raise TimeoutError("no acknowledgement")

    def evidence(self) -> list[bytes]:
        return [value for topic, value in self.sent if topic == self.names("evidence")]


async def test_an_operators_receipt_sent_again_after_a_lost_acknowledgement_is_the_same_record(tmp_path: Path) -> None:
    """So receivers skip the second copy as a duplicate (§6.3): an operator never records one join request twice."""
    ctx = auditor_context(tmp_path)
    ctx.config = NodeConfig(node_id="auditor", name="op", institution="unit", platform="interfed", role="operator")
    bus = AckLostOnce(ctx.bus)
    ctx.publisher.bus = bus  # type: ignore[assignment]
    witness = EvidenceService(ctx, persist=False)
    request = envelope("alice", JOIN_REQUESTED, "alice")
    await witness.on_join_requested(event(request, {}, "registry"))
    with pytest.raises(TimeoutError):
        await witness._record_receipts()
    await witness._record_receipts()
    first, again = bus.evidence()
    assert first == again
    assert witness.pending_receipts == 0
    assert Envelope.decode(first).event_id  # a real envelope, decoded as a receiver would


async def test_a_record_is_judged_under_the_certificate_it_verifies_under_once_every_approval_is_read(
    auditor: Auditor,
) -> None:
    """A party approved again under the same key: a record it signed after the first certificate's cut verified
    under that certificate when the auditor read it, but the second approval, read later, covers it."""
    op = operator_cert(auditor)
    revoke_operator(auditor, CUT)
    env = await publish(auditor, "operator", op, at=CUT + 1)
    await record(auditor, env, speaker=op, at=CUT + 2)
    await head(auditor)
    assert {e["kind"] for e in auditor.report()["after_revocation"]} == {"event", "evidence"}
    auditor.trust._learn(dataclasses.replace(op, serial="again", not_before=CUT))  # approved again, same key
    report = auditor.report()
    assert report["after_revocation"] == []
    assert report["evidence_records"] == 1
    assert report["violations"] == []
