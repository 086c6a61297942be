"""Vertically split public datasets with partly overlapping ids, written as the parties' CSV files.

Used by the tests, the benchmark and the demo alike (one split, one file format).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from services.executor.api import LocalDataset


def write(
    path: Path, ids: Sequence[str], x: npt.NDArray[np.float64], y: npt.NDArray[np.float64] | None
) -> LocalDataset:
    names = [f"f{j}" for j in range(x.shape[1])]
    header = ["id", *names, *(["label"] if y is not None else [])]
    lines = [",".join(header)]
    for i, row in enumerate(x):
        cells = [ids[i], *(repr(float(v)) for v in row), *([str(int(y[i]))] if y is not None else [])]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    roles = {"id": "id", **dict.fromkeys(names, "feature"), **({"label": "label"} if y is not None else {})}
    return LocalDataset(path.stem, path, roles)


def vertical_split(
    folder: Path,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    columns: Sequence[Sequence[int]],
    *,
    absent: float = 0.2,
    seed: int = 7,
    names: Sequence[str] = (),
) -> list[LocalDataset]:
    """The guest (label + columns[0]) and one host per further column group; each side misses ``absent`` of the
    others' ids (rows of its own that the others lack), in its own shuffled order.

    Party p's file is ``folder/<names[p]>.csv`` (default ``party<p>``)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    ids = np.array([f"c{i:06d}" for i in range(n)])
    parties = []
    for p, cols in enumerate(columns):
        present = rng.random(n) >= absent  # each party lacks about ``absent`` of the rows
        rows = rng.permutation(np.flatnonzero(present))
        parties.append(
            write(
                folder / f"{names[p] if names else f'party{p}'}.csv",
                ids[rows].tolist(),
                x[rows][:, list(cols)],
                y[rows] if p == 0 else None,
            )
        )
    return parties
