"""services.evidence.audit without a broker: completeness from GOVERNED alone (synthetic governed types too), heads,
and countersignatures of heads refused because their keeper was revoked (and the evidence service's side of that)."""

from __future__ import annotations

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
from mesh.evidence import EVIDENCE_RECORDED, evidence_of
from mesh.home import NodeConfig, NodeHome, create_federation
from mesh.node import open_context
from mesh.service import Event
from mesh.settings import load_settings
from mesh.signing import NodeSigner
from mesh.trust import Applicant
from services.evidence.audit import Auditor, governed_topics
from services.evidence.cli import print_summary
from services.evidence.heads import TREE_HEAD, TREE_HEAD_COSIGNED, TreeHead, cosign
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


def envelope(sender: str, payload_type: str, subject: str = "ds-1") -> Envelope:
    return new_envelope(
        payload_type=payload_type,
        payload_fingerprint=bytes(8),
        payload=b"synthetic",
        sender=sender,
        sequence=next(_sequence),
        subject=subject,
    ).signed(KEYS[sender])


def event(env: Envelope, payload: dict[str, Any], topic: str) -> Event:
    return Event(env, payload, Applicant(env.sender, KEYS[env.sender].public_key), topic, 0, next(_sequence))


async def publish(auditor: Auditor, sender: str = "alice") -> Envelope:
    env = envelope(sender, SYNTHETIC)
    await auditor.on_governed(event(env, {}, "catalog"))
    return env


async def record(auditor: Auditor, env: Envelope, recorder: str | None = None, **changes: Any) -> None:
    payload = {**evidence_of("catalog.publish", "catalog", env), **changes}
    await auditor.on_evidence(event(envelope(recorder or env.sender, EVIDENCE_RECORDED), payload, "evidence"))


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


# -- countersignatures of heads refused as REVOKED_SENDER --------------------------------------


def operator_key(tmp_path: Path) -> NodeSigner:
    return NodeSigner(NodeHome(tmp_path / "operator").key())  # the key the federation certifies


def revoke_operator(service: Auditor | EvidenceService, since: int) -> None:
    cert = service.trust.certificate("operator")
    assert cert is not None
    service.trust._revoke(cert.serial, since, "contract terminated: unit")


def operator_envelope(key: NodeSigner, h: TreeHead, issued_at: int | None = None) -> Envelope:
    """A real TreeHead envelope of ``h``, signed by ``key`` as the operator."""
    schema, body = SchemaStore.load().encode(TREE_HEAD, h.payload())
    return new_envelope(
        payload_type=TREE_HEAD,
        payload_fingerprint=schema.fingerprint,
        payload=body,
        sender="operator",
        sequence=next(_sequence),
        subject="operator",
        issued_at=issued_at,
    ).signed(key)


def head_record(auditor: Auditor, h: TreeHead, key: NodeSigner) -> Record:
    """The record of that envelope on the auditor's evidence topic."""
    env = operator_envelope(key, h)
    return Record(auditor.ctx.bus.names("evidence"), 0, next(_sequence), b"operator", env.encode())


async def refuse(auditor: Auditor, record: Record) -> str:
    """Run a record through the pipeline's checks and dead-letter it as ``Service.process`` would."""
    try:
        await auditor._apply_value(record, record.value, [])
    except MeshError as exc:
        await auditor.dead_letter(record, exc.reason, str(exc))
        return exc.reason
    raise AssertionError("the record was accepted")


async def cosigned_by_alice(auditor: Auditor, h: TreeHead) -> None:
    payload = cosign(h, "alice", KEYS["alice"])
    await auditor.on_cosigned(event(envelope("alice", TREE_HEAD_COSIGNED, h.log_id), payload, "evidence"))


async def refused_operator_head(
    auditor: Auditor, head_key: NodeSigner, envelope_key: NodeSigner, root: bytes | None = None
) -> TreeHead:
    """Three evidenced events and alice's head; then the operator, revoked from time 1, signs a head of size 3
    (``head_key`` signs the head, ``envelope_key`` its envelope), which the pipeline refuses as REVOKED_SENDER."""
    for _ in range(3):
        await record(auditor, await publish(auditor))
    await head(auditor)
    revoke_operator(auditor, 1)
    h = TreeHead("operator", 3, auditor.tree.root(3) if root is None else root, 2).signed(head_key)
    assert await refuse(auditor, head_record(auditor, h, envelope_key)) == "REVOKED_SENDER"
    return h


async def test_a_countersigned_head_refused_after_its_keepers_revocation_is_reported_not_failed(
    auditor: Auditor, tmp_path: Path
) -> None:
    h = await refused_operator_head(auditor, operator_key(tmp_path), operator_key(tmp_path))
    await cosigned_by_alice(auditor, h)  # alice read the head before she read the revocation
    report = auditor.report()
    assert report["violations"] == []
    assert [r["reason"] for r in report["refused_after_revocation"]] == ["REVOKED_SENDER"]
    [cosigned] = report["cosigned_refused_heads"]
    assert (cosigned["witness"], cosigned["log_id"], cosigned["tree_size"]) == ("alice", "operator", 3)
    assert cosigned["root_hash"] == auditor.tree.root(3).hex()
    assert cosigned["reason"] == "REVOKED_SENDER"
    assert "operator" not in report["logs"]  # its head was never accepted
    console = Console(record=True, width=200)
    print_summary(report, console)
    text = console.export_text()
    assert "1 records refused as signed after their sender's revocation" in text
    assert "alice countersigned operator's head of 3" in text
    assert "audit passed" in text


async def test_a_countersignature_of_a_head_nobody_signed_is_a_mismatch_though_another_was_refused(
    auditor: Auditor, tmp_path: Path
) -> None:
    await refused_operator_head(auditor, operator_key(tmp_path), operator_key(tmp_path))
    # The right root at size 2, so only "never signed" can fail it: the refused head is of size 3.
    await cosigned_by_alice(auditor, TreeHead("operator", 2, auditor.tree.root(2), 2))
    assert reasons(auditor) == {"COSIGNATURE_MISMATCH": 1}
    assert "never signed" in auditor.report()["violations"][0]["detail"]
    assert auditor.report()["cosigned_refused_heads"] == []


@pytest.mark.parametrize("forged", ["envelope", "head"])
async def test_a_refused_head_its_keeper_did_not_sign_makes_its_countersignature_a_mismatch(
    auditor: Auditor, tmp_path: Path, forged: str
) -> None:
    """The pipeline refuses a revoked sender before checking signatures: the auditor must check them itself."""
    stranger, genuine = NodeSigner(Ed25519PrivateKey.generate()), operator_key(tmp_path)
    keys = (stranger, genuine) if forged == "head" else (genuine, stranger)
    await cosigned_by_alice(auditor, await refused_operator_head(auditor, *keys))
    assert reasons(auditor) == {"COSIGNATURE_MISMATCH": 1}
    assert auditor.report()["cosigned_refused_heads"] == []


async def test_a_countersigned_refused_head_with_a_root_not_the_logs_is_a_mismatch(
    auditor: Auditor, tmp_path: Path
) -> None:
    key = operator_key(tmp_path)
    await cosigned_by_alice(auditor, await refused_operator_head(auditor, key, key, root=bytes(32)))
    assert reasons(auditor) == {"COSIGNATURE_MISMATCH": 1}
    assert "not the replayed log's" in auditor.report()["violations"][0]["detail"]
    assert auditor.report()["cosigned_refused_heads"] == []


async def test_a_witness_drops_pending_countersignatures_of_heads_signed_from_a_revocation_on(tmp_path: Path) -> None:
    witness = EvidenceService(auditor_context(tmp_path), persist=False)
    key = operator_key(tmp_path)
    public = Applicant("operator", key.public_key, "operator")
    t0 = time.time_ns() // 1_000_000  # times within the operator's certificate's validity

    async def read_head(timestamp: int, issued_at: int) -> None:
        """A leaf, then the operator's head of the log so far (each head its own size)."""
        leaf = envelope("alice", EVIDENCE_RECORDED)
        await witness.on_evidence(event(leaf, {"event_id": leaf.event_id}, "evidence"))
        h = TreeHead("operator", witness.size, witness.log_state.tree.root(), t0 + timestamp).signed(key)
        env = operator_envelope(key, h, t0 + issued_at)
        await witness.on_tree_head(Event(env, h.payload(), public, "evidence", 0, 0))

    await read_head(10, 10)
    await read_head(20, 20)
    assert witness.pending_cosignatures == 2
    revoke_operator(witness, t0 + 15)  # what applying the termination does to trust, before the handler runs
    terminated = envelope("operator", "interfed.registry.ContractTerminated", "operator")
    await witness.on_revocation(Event(terminated, {}, public, "registry", 0, 1))
    assert witness.pending_cosignatures == 1  # the head of 10 is still countersigned; the one of 20 is not
    assert witness.counts["cosignature_dropped"] == 1
    await read_head(30, 12)  # an envelope stamped before the cut around a head stamped after it
    await read_head(12, 30)  # and the other way round
    assert witness.pending_cosignatures == 1
