"""Data for the HFL tests: scikit-learn's shipped datasets (no download), standardised, split across parties."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

from services.executor.algorithms.hfl.local import write_dataset
from services.executor.api import LocalDataset

ROLES_3 = {"guest": ["p0"], "host": ["p1", "p2"], "aggregator": ["agg"]}


@dataclass(frozen=True)
class Data:
    """A train/test split; features standardised with the training set's statistics (public preprocessing)."""

    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.float64]
    y_test: npt.NDArray[np.int64]
    classes: int


def load(name: str) -> Data:
    x, y = load_digits(return_X_y=True) if name == "digits" else load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-9
    return Data((x_train - mean) / std, y_train, (x_test - mean) / std, y_test, int(y.max()) + 1)


def split(data: Data, parties: int, how: str) -> list[npt.NDArray[np.int64]]:
    """Row indices per party: ``iid`` shuffled evenly, ``label`` sorted by label so each party sees few labels."""
    shuffled = np.random.default_rng(0).permutation(len(data.y))
    order = shuffled if how == "iid" else np.argsort(data.y, kind="stable")
    return [np.sort(part) for part in np.array_split(order, parties)]


def datasets(root: Path, data: Data, parts: list[npt.NDArray[np.int64]]) -> dict[str, LocalDataset]:
    return {f"p{i}": write_dataset(root / f"p{i}.csv", data.x[rows], data.y[rows]) for i, rows in enumerate(parts)}


def roles(parties: int) -> dict[str, list[str]]:
    names = [f"p{i}" for i in range(parties)]
    return {"guest": names[:1], "host": names[1:], "aggregator": ["agg"]}
