"""The evidence log does not depend on read order: a real history with terminations, fed in many interleavings.

A federation runs on the broker: a member ends its own contract (the call ``interfed registry terminate``
makes), the operator ends another's while it still publishes (a governed event, evidence and a head after its
cut), the first member is approved again under a new key, and the third keeps working. Its records are then
captured, partition by partition, and handed to honest evidence services and to the auditor in read orders
hypothesis chooses (each partition in offset order, the partitions interleaved at will): every one must build
the same log, none may see a split view, and the audit must pass with the same report every time.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.bus import KafkaBus, Record
from mesh.evidence import GOVERNED
from mesh.home import NodeConfig, NodeHome
from mesh.membership import ContractStatus
from mesh.node import connect, open_context
from mesh.service import Service
from mesh.settings import MeshSettings
from mesh.testing import eventually, fresh_settings, read_records
from mesh.topics import TOPICS, TopicNames
from services.evidence.audit import Auditor
from services.evidence.service import EvidenceService
from services.registry.service import RegistryService
from services.testbed import TestFederation, evidence_settled, federation
from tests.integration.read_orders import Partition, feed

# Above the transport once captured (the records are fed by hand): the Apache Kafka lane only.
pytestmark = [pytest.mark.broker, pytest.mark.reference_lane, pytest.mark.timeout(600)]

DATASET_PUBLISHED = "interfed.catalog.DatasetPublished"


@dataclass
class History:
    """A captured federation run: its records per partition, and the folder of its readers' homes."""

    settings: MeshSettings
    partitions: dict[Partition, list[Record]]
    root: Path


def dataset(owner: str, name: str) -> dict[str, Any]:
    return {
        "dataset_id": f"{owner}/{name}",
        "owner": owner,
        "name": name,
        "description": "",
        "category": "",
        "format": "csv",
        "row_count": 1,
        "columns": [],
        "content_sha256": bytes(32),
    }


async def run_scenario(root: Path, bootstrap: str) -> History:
    """The federation's life, on the broker; returns its records once every party has stopped."""
    cfg = fresh_settings(heartbeat_interval=1.0, unreachable_after=5.0)
    async with federation(root, bootstrap, n=3, evidence=0.3, settings=cfg) as fed:
        party0, party1, party2 = fed.members
        await eventually(lambda: evidence_settled(fed), 60, "the evidence logs agreeing")
        # party0 keeps working: a governed step of its own.
        entry = party0.registry.my_entry()
        assert entry is not None
        await party0.registry.announce(entry)
        # party1 ends its own contract, as `interfed registry terminate party1 --home party1` does: the evidence
        # of that termination is signed after the cut the termination makes.
        await party1.registry.terminate("party1", "leaving the consortium")
        # The operator ends party2's contract; party2, not having read it yet, goes on publishing: a governed
        # event off registry, its evidence, and a head, all signed after its cut.
        await fed.operator.registry.terminate("party2", "contract breached")
        publisher = party2.registry.ctx.publisher
        await publisher.publish(
            "catalog", DATASET_PUBLISHED, dataset("party2", "late"), "party2/late", evidence=GOVERNED[DATASET_PUBLISHED]
        )
        assert party2.evidence is not None
        await party2.evidence.publish_head()
        staying = [fed.operator, party0]
        await eventually(lambda: terminated_everywhere(fed, ("party1", "party2")), 60, "every party reading both")
        await eventually(lambda: evidence_settled(fed, staying), 60, "the staying parties' logs agreeing")
        # party1 comes back under a new key (a new home), and is approved; it has not started yet.
        await party1.halt()
        await reapply(fed, root, bootstrap)
        await eventually(lambda: evidence_settled(fed, staying), 60, "the staying parties' logs agreeing again")
        for m in fed.everyone:
            assert m.evidence is not None
            assert not m.evidence.split_views, m.node_id
    federation_path = fed.operator.home.federation_path
    for name in READERS:
        config = NodeConfig(node_id=name, name=name, institution="Audit office", platform="interfed")
        NodeHome.create(root / name, config, federation_path)
    partitions: dict[Partition, list[Record]] = {}
    for topic in TOPICS:
        for r in await read_records(bootstrap, cfg, topic, idle=0.3):
            partitions.setdefault((r.topic, r.partition), []).append(r)
    return History(cfg, partitions, root)


def terminated_everywhere(fed: TestFederation, node_ids: tuple[str, ...]) -> bool:
    return all(
        m.registry.directory.nodes[n].contract is ContractStatus.TERMINATED
        for m in fed.everyone
        if m.task is not None and not m.task.done()
        for n in node_ids
    )


async def reapply(fed: TestFederation, root: Path, bootstrap: str) -> None:
    """party1 applies again from a fresh home (a new key) and the operator approves it."""
    config = fed.member("party1").home.config()
    again = NodeHome.create(root / "party1-again", config, fed.operator.home.federation_path)
    async with connect(fed.settings, bootstrap) as bus:
        contract = await RegistryService(open_context(again, bus, fed.settings)).request_join()
    op = fed.operator.registry
    await eventually(lambda: contract in op.directory.contracts, 30, "the operator reading the new request")
    await op.approve(contract)
    await eventually(
        lambda: (
            len(op.trust.certificates("party1")) == 2
            and fed.operator.evidence is not None
            and fed.operator.evidence.trust.certificate("party1") == op.trust.certificate("party1")
        ),
        30,
        "the operator's services reading the new approval",
    )


@pytest.fixture(scope="module")
def history(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> History:
    return asyncio.run(run_scenario(tmp_path_factory.mktemp("read-orders"), bootstrap))


READERS = ("witness-a", "witness-b", "auditor")


def readers(h: History) -> tuple[EvidenceService, EvidenceService, Auditor]:
    """Two honest evidence services and an auditor, fresh; nothing they do reaches a broker."""
    bus = KafkaBus("unused:9092", TopicNames(h.settings.topic_prefix))  # never started: records are fed by hand
    a, b, audit = (open_context(NodeHome(h.root / name), bus, h.settings) for name in READERS)
    return (
        EvidenceService(a, readonly=True, persist=False, keep=False),
        EvidenceService(b, readonly=True, persist=False, keep=False),
        Auditor(audit),
    )


def read_by(service: Service, h: History) -> dict[Partition, list[Record]]:
    """The partitions ``service`` reads: schemas, registry and its own topics (as ``Service.run`` assigns)."""
    names = service.ctx.bus.names
    wanted = {names(t) for t in ("schemas", "registry", *service.topics)}
    return {p: records for p, records in sorted(h.partitions.items()) if p[0] in wanted}


def in_turn(partitions: list[Partition]) -> Partition:
    """Each partition to its end before the next, in name order: one plain read order."""
    return min(partitions)


@st.composite
def read_orders(draw: st.DrawFn) -> Callable[[list[Partition]], Partition]:
    """A read order: a ranking of the partitions and how strongly to follow it, the rest chosen at random.

    Followed always, it reads whole topics one after another (``evidence`` before ``registry`` or after it);
    never, it interleaves records at random; in between, it reads in bursts.
    """
    ranking = draw(st.integers(0, 2**32 - 1))
    stickiness = draw(st.floats(0, 1))
    chance = random.Random(draw(st.integers(0, 2**32 - 1)))  # a read order, not a secret

    def rank(p: Partition) -> int:
        return zlib.crc32(f"{ranking}/{p[0]}/{p[1]}".encode())

    def pick(ready: list[Partition]) -> Partition:
        if chance.random() < stickiness:
            return min(ready, key=rank)
        return chance.choice(ready)

    return pick


async def read_all(h: History, orders: list[Callable[[list[Partition]], Partition]]) -> tuple[Any, ...]:
    witnesses_and_auditor = readers(h)
    for service, order in zip(witnesses_and_auditor, orders, strict=True):
        await feed(service, read_by(service, h), order)
    return witnesses_and_auditor


def leaves(service: EvidenceService | Auditor) -> list[bytes]:
    return [service.log_state.leaf(i) for i in range(service.log_state.size)]


@pytest.fixture(scope="module")
def reference(history: History) -> dict[str, Any]:
    """The audit report and log when every partition is read to its end in turn."""
    a, _, auditor = asyncio.run(read_all(history, [in_turn] * 3))
    return {"report": auditor.report(), "leaves": leaves(auditor), "witness": leaves(a)}


def test_the_history_holds_what_the_property_is_about(history: History, reference: dict[str, Any]) -> None:
    """Both terminations are evidenced and counted (party1's own, signed after its own cut), party2's late
    records are there and reported, party1 holds two certificates, and the audit passes."""
    report = reference["report"]
    assert report["passed"], report["violations"]
    assert report["by_action"]["registry.terminate"] == 2
    assert report["by_action"]["registry.approve"] == 4  # three members, and party1 again
    late = {(e["kind"], e["sender"]) for e in report["after_revocation"]}
    assert {("event", "party2"), ("evidence", "party2"), ("tree_head", "party2")} <= late
    assert not any(sender == "party1" and kind == "evidence" for kind, sender in late)
    assert reference["witness"] == reference["leaves"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders=st.lists(read_orders(), min_size=3, max_size=3))
def test_every_read_order_builds_one_log_without_split_views_and_the_same_passing_audit(
    history: History, reference: dict[str, Any], orders: list[Callable[[list[Partition]], Partition]]
) -> None:
    a, b, auditor = asyncio.run(read_all(history, orders))
    assert leaves(a) == leaves(b) == leaves(auditor) == reference["leaves"]
    for witness in (a, b):
        assert witness.split_views == []
        assert not {k for k in witness.counts if k in ("dead:SPLIT_VIEW", "dead:HISTORY_REWRITTEN")}
    assert len(auditor.trust.certificates("party1")) == 2
    assert auditor.report() == reference["report"]
