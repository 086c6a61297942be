"""Tampering with a real federation's evidence topic: each edit of a copied history fails the audit with its reason.

Kafka records cannot be edited in place, so each case copies every topic of one genuine run to a
fresh prefix, editing the evidence topic on the way, and audits the copy read-only.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh.bus import Record
from mesh.codec import SchemaStore
from mesh.envelope import Envelope, new_envelope
from mesh.events import EVIDENCE_RECORDED, TREE_HEAD, TREE_HEAD_COSIGNED
from mesh.home import NodeHome
from mesh.signing import NodeSigner
from mesh.testing import copy_topics, fresh_settings
from services.evidence.cli import replay
from services.evidence.heads import TreeHead, cosign
from services.evidence.merkle import MerkleLog
from services.testbed import AuditedHistory as History

pytestmark = [pytest.mark.broker, pytest.mark.reference_lane, pytest.mark.timeout(240)]

Edit = Callable[[list[Record]], list[Record]]


def kind(record: Record) -> str:
    return Envelope.decode(record.value).payload_type


def positions(records: list[Record], payload_type: str) -> list[int]:
    return [i for i, r in enumerate(records) if kind(r) == payload_type]


def forged(
    home: NodeHome,
    payload_type: str,
    payload: dict[str, Any],
    subject: str,
    key: NodeSigner | None,
    *,
    topic: str = "evidence",
    record_key: bytes | None = None,
) -> Record:
    """A record signed by ``key`` (None: unsigned) as ``home``'s node, with a sequence number that node never
    used, keyed by ``record_key`` (by default its subject, as it should be)."""
    schema, body = SchemaStore.load().encode(payload_type, payload)
    env = new_envelope(
        payload_type=payload_type,
        payload_fingerprint=schema.fingerprint,
        payload=body,
        sender=home.config().node_id,
        sequence=home.sequence().next(),
        subject=subject,
    )
    signed = env.signed(key) if key is not None else env
    return Record(topic, 0, -1, record_key or subject.encode(), signed.encode())


async def audit_copy(h: History, edit: Edit | None, trusted: list[TreeHead] | None = None) -> dict[str, Any]:
    target = fresh_settings()
    await copy_topics(h.bootstrap, h.settings, target, {"evidence": edit} if edit else None)
    auditor = await replay(h.auditor, target, h.bootstrap, trusted)
    return auditor.report()


def reasons(report: dict[str, Any]) -> set[str]:
    return set(report["violations_by_reason"])


def heads_wrong(report: dict[str, Any]) -> bool:
    """Whether the heads that covered a leaf the copy lacks are reported. With the leaf gone, the replayed log is
    one short: a head read with more leaves before it has the wrong root (HEAD_MISMATCH), one read right after
    its last leaf is longer than the log so far (HEAD_BEYOND_LOG); which heads a history has depends on timing."""
    return bool({"HEAD_MISMATCH", "HEAD_BEYOND_LOG"} & reasons(report))


async def test_an_untouched_copy_passes_so_the_copy_itself_is_faithful(history: History) -> None:
    report = await audit_copy(history, None, [history.final])
    assert report["violations"] == []
    assert report["tree_size"] == history.final.tree_size


async def test_a_flipped_byte_in_an_evidence_record_leaves_its_event_without_evidence_and_the_heads_wrong(
    history: History,
) -> None:
    def flip(records: list[Record]) -> list[Record]:
        i = positions(records, EVIDENCE_RECORDED)[1]
        r = records[i]
        digest = SchemaStore.load().decode(EVIDENCE_RECORDED, *_fp_payload(r))["event_sha256"]
        at = r.value.index(digest) + 5  # a byte of the evidenced digest: the claim itself
        value = bytearray(r.value)
        value[at] ^= 0x01
        return [*records[:i], Record(r.topic, r.partition, r.offset, r.key, bytes(value)), *records[i + 1 :]]

    report = await audit_copy(history, flip)
    # The record itself is refused input (nobody accepted it); what that does to the history is the violation.
    assert "MISSING_EVIDENCE" in reasons(report)
    assert heads_wrong(report)
    assert "BAD_SIGNATURE" not in reasons(report)
    assert report["refused_input"]["by_topic"] == {"evidence": {"BAD_SIGNATURE": 1}}


def _fp_payload(r: Record) -> tuple[bytes, bytes]:
    env = Envelope.decode(r.value)
    return env.payload_fingerprint, env.payload


async def test_a_deleted_evidence_record_leaves_its_event_without_evidence(history: History) -> None:
    def delete(records: list[Record]) -> list[Record]:
        i = positions(records, EVIDENCE_RECORDED)[1]
        return [*records[:i], *records[i + 1 :]]

    report = await audit_copy(history, delete)
    assert "MISSING_EVIDENCE" in reasons(report)
    assert heads_wrong(report)


async def test_reordered_evidence_records_no_longer_match_the_signed_heads(history: History) -> None:
    def swap(records: list[Record]) -> list[Record]:
        a, b = positions(records, EVIDENCE_RECORDED)[:2]
        out = list(records)
        out[a], out[b] = records[b], records[a]
        return out

    report = await audit_copy(history, swap)
    # Every record is genuine and every event evidenced: only the heads show the order changed.
    assert "HEAD_MISMATCH" in reasons(report)
    assert not {"MISSING_EVIDENCE", "DANGLING_EVIDENCE", "BAD_SIGNATURE"} & reasons(report)


async def test_a_truncated_log_falls_short_of_the_head_known_before(history: History) -> None:
    def truncate(records: list[Record]) -> list[Record]:
        return records[: positions(records, EVIDENCE_RECORDED)[-1]]  # the last leaf and everything after it

    report = await audit_copy(history, truncate, [history.final])
    assert {"TRUNCATED", "MISSING_EVIDENCE"} <= reasons(report)
    assert report["tree_size"] == history.final.tree_size - 1


async def test_a_record_forged_under_a_members_name_is_refused_input_and_changes_nothing(history: History) -> None:
    """Signed by a stranger's key: every reader refuses it, so no log holds it and the audit passes, counting it."""
    stranger = NodeSigner(Ed25519PrivateKey.generate())

    def insert(records: list[Record]) -> list[Record]:
        i = positions(records, EVIDENCE_RECORDED)[0]
        genuine = SchemaStore.load().decode(EVIDENCE_RECORDED, *_fp_payload(records[i]))
        fake = forged(history.member, EVIDENCE_RECORDED, {**genuine, "action": "registry.revoke"}, "party0", stranger)
        return [*records[: i + 1], fake, *records[i + 1 :]]

    report = await audit_copy(history, insert, [history.final])
    assert report["violations"] == []
    assert report["refused_input"]["by_reason"] == {"BAD_SIGNATURE": 1}
    assert report["tree_size"] == history.final.tree_size


async def test_evidence_of_an_event_that_never_happened_is_dangling(history: History) -> None:
    key = NodeSigner(history.member.key())
    claim = {
        "action": "registry.announce",
        "subject": "party0",
        "event_id": "00000000-0000-4000-8000-00000000dead",
        "event_topic": "registry",
        "event_type": "interfed.registry.NodeAnnounced",
        "event_sha256": b"\x07" * 32,
        "occurred_at": 1,
    }

    def insert(records: list[Record]) -> list[Record]:
        i = positions(records, EVIDENCE_RECORDED)[0]
        return [*records[: i + 1], forged(history.member, EVIDENCE_RECORDED, claim, "party0", key), *records[i + 1 :]]

    report = await audit_copy(history, insert)
    assert {"DANGLING_EVIDENCE", "HEAD_MISMATCH"} <= reasons(report)


async def test_two_heads_of_one_size_by_one_log_are_a_split_view(history: History) -> None:
    key = NodeSigner(history.member.key())

    def fork(records: list[Record]) -> list[Record]:
        heads = [i for i in positions(records, TREE_HEAD) if Envelope.decode(records[i].value).sender == "party0"]
        i = heads[-1]
        genuine = TreeHead.from_payload(SchemaStore.load().decode(TREE_HEAD, *_fp_payload(records[i])))
        other = TreeHead("party0", genuine.tree_size, bytes(32), genuine.timestamp + 1).signed(key)
        return [*records[: i + 1], forged(history.member, TREE_HEAD, other.payload(), "party0", key), *records[i + 1 :]]

    report = await audit_copy(history, fork)
    assert {"SPLIT_VIEW", "HEAD_MISMATCH"} <= reasons(report)


async def test_a_countersignature_of_a_head_its_log_never_signed_is_a_cosignature_mismatch(history: History) -> None:
    """A member's genuine key countersigning the operator's log at a size the operator never signs (0, so the
    root is right and only "never signed" can fail it); a refused head of that log does not exist to excuse it."""
    key = NodeSigner(history.member.key())
    never = TreeHead("operator", 0, MerkleLog().root(), 1)

    def insert(records: list[Record]) -> list[Record]:
        i = positions(records, TREE_HEAD)[-1]
        fake = forged(history.member, TREE_HEAD_COSIGNED, cosign(never, "party0", key), "operator", key)
        return [*records[: i + 1], fake, *records[i + 1 :]]

    report = await audit_copy(history, insert)
    assert report["violations_by_reason"] == {"COSIGNATURE_MISMATCH": 1}
    assert "party0 countersigned a head operator never signed" in report["violations"][0]["detail"]
    assert report["after_revocation"] == []


async def test_a_second_evidence_record_of_an_event_by_the_same_recorder_is_duplicate_evidence(
    history: History,
) -> None:
    """Signed with the member's real key and appended after the last head, so that only the rule can fail it."""
    key = NodeSigner(history.member.key())

    def append(records: list[Record]) -> list[Record]:
        mine = [r for r in records if kind(r) == EVIDENCE_RECORDED and Envelope.decode(r.value).sender == "party0"]
        claim = SchemaStore.load().decode(EVIDENCE_RECORDED, *_fp_payload(mine[0]))
        return [*records, forged(history.member, EVIDENCE_RECORDED, claim, claim["subject"], key)]

    report = await audit_copy(history, append, [history.final])
    assert report["violations_by_reason"] == {"DUPLICATE_EVIDENCE": 1}
    assert "party0 already recorded this event" in report["violations"][0]["detail"]
    assert report["refused_input"]["count"] == 0


def dataset(owner: str) -> dict[str, Any]:
    return {
        "dataset_id": f"{owner}/junk",
        "owner": owner,
        "name": "junk",
        "description": "",
        "category": "",
        "format": "csv",
        "row_count": 1,
        "columns": [],
        "content_sha256": bytes(32),
    }


async def test_junk_unsigned_and_forged_records_on_governed_topics_and_evidence_are_counted_not_failed(
    history: History,
) -> None:
    """Anyone who reaches the broker can write them; nobody accepts them, so nothing was falsified: the audit
    passes and reports them by topic and reason, each with its offset."""
    stranger = NodeSigner(Ed25519PrivateKey.generate())
    member = history.member
    announced = {
        "node_id": "party0",
        "contract_id": "c",
        "name": "n",
        "institution": "i",
        "platform": "p",
        "platform_version": "1",
        "address": "",
        "services": [],
    }
    genuine: dict[str, tuple[str, dict[str, Any], str]] = {
        "registry": ("interfed.registry.NodeAnnounced", announced, "party0"),
        "catalog": ("interfed.catalog.DatasetPublished", dataset("party0"), "party0/junk"),
        "evidence": (TREE_HEAD, TreeHead("party0", 0, MerkleLog().root(), 1).signed(stranger).payload(), "party0"),
    }

    def junk(topic: str) -> Edit:
        payload_type, payload, subject = genuine[topic]

        def add(records: list[Record]) -> list[Record]:
            return [
                *records,
                Record(topic, 0, -1, b"party0", b"\x00 not an envelope"),  # MALFORMED_ENVELOPE
                forged(member, payload_type, payload, subject, None, topic=topic),  # unsigned: BAD_SIGNATURE
                forged(member, payload_type, payload, subject, stranger, topic=topic),  # forged: BAD_SIGNATURE
                forged(member, payload_type, payload, subject, stranger, topic=topic, record_key=b"x"),  # KEY_MISMATCH
            ]

        return add

    target = fresh_settings()
    await copy_topics(history.bootstrap, history.settings, target, {t: junk(t) for t in genuine})
    report = (await replay(history.auditor, target, history.bootstrap, [history.final])).report()
    assert report["passed"], report["violations"]
    assert report["tree_size"] == history.final.tree_size
    each = {"BAD_SIGNATURE": 2, "KEY_MISMATCH": 1, "MALFORMED_ENVELOPE": 1}
    assert report["refused_input"]["by_topic"] == dict.fromkeys(("catalog", "evidence", "registry"), each)
    assert report["refused_input"]["by_reason"] == {"BAD_SIGNATURE": 6, "KEY_MISMATCH": 3, "MALFORMED_ENVELOPE": 3}
    assert all(r["offset"] >= 0 for r in report["refused_input"]["records"])


def _cli(history: History, prefix: str, report: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INTERFED_TOPIC_PREFIX": prefix, "COLUMNS": "200"}
    argv = ["audit", "--home", str(history.auditor.path), "--bootstrap", history.bootstrap, "--report", str(report)]
    return subprocess.run(
        [sys.executable, "-m", "interfed", *argv], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_audit_command_passes_a_genuine_history_and_exits_6_naming_a_tampered_one(
    history: History, tmp_path: Path
) -> None:
    good = _cli(history, history.settings.topic_prefix, tmp_path / "good.json")
    assert good.returncode == 0, good.stderr
    assert "audit passed" in good.stdout
    tampered = fresh_settings()

    def delete(records: list[Record]) -> list[Record]:
        i = positions(records, EVIDENCE_RECORDED)[0]
        return [*records[:i], *records[i + 1 :]]

    asyncio.run(copy_topics(history.bootstrap, history.settings, tampered, {"evidence": delete}))
    bad = _cli(history, tampered.topic_prefix, tmp_path / "bad.json")
    assert bad.returncode == 6, bad.stderr
    assert "MISSING_EVIDENCE" in bad.stdout
    assert '"passed": false' in (tmp_path / "bad.json").read_text(encoding="utf-8")
