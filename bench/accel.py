"""Accelerator service benchmark: the same batches in-process, through a 1-worker and a 2-worker service.

One federation on one broker; party0 runs an accelerator with one worker process and
party1 one with two, both owning the same 2048-bit key (each serves its own node's
client, so the two never share a consumer group). For each operation and batch size the
three paths run side by side in turn, ``repeats`` times, and each keeps its best time
(the machine is shared, so the best is the least disturbed). Two ratios per row:

- **speedup** = time with 1 worker / time with 2 workers (aim: >= 1.7);
- **overhead** = time through the 1-worker service / in-process time - 1 (aim: <= 15%):
  what signing, chunking, the broker, verification and shipping to a worker cost on
  top of the same arithmetic on one core.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from accel import PublicKey, generate_keypair
from accel.client import AccelClient
from accel.keystore import KeyStore
from accel.vector import EncryptedVector
from mesh.node import open_context, running
from mesh.testing import fresh_settings
from services.accel.service import AccelService
from services.testbed import federation

SPEEDUP_AIM = 1.7
OVERHEAD_AIM = 0.15

Report = Callable[[str, float], None]


@dataclass(frozen=True)
class Row:
    operation: str
    batch: int
    in_process_s: float
    service_1_worker_s: float
    service_2_workers_s: float
    #: Every run's time per path (seconds), to show how disturbed the machine was.
    runs: dict[str, list[float]]

    @property
    def speedup(self) -> float:
        return self.service_1_worker_s / self.service_2_workers_s

    @property
    def overhead(self) -> float:
        return self.service_1_worker_s / self.in_process_s - 1

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "speedup_2_vs_1": self.speedup,
            "speedup_reached": self.speedup >= SPEEDUP_AIM,
            "overhead": self.overhead,
            "overhead_reached": self.overhead <= OVERHEAD_AIM,
        }


OPERATIONS = ("encrypt (key owner)", "multiply by 32-bit fixed-point scalars")


async def _operate(
    name: str,
    accel: AccelClient,
    key: PublicKey,
    values: npt.NDArray[np.float64],
    scalars: npt.NDArray[np.float64],
    encrypted: EncryptedVector,
) -> object:
    if name == OPERATIONS[0]:
        return await accel.encrypt(key, values)
    return await accel.mul_plain(encrypted, scalars, 32)


async def run_accel_bench(
    root: Path, bootstrap: str, key_bits: int, batches: list[int], repeats: int, report: Report
) -> tuple[list[Row], dict[str, object]]:
    """The figures, and what they were measured on."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    pair = generate_keypair(key_bits)
    settings = fresh_settings(heartbeat_interval=5.0, unreachable_after=30.0)
    rng = np.random.default_rng(7)
    async with federation(root, bootstrap, 2, settings=settings) as fed:
        one, two = fed.member("party0"), fed.member("party1")
        services = []
        for member, workers in ((one, 1), (two, 2)):
            keys = KeyStore.of_home(member.home.path)
            keys.add(pair)
            services.append(AccelService(open_context(member.home, member.bus, settings), workers=workers, keys=keys))
        local_keys = KeyStore.empty()
        local_keys.add(pair)
        local = AccelClient.in_process("party0", local_keys)
        async with (
            running(services[0]),
            running(services[1]),
            AccelClient.connect(open_context(one.home, one.bus, settings), "party0", timeout=600, retries=0) as c1,
            AccelClient.connect(open_context(two.home, two.bus, settings), "party1", timeout=600, retries=0) as c2,
        ):
            paths = {"in-process": local, "1 worker": c1, "2 workers": c2}
            rows = []
            for batch in batches:
                values = rng.uniform(-1, 1, batch)
                scalars = rng.uniform(-1, 1, batch)
                warm = await local.encrypt(pair.public_key, values[:64])
                await c1.mul_plain(warm, scalars[:64])  # a first request through each service, untimed
                await c2.mul_plain(warm, scalars[:64])
                encrypted = await local.encrypt(pair.public_key, values)
                for name in OPERATIONS:
                    times: dict[str, list[float]] = {path: [] for path in paths}
                    for repeat in range(repeats):
                        for path, accel in paths.items():
                            started = time.perf_counter()
                            await _operate(name, accel, pair.public_key, values, scalars, encrypted)
                            times[path].append(time.perf_counter() - started)
                            report(f"{name}, {batch}: {path}", (repeat + 1) / repeats)
                    best = {path: min(runs) for path, runs in times.items()}
                    rows.append(Row(name, batch, best["in-process"], best["1 worker"], best["2 workers"], times))
    meta: dict[str, object] = {
        "key_bits": key_bits,
        "load_average_before": load_before,
        "repeats": repeats,
        "cores": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    return rows, meta
