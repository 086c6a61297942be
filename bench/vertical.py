"""``interfed bench vertical``: one epoch of hetero LR on four Paillier paths, and PSI at three sizes.

The same ``HeteroLR`` component runs the same epoch (same data, batches and seed) with:
the accelerator in-process on one thread (gmpy2 backend, DJN encryption, packed gradients),
on two accelerator worker processes reached directly (what ``interfed node up`` runs by
default), through the accelerator service on a broker (the guest's and host's public-key work;
the arbiter decrypts in its own process there), and ``phe`` in-process (textbook encryption,
no packing: what a deployment without the accelerator does).

The epoch's core (per batch: encrypt the residuals d, X^T [[d]], decrypt) also runs alone on the
same shapes on our paths and in HEU (SecretFlow's C++ library, the ``bench`` extra) with
Okamoto-Uchiyama and with Paillier, so the two can be compared in one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
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
from services.executor.algorithms.hetero_lr.component import X_PRECISION, HeteroLR
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


@contextlib.asynccontextmanager
async def _service_clients(folder: Path, bootstrap: str, members: int) -> AsyncIterator[list[AccelClient]]:
    """A federation of ``members`` parties on the broker whose party0 runs a 2-worker accelerator service, and each
    member's client of that service (requests and replies through the broker)."""
    settings = fresh_settings(heartbeat_interval=5.0, unreachable_after=60.0)
    async with federation(folder, bootstrap, members, settings=settings) as fed, contextlib.AsyncExitStack() as stack:
        owner = fed.member("party0")
        service = AccelService(
            open_context(owner.home, owner.bus, settings), workers=CORE_WORKERS, keys=KeyStore.of_home(owner.home.path)
        )
        await stack.enter_async_context(running(service))
        yield [
            await stack.enter_async_context(
                AccelClient.connect(open_context(m.home, m.bus, settings), "party0", timeout=600, retries=0)
            )
            for m in fed.members
        ]


async def _service_epoch(root: Path, bootstrap: str, rows: int, key_bits: int) -> EpochRow:
    """The guest's and host's public-key work through one 2-worker accelerator service on the broker."""
    async with _service_clients(root / "fed", bootstrap, 2) as (guest, host):
        remote = {"guest": guest, "host": host, "arbiter": AccelClient.in_process("arbiter")}
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


# -- the epoch's core beside HEU (issue 14) --------------------------------------------------------------

#: The aim: our service path at least this many times faster than HEU's Okamoto-Uchiyama on the core.
HEU_AIM = 3.0
HEU_MISSING = "HEU rows skipped: HEU is not installed; pip install -e '.[bench]' (sf-heu: CPython 3.11 wheels)"
CORE_FEATURES = 20  # the host's columns in the epoch above
CORE_BATCH = 256
CORE_WORKERS = 2  # the worker pool's and the service's processes
D_BITS = 32  # the residuals' fractional bits (the accelerator's default precision); X's are the component's
#: HEU's schemes, by their ``phe.SchemaType`` name.
HEU_SCHEMES = {"OU": "Okamoto-Uchiyama", "ZPaillier": "Paillier"}


@dataclass(frozen=True)
class CoreRow:
    """One path's epoch core: wall seconds, this process's CPU seconds (None where worker processes compute),
    and its largest error against numpy's float X^T d as a fraction of the fixed-point bound (at most 1)."""

    path: str
    seconds: float
    cpu_seconds: float | None
    error: float


def core_data(rows: int, seed: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """The host's features (rows x 20, standardised as parties standardise theirs) and residuals d = u/4 - y/2."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, CORE_FEATURES))
    d = 0.25 * rng.standard_normal(rows) - 0.5 * rng.choice([-1.0, 1.0], rows)
    return x, d


def _core_batches(rows: int) -> list[slice]:
    return [slice(i, min(i + CORE_BATCH, rows)) for i in range(0, rows, CORE_BATCH)]


def checked(path: str, x: np.ndarray, d: np.ndarray, results: list[np.ndarray]) -> float:
    """The largest error of the decrypted X^T d per batch as a fraction of its fixed-point bound; raises past it.

    X is encoded with 2^-10 and d with 2^-32 steps, rounded or truncated: each product is then off by
    less than |d| 2^-10 + |x| 2^-32 + 2^-42, and a batch's sum by at most the sum of these, so a
    wrong computation (a lost term, a wrong sign, a bad decoding) cannot pass.
    """
    worst = 0.0
    batches = _core_batches(len(d))
    if len(results) != len(batches):
        raise RuntimeError(f"{path}: {len(results)} results for {len(batches)} batches")
    for rows, got in zip(batches, results, strict=True):
        xb, db = x[rows], d[rows]
        exact = xb.T @ db
        step_x, step_d = 2.0**-X_PRECISION, 2.0**-D_BITS
        bound = step_x * np.abs(db).sum() + step_d * np.abs(xb).sum(axis=0) + len(db) * step_x * step_d + 1e-9
        values = np.asarray(got, dtype=np.float64).reshape(-1)
        if values.shape != exact.shape:
            raise RuntimeError(f"{path}: X^T d has shape {values.shape}, not {exact.shape}")
        error = np.abs(values - exact)
        if np.any(error > bound):
            raise RuntimeError(f"{path}: X^T d is off by {error.max():.3g}, past its fixed-point bound")
        worst = max(worst, float(np.max(error / bound)))
    return worst


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """HEU's C++ logger writes to file descriptor 1: send it to stderr, so stdout keeps only the bench's tables."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def heu_core(x: np.ndarray, d: np.ndarray, scheme: str, key_bits: int) -> CoreRow:
    """The core in HEU's numpy API on all cores: per batch encrypt d, X^T [[d]] by its matmul, decrypt and decode.

    Key generation (HEU's setup) and one warm-up encryption are left out of the time; encoding X and
    d is in it, as it is in ours. Raises ImportError without the ``bench`` extra.
    """
    from heu import numpy as hnp  # the bench extra: sf-heu
    from heu import phe

    with _stdout_to_stderr():
        kit = hnp.setup(getattr(phe.SchemaType, scheme), key_bits)
        encryptor, evaluator, decryptor = kit.encryptor(), kit.evaluator(), kit.decryptor()
        d_code, x_code = kit.float_encoder(2**D_BITS), kit.float_encoder(2**X_PRECISION)
        out_code = kit.float_encoder(2 ** (D_BITS + X_PRECISION))  # a product carries both scales
        encryptor.encrypt(kit.array(np.zeros((1, 1)), d_code))
        results = []
        started, cpu = time.perf_counter(), time.process_time()
        for rows in _core_batches(len(d)):
            encrypted = encryptor.encrypt(kit.array(d[rows].reshape(-1, 1), d_code))
            product = evaluator.matmul(kit.array(np.ascontiguousarray(x[rows].T), x_code), encrypted)
            results.append(decryptor.decrypt(product).to_numpy(out_code))
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    path = f"HEU {HEU_SCHEMES[scheme]} (numpy API)"
    return CoreRow(path, seconds, cpu_seconds, checked(path, x, d, results))


async def our_core(
    x: np.ndarray, d: np.ndarray, worker: AccelClient, arbiter: AccelClient, key_bits: int
) -> tuple[float, float, list[np.ndarray]]:
    """The core through ``worker`` (the party's accelerator) under a key ``arbiter`` (the key owner's accelerator,
    on the same kind of path: as ``node up`` runs every node's work) makes and decrypts with: DJN encryption as
    the component's [[u_h]], X at the component's precision."""
    key = await arbiter.generate_key(key_bits)
    await worker.encrypt(key, [0.0], D_BITS, fast=True)  # warm-up: the worker's backend and tables for this key
    results = []
    started, cpu = time.perf_counter(), time.process_time()
    for rows in _core_batches(len(d)):
        encrypted = await worker.encrypt(key, d[rows], D_BITS, fast=True)
        product = await worker.transpose_dot(encrypted, x[rows], precision=X_PRECISION)
        results.append(await arbiter.decrypt(product))
    return time.perf_counter() - started, time.process_time() - cpu, results


async def _service_core(root: Path, bootstrap: str, x: np.ndarray, d: np.ndarray, key_bits: int) -> CoreRow:
    """The core through a party's own accelerator service (2 workers) on the broker, the party owning the key too."""
    async with _service_clients(root / "fed-core", bootstrap, 1) as (client,):
        seconds, _, results = await our_core(x, d, client, client, key_bits)
    path = f"ours, accelerator service ({CORE_WORKERS} workers, broker)"
    return CoreRow(path, seconds, None, checked(path, x, d, results))


async def run_core(
    root: Path, bootstrap: str | None, rows: int, key_bits: int, report: Report
) -> tuple[list[CoreRow], str | None]:
    """The epoch core on our paths (in-process, a worker pool, the service unless ``bootstrap`` is None) and in
    HEU with each of its schemes; the rows, and a line saying why HEU's are missing if they are."""
    x, d = core_data(rows)
    out = []
    report("epoch core: accelerator in-process", 0.0)
    seconds, cpu, results = await our_core(
        x, d, AccelClient.in_process("party"), AccelClient.in_process("arbiter"), key_bits
    )
    path = "ours, in-process (one core)"
    out.append(CoreRow(path, seconds, cpu, checked(path, x, d, results)))
    report(f"epoch core: accelerator, a pool of {CORE_WORKERS} workers", 0.2)
    pool = WorkerPool(CORE_WORKERS)
    try:
        await asyncio.to_thread(pool.warm)
        party, arbiter = (AccelClient.on_workers(n, KeyStore.empty(), pool) for n in ("party", "arbiter"))
        seconds, _, results = await our_core(x, d, party, arbiter, key_bits)
    finally:
        pool.close()
    path = f"ours, the node's {CORE_WORKERS} accelerator workers (direct, as node up runs them)"
    out.append(CoreRow(path, seconds, None, checked(path, x, d, results)))
    if bootstrap is not None:
        report("epoch core: accelerator service", 0.4)
        out.append(await _service_core(root, bootstrap, x, d, key_bits))
    try:
        import heu  # noqa: F401  # the bench extra: checked once, before any scheme runs
    except ImportError:
        return out, HEU_MISSING
    for done, scheme in enumerate(HEU_SCHEMES):
        report(f"epoch core: HEU {HEU_SCHEMES[scheme]}", 0.6 + 0.2 * done)
        out.append(await asyncio.to_thread(heu_core, x, d, scheme, key_bits))
    return out, None
