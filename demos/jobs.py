"""The executor's part of the main job: a component published by one party and installed by the others, an HFL
job approved by all, trained with a progress display, its model released.

Every party runs its components service: the bank publishes the built-in algorithms
(``ComponentsService.publish_builtin``, what ``interfed components publish-builtin`` does), every
other party verifies and installs them, and the executors run the installed ``hfl`` component
(FedAvg logistic regression under pairwise-mask secure aggregation) on the hosts' breast-cancer
halves, published in the catalog with their label column.
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

from demos.catalog import catalog_services
from mesh.clock import now_ms
from mesh.service import Context, Service
from mesh.testing import eventually
from services.accel.placement import AcceleratorSettings, in_process, node_accelerator
from services.catalog.policy import DAY_MS
from services.catalog.service import CatalogService
from services.components.service import ComponentsService
from services.executor.cli import job_row, print_jobs
from services.executor.service import POLICY_FILE, ExecutorService
from services.executor.state import Job, JobStatus
from services.testbed import TestFederation

Step = Callable[[str], contextlib.AbstractContextManager[None]]

#: Every party's job policy in the demo: jobs the bank proposes for an hfl-* or vfl-* project are accepted.
JOB_POLICY = """\
default = "manual"

[[rule]]
name = "bank-fl"
decision = "accept"
initiators = ["bank"]
projects = ["hfl-*", "vfl-*"]
max_participants = 5
"""
PROJECT = "hfl-demo"
HFL = ("hfl", "1.0.0")
EPOCHS = 5
#: FedAvg logistic regression, each update hidden from the aggregator by pairwise X25519 masks.
HFL_PARAMS = {"model": "logreg", "classes": 2, "epochs": EPOCHS, "learning_rate": 0.5, "secure_aggregation": "masks"}


#: The parties that run their own accelerator (the vertical stage's guest, host and arbiter): each does its
#: Paillier work, which involves its own features or its own key, on its own accelerator's workers only. The arbiter's
#: accelerator makes the job's key pair and keeps it in telecom's home (accel/keys/), where it decrypts.
ACCELERATED = ("bank", "hospital", "telecom")


def demo_services(ctx: Context, workers: int = 1) -> Sequence[Service]:
    """Each party runs its catalog, its components service and an executor deciding jobs by its home's policy;
    the bank, the hospital and telecom also their accelerator, whose workers (``workers`` processes each) do their
    executor's Paillier work."""
    (ctx.home.path / POLICY_FILE).write_text(JOB_POLICY, encoding="utf-8")
    (catalog,) = catalog_services(ctx)
    assert isinstance(catalog, CatalogService)
    store = ComponentsService(ctx)
    if ctx.config.node_id not in ACCELERATED:
        return [catalog, store, ExecutorService(ctx, catalog=catalog, components=store, accel=in_process(ctx))]
    # What `interfed node up` does by default, with one worker process each: three parties share two cores.
    accelerator = node_accelerator(ctx, AcceleratorSettings(mode="workers", workers=workers))
    executor = ExecutorService(ctx, catalog=catalog, components=store, accel=accelerator.client)
    return [catalog, store, *accelerator.services, executor]


def _svc(fed: TestFederation, node_id: str, name: str) -> Service:
    member = fed.operator if node_id == fed.operator.node_id else fed.member(node_id)
    return member.service(name)


def _store(fed: TestFederation, node_id: str) -> ComponentsService:
    svc = _svc(fed, node_id, "components")
    assert isinstance(svc, ComponentsService)
    return svc


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


def _uses_are(catalog: CatalogService, request_id: str, count: int) -> bool:
    return catalog.catalog.permits[request_id].uses == count


def _release_seen(executor: ExecutorService, job_id: str, digest: bytes) -> bool:
    return executor.jobs.jobs[job_id].release_sha256 == digest


def _installed(store: ComponentsService, code: str, version: str) -> bool:
    return store.installed(code, version) is not None


def _training_files(root: Path, hosts: Sequence[str]) -> list[Path]:
    """Each host's half of scikit-learn's breast-cancer data (standardised): id, 30 features, label."""
    from sklearn.datasets import load_breast_cancer  # heavy: only when the demo trains

    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    order = np.random.default_rng(2026).permutation(len(y))
    paths = []
    for i, (host, rows) in enumerate(zip(hosts, np.array_split(order, len(hosts)), strict=True)):
        path = root / "data" / host / "hfl-train.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        header = ["id", *(f"x{k:02d}" for k in range(x.shape[1])), "label"]
        lines = [",".join(header)] + [f"{i}-{r}," + ",".join(f"{v:.6f}" for v in x[r]) + f",{int(y[r])}" for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


async def install_component(fed: TestFederation, step: Step) -> tuple[str, str]:
    """Stage two: the bank publishes the built-in components; every other party verifies and installs them."""
    with step("the bank publishes the built-in components (signed artifacts on the bus); the others install them"):
        published = await _store(fed, "bank").publish_builtin()
        if HFL not in {(p.spec.code, p.spec.version) for p in published}:
            raise AssertionError(f"the bank did not publish {HFL[0]} {HFL[1]}")
        for m in fed.everyone:
            await eventually(partial(_installed, _store(fed, m.node_id), *HFL), 30, f"{m.node_id} installing hfl")
    with step(f"every party has {HFL[0]} {HFL[1]} installed and enabled, verified, with one digest"):
        found = [_store(fed, m.node_id).runnable(*HFL) for m in fed.everyone]
        if len({f.artifact_sha256 for f in found}) != 1:
            raise AssertionError("the parties hold different artifacts")
    return HFL


async def grant(
    fed: TestFederation, owner: str, path: Path, local_name: str, *, labels: tuple[str, ...], project: str, uses: int
) -> tuple[str, str]:
    """``owner`` publishes a table's metadata; the bank asks for it for ``project`` (``uses`` uses); the owner grants.

    Returns (dataset id, permit id)."""
    dataset = await _cat(fed, owner).publish(
        path, local_name, category=project, id_columns=("id",), label_columns=labels
    )
    await eventually(partial(_has_dataset, _cat(fed, "bank"), dataset), 30, f"bank seeing {dataset}")
    until = now_ms() + DAY_MS
    rid = await _cat(fed, "bank").request(
        dataset, "federated training", scope_type="PROJECT", scope_ids=[project], not_after=until, use_limit=uses
    )
    await eventually(partial(_permit_is, _cat(fed, owner), rid, None), 30, f"{owner} seeing the request")
    await _cat(fed, owner).grant(rid)
    await eventually(partial(_permit_is, _cat(fed, owner), rid, "GRANTED"), 30, "the grant")
    return dataset, rid


async def accepted(fed: TestFederation, job_id: str) -> Job:
    """The bank's view of its proposed job once every participant has decided; a rejection raises its reason."""
    bank = _ex(fed, "bank")
    await eventually(
        lambda: job_id in bank.jobs.jobs and bank.jobs.jobs[job_id].status is not JobStatus.PENDING,
        30,
        "all deciding",
    )
    job = bank.jobs.jobs[job_id]
    if job.status is JobStatus.FAILED:
        raise AssertionError(f"{job.reason_code}: {job.reason}")
    return job


async def watch(fed: TestFederation, job: Job, observer: str, total: int, out: Console, *, budget: float = 120) -> None:
    """Show ``observer``'s own progress of the job (its rounds and loss) until it ends; every party must see the end,
    and the job must succeed."""
    seen = _ex(fed, observer).jobs.jobs[job.job_id]
    columns = (TextColumn("  training {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=out) as bar:
        task = bar.add_task(job.job_id[:8], total=total)
        deadline = time.monotonic() + budget
        while not job.ended and time.monotonic() < deadline:
            metrics = seen.progress.get("metrics", {})
            shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
            bar.update(
                task,
                completed=max(0, seen.progress.get("round", -1) + 1),
                description=f"{job.job_id[:8]} {job.status} {observer} {shown}",
            )
            await asyncio.sleep(0.1)
        done = max(0, seen.progress.get("round", -1) + 1)
        if job.status is JobStatus.SUCCESS and 0 < done < total:  # it stopped on its own before its cap
            bar.update(task, total=done, completed=done, description=f"{job.job_id[:8]} stopped early, cap {total}")
        else:
            bar.update(task, completed=total if job.status is JobStatus.SUCCESS else done)
    for m in fed.everyone:
        await eventually(
            partial(lambda n: _ex(fed, n).jobs.jobs[job.job_id].ended, m.node_id), 30, f"{m.node_id} seeing the end"
        )
    if job.status is not JobStatus.SUCCESS:
        raise AssertionError(f"job {job.status}: {job.reason_code}: {job.reason}")


async def release(fed: TestFederation, job_id: str) -> bytes:
    """The bank proposes the release by its digest; every participant approves; the bank records it."""
    digest = await _ex(fed, "bank").propose_release(job_id)
    for node in _ex(fed, "bank").jobs.jobs[job_id].nodes:
        await eventually(partial(_release_seen, _ex(fed, node), job_id, digest), 30, "the proposal")
        await _ex(fed, node).approve_release(job_id)
    for m in fed.everyone:
        await eventually(partial(lambda n: _ex(fed, n).jobs.jobs[job_id].released, m.node_id), 30, "the release")
    return digest


async def uses_recorded(fed: TestFederation, permits: dict[str, int]) -> None:
    """Each permit has the given number of uses recorded (every party's view); no executor refused a job event."""
    for m in fed.everyone:
        for rid, count in permits.items():
            await eventually(partial(_uses_are, _cat(fed, m.node_id), rid, count), 30, f"{m.node_id}: the uses")
        dead = {k: v for k, v in _ex(fed, m.node_id).counts.items() if k.startswith("dead:")}
        if dead:
            raise AssertionError(f"{m.node_id}'s executor refused events: {dead}")


async def train_and_release(fed: TestFederation, root: Path, step: Step, out: Console) -> None:
    """Permits, a job proposed by the bank, accepted by all by policy, trained with progress, its model released."""
    component = await install_component(fed, step)
    hosts = ("hospital", "telecom")
    datasets: list[tuple[str, str, str, str | None]] = []
    with step("hospital and telecom publish training tables; the bank asks for them for the project; both grant"):
        for host, path in zip(hosts, _training_files(root, hosts), strict=True):
            dataset, rid = await grant(fed, host, path, "hfl-train", labels=("label",), project=PROJECT, uses=1)
            datasets.append((host, "train", dataset, rid))
    with step("the bank proposes the job; every participant checks and accepts it by its policy"):
        job_id = await _ex(fed, "bank").propose(
            component=component,
            participants=[("bank", "aggregator"), ("hospital", "host"), ("telecom", "host")],
            datasets=datasets,
            params=HFL_PARAMS,
            project=PROJECT,
            round_deadline=30,
            seed=2026,
        )
        job = await accepted(fed, job_id)
    with step("the job runs: FedAvg rounds on the broker, each host's update masked from the aggregator"):
        await watch(fed, job, "hospital", EPOCHS, out)
    with step("the parties approve the release of the trained model by its digest; the bank records it"):
        digest = await release(fed, job_id)
    with step("every use of a dataset in the job is recorded under its permit; no party refused a job event"):
        await uses_recorded(fed, {rid: 1 for _, _, _, rid in datasets if rid is not None})
    print_jobs([job_row(_ex(fed, "telecom").jobs.jobs[job_id])], "jobs as telecom sees them", out)
    trained = {host: dict(_ex(fed, host).results[job_id].metrics) for host in hosts}
    out.print(f"  released model {digest.hex()[:16]}; each host's final loss and accuracy on its data: {trained}")
