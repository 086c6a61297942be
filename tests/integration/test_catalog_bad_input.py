"""Bad catalog events on a real broker, sent by a member that skips its own checks: each is refused by
every catalog service with its reason code, dead-lettered, never applied, and the next good event applies."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mesh.events import ACCESS_GRANTED, ACCESS_REJECTED, DATASET_PUBLISHED, DATASET_USED
from mesh.service import Context, Service
from mesh.testing import eventually
from services.catalog.errors import PermitExpiredError
from services.catalog.service import CatalogService
from services.catalog.state import PermitStatus
from services.testbed import TestFederation, dead_letters, federation

pytestmark = [pytest.mark.broker, pytest.mark.timeout(150)]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def catalog(fed: TestFederation, node_id: str) -> CatalogService:
    member = fed.operator if node_id == "operator" else fed.member(node_id)
    svc = member.service("catalog")
    assert isinstance(svc, CatalogService)
    return svc


def services(ctx: Context) -> Sequence[Service]:
    return [CatalogService(ctx)]


@pytest.fixture
async def fed(bootstrap: str, home_root: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """party0 owns party0/loans; party1 holds a permit for two uses in project p."""
    async with federation(home_root, bootstrap, n=3, services=services) as running_fed:
        data = tmp_path / "loans.csv"
        data.write_text("id,x,y\n" + "".join(f"{i},{i * 0.5},{i % 2}\n" for i in range(20)), encoding="utf-8")
        await catalog(running_fed, "party0").publish(data, "loans", label_columns=("y",))
        await eventually(
            lambda: all("party0/loans" in catalog(running_fed, n).catalog.datasets for n in NODES),
            what="dataset seen by every party, its owner too",
        )
        yield running_fed


async def permit(fed: TestFederation, *, uses: int = 2, not_after: int | None = None) -> str:
    holder, owner = catalog(fed, "party1"), catalog(fed, "party0")
    request_id = await holder.request(
        "party0/loans",
        "credit",
        scope_type="PROJECT",
        scope_ids=["p"],
        not_after=not_after or now_ms() + 3_600_000,
        use_limit=uses,
    )
    await eventually(lambda: request_id in owner.catalog.permits, what="request at the owner")
    await owner.grant(request_id)
    await eventually(
        lambda: all(catalog(fed, n).catalog.permits[request_id].status is PermitStatus.GRANTED for n in NODES),
        what="grant seen everywhere",
    )
    return request_id


NODES = ("operator", "party0", "party1", "party2")


def use_payload(request_id: str, fed: TestFederation, **over: Any) -> dict[str, Any]:
    return {
        "use_id": str(uuid.uuid4()),
        "request_id": request_id,
        "dataset_id": "party0/loans",
        "scope_type": "PROJECT",
        "scope_id": "p",
        "content_sha256": catalog(fed, "party0").catalog.datasets["party0/loans"].content_sha256,
    } | over


async def expect_refused(
    fed: TestFederation, reason: str, sender: str, payload_type: str, payload: dict[str, Any]
) -> None:
    """``sender`` signs and sends the event without judging it first; every party refuses it with ``reason``."""
    await eventually(
        lambda: len({repr(vars(catalog(fed, n).catalog)) for n in NODES}) == 1, what="every party at the same state"
    )
    before = {n: catalog(fed, n).counts[f"dead:{reason}"] for n in NODES}
    snapshot = {n: repr(vars(catalog(fed, n).catalog)) for n in NODES}
    pub = catalog(fed, sender).ctx.publisher
    env = await pub.publish("catalog", payload_type, payload, subject=payload["dataset_id"])
    for n in NODES:
        await eventually(
            lambda n=n: catalog(fed, n).counts[f"dead:{reason}"] > before[n], what=f"{n} refusing with {reason}"
        )
        assert repr(vars(catalog(fed, n).catalog)) == snapshot[n], f"{n} applied a refused event"
    letters = [d for d in await dead_letters(fed, reason) if d["service"] == "catalog"]
    assert any(d["original"] == env.encode() for d in letters), f"no {reason} dead letter carries the event"


async def test_a_dataset_published_by_another_node_is_unauthorised(fed: TestFederation) -> None:
    squat = {
        "dataset_id": "party0/cards",
        "owner": "party0",
        "name": "cards",
        "description": "",
        "category": "",
        "format": "csv",
        "row_count": 1,
        "columns": [
            {
                "name": "a",
                "data_type": "int",
                "role": "feature",
                "distribution": "DISCRETE",
                "description": "",
                "stats": None,
            }
        ],
        "content_sha256": b"\0" * 32,
    }
    await expect_refused(fed, "UNAUTHORISED", "party1", DATASET_PUBLISHED, squat)
    await expect_refused(fed, "UNAUTHORISED", "party1", DATASET_PUBLISHED, squat | {"owner": "party1"})
    # The service goes on: the real owner's next dataset is applied everywhere.
    await catalog(fed, "party0").ctx.publisher.publish("catalog", DATASET_PUBLISHED, squat, subject="party0/cards")
    await eventually(lambda: "party0/cards" in catalog(fed, "party2").catalog.datasets, what="good event applied")
    assert catalog(fed, "party2").catalog.datasets["party0/cards"].owner == "party0"


async def test_a_grant_by_anyone_but_the_owner_is_unauthorised(fed: TestFederation) -> None:
    holder = catalog(fed, "party1")
    request_id = await holder.request(
        "party0/loans", "credit", scope_type="PROJECT", scope_ids=["p"], not_after=now_ms() + 60_000, use_limit=1
    )
    await eventually(lambda: request_id in catalog(fed, "party2").catalog.permits, what="request seen")
    permit_fields = {
        "request_id": request_id,
        "dataset_id": "party0/loans",
        "requester": "party1",
        "scope_type": "PROJECT",
        "scope_ids": ["p"],
        "not_after": now_ms() + 60_000,
        "use_limit": 1,
        "decided_by": "manual",
    }
    await expect_refused(fed, "UNAUTHORISED", "party2", ACCESS_GRANTED, permit_fields)
    await expect_refused(fed, "UNAUTHORISED", "party1", ACCESS_GRANTED, permit_fields)  # not even the requester
    rejection = {"request_id": request_id, "dataset_id": "party0/loans", "reason": "", "decided_by": "manual"}
    await catalog(fed, "party0").reject(request_id, "no")
    await eventually(
        lambda: holder.catalog.permits[request_id].status is PermitStatus.REJECTED, what="rejection applied"
    )
    await expect_refused(fed, "INVALID_TRANSITION", "party0", ACCESS_REJECTED, rejection)  # decided already


async def test_a_use_without_a_permit_is_refused(fed: TestFederation) -> None:
    await expect_refused(fed, "NO_PERMIT", "party2", DATASET_USED, use_payload(str(uuid.uuid4()), fed))
    request_id = await permit(fed)
    await expect_refused(fed, "UNAUTHORISED", "party2", DATASET_USED, use_payload(request_id, fed))  # party1's
    await expect_refused(fed, "OUT_OF_SCOPE", "party1", DATASET_USED, use_payload(request_id, fed, scope_id="q"))


async def test_uses_beyond_the_limit_and_a_replayed_use_are_refused(fed: TestFederation) -> None:
    request_id = await permit(fed, uses=2)
    holder = catalog(fed, "party1")
    first = use_payload(request_id, fed)
    env = await holder.ctx.publisher.publish("catalog", DATASET_USED, first, subject="party0/loans")
    await eventually(lambda: holder.catalog.permits[request_id].uses == 1, what="first use applied")
    # The same use signed again is a replay of the use; the same record again is a duplicate, skipped.
    await expect_refused(fed, "INVALID_TRANSITION", "party1", DATASET_USED, first)
    duplicates = catalog(fed, "party2").counts["duplicates"]
    await holder.ctx.bus.send(holder.ctx.bus.names("catalog"), b"party0/loans", env.encode())
    await eventually(lambda: catalog(fed, "party2").counts["duplicates"] > duplicates, what="duplicate skipped")
    await holder.use(request_id, "p")
    await eventually(lambda: catalog(fed, "party2").catalog.permits[request_id].uses == 2, what="second use")
    await expect_refused(fed, "PERMIT_EXHAUSTED", "party1", DATASET_USED, use_payload(request_id, fed))
    assert all(catalog(fed, n).catalog.permits[request_id].uses == 2 for n in NODES)


async def test_a_use_after_the_permits_time_is_refused_at_the_point_of_use_and_on_the_wire(
    fed: TestFederation,
) -> None:
    request_id = await permit(fed, not_after=now_ms() + 2_000)
    holder = catalog(fed, "party1")
    await asyncio.sleep(max(0.0, (holder.catalog.permits[request_id].not_after or 0) - now_ms()) / 1000 + 0.1)
    with pytest.raises(PermitExpiredError):
        await holder.use(request_id, "p")
    await expect_refused(fed, "PERMIT_EXPIRED", "party1", DATASET_USED, use_payload(request_id, fed))
