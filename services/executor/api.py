"""What a component's code sees of a running job: its role, its data, the round channel, the accelerator.

This is the seam between the executor (which runs jobs: governance, transport, checkpoints)
and the algorithms (which only compute). A component is an object with ``async run(ctx)``;
everything it needs comes through ``JobContext``, so the same algorithm runs under the
executor on a real broker and, in unit tests of its maths, on ``LocalChannel``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from accel.client import AccelClient

#: One message of a round: named tensors (numpy arrays) and opaque byte strings (e.g. an
#: encoded ciphertext vector from ``accel.wire``). The transport keeps dtypes and shapes.
Message = Mapping[str, "npt.NDArray[Any] | bytes"]


class QuorumError(Exception):
    """Fewer parties answered by the deadline than the round needs: the round aborts, the job fails."""

    def __init__(self, tag: str, round_no: int, got: Sequence[str], needed: int) -> None:
        super().__init__(f"round {round_no} ({tag}): {len(got)} of the {needed} parties needed answered in time")
        self.tag, self.round_no, self.got, self.needed = tag, round_no, list(got), needed


class RoundChannel(Protocol):
    """Messages between the parties of one job, addressed to a node id or to a role (every party in it).

    A message is identified by (sender, tag, round): sending the same identity twice is
    harmless (receivers keep the first), which is what lets a restarted party re-send a round.
    """

    me: str

    async def send(self, to: str, tag: str, round_no: int, message: Message) -> None:
        """Send to node id ``to``, or to every party of role ``to``."""
        ...

    async def gather(
        self, from_: str, tag: str, round_no: int, *, deadline: float, quorum: int | None = None
    ) -> dict[str, Message]:
        """The (tag, round) messages from node ``from_`` or every party of role ``from_``, by sender.

        Waits until all have arrived or ``deadline`` (seconds from now) passes; then returns
        those that arrived if there are at least ``quorum`` (default: all), else raises QuorumError.
        """
        ...


@dataclass(frozen=True)
class LocalDataset:
    """A dataset of this party, used under a permit: its file stays here; its columns as the catalog describes them."""

    dataset_id: str
    path: Path
    #: column name -> role: "id", "feature" or "label" (the catalog's column roles)
    roles: Mapping[str, str]

    def load(self) -> tuple[npt.NDArray[Any] | None, npt.NDArray[np.float64], npt.NDArray[Any] | None, list[str]]:
        """(ids or None, features, labels or None, feature names) from the CSV file."""
        import csv

        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        names = [c for c, r in self.roles.items() if r == "feature"]
        id_col = next((c for c, r in self.roles.items() if r == "id"), None)
        label_col = next((c for c, r in self.roles.items() if r == "label"), None)
        x = np.array([[float(row[c]) for c in names] for row in rows], dtype=np.float64).reshape(len(rows), len(names))
        ids = np.array([row[id_col] for row in rows]) if id_col else None
        y = np.array([float(row[label_col]) for row in rows]) if label_col else None
        return ids, x, y, names


class Checkpoints(Protocol):
    """Per-job state a component saves at round boundaries, so a restarted party resumes (private to the node)."""

    def save(self, round_no: int, state: Mapping[str, npt.NDArray[Any] | bytes]) -> None: ...

    def latest(self) -> tuple[int, dict[str, npt.NDArray[Any] | bytes]] | None: ...


@dataclass
class MemoryCheckpoints:
    """Checkpoints in memory, for unit tests of algorithms."""

    saved: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def save(self, round_no: int, state: Mapping[str, Any]) -> None:
        self.saved.append((round_no, dict(state)))

    def latest(self) -> tuple[int, dict[str, Any]] | None:
        return self.saved[-1] if self.saved else None


@dataclass
class JobContext:
    """Everything a component may use while it runs one job as one party."""

    job_id: str
    me: str
    role: str
    #: role -> the node ids in it, in slot order (e.g. {"guest": ["bank"], "host": ["telco"], "arbiter": ["op"]})
    roles: Mapping[str, Sequence[str]]
    #: parameters, already validated against the component's parameter schema (defaults filled in)
    params: Mapping[str, Any]
    #: this party's input datasets by the component's input name
    inputs: Mapping[str, LocalDataset]
    channel: RoundChannel
    accel: AccelClient
    checkpoints: Checkpoints
    #: seconds each round may take before the parties that have not answered are dropped
    round_deadline: float = 60.0
    #: per-job deterministic seed: a resumed party re-sends exactly what it sent before
    seed: int = 0
    #: called after each round with its metrics (loss, accuracy...), for progress displays and the job status
    report: Callable[[int, Mapping[str, float]], None] = lambda _round, _metrics: None


#: The name of ``JobContext`` in the first release, kept for components written against it (one release). The
#: built-in components use it until their next version: their bytes are what their published version means.
TaskContext = JobContext


@dataclass(frozen=True)
class ComponentResult:
    """What a party's run produced: model tensors (released only by the parties' approval) and metrics."""

    model: Mapping[str, npt.NDArray[Any]]
    metrics: Mapping[str, float]


class Component(Protocol):
    async def run(self, ctx: JobContext) -> ComponentResult: ...


class LocalChannel:
    """Every party of a job in one process over asyncio queues: for unit tests of an algorithm's maths only.

    Integration tests run components under the executor, on the real broker.
    """

    def __init__(self, hub: LocalHub, me: str) -> None:
        self.hub, self.me = hub, me

    async def send(self, to: str, tag: str, round_no: int, message: Message) -> None:
        for node in self.hub.resolve(to):
            self.hub.inbox[node].setdefault((self.me, tag, round_no), message)
        async with self.hub.changed:
            self.hub.changed.notify_all()

    async def gather(
        self, from_: str, tag: str, round_no: int, *, deadline: float, quorum: int | None = None
    ) -> dict[str, Message]:
        senders = self.hub.resolve(from_)
        needed = len(senders) if quorum is None else quorum
        box = self.hub.inbox[self.me]

        def arrived() -> dict[str, Message]:
            return {s: box[(s, tag, round_no)] for s in senders if (s, tag, round_no) in box}

        async with self.hub.changed:
            with contextlib.suppress(TimeoutError):  # the deadline passed: judge what arrived
                await asyncio.wait_for(self.hub.changed.wait_for(lambda: len(arrived()) == len(senders)), deadline)
        got = arrived()
        if len(got) < needed:
            raise QuorumError(tag, round_no, sorted(got), needed)
        return got


class LocalHub:
    """The shared mailboxes of a ``LocalChannel`` job."""

    def __init__(self, roles: Mapping[str, Sequence[str]]) -> None:
        self.roles = roles
        self.inbox: dict[str, dict[tuple[str, str, int], Message]] = defaultdict(dict)
        self.changed = asyncio.Condition()

    def resolve(self, to: str) -> list[str]:
        return list(self.roles[to]) if to in self.roles else [to]

    def channel(self, me: str) -> LocalChannel:
        return LocalChannel(self, me)
