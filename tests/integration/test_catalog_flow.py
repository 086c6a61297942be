"""The catalog on a real broker: datasets published as metadata, access decided by policy or by hand,
uses recorded under permits, every step evidenced, and a replay rebuilding the same directory and permits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from mesh.events import EVIDENCE_RECORDED
from mesh.evidence import GOVERNED
from mesh.node import connect, open_context, running
from mesh.service import Context, Service
from mesh.testing import eventually, read_topic
from services.catalog.errors import PermitTerminatedError
from services.catalog.policy import DAY_MS, Policy
from services.catalog.service import CatalogService
from services.catalog.state import PermitStatus
from services.testbed import TestFederation, federation

pytestmark = [pytest.mark.broker, pytest.mark.timeout(150)]

POLICY = """
default = "manual"

[[rule]]
name = "no-marketing"
decision = "reject"
purposes = ["*marketing*"]
reason = "not for marketing"

[[rule]]
name = "credit-projects"
decision = "grant"
requesters = ["party1"]
scope_types = ["PROJECT"]
max_uses = 5
max_days = 7
"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def catalog(member: object) -> CatalogService:
    svc = member.service("catalog")  # type: ignore[attr-defined]
    assert isinstance(svc, CatalogService)
    return svc


def write_csv(path: Path, rows: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["id,income,segment,defaulted"]
    lines += [f"{i},{1000 + i * 12.5},{'abc'[i % 3]},{i % 2}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def catalog_services(policy_dir: Path) -> object:
    """party0 decides by the policy above; the others by hand."""
    policy_file = policy_dir / "party0-policy.toml"
    policy_file.parent.mkdir(parents=True, exist_ok=True)
    policy_file.write_text(POLICY, encoding="utf-8")

    def make(ctx: Context) -> Sequence[Service]:
        policy = Policy.load(policy_file) if ctx.config.node_id == "party0" else None
        return [CatalogService(ctx, policy=policy)]

    return make


@pytest.fixture
async def fed(bootstrap: str, home_root: Path):  # type: ignore[no-untyped-def]
    async with federation(home_root, bootstrap, n=3, services=catalog_services(home_root.parent)) as running_fed:  # type: ignore[arg-type]
        yield running_fed


async def publish_loans(fed: TestFederation, tmp_path: Path) -> str:
    owner = catalog(fed.member("party0"))
    dataset_id = await owner.publish(
        write_csv(tmp_path / "data" / "loans.csv"), "loans", category="credit", label_columns=("defaulted",)
    )
    for m in fed.everyone:
        await eventually(lambda m=m: dataset_id in catalog(m).catalog.datasets, what=f"{m.node_id} seeing the dataset")
    return dataset_id


async def test_published_metadata_reaches_every_party_and_rows_stay_home(fed: TestFederation, tmp_path: Path) -> None:
    dataset_id = await publish_loans(fed, tmp_path)
    assert dataset_id == "party0/loans"
    views = [dict(vars(catalog(m).catalog.datasets[dataset_id])) for m in fed.everyone]
    assert all(v == views[0] for v in views)
    ds = catalog(fed.member("party1")).catalog.datasets[dataset_id]
    assert (ds.owner, ds.row_count, ds.format, ds.category) == ("party0", 40, "csv", "credit")
    assert [(c["name"], c["role"]) for c in ds.columns] == [
        ("id", "id"),
        ("income", "feature"),
        ("segment", "feature"),
        ("defaulted", "label"),
    ]
    assert all(c["stats"] is None for c in ds.columns)
    events = await read_topic(fed.bootstrap, fed.settings, "catalog")
    assert all(b"1012.5" not in env.payload for env, _ in events), "a row value travelled on the wire"

    write_csv(tmp_path / "data" / "loans.csv", rows=41)
    await catalog(fed.member("party0")).update(dataset_id)
    await eventually(
        lambda: catalog(fed.member("party2")).catalog.datasets[dataset_id].row_count == 41, what="update seen"
    )
    assert catalog(fed.member("party2")).catalog.datasets[dataset_id].content_sha256 != views[0]["content_sha256"]
    await catalog(fed.member("party0")).retract(dataset_id, "superseded")
    await eventually(
        lambda: catalog(fed.member("party1")).catalog.datasets[dataset_id].status == "RETRACTED", what="retraction seen"
    )


async def test_policy_approves_one_request_rejects_another_and_a_use_is_recorded(
    fed: TestFederation, tmp_path: Path
) -> None:
    dataset_id = await publish_loans(fed, tmp_path)
    telecom, hospital = catalog(fed.member("party1")), catalog(fed.member("party2"))
    until = now_ms() + 3 * DAY_MS
    approved = await telecom.request(
        dataset_id, "credit risk", scope_type="PROJECT", scope_ids=["credit-2027"], not_after=until, use_limit=2
    )
    rejected = await hospital.request(
        dataset_id, "marketing lists", scope_type="PROJECT", scope_ids=["ads"], not_after=until, use_limit=1
    )
    for svc in (telecom, hospital):
        await eventually(
            lambda s=svc: all(
                r in s.catalog.permits and s.catalog.permits[r].status is not PermitStatus.REQUESTED
                for r in (approved, rejected)
            ),
            what="both decisions seen",
        )
    permit, refusal = telecom.catalog.permits[approved], telecom.catalog.permits[rejected]
    assert (permit.status, permit.decided_by, permit.use_limit, permit.not_after) == (
        PermitStatus.GRANTED,
        "policy:credit-projects",
        2,
        until,
    )
    assert (refusal.status, refusal.decided_by, refusal.reason) == (
        PermitStatus.REJECTED,
        "policy:no-marketing",
        "not for marketing",
    )
    use_id = await telecom.use(approved, "credit-2027")
    for m in fed.everyone:
        await eventually(lambda m=m: use_id in catalog(m).catalog.uses, what=f"{m.node_id} seeing the use")
    assert catalog(fed.operator).catalog.permits[approved].uses == 1

    # Every catalog step is followed by its evidence, with the action GOVERNED names.
    steps = {env.event_id: env for env, _ in await read_topic(fed.bootstrap, fed.settings, "catalog")}
    evidence = await read_topic(fed.bootstrap, fed.settings, "evidence")
    assert {env.payload_type for env, _ in evidence} == {EVIDENCE_RECORDED}
    evidenced = {p["event_id"]: (p["action"], env.sender) for env, p in evidence if p["event_topic"] == "catalog"}
    assert len(steps) == 6  # publish, two requests, grant, rejection, use
    assert evidenced == {eid: (GOVERNED[env.payload_type], env.sender) for eid, env in steps.items()}


async def test_manual_decision_and_termination_refuse_later_uses(fed: TestFederation, tmp_path: Path) -> None:
    dataset_id = await publish_loans(fed, tmp_path)
    owner, hospital = catalog(fed.member("party0")), catalog(fed.member("party2"))
    request_id = await hospital.request(
        dataset_id,
        "readmission study",
        scope_type="NODE",
        scope_ids=["party2"],
        not_after=now_ms() + DAY_MS,
        use_limit=3,
    )
    await eventually(lambda: request_id in owner.catalog.permits, what="request at the owner")
    await asyncio.sleep(0.3)  # the policy has no rule for it: it stays REQUESTED for a person
    assert owner.catalog.permits[request_id].status is PermitStatus.REQUESTED
    await owner.grant(request_id)
    await eventually(
        lambda: hospital.catalog.permits[request_id].status is PermitStatus.GRANTED, what="manual approval seen"
    )
    assert hospital.catalog.permits[request_id].decided_by == "manual"
    await hospital.use(request_id, "party2")
    await owner.terminate(request_id, "study closed")
    await eventually(
        lambda: hospital.catalog.permits[request_id].status is PermitStatus.TERMINATED, what="termination seen"
    )
    with pytest.raises(PermitTerminatedError):
        await hospital.use(request_id, "party2")


async def test_replaying_the_catalog_topic_rebuilds_the_same_directory_and_permits(
    fed: TestFederation, tmp_path: Path
) -> None:
    dataset_id = await publish_loans(fed, tmp_path)
    telecom, hospital = catalog(fed.member("party1")), catalog(fed.member("party2"))
    until = now_ms() + DAY_MS
    granted = await telecom.request(
        dataset_id, "credit", scope_type="PROJECT", scope_ids=["p"], not_after=until, use_limit=1
    )
    await hospital.request(dataset_id, "marketing", scope_type="PROJECT", scope_ids=["p"], not_after=until, use_limit=1)
    await eventually(lambda: telecom.catalog.permits.get(granted, None) is not None, what="request seen")
    await eventually(lambda: telecom.catalog.permits[granted].status is PermitStatus.GRANTED, what="grant seen")
    await telecom.use(granted, "p")
    await catalog(fed.member("party0")).retract(dataset_id, "done")
    live = catalog(fed.member("party2"))
    await eventually(
        lambda: live.catalog.datasets[dataset_id].status == "RETRACTED" and live.catalog.uses, what="all seen"
    )
    async with connect(fed.settings, fed.bootstrap) as bus:
        fresh = CatalogService(open_context(fed.member("party2").home, bus, fed.settings), readonly=True)
        async with running(fresh):
            pass
    for m in fed.everyone:
        state = catalog(m).catalog
        assert {k: vars(v) for k, v in fresh.catalog.datasets.items()} == {
            k: vars(v) for k, v in state.datasets.items()
        }
        assert {k: vars(v) for k, v in fresh.catalog.permits.items()} == {k: vars(v) for k, v in state.permits.items()}
        assert fresh.catalog.uses == state.uses
    assert len(fresh.catalog.permits) == 2


async def test_an_owner_that_was_away_decides_waiting_requests_when_it_starts(
    fed: TestFederation, tmp_path: Path
) -> None:
    dataset_id = await publish_loans(fed, tmp_path)
    hospital = catalog(fed.member("party2"))
    waiting = await hospital.request(
        dataset_id, "audit", scope_type="COMPONENT", scope_ids=["psi"], not_after=now_ms() + DAY_MS, use_limit=1
    )
    await eventually(lambda: waiting in catalog(fed.member("party0")).catalog.permits, what="request at the owner")
    await eventually(lambda: waiting in hospital.catalog.permits, what="request read back by the requester")
    assert hospital.catalog.permits[waiting].status is PermitStatus.REQUESTED  # no rule of party0's policy matches
    policy_file = tmp_path / "later.toml"
    policy_file.write_text('[[rule]]\nname = "psi-ok"\ndecision = "grant"\nscope_ids = ["psi"]\n', encoding="utf-8")
    owner = fed.member("party0")
    async with connect(fed.settings, fed.bootstrap) as bus:
        restarted = CatalogService(open_context(owner.home, bus, fed.settings), policy=Policy.load(policy_file))
        async with running(restarted):
            await eventually(
                lambda: hospital.catalog.permits[waiting].status is PermitStatus.GRANTED, what="decided at start"
            )
    assert hospital.catalog.permits[waiting].decided_by == "policy:psi-ok"
