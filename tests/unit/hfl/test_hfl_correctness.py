"""Issue 5 part 6: FedAvg on digits and breast-cancer across 3 parties matches centralised training.

The centralised baseline is the same numpy model trained on the pooled rows with the same
optimiser and schedule: full-batch gradient descent for ``epochs`` steps (one local epoch
per round), where FedAvg's sample-weighted average of one local step IS one pooled step, so
the two must agree whatever the split (IID or skewed by label); and mini-batch SGD with
several local epochs on IID data (logistic regression), where they differ in the order of steps only. Accuracy is
measured on a held-out quarter of the data. Secure aggregation (both schemes) must give
the plaintext FedAvg model to within 1e-6.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from hfl_data import datasets, load, roles, split

from services.executor.algorithms.hfl.local import LocalJob
from services.executor.algorithms.hfl.models import ModelSpec

CASES = [
    # dataset, model, rounds, learning rate
    ("breast_cancer", "logreg", 30, 0.5),
    ("digits", "logreg", 30, 0.5),
    ("digits", "mlp", 40, 0.5),
    ("breast_cancer", "mlp", 30, 0.5),
]


def centralised(data_name: str, model: str, *, rounds: int, lr: float, local_epochs: int, batch_size: int) -> float:
    data = load(data_name)
    spec = ModelSpec(model, data.x.shape[1], data.classes)
    w = spec.train(
        spec.init(7),
        data.x,
        data.y,
        epochs=rounds * local_epochs,
        batch_size=batch_size,
        learning_rate=lr,
        rng=np.random.default_rng(0),
    )
    return spec.accuracy(w, data.x_test, data.y_test)


def federated(tmp_path: Path, data_name: str, how: str, params: dict[str, object]) -> tuple[float, np.ndarray]:
    data = load(data_name)
    job = LocalJob(roles(3), {"classes": data.classes, **params}, datasets(tmp_path, data, split(data, 3, how)))
    results = asyncio.run(job.run())
    spec = ModelSpec(str(params["model"]), data.x.shape[1], data.classes)
    flat = np.concatenate([t.reshape(-1) for t in results["agg"].model.values()])
    assert all(
        np.array_equal(flat, np.concatenate([t.reshape(-1) for t in results[p].model.values()]))
        for p in ("p0", "p1", "p2")
    ), "every party ends with the aggregator's model"
    return spec.accuracy(flat, data.x_test, data.y_test), flat


@pytest.mark.parametrize("how", ["iid", "label"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_full_batch_fedavg_matches_centralised_training(
    tmp_path: Path, case: tuple[str, str, int, float], how: str
) -> None:
    data_name, model, rounds, lr = case
    params = {"model": model, "epochs": rounds, "learning_rate": lr, "local_epochs": 1, "batch_size": 0}
    fed, _ = federated(tmp_path, data_name, how, params)
    central = centralised(data_name, model, rounds=rounds, lr=lr, local_epochs=1, batch_size=0)
    assert central > 0.85, f"the baseline itself must learn ({central:.3f})"
    assert abs(fed - central) <= 0.01, f"federated {fed:.4f} vs centralised {central:.4f}"


# Logistic regression only: for the (non-convex) MLP the order of mini-batch steps moves the
# result by more (digits: 1.8 points measured), so no such claim is made for it.
@pytest.mark.parametrize(("data_name", "model"), [("breast_cancer", "logreg"), ("digits", "logreg")])
def test_minibatch_fedavg_on_iid_data_is_within_a_point_of_centralised(
    tmp_path: Path, data_name: str, model: str
) -> None:
    rounds, local_epochs, batch = 20, 2, 32
    params = {
        "model": model,
        "epochs": rounds,
        "learning_rate": 0.05,
        "local_epochs": local_epochs,
        "batch_size": batch,
    }
    fed, _ = federated(tmp_path, data_name, "iid", params)
    central = centralised(data_name, model, rounds=rounds, lr=0.05, local_epochs=local_epochs, batch_size=batch)
    assert central > 0.85
    assert abs(fed - central) <= 0.01, f"federated {fed:.4f} vs centralised {central:.4f}"


@pytest.mark.parametrize("scheme", ["masks", "paillier"])
@pytest.mark.parametrize(
    ("data_name", "model", "how"), [("digits", "logreg", "label"), ("breast_cancer", "mlp", "iid")]
)
def test_secure_aggregation_gives_the_plaintext_model(
    tmp_path: Path, scheme: str, data_name: str, model: str, how: str
) -> None:
    params = {"model": model, "epochs": 5, "learning_rate": 0.5, "paillier_bits": 1024}
    _, plain = federated(tmp_path, data_name, how, {**params, "secure_aggregation": "none"})
    _, secured = federated(tmp_path, data_name, how, {**params, "secure_aggregation": scheme})
    assert np.max(np.abs(plain - secured)) <= 1e-6
