"""Running one component's parties together in one process, over ``LocalChannel``, counting the bytes sent.

For unit tests of an algorithm's maths, the benchmarks and the vertical pipeline summary;
under the executor the same components run on the real broker instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from accel.client import AccelClient
from services.executor.api import (
    Checkpoints,
    Component,
    ComponentResult,
    JobContext,
    LocalChannel,
    LocalDataset,
    LocalHub,
    MemoryCheckpoints,
    Message,
)


@dataclass
class Traffic:
    """Bytes and messages sent over the channel, per tag (payload bytes: tensors' nbytes and byte strings)."""

    bytes_by_tag: dict[str, int] = field(default_factory=dict)
    messages: int = 0

    @property
    def total(self) -> int:
        return sum(self.bytes_by_tag.values())

    def count(self, tag: str, message: Message, copies: int) -> None:
        size = sum(v.nbytes if isinstance(v, np.ndarray) else len(v) for v in message.values())
        self.bytes_by_tag[tag] = self.bytes_by_tag.get(tag, 0) + size * copies
        self.messages += copies


class CountingChannel(LocalChannel):
    """A ``LocalChannel`` that adds what it sends to a shared ``Traffic``."""

    def __init__(self, hub: LocalHub, me: str, traffic: Traffic) -> None:
        super().__init__(hub, me)
        self.traffic = traffic

    async def send(self, to: str, tag: str, round_no: int, message: Message) -> None:
        self.traffic.count(tag, message, len(self.hub.resolve(to)))
        await super().send(to, tag, round_no, message)


@dataclass(frozen=True)
class Party:
    """One party of a local run: its node id, role, datasets, accelerator client, parameters and, to resume
    from what an earlier run saved, its checkpoints (default: fresh ones)."""

    node: str
    role: str
    inputs: Mapping[str, LocalDataset]
    accel: AccelClient
    params: Mapping[str, Any]
    checkpoints: Checkpoints | None = None


async def run_local(
    component: Component,
    parties: Sequence[Party],
    *,
    seed: int = 0,
    round_deadline: float = 120.0,
    traffic: Traffic | None = None,
) -> dict[str, ComponentResult]:
    """Every party's result by node id; the first failure of any party is raised (the others are cancelled)."""
    roles: dict[str, list[str]] = {}
    for party in parties:
        roles.setdefault(party.role, []).append(party.node)
    hub = LocalHub(roles)
    counted = traffic if traffic is not None else Traffic()
    contexts = [
        JobContext(
            job_id="local",
            me=p.node,
            role=p.role,
            roles=roles,
            params=p.params,
            inputs=p.inputs,
            channel=CountingChannel(hub, p.node, counted),
            accel=p.accel,
            checkpoints=p.checkpoints if p.checkpoints is not None else MemoryCheckpoints(),
            round_deadline=round_deadline,
            seed=seed,
        )
        for p in parties
    ]
    tasks = [asyncio.create_task(component.run(ctx)) for ctx in contexts]
    try:
        results = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return {p.node: r for p, r in zip(parties, results, strict=True)}
