"""Jobs on a real broker: proposed, checked and accepted by every participant, run over ``rounds``, released.

The test component is published by party0 and verified and installed by every party's components
service (the real store); the broker, the catalog permits and the evidence are real.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from mesh.events import EVIDENCE_RECORDED
from mesh.service import Context, Service
from mesh.testing import eventually, read_topic
from services.accel.placement import in_process
from services.catalog.service import CatalogService
from services.components.service import ComponentsService
from services.executor.policy import JobPolicy
from services.executor.service import ExecutorService
from services.executor.state import JobStatus
from services.executor.transport import BusChannel
from services.testbed import TestFederation, dead_letters, federation
from tests.integration.components import components, publish_fedmean

pytestmark = [pytest.mark.broker, pytest.mark.timeout(150)]

ACCEPT_ALL = JobPolicy.model_validate({"rule": [{"name": "tests", "decision": "accept", "projects": ["study*"]}]})
DAY_MS = 86_400_000


def write_csv(path: Path, offset: float, rows: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["id,a,b"] + [f"{i},{offset + i * 0.5},{offset - i}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def services(ctx: Context) -> Sequence[Service]:
    catalog = CatalogService(ctx)
    store = ComponentsService(ctx)
    executor = ExecutorService(ctx, catalog=catalog, components=store, accel=in_process(ctx), policy=ACCEPT_ALL)
    return [catalog, store, executor]


def ex(fed: TestFederation, node: str) -> ExecutorService:
    svc = fed.member(node).service("executor")
    assert isinstance(svc, ExecutorService)
    return svc


def cat(fed: TestFederation, node: str) -> CatalogService:
    svc = fed.member(node).service("catalog")
    assert isinstance(svc, CatalogService)
    return svc


async def permits_for(
    fed: TestFederation, root: Path, hosts: list[str], project: str
) -> list[tuple[str, str, str, str | None]]:
    """Each host publishes a CSV; party0 asks for PROJECT-scoped access; each host grants it by hand."""
    out: list[tuple[str, str, str, str | None]] = []
    for i, host in enumerate(hosts):
        dataset = await cat(fed, host).publish(
            write_csv(root / f"{host}.csv", 10.0 * (i + 1), 20 + 10 * i), "train", id_columns=("id",)
        )
        await eventually(lambda d=dataset: d in cat(fed, "party0").catalog.datasets, what="dataset seen")
        rid = await cat(fed, "party0").request(
            dataset,
            "fedmean",
            scope_type="PROJECT",
            scope_ids=[project],
            not_after=int(time.time() * 1000) + DAY_MS,
            use_limit=3,
        )
        await eventually(lambda r=rid, h=host: r in cat(fed, h).catalog.permits, what="request seen")
        await cat(fed, host).grant(rid)
        out.append((host, "train", dataset, rid))
    for host, _, _, rid in out:
        await eventually(lambda r=rid, h=host: cat(fed, h).catalog.permits[r].status == "GRANTED", what="granted")
    return out


def expected_model(root: Path, hosts: list[str], rounds: int, rate: float) -> np.ndarray:
    data = [np.loadtxt(root / f"{h}.csv", delimiter=",", skiprows=1)[:, 1:] for h in hosts]
    means, rows = [d.mean(axis=0) for d in data], np.array([len(d) for d in data], dtype=np.float64)
    model = np.zeros(2)
    for _ in range(rounds):
        steps = np.stack([model + rate * (m - model) for m in means])
        model = (steps * rows[:, None]).sum(axis=0) / rows.sum()
    return model


async def test_job_accepted_by_all_runs_records_uses_and_releases_its_model(bootstrap: str, home_root: Path) -> None:
    """Accepted by all → READY → RUNNING → SUCCESS at every party, each use recorded, the model released by all."""
    async with federation(home_root, bootstrap, n=4, services=services, evidence=0.5) as fed:
        await publish_fedmean(fed)
        hosts = ["party1", "party2"]
        datasets = await permits_for(fed, home_root, hosts, "study-1")
        for node in ("party0", *hosts):
            await eventually(lambda n=node: all(d[3] in cat(fed, n).catalog.permits for d in datasets), what="permits")
        job_id = await ex(fed, "party0").propose(
            component=("fedmean", "0.1.0"),
            participants=[("party0", "aggregator"), ("party1", "host"), ("party2", "host")],
            datasets=datasets,
            params={"rounds": 3},
            project="study-1",
            round_deadline=20,
        )
        for m in fed.everyone:
            svc = m.service("executor")
            assert isinstance(svc, ExecutorService)
            await eventually(
                lambda s=svc: job_id in s.jobs.jobs and s.jobs.jobs[job_id].status is JobStatus.SUCCESS,
                60,
                f"SUCCESS at {m.node_id}",
            )
        want = expected_model(home_root, hosts, 3, 0.5)
        for node in ("party0", *hosts):
            np.testing.assert_allclose(ex(fed, node).results[job_id].model["model"], want, rtol=1e-12)
        job = ex(fed, "party3").jobs.jobs[job_id]
        assert len({f["model_sha256"] for f in job.finished.values()}) == 1
        for _host, _, _, rid in datasets:
            await eventually(lambda r=rid: cat(fed, "party0").catalog.permits[r].uses == 1, what="use recorded")

        digest = await ex(fed, "party0").propose_release(job_id)
        for node in ("party0", *hosts):
            await eventually(
                lambda n=node: ex(fed, n).jobs.jobs[job_id].release_sha256 == digest, what="release proposed"
            )
            await ex(fed, node).approve_release(job_id)
        await eventually(lambda: ex(fed, "party3").jobs.jobs[job_id].released, what="model released")

        # a node outside the job may not send in it
        outsider = ex(fed, "party3")
        channel = BusChannel(outsider.ctx.publisher, outsider.inbox, job_id, "party3", job.roles)
        await channel.send("aggregator", "step", 0, {"step": np.zeros(2)})
        await eventually(
            lambda: outsider.counts["applied"] and ex(fed, "party0").counts["dead:NOT_PARTICIPANT"] > 0, what="refused"
        )
        assert await dead_letters(fed, "NOT_PARTICIPANT")
        actions = {
            p["action"]
            for _, p in await read_topic(bootstrap, fed.settings, "evidence")
            if p.get("action", "").startswith("tasks.")
        }
        assert {
            "tasks.propose",
            "tasks.accept",
            "tasks.start",
            "tasks.finish",
            "tasks.release_propose",
            "tasks.release_approve",
            "tasks.release",
        } <= actions
        assert EVIDENCE_RECORDED


async def test_a_participant_without_the_component_enabled_rejects_and_the_job_fails(
    bootstrap: str, home_root: Path
) -> None:
    """A disabled component, then parameters off the spec: signed JobRejected with COMPONENT_DISABLED, then
    BAD_PARAMS naming every bad parameter; each job FAILED, never run."""
    async with federation(home_root, bootstrap, n=2, services=services) as fed:
        await publish_fedmean(fed)
        await components(fed, "party1").disable("fedmean:0.1.0", reason="not here")
        datasets = await permits_for(fed, home_root, ["party1"], "study-2")
        job_id = await ex(fed, "party0").propose(
            component=("fedmean", "0.1.0"),
            participants=[("party0", "aggregator"), ("party1", "host")],
            datasets=datasets,
            params={},
            project="study-2",
        )
        await eventually(
            lambda: (
                ex(fed, "party0").jobs.jobs.get(job_id) is not None
                and ex(fed, "party0").jobs.jobs[job_id].status is JobStatus.FAILED
            ),
            what="FAILED",
        )
        job = ex(fed, "party0").jobs.jobs[job_id]
        assert job.reason_code == "COMPONENT_DISABLED"
        assert not job.finished
        assert cat(fed, "party0").catalog.permits[datasets[0][3]].uses == 0

        # Enabled again, a job whose parameters do not fit the spec is rejected listing every bad one.
        await components(fed, "party1").enable("fedmean:0.1.0", reason="back")
        bad = await ex(fed, "party0").propose(
            component=("fedmean", "0.1.0"),
            participants=[("party0", "aggregator"), ("party1", "host")],
            datasets=datasets,
            params={"rounds": 0, "colour": "red"},
            project="study-2",
        )
        await eventually(
            lambda: bad in ex(fed, "party0").jobs.jobs and ex(fed, "party0").jobs.jobs[bad].status is JobStatus.FAILED,
            what="FAILED on parameters",
        )
        rejected = ex(fed, "party0").jobs.jobs[bad]
        assert rejected.reason_code == "BAD_PARAMS"
        assert "rounds" in rejected.reason
        assert "colour" in rejected.reason
        assert not rejected.finished
