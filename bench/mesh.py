"""``interfed bench mesh``: a hetero LR round through the mesh against the same round in-process.

Through the mesh: the demo's three parties (the bank guest, the hospital host, telecom the arbiter)
on a real broker, each running the services ``interfed node up`` runs (registry, evidence, catalog,
components, executor) with its Paillier work on its own accelerator worker processes
(``demo_services``: ``node_accelerator`` in workers mode). The bank publishes the built-in
components, every party installs them; the bank and the hospital publish their vertical halves (the
same ids on both sides: no PSI), the hospital grants the bank its table, the bank proposes the hetero
LR job and every party accepts it by its policy; the job runs to SUCCESS.

In-process: ``run_local`` with the same component, the same tables, parameters and seed, each party on
``AccelClient.in_process`` (its calls on threads of this process). Every run must train the same model
(every weight within ``TOLERANCE``): a run that trained something else fails the benchmark, with no
figure shown. The two paths alternate, in-process first and last (``--repeat`` mesh jobs in the one
federation), so a shared machine's drifting load weighs on both; the medians are compared.

A round's time is the guest's time between its first and last epoch report over the rounds between
(``bench.round_timing.window``): the job's start-up (acceptance, key generation) and the first epoch
are left out. The three nodes share this process (one event loop), where ``interfed node up`` runs
each in its own; their accelerator workers are processes either way.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from accel.client import AccelClient
from bench.round_timing import Hop, Recorder, Share, Window, breakdown, hops, instrumented, window
from demos.jobs import _cat, _ex, _installed, _store, accepted, demo_services, grant, install_component, watch
from demos.main import PARTIES
from demos.vertical import LR_COMPONENT as COMPONENT
from mesh.settings import MeshSettings
from mesh.testing import eventually
from services.executor.algorithms.hetero_lr.component import HeteroLR
from services.executor.algorithms.local_run import Party, run_local
from services.executor.algorithms.vertical_data import write
from services.executor.algorithms.vertical_run import LR_DEFAULTS
from services.executor.api import ComponentResult, LocalDataset
from services.executor.checkpoints import model_digest
from services.testbed import TestFederation, federation

Progress = Callable[[str], None]

PROJECT = "vfl-bench"  # accepted by the demo's job policy (JOB_POLICY: the bank's vfl-* projects)
SEED = 2026
#: node -> role: the demo's parties.
ROLES = {"bank": "guest", "hospital": "host", "telecom": "arbiter"}
#: The party whose epoch reports time the rounds (the guest: it reports once the arbiter's epoch verdict is in).
TIMED = "bank"
#: The issue's aim: a round through the mesh at most this many times the same round in-process.
RATIO_AIM = 1.5
#: Largest difference allowed between a weight trained through the mesh and in-process (the same fixed-point maths).
TOLERANCE = 1e-9


class ModelMismatchError(AssertionError):
    """The mesh and the in-process runs trained different models: the benchmark would time a wrong run."""


@dataclass(frozen=True)
class MeshOptions:
    """What is trained: the data's shape, the schedule and the key, and each party's accelerator workers."""

    rows: int = 2048
    guest_features: int = 10
    host_features: int = 20
    batch: int = 256
    epochs: int = 3
    key_bits: int = 2048
    workers: int = 1

    @property
    def rounds_per_epoch(self) -> int:
        return -(-self.rows // self.batch)

    def params(self) -> dict[str, Any]:
        """The component's parameters: its defaults but for the key, epochs and batch; tol 0, so no early stop."""
        return {
            **LR_DEFAULTS,
            "key_bits": self.key_bits,
            "max_epochs": self.epochs,
            "batch_size": self.batch,
            "tol": 0.0,
        }


@dataclass(frozen=True)
class PathRun:
    """One path's run: its timed window, whole time, results by node, and what the instruments recorded."""

    path: str
    timed: Window
    started: float  # the proposal (mesh), the start of run_local (in-process)
    ended: float
    results: Mapping[str, ComponentResult]
    recorder: Recorder

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def first_epoch(self) -> float:
        """Seconds from the start to the guest's first epoch report (start-up, key generation, the first epoch)."""
        return self.timed.start - self.started

    def shares(self) -> list[Share]:
        return breakdown(self.recorder.spans, self.timed)

    @property
    def cpu_per_round(self) -> float | None:
        return self.recorder.cpu_per_round(self.timed)

    def hops(self) -> dict[str, Hop]:
        return {hop.tag: hop for hop in hops(self.recorder.spans, self.timed, ROLES)}


def tables(folder: Path, opts: MeshOptions) -> tuple[LocalDataset, LocalDataset]:
    """The guest's (label + ``guest_features``) and the host's (``host_features``) halves, the same ids on both."""
    from sklearn.datasets import make_classification  # heavy: only when the benchmark runs

    features = opts.guest_features + opts.host_features
    x, y = make_classification(
        n_samples=opts.rows, n_features=features, n_informative=max(2, features * 2 // 5), random_state=3
    )
    ids = [f"r{i:07d}" for i in range(opts.rows)]
    folder.mkdir(parents=True, exist_ok=True)
    guest = write(folder / "guest.csv", ids, x[:, : opts.guest_features], y.astype(np.float64))
    host = write(folder / "host.csv", ids, x[:, opts.guest_features :], None)
    return guest, host


def _timed(
    recorder: Recorder, opts: MeshOptions, path: str, started: float, results: Mapping[str, ComponentResult]
) -> PathRun:
    timed = window(recorder.reports.get(TIMED, []), opts.rounds_per_epoch)
    return PathRun(path, timed, started, time.perf_counter(), results, recorder)


@dataclass(frozen=True)
class Runs:
    """Every run of both paths, in the order they ran: in-process, mesh, in-process, ..., in-process."""

    mesh: list[PathRun]
    local: list[PathRun]

    def typical(self, path: str) -> PathRun:
        """The run of ``path`` with the median seconds a round (its breakdown is the one shown)."""
        runs = sorted(self.mesh if path == "mesh" else self.local, key=lambda r: r.timed.per_round)
        return runs[(len(runs) - 1) // 2]

    def per_round(self, path: str) -> list[float]:
        return [r.timed.per_round for r in (self.mesh if path == "mesh" else self.local)]

    @property
    def ratio(self) -> float:
        """Mesh over in-process: the median of the mesh runs' ratios to the in-process runs around each."""
        return statistics.median(self.bracketed())

    def bracketed(self) -> list[float]:
        return bracketed_ratios(self.per_round("mesh"), self.per_round("in-process"))


def bracketed_ratios(mesh: Sequence[float], local: Sequence[float]) -> list[float]:
    """Each mesh run's seconds a round over the mean of the in-process runs just before and after it (runs
    alternate, in-process first and last), so a machine whose load drifts weighs on both sides of each ratio."""
    if len(local) != len(mesh) + 1:
        raise ValueError(f"{len(mesh)} mesh runs need {len(mesh) + 1} in-process runs around them, not {len(local)}")
    return [m / ((before + after) / 2) for m, before, after in zip(mesh, local, local[1:], strict=False)]


async def run_bench(
    root: Path,
    settings: MeshSettings,
    address: str,
    opts: MeshOptions,
    repeat: int,
    progress: Progress,
    console: Console,
) -> Runs:
    """``repeat`` hetero LR jobs through the mesh, each between two runs of the same training in-process."""

    @contextlib.contextmanager
    def step(what: str) -> Iterator[None]:
        progress(what)
        yield

    guest_table, host_table = tables(root / "data", opts)
    inputs = {"bank": {"train": guest_table}, "hospital": {"train": host_table}}
    progress("starting the federation: three parties, their services and accelerator workers")
    async with federation(
        root / "fed",
        address,
        PARTIES,
        settings=settings,
        name="bench-mesh",
        evidence=settings.head_interval,
        services=partial(demo_services, workers=opts.workers),
    ) as fed:
        await install_component(fed, step)
        for m in fed.everyone:
            await eventually(partial(_installed, _store(fed, m.node_id), *COMPONENT), 60, f"{m.node_id}: hetero_lr")
        progress("the bank and the hospital publish their halves; the hospital grants the bank its table")
        guest = await _cat(fed, "bank").publish(
            guest_table.path, "bench-guest", category=PROJECT, id_columns=("id",), label_columns=("label",)
        )
        host, permit = await grant(
            fed, "hospital", host_table.path, "bench-host", labels=(), project=PROJECT, uses=repeat
        )
        datasets = [("bank", "train", guest, None), ("hospital", "train", host, permit)]
        runs = Runs([], [])
        for i in range(1, repeat + 1):
            progress(f"run {i} of {repeat}: in-process (run_local, an in-process accelerator per party)")
            runs.local.append(await run_in_process(inputs, opts))
            progress(f"run {i} of {repeat}: the bank proposes the job, every party accepts it by policy; it runs")
            runs.mesh.append(await _mesh_job(fed, datasets, opts, console))
        progress("in-process once more: every mesh run has an in-process run before and after it")
        runs.local.append(await run_in_process(inputs, opts))
    return runs


async def _mesh_job(
    fed: TestFederation, datasets: list[tuple[str, str, str, str | None]], opts: MeshOptions, console: Console
) -> PathRun:
    """One hetero LR job proposed by the bank, accepted by every party's policy, run to SUCCESS."""
    recorder = Recorder(cpu_of=TIMED)
    with instrumented(recorder):
        started = time.perf_counter()
        job_id = await _ex(fed, "bank").propose(
            component=COMPONENT,
            participants=list(ROLES.items()),
            datasets=datasets,
            params=opts.params(),
            project=PROJECT,
            round_deadline=600,
            seed=SEED,
        )
        job = await accepted(fed, job_id)
        await watch(fed, job, TIMED, opts.epochs, console, budget=24 * 3600)
        return _timed(recorder, opts, "mesh", started, {node: _ex(fed, node).results[job_id] for node in ROLES})


async def run_in_process(inputs: Mapping[str, Mapping[str, LocalDataset]], opts: MeshOptions) -> PathRun:
    """The same job with ``run_local``: every party in this process, each on its own in-process accelerator."""
    parties = [
        Party(node, role, inputs.get(node, {}), AccelClient.in_process(node), opts.params())
        for node, role in ROLES.items()
    ]
    recorder = Recorder(cpu_of=TIMED)
    with instrumented(recorder):
        started = time.perf_counter()
        results = await run_local(HeteroLR(), parties, seed=SEED, round_deadline=3600)
    return _timed(recorder, opts, "in-process", started, results)


def same_model(a: Mapping[str, ComponentResult], b: Mapping[str, ComponentResult]) -> tuple[float, bool]:
    """The largest difference between the two runs' weights, every learner's every tensor, and whether every model
    digest is equal; raises ``ModelMismatchError`` if a tensor is missing, of another shape or off by > TOLERANCE,
    or the runs counted different epochs or rounds."""
    worst, digests = 0.0, True
    for node in sorted(set(a) | set(b)):
        if node not in a or node not in b:
            raise ModelMismatchError(f"{node} has a result in one run only")
        mine, theirs = a[node].model, b[node].model
        if set(mine) != set(theirs):
            raise ModelMismatchError(f"{node}'s tensors: {sorted(mine)} in one run, {sorted(theirs)} in the other")
        for name in mine:
            left, right = np.asarray(mine[name], dtype=np.float64), np.asarray(theirs[name], dtype=np.float64)
            if left.shape != right.shape:
                raise ModelMismatchError(f"{node}'s {name}: shape {left.shape} against {right.shape}")
            if left.size:
                worst = max(worst, float(np.max(np.abs(left - right))))
        digests &= model_digest(mine) == model_digest(theirs)
        for metric in ("epochs", "rounds"):
            counted = a[node].metrics.get(metric), b[node].metrics.get(metric)
            if counted[0] != counted[1]:
                raise ModelMismatchError(f"{node}: {metric} {counted[0]} in one run, {counted[1]} in the other")
    if not worst <= TOLERANCE:
        raise ModelMismatchError(f"the weights differ by up to {worst:.3g} (allowed {TOLERANCE:g})")
    return worst, digests
