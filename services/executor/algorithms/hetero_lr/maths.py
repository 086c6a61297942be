"""The plaintext side of hetero LR: the batch schedule, the Taylor-approximated loss and gradient, the reference.

The federated run and ``centralised`` share these functions, so the centralised reference
trains with the same hyperparameters, the same batches, the same initial weights, the same
Taylor loss and the same stopping rule; only the arithmetic differs (fixed-point Paillier
versus float64).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Schedule:
    """The training hyperparameters every party runs with (the component's parameters)."""

    learning_rate: float
    alpha: float  # L2 penalty
    max_epochs: int
    batch_size: int  # -1: the whole set in one batch
    tol: float  # stop when the epoch loss changes by less than this
    seed: int

    @classmethod
    def of(cls, params: Mapping[str, Any], seed: int) -> Schedule:
        return cls(
            float(params["learning_rate"]),
            float(params["alpha"]),
            int(params["max_epochs"]),
            int(params["batch_size"]),
            float(params["tol"]),
            seed,
        )

    def batches(self, rows: int, epoch: int) -> list[npt.NDArray[np.int64]]:
        """The epoch's mini-batches: a permutation drawn from (seed, epoch), the same at every party."""
        order = np.random.default_rng([self.seed, epoch]).permutation(rows)
        size = rows if self.batch_size < 1 else self.batch_size
        return [order[i : i + size] for i in range(0, rows, size)]


def standardise(x: Array) -> Array:
    """Each column to mean 0, variance 1 (a party does this to its own columns; constant columns stay 0)."""
    std = x.std(axis=0)
    out: Array = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return out


def signed(labels: Array) -> Array:
    """Labels {0, 1} as {-1, +1}, the form the Taylor expansion is written in."""
    if not np.all(np.isin(labels, (0.0, 1.0))):
        raise ValueError("hetero LR needs binary labels 0/1")
    return 2.0 * labels - 1.0


def taylor_loss_sum(u: Array, y: Array) -> float:
    """sum_i log(1 + exp(-y_i u_i)) to second order: sum_i log 2 - y_i u_i / 2 + u_i^2 / 8."""
    return float(np.sum(LOG2 - 0.5 * y * u + 0.125 * u * u))


def residual(u: Array, y: Array) -> Array:
    """d = u/4 - y/2: the Taylor-approximated dloss/du."""
    return 0.25 * u - 0.5 * y


def with_intercept(x: Array) -> Array:
    return np.hstack([x, np.ones((x.shape[0], 1))])


@dataclass(frozen=True)
class Reference:
    """The centralised model: weights over all columns (the guest's intercept last) and the epoch losses."""

    weights: Array
    losses: list[float]


def centralised(x: Array, labels: Array, schedule: Schedule) -> Reference:
    """Logistic regression on all columns in one place, trained exactly as the federated protocol trains.

    ``x`` already holds every party's standardised columns and the intercept column.
    """
    y = signed(labels)
    w = np.zeros(x.shape[1])
    losses: list[float] = []
    penalised = np.ones(x.shape[1])
    penalised[-1] = 0.0  # the intercept is not penalised, as in the federated run
    for epoch in range(schedule.max_epochs):
        total = 0.0
        for rows in schedule.batches(x.shape[0], epoch):
            u = x[rows] @ w
            total += taylor_loss_sum(u, y[rows])
            gradient = x[rows].T @ residual(u, y[rows]) / len(rows) + schedule.alpha * penalised * w
            w = w - schedule.learning_rate * gradient
        losses.append(total / x.shape[0])
        if converged(losses, schedule.tol):
            break
    return Reference(w, losses)


def converged(losses: list[float], tol: float) -> bool:
    return len(losses) >= 2 and abs(losses[-2] - losses[-1]) < tol
