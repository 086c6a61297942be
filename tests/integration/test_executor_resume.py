"""An executor killed with SIGKILL mid-job and restarted resumes from the log and its checkpoint, on a real broker.

party2 (a host) runs its executor as its own process; it is killed once it has checkpointed a
round, restarted, and the job completes at every party with the result of an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from mesh.events import DATASET_USED, EVIDENCE_RECORDED
from mesh.service import Context, Service
from mesh.testing import eventually, read_topic
from services.accel.placement import in_process
from services.catalog.service import CatalogService
from services.components.service import ComponentsService
from services.executor.service import ExecutorService
from services.executor.state import Job, JobStatus
from services.testbed import TestFederation, federation
from tests.integration.components import publish_fedmean
from tests.integration.test_executor_flow import ACCEPT_ALL, cat, ex, expected_model, permits_for

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

OUT_OF_PROCESS = "party2"


def services(ctx: Context) -> Sequence[Service]:
    catalog = CatalogService(ctx)
    store = ComponentsService(ctx)  # installs fedmean (party2's too: the process reads that installation)
    if ctx.config.node_id == OUT_OF_PROCESS:
        return [catalog, store]  # its executor is the separate process
    executor = ExecutorService(ctx, catalog=catalog, components=store, accel=in_process(ctx), policy=ACCEPT_ALL)
    return [catalog, store, executor]


def party(home: Path, bootstrap: str, prefix: str, *flags: str) -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.executor_party", str(home), bootstrap, prefix, *flags],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL,
        stderr=(home / "executor-party.stderr").open("ab"),
    )


async def ends_as_if_uninterrupted(fed: TestFederation, job_id: str, home_root: Path, hosts: list[str]) -> Job:
    """Wait for SUCCESS at the in-process parties; the restarted party finished well and the model is that of a
    run never interrupted (6 rounds at rate 0.5). The job as party0 sees it."""
    for node in ("party0", "party1"):
        await eventually(
            lambda n=node: ex(fed, n).jobs.jobs[job_id].status is JobStatus.SUCCESS, 90, f"SUCCESS at {node}"
        )
    job = ex(fed, "party0").jobs.jobs[job_id]
    assert job.finished[OUT_OF_PROCESS]["ok"]
    want = expected_model(home_root, hosts, 6, 0.5)
    np.testing.assert_allclose(ex(fed, "party0").results[job_id].model["model"], want, rtol=1e-12)
    return job


async def test_a_party_killed_mid_round_resumes_and_the_job_ends_as_if_uninterrupted(
    bootstrap: str, home_root: Path
) -> None:
    async with federation(home_root, bootstrap, n=3, services=services) as fed:
        await publish_fedmean(fed)
        hosts = ["party1", OUT_OF_PROCESS]
        datasets = await permits_for(fed, home_root, hosts, "study-kill")
        home = fed.member(OUT_OF_PROCESS).home.path
        proc = party(home, bootstrap, fed.settings.topic_prefix)
        try:
            job_id = await ex(fed, "party0").propose(
                component=("fedmean", "0.1.0"),
                participants=[("party0", "aggregator"), ("party1", "host"), (OUT_OF_PROCESS, "host")],
                datasets=datasets,
                params={"rounds": 6, "pause": 0.4},
                project="study-kill",
                round_deadline=60,
            )
            checkpoints = home / "state" / "executor" / job_id / "checkpoints"
            await eventually((checkpoints / "round-1.ckpt").exists, 90, "party2 checkpointing round 1")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            # the checkpoint holds the party's keys: owner only, in folders owner only
            assert stat.S_IMODE((checkpoints / "round-1.ckpt").stat().st_mode) == 0o600
            assert {stat.S_IMODE(f.stat().st_mode) for f in (checkpoints, checkpoints.parent)} == {0o700}
            assert ex(fed, "party0").jobs.jobs[job_id].status is JobStatus.RUNNING
            assert not (checkpoints / "round-5.ckpt").exists()
            proc = party(home, bootstrap, fed.settings.topic_prefix)
            job = await ends_as_if_uninterrupted(fed, job_id, home_root, hosts)
            assert len({f["model_sha256"] for f in job.finished.values()}) == 1  # the restarted party agrees
            # its use of the dataset was recorded once, not again on restart
            assert cat(fed, "party0").catalog.permits[datasets[1][3]].uses == 1  # type: ignore[index]
        finally:
            proc.kill()
            proc.wait(10)


async def test_a_party_stopped_mid_round_on_its_workers_leaves_the_job_to_resume(
    bootstrap: str, home_root: Path
) -> None:
    """party2 runs its Paillier work on its own worker process (node up's default) and is stopped cleanly (SIGTERM,
    as Ctrl-C stops node up) while it computes: it must not fail the job for everyone on its way out (its workers
    stop after its job runs are cancelled), and restarted it resumes and the job ends as if uninterrupted."""
    async with federation(home_root, bootstrap, n=3, services=services) as fed:
        await publish_fedmean(fed)
        hosts = ["party1", OUT_OF_PROCESS]
        datasets = await permits_for(fed, home_root, hosts, "study-stop")
        home = fed.member(OUT_OF_PROCESS).home.path
        proc = party(home, bootstrap, fed.settings.topic_prefix, "workers")
        try:
            job_id = await ex(fed, "party0").propose(
                component=("fedmean", "0.1.0"),
                participants=[("party0", "aggregator"), ("party1", "host"), (OUT_OF_PROCESS, "host")],
                datasets=datasets,
                params={"rounds": 6, "pause": 0.6, "busy": True},
                project="study-stop",
                round_deadline=60,
            )
            checkpoints = home / "state" / "executor" / job_id / "checkpoints"
            await eventually((checkpoints / "round-1.ckpt").exists, 90, "party2 checkpointing round 1")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 30) == 0
            await asyncio.sleep(1.0)  # what it would have sent on its way out has arrived by now
            job = ex(fed, "party0").jobs.jobs[job_id]
            assert job.status is JobStatus.RUNNING, (job.status, job.reason)
            assert OUT_OF_PROCESS not in job.finished
            assert not (checkpoints / "round-5.ckpt").exists()
            proc = party(home, bootstrap, fed.settings.topic_prefix, "workers")
            await ends_as_if_uninterrupted(fed, job_id, home_root, hosts)
        finally:
            proc.kill()
            proc.wait(10)


async def test_a_party_killed_between_recording_a_use_and_remembering_it_counts_the_use_once(
    bootstrap: str, home_root: Path
) -> None:
    """party2's process dies (SIGKILL) right after its DatasetUsed and evidence are on the broker, before
    its executor writes its marker; restarted, it resumes the job without a second use: the permit counts
    one use at every party, and the topic holds one DatasetUsed of party2 and one evidence record of it."""
    async with federation(home_root, bootstrap, n=3, services=services) as fed:
        await publish_fedmean(fed)
        hosts = ["party1", OUT_OF_PROCESS]
        datasets = await permits_for(fed, home_root, hosts, "study-use-kill")
        permit = datasets[1][3]
        assert permit is not None
        home = fed.member(OUT_OF_PROCESS).home.path
        proc = party(home, bootstrap, fed.settings.topic_prefix, "die-after-use")
        try:
            job_id = await ex(fed, "party0").propose(
                component=("fedmean", "0.1.0"),
                participants=[("party0", "aggregator"), ("party1", "host"), (OUT_OF_PROCESS, "host")],
                datasets=datasets,
                params={"rounds": 3, "pause": 0.2},
                project="study-use-kill",
                round_deadline=60,
            )
            assert await asyncio.to_thread(proc.wait, 90) == -signal.SIGKILL  # it died at the crash point
            await eventually(lambda: cat(fed, "party0").catalog.permits[permit].uses == 1, 30, "the first use seen")
            assert not (home / "state" / "executor" / job_id / "uses.json").exists()
            proc = party(home, bootstrap, fed.settings.topic_prefix)
            for node in ("party0", "party1"):
                await eventually(
                    lambda n=node: ex(fed, n).jobs.jobs[job_id].status is JobStatus.SUCCESS, 90, f"SUCCESS at {node}"
                )
            assert ex(fed, "party0").jobs.jobs[job_id].finished[OUT_OF_PROCESS]["ok"]
            for node in ("party0", "party1", OUT_OF_PROCESS):
                assert cat(fed, node).catalog.permits[permit].uses == 1, node
            uses = [
                env
                for env, p in await read_topic(bootstrap, fed.settings, "catalog")
                if env.payload_type == DATASET_USED and p["request_id"] == permit
            ]
            assert len(uses) == 1
            evidence = [
                p
                for env, p in await read_topic(bootstrap, fed.settings, "evidence")
                if env.payload_type == EVIDENCE_RECORDED
                and p["event_type"] == DATASET_USED
                and env.sender == OUT_OF_PROCESS
            ]
            assert [p["event_id"] for p in evidence] == [uses[0].event_id]
        finally:
            proc.kill()
            proc.wait(10)
