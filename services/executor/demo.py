"""The executor's part of the main job: a component installed at every party, a job approved by all, trained, released.

The executor is not wired to the component store (services.components) yet: ``demo_components``
serves the federated-mean test component through FolderSource, and the demo says so. The job then
runs through the executor path it will keep (checks, permits, acceptance, rounds on the broker,
release). Wiring the store in ``demo_components`` and ``install_component`` is open work (issue 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mesh.service import Context, Service
from mesh.testing import TestFederation, eventually
from services.catalog.demo import catalog_services
from services.catalog.policy import DAY_MS
from services.catalog.service import CatalogService
from services.executor.cli import job_row, print_jobs
from services.executor.service import POLICY_FILE, ExecutorService
from services.executor.source import ComponentSource
from services.executor.state import JobStatus
from services.executor.testing import FEDMEAN, FolderSource

Step = Callable[[str], contextlib.AbstractContextManager[None]]

#: Every party's job policy in the demo: jobs the bank proposes for an hfl-* project are accepted.
JOB_POLICY = """\
default = "manual"

[[rule]]
name = "bank-hfl"
decision = "accept"
initiators = ["bank"]
projects = ["hfl-*"]
max_participants = 5
"""
PROJECT = "hfl-demo"
ROUNDS = 5


def demo_components(ctx: Context) -> tuple[ComponentSource, tuple[str, str]]:
    """The party's component source and the component the demo job runs.

    Wiring point: with the store in the build, this returns ``ComponentStore(ctx.home)`` and the
    HFL component's (code, version); until then, the test component from its folder.
    """
    source = FolderSource(FEDMEAN)
    return source, next(iter(source.found))


def demo_services(ctx: Context) -> Sequence[Service]:
    """Each party runs its catalog and an executor deciding jobs by the policy in its home."""
    (ctx.home.path / POLICY_FILE).write_text(JOB_POLICY, encoding="utf-8")
    (catalog,) = catalog_services(ctx)
    assert isinstance(catalog, CatalogService)
    source, _ = demo_components(ctx)
    return [catalog, ExecutorService(ctx, catalog=catalog, components=source)]


def _svc(fed: TestFederation, node_id: str, name: str) -> Service:
    member = fed.operator if node_id == fed.operator.node_id else fed.member(node_id)
    return member.service(name)


def _ex(fed: TestFederation, node_id: str) -> ExecutorService:
    svc = _svc(fed, node_id, "executor")
    assert isinstance(svc, ExecutorService)
    return svc


def _cat(fed: TestFederation, node_id: str) -> CatalogService:
    svc = _svc(fed, node_id, "catalog")
    assert isinstance(svc, CatalogService)
    return svc


def _has_dataset(catalog: CatalogService, dataset_id: str) -> bool:
    return dataset_id in catalog.catalog.datasets


def _permit_is(catalog: CatalogService, request_id: str, status: str | None) -> bool:
    permit = catalog.catalog.permits.get(request_id)
    return permit is not None and (status is None or permit.status == status)


def _used_once(catalog: CatalogService, request_id: str) -> bool:
    return catalog.catalog.permits[request_id].uses == 1


def _release_seen(executor: ExecutorService, job_id: str, digest: bytes) -> bool:
    return executor.jobs.jobs[job_id].release_sha256 == digest


def _training_file(path: Path, seed: int, rows: int) -> Path:
    """A host's numeric training table (same columns at every host, different distributions)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(seed % 7, 1.0 + seed % 3, (rows, 4))
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["id,x1,x2,x3,x4"] + [f"{i}," + ",".join(f"{v:.5f}" for v in row) for i, row in enumerate(x)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def install_component(fed: TestFederation, step: Step, out: Console) -> tuple[str, str]:
    """Stage two: one party publishes the component and the others install it (wiring point for the store)."""
    _, component = demo_components(fed.operator.registry.ctx)
    out.print(
        "  [yellow]the executor is not wired to the component store yet:[/] every party serves the "
        f"{component[0]} {component[1]} test component from its folder (the same executor path)"
    )
    with step(f"every party has {component[0]} {component[1]} installed and enabled, with one digest"):
        digests = {_ex(fed, n).components.installed(*component).digest for n in ("bank", "hospital", "telecom")}  # type: ignore[union-attr]
        if len(digests) != 1:
            raise AssertionError(f"the parties hold {len(digests)} different artifacts")
    return component


async def train_and_release(fed: TestFederation, root: Path, step: Step, out: Console) -> None:
    """Permits, a job proposed by the bank, accepted by all by policy, trained with progress, its model released."""
    component = await install_component(fed, step, out)
    bank = _ex(fed, "bank")
    hosts = ("hospital", "telecom")
    datasets: list[tuple[str, str, str, str | None]] = []
    with step("hospital and telecom publish training tables; the bank asks for them for the project; both grant"):
        for i, host in enumerate(hosts):
            path = _training_file(root / "data" / host / "hfl-train.csv", 11 + i, 120 + 60 * i)
            dataset = await _cat(fed, host).publish(path, "hfl-train", category="hfl")
            await eventually(partial(_has_dataset, _cat(fed, "bank"), dataset), 30, f"bank seeing {dataset}")
            until = time.time_ns() // 1_000_000 + DAY_MS
            rid = await _cat(fed, "bank").request(
                dataset, "federated training", scope_type="PROJECT", scope_ids=[PROJECT], not_after=until, use_limit=1
            )
            await eventually(partial(_permit_is, _cat(fed, host), rid, None), 30, f"{host} seeing the request")
            await _cat(fed, host).approve(rid)
            datasets.append((host, "train", dataset, rid))
        for host, _, _, granted in datasets:
            assert granted is not None
            await eventually(partial(_permit_is, _cat(fed, host), granted, "APPROVED"), 30, "grants")
    with step("the bank proposes the job; every participant checks and accepts it by its policy"):
        job_id = await bank.propose(
            component=component,
            participants=[("bank", "aggregator"), ("hospital", "host"), ("telecom", "host")],
            datasets=datasets,
            params={"rounds": ROUNDS, "pause": 0.2},
            project=PROJECT,
            round_deadline=30,
            seed=2026,
        )
        await eventually(
            lambda: job_id in bank.jobs.jobs and bank.jobs.jobs[job_id].status is not JobStatus.PENDING,
            30,
            "all accepting",
        )
        if bank.jobs.jobs[job_id].status is JobStatus.FAILED:
            raise AssertionError(bank.jobs.jobs[job_id].reason)
    job = bank.jobs.jobs[job_id]
    columns = (TextColumn("  training {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        step("the job runs: rounds on the broker between the hosts and the aggregator"),
        Progress(*columns, console=out) as bar,
    ):
        task = bar.add_task(job_id[:8], total=ROUNDS)
        deadline = time.monotonic() + 120
        while not job.ended and time.monotonic() < deadline:
            done = job.progress.get("round", -1) + 1
            norm = job.progress.get("metrics", {}).get("norm")
            bar.update(task, completed=done, description=f"{job_id[:8]} {job.status} norm={norm or 0:.4f}")
            await asyncio.sleep(0.1)
        bar.update(task, completed=ROUNDS)
        for m in fed.everyone:
            await eventually(
                partial(lambda n: _ex(fed, n).jobs.jobs[job_id].ended, m.node_id), 30, f"{m.node_id} seeing the end"
            )
        if job.status is not JobStatus.SUCCESS:
            raise AssertionError(f"job {job.status}: {job.reason}")
    with step("the parties approve the release of the trained model by its digest; the bank records it"):
        digest = await bank.propose_release(job_id)
        for node in ("bank", *hosts):
            await eventually(partial(_release_seen, _ex(fed, node), job_id, digest), 30, "the proposal")
            await _ex(fed, node).approve_release(job_id)
        for m in fed.everyone:
            await eventually(partial(lambda n: _ex(fed, n).jobs.jobs[job_id].released, m.node_id), 30, "the release")
    with step("every use of a dataset in the job is recorded under its permit; no party refused a job event"):
        for _, _, _, used in datasets:
            assert used is not None
            await eventually(partial(_used_once, _cat(fed, "telecom"), used), 30, "the uses")
        for m in fed.everyone:
            dead = {k: v for k, v in _ex(fed, m.node_id).counts.items() if k.startswith("dead:")}
            if dead:
                raise AssertionError(f"{m.node_id}'s executor refused events: {dead}")
    print_jobs([job_row(_ex(fed, "telecom").jobs.jobs[job_id])], "jobs as telecom sees them", out)
    out.print(f"  released model {digest.hex()[:16]}: {dict(bank.results[job_id].metrics)}")
