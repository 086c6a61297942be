"""The registry flow on a real broker: join, approve, announce, beat, reject, terminate, revoke, go silent."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mesh.events import HEARTBEAT
from mesh.membership import ContractStatus, Health
from mesh.testing import eventually
from services.testbed import dead_letters, federation

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_every_party_sees_every_member_healthy_after_joining(bootstrap: str, home_root: Path) -> None:
    async with federation(home_root, bootstrap, n=3) as fed:
        for viewer in fed.everyone:
            await eventually(
                lambda v=viewer: (
                    len(v.registry.directory.nodes) == 3
                    and all(
                        e.health(now_ms(), v.registry.unreachable_after_ms) is Health.HEALTHY
                        and e.announced_at is not None
                        for e in v.registry.directory.nodes.values()
                    )
                ),
                what=f"{viewer.node_id} seeing three healthy members",
            )
        for member in fed.members:
            cert = member.home.certificate()
            assert cert is not None
            assert cert.node_id == member.node_id
            assert cert.role == "node"
            entry = fed.operator.registry.directory.nodes[member.node_id]
            assert entry.contract is ContractStatus.APPROVED
            assert entry.certificate_serial == cert.serial
            assert entry.platform == member.registry.ctx.config.platform
        assert not [k for v in fed.everyone for k in v.registry.counts if k.startswith("dead:")]


async def test_rejected_applicant_gets_no_certificate_and_cannot_speak(bootstrap: str, home_root: Path) -> None:
    async with federation(home_root, bootstrap, n=1, join=False) as fed:
        applicant = fed.members[0]
        contract = await applicant.registry.request_join()
        op = fed.operator.registry
        await eventually(lambda: contract in op.directory.contracts, what="join request received")
        await op.reject(contract, "institution not eligible")
        await eventually(
            lambda: (
                applicant.registry.my_entry() is not None
                and applicant.registry.my_entry().contract is ContractStatus.REJECTED
            ),  # type: ignore[union-attr]
            what="rejection seen by the applicant",
        )
        assert not applicant.home.cert_path.exists()
        await eventually(
            lambda: op.directory.nodes["party0"].reason == "institution not eligible",
            what="rejection applied by the operator's own service",
        )
        # A rejected applicant has no certificate, so a heartbeat of its own is refused everywhere.
        await applicant.registry.ctx.publisher.publish(
            "heartbeats", HEARTBEAT, {"node_id": "party0", "interval_ms": 1}, subject="party0"
        )
        await eventually(lambda: op.counts["dead:UNKNOWN_SENDER"] >= 1, timeout=20, what="heartbeat refused")
        assert op.directory.nodes["party0"].last_heartbeat is None


async def test_terminated_contract_refuses_that_nodes_events_everywhere(bootstrap: str, home_root: Path) -> None:
    async with federation(home_root, bootstrap, n=2) as fed:
        leaving, staying = fed.members
        await fed.operator.registry.terminate(leaving.node_id, "left the consortium")
        for viewer in (fed.operator, staying):
            await eventually(
                lambda v=viewer: v.registry.directory.nodes[leaving.node_id].contract is ContractStatus.TERMINATED,
                what=f"{viewer.node_id} seeing the termination",
            )
        await leaving.registry.ctx.publisher.publish(
            "heartbeats", HEARTBEAT, {"node_id": leaving.node_id, "interval_ms": 424242}, subject=leaving.node_id
        )
        await eventually(lambda: staying.registry.counts["dead:REVOKED_SENDER"] >= 1, what="event refused")
        assert staying.registry.directory.nodes[leaving.node_id].heartbeat_interval != 424242
        letters = await dead_letters(fed, "REVOKED_SENDER")
        assert any("contract terminated" in letter["detail"] for letter in letters)


async def test_revoked_certificate_refuses_that_nodes_events_everywhere(bootstrap: str, home_root: Path) -> None:
    async with federation(home_root, bootstrap, n=2) as fed:
        bad, good = fed.members
        await fed.operator.registry.revoke(bad.node_id, "key compromised")
        # Every party, the revoked one too, reads the revocation before the event: a receiver's verdict on an
        # event signed after the cut depends on whether it has read the cut (docs/protocol.md §11).
        await eventually(
            lambda: all(v.registry.directory.nodes[bad.node_id].revoked == "key compromised" for v in fed.everyone),
            what="revocation seen",
        )
        assert good.registry.directory.nodes[bad.node_id].health(now_ms(), 3000) is Health.REVOKED
        await bad.registry.ctx.publisher.publish(
            "heartbeats", HEARTBEAT, {"node_id": bad.node_id, "interval_ms": 515151}, subject=bad.node_id
        )
        await eventually(
            lambda: (
                good.registry.counts["dead:REVOKED_SENDER"] >= 1
                and fed.operator.registry.counts["dead:REVOKED_SENDER"] >= 1
            ),
            what="event refused by all",
        )
        assert all(v.registry.directory.nodes[bad.node_id].heartbeat_interval != 515151 for v in fed.everyone)


async def test_silent_node_shows_unreachable_then_healthy_again_when_it_beats(bootstrap: str, home_root: Path) -> None:
    async with federation(home_root, bootstrap, n=2) as fed:
        quiet, other = fed.members
        window = other.registry.unreachable_after_ms
        await quiet.halt()
        await eventually(
            lambda: other.registry.directory.nodes[quiet.node_id].health(now_ms(), window) is Health.UNREACHABLE,
            timeout=15,
            what="silent node shown UNREACHABLE",
        )
        assert other.registry.directory.nodes[other.node_id].health(now_ms(), window) is Health.HEALTHY
        await quiet.registry.ctx.publisher.publish(
            "heartbeats", HEARTBEAT, {"node_id": quiet.node_id, "interval_ms": 300}, subject=quiet.node_id
        )
        await eventually(
            lambda: other.registry.directory.nodes[quiet.node_id].health(now_ms(), window) is Health.HEALTHY,
            what="healthy again after a beat",
        )


async def test_replaying_the_registry_topic_rebuilds_the_same_directory(bootstrap: str, home_root: Path) -> None:
    from mesh.node import connect, open_context, running
    from services.registry.service import RegistryService

    async with federation(home_root, bootstrap, n=2) as fed:
        await fed.operator.registry.revoke(fed.members[0].node_id, "test")
        await eventually(
            lambda: fed.operator.registry.directory.nodes[fed.members[0].node_id].revoked is not None,
            what="revocation applied",
        )
        for m in fed.members:
            await m.halt()
        await eventually(
            lambda: all(e.last_heartbeat for e in fed.operator.registry.directory.nodes.values()),
            what="operator caught up",
        )
        await asyncio.sleep(1.0)  # the members are silent now; let the operator drain what they sent
        await fed.operator.halt()
        async with connect(fed.settings, bootstrap) as bus:
            fresh = RegistryService(open_context(fed.operator.home, bus, fed.settings), readonly=True)
            async with running(fresh):
                pass
        live, replayed = fed.operator.registry.directory, fresh.directory
        assert replayed.contracts == live.contracts
        assert {k: vars(v) for k, v in replayed.nodes.items()} == {k: vars(v) for k, v in live.nodes.items()}
