"""The task command line in its own processes against a running federation: status for all, stop by the initiator."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from mesh.service import Context, Service
from mesh.testing import eventually, fresh_settings
from services.accel.placement import in_process
from services.catalog.service import CatalogService
from services.components.service import ComponentsService
from services.executor.service import ExecutorService
from services.executor.state import JobStatus
from services.testbed import federation
from tests.integration.components import publish_fedmean
from tests.integration.test_catalog_cli import interfed
from tests.integration.test_executor_flow import ex, permits_for

pytestmark = [pytest.mark.broker, pytest.mark.reference_lane, pytest.mark.timeout(240)]


def services(ctx: Context) -> Sequence[Service]:
    catalog = CatalogService(ctx)
    store = ComponentsService(ctx)
    return [
        catalog,
        store,
        ExecutorService(ctx, catalog=catalog, components=store, accel=in_process(ctx)),
    ]  # no policy: by hand


async def test_a_pending_job_is_listed_everywhere_and_stopped_by_its_initiator(bootstrap: str, home_root: Path) -> None:
    settings = fresh_settings(heartbeat_interval=10.0, unreachable_after=30.0)  # see test_catalog_cli
    async with federation(home_root, bootstrap, n=2, services=services, settings=settings) as fed:
        await publish_fedmean(fed)
        datasets = await permits_for(fed, home_root, ["party1"], "study-cli")
        job_id = await ex(fed, "party0").propose(
            component=("fedmean", "0.1.0"),
            participants=[("party0", "aggregator"), ("party1", "host")],
            datasets=datasets,
            params={"rounds": 2},
            project="study-cli",
        )
        host, initiator = (str(m.home.path) for m in (fed.member("party1"), fed.member("party0")))
        await eventually(lambda: job_id in ex(fed, "party1").jobs.jobs, what="proposal seen")
        table = (await interfed(fed, "task", "list", "--home", host)).stdout  # the old name, kept as an alias
        assert "PENDING" in table
        assert job_id[:8] in table

        refused = await interfed(fed, "job", "stop", job_id[:8], "--home", host, "--reason", "not mine", code=5)
        assert "NOT_PARTICIPANT" in refused.stderr
        # Accepting by hand checks the installation through the node's own components store, in this process too.
        await interfed(fed, "job", "accept", job_id[:8], "--home", host)
        await eventually(lambda: "party1" in ex(fed, "party0").jobs.jobs[job_id].accepted, what="accepted")
        await interfed(fed, "job", "stop", job_id[:8], "--home", initiator, "--reason", "wrong dataset")
        await eventually(lambda: ex(fed, "party1").jobs.jobs[job_id].status is JobStatus.FAILED, what="stopped")
        shown = json.loads((await interfed(fed, "job", "show", job_id, "--home", host, "--json")).stdout)
        assert shown["status"] == "FAILED"
        assert shown["reason_code"] == "STOPPED"
        assert "wrong dataset" in shown["reason"]
