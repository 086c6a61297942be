"""The evidence log on a real broker: steps evidenced, identical logs, countersigned heads, restart, split view."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.clock import now_ms
from mesh.events import CONTRACT_TERMINATED as ENDED
from mesh.events import TREE_HEAD, TREE_HEAD_COSIGNED
from mesh.evidence import GOVERNED
from mesh.node import open_context, running
from mesh.testing import eventually, read_topic
from services.evidence.cli import replay
from services.evidence.heads import TreeHead, cosign
from services.evidence.service import EvidenceService
from services.testbed import TestFederation, auditor_home, dead_letters, evidence_settled, federation

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]


async def command(fed: TestFederation, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``interfed ARGV`` as its own process against the federation's broker and topics."""
    env = {**os.environ, "INTERFED_TOPIC_PREFIX": fed.settings.topic_prefix, "COLUMNS": "200"}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "interfed", *argv, "--bootstrap", fed.bootstrap],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_registry_steps_are_evidenced_logs_agree_and_the_audit_passes(bootstrap: str, home_root: Path) -> None:
    async with federation(home_root, bootstrap, n=2, evidence=0.3) as fed:
        op = fed.operator.registry
        await op.terminate("party1", "left the consortium")
        await eventually(lambda: evidence_settled(fed), 60, "every party's log and heads agreeing")
        auditor = await replay(auditor_home(home_root, fed), fed.settings, bootstrap)
        report = auditor.report()
        assert report["violations"] == []
        assert report["passed"]
        # Two applies (recorded by the operator: applicants have no certificate), two approvals,
        # two announcements and the termination; nothing else is governed here.
        assert report["by_action"] == {
            "registry.announce": 2,
            "registry.apply": 2,
            "registry.approve": 2,
            "registry.terminate": 1,
        }
        assert set(report["by_action"]) <= set(GOVERNED.values())
        size = report["tree_size"]
        assert size == 7
        for m in fed.everyone:
            assert m.evidence is not None
            assert m.evidence.size == size
            assert m.evidence.log_state.tree.root().hex() == report["root_hash"]
        # Every party that can still sign has its latest head at the full size, countersigned by the
        # others that can; the terminated party signs nothing after its termination.
        logs = report["logs"]
        active = {"operator", "party0"}
        assert active <= set(logs) <= active | {"party1"}  # party1 may be terminated before its first head
        for log_id in active:
            assert logs[log_id]["latest"]["tree_size"] == size
            assert set(logs[log_id]["cosigned_by"]) == active - {log_id}
        if "party1" in logs and logs["party1"]["latest"] is not None:
            assert logs["party1"]["latest"]["tree_size"] < size
        # What party1 signed after its termination but before reading it (heads, countersignatures) is in
        # every log alike, and reported, not failed (docs/protocol.md §13.8).
        for late in report["after_revocation"]:
            assert (late["sender"], late["kind"]) in {("party1", "tree_head"), ("party1", "cosignature")}
        final = auditor.final_head()
        assert final is not None
        assert final.tree_size == size


async def test_a_head_a_terminated_party_signs_is_in_every_log_and_reported_and_one_never_signed_fails(
    bootstrap: str, home_root: Path
) -> None:
    """party1 signs a head after its termination and party0 countersigns it (as a party that read the head
    before the termination would); party0 also countersigns a head party1 never signed. Every witness accepts
    the late head (the evidence topic is judged without revocation) and no one sees a split view; the auditor
    reports the late head and fails only the countersignature of the head never signed."""
    async with federation(home_root, bootstrap, n=2, evidence=0.3) as fed:
        await fed.operator.registry.terminate("party1", "left the consortium")
        await eventually(lambda: evidence_settled(fed), 60, "every party's log and heads agreeing")
        await eventually(
            lambda: not any(m.evidence is not None and m.evidence.trust.can_sign("party1") for m in fed.everyone),
            30,
            "every party reading the termination",
        )
        party0, party1 = fed.members
        assert party0.evidence is not None
        size = party0.evidence.size
        tree = party0.evidence.log_state.tree
        late = TreeHead("party1", size, tree.root(size), now_ms()).signed(party1.registry.ctx.publisher.signer)
        await party1.registry.ctx.publisher.publish("evidence", TREE_HEAD, late.payload(), subject="party1")
        never = TreeHead("party1", 0, tree.root(0), now_ms())  # party1 signs no head of an empty log
        for head in (late, never):
            payload = cosign(head, "party0", party0.registry.ctx.publisher.signer)
            await party0.registry.ctx.publisher.publish("evidence", TREE_HEAD_COSIGNED, payload, subject="party1")
        for m in fed.everyone:
            await eventually(
                lambda m=m: m.evidence is not None and m.evidence.latest_head.get("party1") == late,
                30,
                f"{m.node_id} accepting party1's late head",
            )
            assert m.evidence is not None
            assert not m.evidence.split_views
        # Nothing on evidence was refused for the revocation (party1's schema announcements signed after its
        # cut may be, on schemas, by whoever read the termination first: not evidence, and no log changes).
        refused = await dead_letters(fed, "REVOKED_SENDER")
        assert not [d for d in refused if d["topic"] == fed.operator.bus.names("evidence")], refused
        auditor = await replay(auditor_home(home_root, fed), fed.settings, bootstrap)
        report = auditor.report()
        assert report["violations_by_reason"] == {"COSIGNATURE_MISMATCH": 1}
        [violation] = report["violations"]
        assert "party0 countersigned a head party1 never signed" in violation["detail"]
        # party1's own evidence service may also have signed a head of that size before it read its termination.
        heads = [e for e in report["after_revocation"] if e["kind"] == "tree_head"]
        reported = [e for e in heads if e["detail"] == f"party1's head of {size}, countersigned by ['party0']"]
        assert reported
        assert all(e["cut"] is not None and e["issued_at"] >= e["cut"] for e in reported)
        assert report["logs"]["party1"]["late_heads"] >= 1
        latest = report["logs"]["party1"]["latest"]
        assert latest is None or latest["tree_size"] < size


@pytest.mark.reference_lane  # a command driven as a process
async def test_a_node_ending_its_own_contract_from_the_command_line_leaves_a_history_that_audits(
    bootstrap: str, home_root: Path
) -> None:
    """`interfed registry terminate party1 --home party1`: the evidence of that termination is signed after the
    cut the termination makes. Every evidence service keeps it as a leaf whatever it read first, none sees a
    split view (nor do two that replay everything afresh), and the audit passes, counting it."""
    async with federation(home_root, bootstrap, n=2, evidence=0.3) as fed:
        await eventually(lambda: evidence_settled(fed), 60, "logs agreeing")
        party1 = fed.member("party1")
        proc = await command(fed, "registry", "terminate", "party1", "--home", str(party1.home.path), "--reason", "bye")
        assert proc.returncode == 0, proc.stderr
        staying = [fed.operator, fed.members[0]]
        await eventually(
            lambda: all(m.evidence is not None and not m.evidence.trust.can_sign("party1") for m in fed.everyone),
            30,
            "every party reading the termination",
        )
        await eventually(lambda: evidence_settled(fed, staying), 60, "the staying parties' logs agreeing")
        [terminated] = [e for e, _ in await read_topic(bootstrap, fed.settings, "registry") if e.payload_type == ENDED]
        evidence = await read_topic(bootstrap, fed.settings, "evidence")
        [proof] = [e for e, p in evidence if p.get("event_id") == terminated.event_id]
        assert proof.sender == "party1"
        assert proof.issued_at >= terminated.issued_at  # signed from its own cut on: the case this test is about
        assert fed.operator.evidence is not None
        size, root = fed.operator.evidence.size, fed.operator.evidence.log_state.tree.root()
        witnesses = [m.evidence for m in fed.everyone if m.evidence is not None]
        await eventually(lambda: all(w.size >= size for w in witnesses), 30, "party1's own log catching up")
        for name, bus in (("witness-a", fed.operator.bus), ("witness-b", fed.members[0].bus)):
            ctx = open_context(auditor_home(home_root, fed, name), bus, fed.settings)
            fresh = EvidenceService(ctx, readonly=True, persist=False, keep=False)
            async with running(fresh):
                await eventually(lambda fresh=fresh: fresh.size >= size, 30, f"{name} replaying the evidence topic")
            witnesses.append(fresh)
        for w in witnesses:
            assert not w.split_views, w.me
            assert w.counts["dead:SPLIT_VIEW"] == 0, w.me
            assert w.log_state.tree.root(size) == root, w.me
        auditor = await replay(auditor_home(home_root, fed), fed.settings, bootstrap)
        report = auditor.report()
        assert report["passed"], report["violations"]
        assert report["by_action"]["registry.terminate"] == 1
        # The command published the termination and its evidence, and spoke for party1 in nothing else.
        assert not [e for e in report["after_revocation"] if e["kind"] in ("evidence", "event")]


async def test_a_restarted_evidence_service_resumes_its_stored_log(bootstrap: str, home_root: Path) -> None:
    async with federation(home_root, bootstrap, n=1, evidence=0.3) as fed:
        await eventually(lambda: evidence_settled(fed), 60, "logs agreeing")
        member = fed.members[0]
        assert member.evidence is not None
        before = member.evidence.size
        await member.halt()
        stored = (member.home.state_path / "evidence" / "log.bin").stat().st_size
        assert stored > 0
        again = EvidenceService(member.registry.ctx, head_interval=0.3)
        assert again.size == before  # loaded from the home before reading anything
        async with running(again):
            assert again.size == before
            assert not again.split_views
            assert not [k for k in again.counts if k.startswith("dead:")]


async def test_a_head_contradicting_the_log_is_reported_as_a_split_view(bootstrap: str, home_root: Path) -> None:
    async with federation(home_root, bootstrap, n=2, evidence=0.3) as fed:
        await eventually(lambda: evidence_settled(fed), 60, "logs agreeing")
        liar = fed.members[0]
        assert liar.evidence is not None
        size = liar.evidence.size
        # A second, different root for a size it already signed: what it would show another party.
        forged = TreeHead(liar.node_id, size, b"\x42" * 32, 1).signed(liar.registry.ctx.publisher.signer)
        await liar.registry.ctx.publisher.publish("evidence", TREE_HEAD, forged.payload(), subject=liar.node_id)
        for m in (fed.operator, fed.members[1]):
            await eventually(
                lambda m=m: m.evidence is not None and m.evidence.counts["dead:SPLIT_VIEW"] == 1,
                30,
                f"{m.node_id} reporting the split view",
            )
        letters = await dead_letters(fed, "SPLIT_VIEW")
        assert {letter["service"] for letter in letters} == {"evidence"}
        assert len(letters) >= 2
        auditor = await replay(auditor_home(home_root, fed), fed.settings, bootstrap)
        reasons = auditor.report()["violations_by_reason"]
        assert reasons.get("SPLIT_VIEW") == 1
        assert reasons.get("HEAD_MISMATCH") == 1


async def test_a_head_on_demand_from_the_command_line_is_accepted_by_every_party(
    bootstrap: str, home_root: Path
) -> None:
    async with federation(home_root, bootstrap, n=1, evidence=0.3) as fed:
        await eventually(lambda: evidence_settled(fed), 60, "logs agreeing")
        member = fed.members[0]
        assert fed.operator.evidence is not None
        before = fed.operator.evidence.latest_head[member.node_id]
        proc = await command(fed, "evidence", "head", "--home", str(member.home.path))
        assert proc.returncode == 0, proc.stderr
        assert f"tree head published: size {before.tree_size}, root {before.root_hash.hex()}" in proc.stdout
        op = fed.operator.evidence
        await eventually(
            lambda: op.latest_head[member.node_id].timestamp > before.timestamp, 30, "the operator reading it"
        )
        assert not op.split_views
