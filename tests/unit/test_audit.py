"""services.evidence.audit without a broker: completeness from GOVERNED alone (synthetic governed types too), heads."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh import evidence as evidence_module
from mesh.bus import KafkaBus
from mesh.envelope import Envelope, new_envelope
from mesh.evidence import EVIDENCE_RECORDED, evidence_of
from mesh.home import NodeConfig, NodeHome, create_federation
from mesh.node import open_context
from mesh.service import Event
from mesh.settings import load_settings
from mesh.signing import NodeSigner
from mesh.trust import Applicant
from services.evidence.audit import Auditor, governed_topics
from services.evidence.heads import TreeHead

#: A governed type of a service that does not exist yet: the auditor must need no change for it.
SYNTHETIC = "interfed.catalog.DatasetPublished"
KEYS = {name: NodeSigner(Ed25519PrivateKey.generate()) for name in ("alice", "bob", "operator")}
_sequence = itertools.count(1)


@pytest.fixture(autouse=True)
def synthetic_governed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(evidence_module.GOVERNED, SYNTHETIC, "catalog.publish")


@pytest.fixture
def auditor(tmp_path: Path) -> Auditor:
    op = create_federation(
        tmp_path / "operator",
        "unit",
        NodeConfig(node_id="operator", name="op", institution="unit", platform="interfed", role="operator"),
    )
    cfg = NodeConfig(node_id="auditor", name="Auditor", institution="unit", platform="interfed")
    home = NodeHome.create(tmp_path / "auditor", cfg, op.federation_path)
    settings = load_settings()
    return Auditor(open_context(home, KafkaBus("unused:9092"), settings))  # the bus is never started


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
