"""HFL's Paillier aggregation through the real accelerator service on the broker (AccelClient.connect).

The parties' rounds still travel on LocalChannel here (the executor's tests run components on
the ``rounds`` topic); what this checks is that every packed encryption and addition of a
secure-aggregation job, done by the accelerator service of another node over the broker,
gives the plaintext FedAvg model. Data are small (breast-cancer, 2 rounds, 1024-bit key).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accel.client import AccelClient
from accel.keystore import KeyStore
from mesh.node import open_context, running
from mesh.testing import fresh_settings
from services.accel.service import AccelService
from services.executor.algorithms.hfl.local import LocalJob, write_dataset
from services.testbed import federation

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]


def breast_cancer_parties(root: Path) -> dict[str, object]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    parts = np.array_split(np.random.default_rng(0).permutation(len(y))[:240], 3)
    return {f"p{i}": write_dataset(root / f"p{i}.csv", x[rows], y[rows]) for i, rows in enumerate(parts)}


async def test_paillier_aggregation_through_the_accelerator_service_equals_plaintext_fedavg(
    bootstrap: str, home_root: Path
) -> None:
    roles = {"guest": ["p0"], "host": ["p1", "p2"], "aggregator": ["agg"]}
    (home_root / "data").mkdir(parents=True)
    data = breast_cancer_parties(home_root / "data")
    params = {"model": "logreg", "classes": 2, "epochs": 2, "learning_rate": 0.5, "paillier_bits": 1024}
    plain = await LocalJob(roles, {**params, "secure_aggregation": "none"}, data).run()  # type: ignore[arg-type]

    settings = fresh_settings(heartbeat_interval=0.3, unreachable_after=3.0, max_record_bytes=16_384)
    async with federation(home_root, bootstrap, 2, settings=settings) as fed:
        server, other = fed.member("party0"), fed.member("party1")
        service = AccelService(open_context(server.home, server.bus, fed.settings), keys=KeyStore.empty())
        async with (
            running(service),
            AccelClient.connect(open_context(server.home, server.bus, fed.settings), "party0") as near,
            AccelClient.connect(open_context(other.home, other.bus, fed.settings), "party0") as far,
        ):
            clients = {"p0": near, "p1": far, "p2": far, "agg": far}
            job = LocalJob(roles, {**params, "secure_aggregation": "paillier"}, data, accel=clients.__getitem__)
            secured = await job.run()  # type: ignore[arg-type]
    for node in ("agg", "p1"):
        for name, tensor in plain[node].model.items():
            assert np.max(np.abs(tensor - secured[node].model[name])) <= 1e-6
