"""``interfed bench vertical``: one epoch of hetero LR on four Paillier paths, and PSI at three sizes.

The same ``HeteroLR`` component runs the same epoch (same data, batches and seed) with:
the accelerator in-process on one thread (gmpy2 backend, DJN encryption, packed gradients),
on two accelerator worker processes reached directly (what ``interfed node up`` runs by
default), through the accelerator service on a broker (the guest's and host's public-key work;
the arbiter decrypts in its own process there), and ``phe`` in-process (textbook encryption,
no packing: what a deployment without the accelerator does).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import make_classification

from accel.client import AccelClient, LocalTransport
from accel.engine import Engine
from accel.gmp_backend import Encryption
from accel.keys import PrivateKey
from accel.keystore import KeyStore
from accel.phe_backend import PheBackend
from accel.pool import WorkerPool
from accel.wire import PublishedKey
from mesh.node import open_context, running
from mesh.testing import fresh_settings
from services.accel.service import AccelService
from services.executor.algorithms.hetero_lr.component import HeteroLR
from services.executor.algorithms.local_run import Party, Traffic, run_local
from services.executor.algorithms.psi.component import PSI
from services.executor.api import LocalDataset
from services.testbed import federation

Report = Callable[[str, float], None]
RATIO_AIM = 20.0
PSI_AIM_SECONDS = 10.0  # for 10^5 ids per side


def _phe_backend(
    published: PublishedKey, private: PrivateKey | None, _mode: Encryption, _base: int | None
) -> PheBackend:
    return PheBackend(published.public_key, private)


def phe_client(node: str) -> AccelClient:
    """The same requests, computed by ``phe`` in this process (the baseline)."""
    return AccelClient(LocalTransport(Engine(node, KeyStore.empty(), _phe_backend), "phe, in-process"), node)


def _csv(path: Path, ids: list[str], x: np.ndarray, y: np.ndarray | None) -> LocalDataset:
    names = [f"f{j}" for j in range(x.shape[1])]
    head = ",".join(["id", *names, *(["label"] if y is not None else [])])
    lines = [head] + [
        ",".join([ids[i], *(f"{v:.6g}" for v in row), *([str(int(y[i]))] if y is not None else [])])
        for i, row in enumerate(x)
    ]
    path.write_text("\n".join(lines) + "\n")
    roles = {"id": "id", **dict.fromkeys(names, "feature"), **({"label": "label"} if y is not None else {})}
    return LocalDataset(path.stem, path, roles)


@dataclass(frozen=True)
class EpochRow:
    """One path's epoch: wall seconds, the bytes the parties sent, and this process's CPU seconds.

    The CPU time (every thread of this process) is what the epoch cost here whatever else the
    shared machine was doing; it is None for the service path, whose work runs in the service's
    worker processes.
    """

    path: str
    seconds: float
    bytes_sent: int
    cpu_seconds: float | None


async def _epoch(
    root: Path, rows: int, key_bits: int, clients: dict[str, AccelClient], fast: bool
) -> tuple[float, int, float]:
    x, y = make_classification(n_samples=rows, n_features=30, n_informative=12, random_state=3)
    ids = [f"r{i:07d}" for i in range(rows)]
    guest = _csv(root / "guest.csv", ids, x[:, :10], y.astype(float))
    host = _csv(root / "host.csv", ids, x[:, 10:], None)
    params: dict[str, Any] = {
        "learning_rate": 0.15,
        "alpha": 0.01,
        "max_epochs": 1,
        "batch_size": 256,
        "tol": 1e-4,
        "key_bits": key_bits,
        "fast_encrypt": fast,
        "pack_gradients": fast,
    }
    traffic = Traffic()
    parties = [
        Party("guest", "guest", {"train": guest}, clients["guest"], params),
        Party("host", "host", {"train": host}, clients["host"], params),
        Party("arbiter", "arbiter", {}, clients["arbiter"], params),
    ]
    started, cpu = time.perf_counter(), time.process_time()
    await run_local(HeteroLR(), parties, round_deadline=3600, traffic=traffic)
    return time.perf_counter() - started, traffic.total, time.process_time() - cpu


async def run_epochs(root: Path, bootstrap: str | None, rows: int, key_bits: int, report: Report) -> list[EpochRow]:
    """The epoch on each path: accelerator in-process, accelerator service (unless ``bootstrap`` is None), phe."""
    out = []
    report("hetero LR epoch: accelerator in-process", 0.0)
    local = {n: AccelClient.in_process(n) for n in ("guest", "host", "arbiter")}
    out.append(
        EpochRow("accelerator in-process (gmpy2, DJN, packed)", *(await _epoch(root, rows, key_bits, local, True)))
    )
    report("hetero LR epoch: the node's accelerator workers", 0.25)
    out.append(await _workers_epoch(root, rows, key_bits))
    if bootstrap is not None:
        report("hetero LR epoch: accelerator service", 0.5)
        out.append(await _service_epoch(root, bootstrap, rows, key_bits))
    report("hetero LR epoch: phe in-process", 0.75)
    phe = {n: phe_client(n) for n in ("guest", "host", "arbiter")}
    out.append(EpochRow("phe in-process (textbook, unpacked)", *(await _epoch(root, rows, key_bits, phe, False))))
    return out


async def _workers_epoch(root: Path, rows: int, key_bits: int, workers: int = 2) -> EpochRow:
    """Every party's work on ``workers`` accelerator worker processes reached directly: ``interfed node up``'s path.

    One pool for the three parties: on this machine they share its cores, as three nodes on it would.
    """
    pool = WorkerPool(workers)
    try:
        await asyncio.to_thread(pool.warm)
        clients = {n: AccelClient.on_workers(n, KeyStore.empty(), pool) for n in ("guest", "host", "arbiter")}
        seconds, sent, _ = await _epoch(root, rows, key_bits, clients, True)
    finally:
        pool.close()
    return EpochRow(f"the node's accelerator workers, {workers} (direct, as node up runs them)", seconds, sent, None)


async def _service_epoch(root: Path, bootstrap: str, rows: int, key_bits: int) -> EpochRow:
    """The guest's and host's public-key work through one 2-worker accelerator service on the broker."""
    settings = fresh_settings(heartbeat_interval=5.0, unreachable_after=60.0)
    async with federation(root / "fed", bootstrap, 2, settings=settings) as fed:
        one, two = fed.member("party0"), fed.member("party1")
        service = AccelService(
            open_context(one.home, one.bus, settings), workers=2, keys=KeyStore.of_home(one.home.path)
        )
        async with (
            running(service),
            AccelClient.connect(open_context(one.home, one.bus, settings), "party0", timeout=600, retries=0) as g,
            AccelClient.connect(open_context(two.home, two.bus, settings), "party0", timeout=600, retries=0) as h,
        ):
            remote = {"guest": g, "host": h, "arbiter": AccelClient.in_process("arbiter")}
            seconds, sent, _ = await _epoch(root, rows, key_bits, remote, True)
    return EpochRow("accelerator service, 2 workers, through the broker (gmpy2, DJN, packed)", seconds, sent, None)


async def run_psi(root: Path, size: int, workers: int) -> tuple[float, int]:
    """Seconds and bytes of one PSI with ``size`` ids per side, 80% of them common."""
    guest = root / f"psi-guest-{size}.csv"
    host = root / f"psi-host-{size}.csv"
    guest.write_text("id\n" + "".join(f"id{i}\n" for i in range(size)))
    shift = size // 5
    host.write_text("id\n" + "".join(f"id{i}\n" for i in range(shift, size + shift)))
    params = {"result_to": "all", "batch_size": 8192, "truncate_bits": 128, "workers": workers}
    accel = AccelClient.in_process()
    traffic = Traffic()
    parties = [
        Party("guest", "guest", {"data": LocalDataset("g", guest, {"id": "id"})}, accel, params),
        Party("host", "host", {"data": LocalDataset("h", host, {"id": "id"})}, accel, params),
    ]
    started = time.perf_counter()
    results = await run_local(PSI(), parties, round_deadline=3600, traffic=traffic)
    seconds = time.perf_counter() - started
    if int(results["guest"].metrics["intersection"]) != size - shift:
        raise RuntimeError("PSI found the wrong intersection")
    return seconds, traffic.total


def machine() -> dict[str, object]:
    return {"cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}
