"""Secure-aggregation overhead of HFL rounds: plaintext, pairwise masks and packed Paillier, against parties and size.

Each configuration runs a FedAvg job (logistic regression, 10 classes, features chosen so
the model has the asked number of parameters, 40 synthetic rows per party) with every party
in this process on ``LocalHub``, and times a round from the aggregator's report of the one
before to its own report: local training, protection, aggregation and the answer (round 2 for
Paillier; the fastest of rounds 2-6 for the others, which take milliseconds). Paillier
work goes through ``AccelClient``: in-process, or with a broker, through one accelerator
service that every party uses (one machine, so all parties share its cores).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from accel.client import AccelClient
from accel.keystore import KeyStore
from mesh import logs
from mesh.node import open_context, running
from mesh.testing import fresh_settings
from services.accel.service import AccelService
from services.executor.algorithms.hfl.local import LocalJob, write_dataset
from services.testbed import federation

CLASSES = 10
ROWS = 40
SCHEMES = ("none", "masks", "paillier")

Report = Callable[[str], None]


@dataclass(frozen=True)
class Row:
    parties: int
    parameters: int
    seconds: dict[str, float]

    def ratio(self, scheme: str) -> float:
        return self.seconds[scheme] / self.seconds["none"]


def _features(parameters: int) -> int:
    return max(1, round(parameters / CLASSES) - 1)


async def _round_time(
    root: Path, parties: int, parameters: int, scheme: str, key_bits: int, accel: Callable[[str], AccelClient]
) -> float:
    names = [f"p{i}" for i in range(parties)]
    roles = {"guest": names[:1], "host": names[1:], "aggregator": ["agg"]}
    rng = np.random.default_rng(parties * parameters)
    features = _features(parameters)
    data = {
        n: write_dataset(
            root / f"{n}-{features}.csv", rng.normal(size=(ROWS, features)), rng.integers(0, CLASSES, ROWS)
        )
        for n in names
    }
    stamps: dict[int, float] = {}

    def report(node: str, round_no: int, _metrics: Mapping[str, float]) -> None:
        if node == "agg":
            stamps[round_no] = time.perf_counter()

    # the cheap schemes' rounds take milliseconds: time five and keep the fastest; Paillier's one
    rounds = 2 if scheme == "paillier" else 6
    params = {
        "model": "logreg",
        "classes": CLASSES,
        "epochs": rounds,
        "learning_rate": 0.1,
        "secure_aggregation": scheme,
        "paillier_bits": key_bits,
    }
    await LocalJob(roles, params, data, accel=accel, report=report, round_deadline=600).run()
    return min(stamps[r] - stamps[r - 1] for r in range(2, rounds + 1))


@contextlib.asynccontextmanager
async def _service(root: Path, bootstrap: str | None) -> AsyncIterator[Callable[[str], AccelClient]]:
    if bootstrap is None:
        yield AccelClient.in_process
        return
    settings = fresh_settings(heartbeat_interval=5.0, unreachable_after=30.0)
    async with federation(root / "fed", bootstrap, 1, settings=settings) as fed:
        member = fed.member("party0")
        service = AccelService(open_context(member.home, member.bus, settings), keys=KeyStore.empty())
        ctx = open_context(member.home, member.bus, settings)
        async with running(service), AccelClient.connect(ctx, "party0", timeout=900, retries=0) as client:
            yield lambda _node: client


async def run_hfl_bench(
    parties: list[int], sizes: list[int], key_bits: int, bootstrap: str | None, report: Report
) -> tuple[list[Row], dict[str, object]]:
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="interfed-bench-hfl-") as folder:
        root = Path(folder)
        logs.configure(path=root / "bench.jsonl")  # the services' logs, not on the table's terminal
        async with _service(root, bootstrap) as accel:
            for n in parties:
                for size in sizes:
                    seconds = {}
                    for scheme in SCHEMES:
                        report(f"{n} parties, {size} parameters: {scheme}")
                        seconds[scheme] = await _round_time(root, n, size, scheme, key_bits, accel)
                    rows.append(Row(n, (_features(size) + 1) * CLASSES, seconds))
    meta: dict[str, object] = {
        "key_bits": key_bits,
        "paillier_path": "accelerator service via broker" if bootstrap else "AccelClient in-process",
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    return rows, meta
