"""Run one HFL job with every party in this process on ``LocalHub``: the unit tests' and the benchmark's harness.

This exercises the component's maths and message flow only; jobs on the real broker go
through the executor. Each party's data is written to a CSV file, as the catalog would
describe it, so the component reads it exactly as it does under the executor.
"""

from __future__ import annotations

import asyncio
import csv
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from accel import AccelClient
from services.executor.api import (
    ComponentResult,
    LocalChannel,
    LocalDataset,
    LocalHub,
    MemoryCheckpoints,
    Message,
    TaskContext,
)

from .component import FedAvg


def write_dataset(path: Path, x: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> LocalDataset:
    """``x`` and ``y`` as a CSV file with columns f0..f{d-1} (features) and label."""
    names = [f"f{i}" for i in range(x.shape[1])]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*names, "label"])
        for row, label in zip(x.tolist(), y.tolist(), strict=True):
            writer.writerow([*(repr(v) for v in row), int(label)])
    return LocalDataset(path.stem, path, {**dict.fromkeys(names, "feature"), "label": "label"})


class FilteredChannel(LocalChannel):
    """A LocalChannel that loses the messages ``lost(sender, tag, round)`` says: a party that misses deadlines."""

    def __init__(self, hub: LocalHub, me: str, lost: Callable[[str, str, int], bool]) -> None:
        super().__init__(hub, me)
        self.lost = lost

    async def send(self, to: str, tag: str, round_no: int, message: Message) -> None:
        if not self.lost(self.me, tag, round_no):
            await super().send(to, tag, round_no, message)


@dataclass
class LocalJob:
    """The parties of one job; ``checkpoints`` survive between runs (to test resuming)."""

    roles: Mapping[str, Sequence[str]]
    params: Mapping[str, Any]
    datasets: Mapping[str, LocalDataset]
    seed: int = 7
    round_deadline: float = 30.0
    accel: Callable[[str], AccelClient] = AccelClient.in_process
    checkpoints: dict[str, MemoryCheckpoints] = field(default_factory=dict)
    lost: Callable[[str, str, int], bool] = lambda _sender, _tag, _round: False
    #: called with (node, round, metrics) after each round of each node
    report: Callable[[str, int, Mapping[str, float]], None] = lambda _node, _round, _metrics: None

    async def run(self, hub: LocalHub | None = None) -> dict[str, ComponentResult]:
        """Every node's result; the first failure (e.g. QuorumError) is raised after all have ended."""
        hub = hub or LocalHub(self.roles)
        nodes = [(role, node) for role, members in self.roles.items() for node in members]
        contexts = [
            TaskContext(
                job_id="job-hfl",
                me=node,
                role=role,
                roles=self.roles,
                params=self.params,
                inputs={"train": self.datasets[node]} if node in self.datasets else {},
                channel=FilteredChannel(hub, node, self.lost),
                accel=self.accel(node),
                checkpoints=self.checkpoints.setdefault(node, MemoryCheckpoints()),
                round_deadline=self.round_deadline,
                seed=self.seed,
                report=functools.partial(self.report, node),
            )
            for role, node in nodes
        ]
        results = await asyncio.gather(*(FedAvg().run(ctx) for ctx in contexts), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return {node: r for (_, node), r in zip(nodes, results, strict=True) if isinstance(r, ComponentResult)}
