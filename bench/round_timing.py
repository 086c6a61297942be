"""Where a round's time goes: each party's epoch reports, accelerator calls, sends and waits, timed from outside.

``instrumented`` wraps, for the length of a run, the methods every component's round goes through
(``BusChannel``/``LocalChannel`` ``send`` and ``gather``, ``AccelClient.request``) and the ``report``
callback the executor and ``run_local`` give each party, recording spans in a ``Recorder``; production
code is not changed. ``window`` turns one party's epoch reports into seconds per round without the job's
start-up (acceptance, key generation, the first epoch), and ``breakdown`` shares that window out per party.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from accel.client import AccelClient
from services.executor import service as executor_service
from services.executor.algorithms import local_run
from services.executor.api import JobContext, LocalChannel
from services.executor.transport import BusChannel

#: What a span timed: a call to the party's accelerator (by operation), a wait in gather or a send (by tag).
KINDS = ("accel", "gather", "send")


@dataclass(frozen=True)
class Span:
    """One call of one party: its kind (``KINDS``), the operation or tag, when it started and ended; for a send or a
    gather also the round and the peer (the node or role sent to, or gathered from)."""

    party: str
    kind: str
    name: str
    start: float
    end: float
    round: int = -1
    peer: str = ""


@dataclass
class Recorder:
    """The spans and the epoch reports (epoch, time) of every party in one run; at each report of ``cpu_of``, also
    the CPU seconds this process and its children have used (``tree_cpu``: milliseconds to read, so one party's)."""

    cpu_of: str | None = None
    spans: list[Span] = field(default_factory=list)
    reports: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    cpu: list[float | None] = field(default_factory=list)

    def report(self, party: str, epoch: int, at: float) -> None:
        self.reports.setdefault(party, []).append((epoch, at))
        if party == self.cpu_of:
            self.cpu.append(tree_cpu())

    def cpu_per_round(self, timed: Window) -> float | None:
        """CPU seconds a round of this process and its children (threads, accelerator workers, an embedded
        broker) between ``cpu_of``'s first and last report; None without /proc."""
        if len(self.cpu) < 2 or self.cpu[0] is None or self.cpu[-1] is None:
            return None
        return (self.cpu[-1] - self.cpu[0]) / timed.rounds


def tree_cpu() -> float | None:
    """User + system CPU seconds used so far by this process and every live process below it (from /proc; None on a
    system without it). A child that ended meanwhile takes its seconds with it: the bench's children live throughout."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text(encoding="ascii", errors="replace").rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        pid = int(entry.name)
        parent[pid], used[pid] = int(fields[1]), (int(fields[11]) + int(fields[12])) / tick  # ppid, utime + stime
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        below = [pid for pid, ppid in parent.items() if ppid in frontier and pid not in tree]
        tree.update(below)
        frontier = below
    return sum(used.get(pid, 0.0) for pid in tree)


@dataclass(frozen=True)
class Window:
    """The rounds between a party's first and last epoch report, and their time."""

    start: float
    end: float
    rounds: int

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def per_round(self) -> float:
        return self.seconds / self.rounds


def window(reports: Sequence[tuple[int, float]], rounds_per_epoch: int) -> Window:
    """The timed window of one party's epoch reports ((epoch, time), in order): from the first report to the last.

    Everything before the first report (the job's acceptance, key generation, the first epoch with its
    warm-up) is left out; the rounds counted are those of the epochs after the first reported one.
    """
    if len(reports) < 2:
        raise ValueError(f"{len(reports)} epoch report(s): timing rounds needs at least two epochs")
    (first, start), (last, end) = reports[0], reports[-1]
    if last <= first or end < start:
        raise ValueError(f"epoch reports out of order: epoch {first} at {start}, epoch {last} at {end}")
    return Window(start, end, (last - first) * rounds_per_epoch)


@dataclass(frozen=True)
class Share:
    """One party's time per round in one kind of call and one operation or tag (``calls``: per round too)."""

    party: str
    kind: str
    name: str
    calls: float
    seconds: float


def breakdown(spans: Sequence[Span], timed: Window) -> list[Share]:
    """Each (party, kind, name)'s seconds per round inside ``timed`` (spans clipped to it), and its calls per round
    (those starting inside it); then, per party, ``other``: the rest of the window, outside every timed call (its
    own Python: encoding, masks, numpy; and waiting for the event loop). A party's calls may overlap (side by side),
    so its shares may add up to more than the round. Sorted by party, then most time first."""
    seconds: dict[tuple[str, str, str], float] = {}
    calls: dict[tuple[str, str, str], int] = {}
    for s in spans:
        overlap = min(s.end, timed.end) - max(s.start, timed.start)
        if overlap <= 0 and not timed.start <= s.start < timed.end:
            continue
        key = (s.party, s.kind, s.name)
        seconds[key] = seconds.get(key, 0.0) + max(overlap, 0.0)
        calls[key] = calls.get(key, 0) + (timed.start <= s.start < timed.end)
    parties = sorted({party for party, _, _ in seconds})
    shares = [Share(*key, calls[key] / timed.rounds, seconds[key] / timed.rounds) for key in seconds]
    for party in parties:
        clipped = [(max(s.start, timed.start), min(s.end, timed.end)) for s in spans if s.party == party]
        busy = _covered([(a, b) for a, b in clipped if b > a])
        shares.append(Share(party, "other", "(not in a call)", 0.0, (timed.seconds - busy) / timed.rounds))
    return sorted(shares, key=lambda s: (s.party, -s.seconds))


def _covered(intervals: Sequence[tuple[float, float]]) -> float:
    """The length of the union of ``intervals``: a party's calls may run side by side (one time counted once)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


@dataclass(frozen=True)
class Hop:
    """One tag's messages as they travel: from the sender starting to send to the waiting receiver's gather
    returning (encoding, the broker, reassembly, waking up), over the messages whose receiver was already waiting."""

    tag: str
    count: int
    median: float


def hops(spans: Sequence[Span], timed: Window, roles: Mapping[str, str]) -> list[Hop]:
    """The ``Hop`` of every tag gathered inside ``timed`` (``roles``: node -> role, to find who a role is), in the
    order they were first received."""
    sends = {(s.party, s.peer, s.name, s.round): s for s in spans if s.kind == "send"}
    found: dict[str, list[float]] = {}
    for g in spans:
        if g.kind != "gather" or not timed.start <= g.start < timed.end:
            continue
        for sender in [node for node, role in roles.items() if role == g.peer] or [g.peer]:
            for to in (g.party, roles.get(g.party, g.party)):  # sent to the receiver, or to its role
                s = sends.get((sender, to, g.name, g.round))
                if s is not None and g.start <= s.start:  # the receiver waited for it before it was sent
                    found.setdefault(g.name, []).append(g.end - s.start)
                    break
    return [Hop(tag, len(times), statistics.median(times)) for tag, times in found.items()]


def _timed(
    recorder: Recorder, kind: str, original: Callable[..., Any], party: Callable[[Any], str]
) -> Callable[..., Any]:
    """``original`` (``request``, ``send`` or ``gather``) recording a span per call, named by its operation or tag."""

    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await original(self, *args, **kwargs)
        finally:
            end = time.perf_counter()
            if kind == "accel":
                recorder.spans.append(Span(party(self), kind, str(args[0]), start, end))
            else:  # (to or from_, tag, round_no, ...)
                recorder.spans.append(Span(party(self), kind, str(args[1]), start, end, int(args[2]), str(args[0])))

    return wrapper


def _reporting(recorder: Recorder) -> Callable[..., JobContext]:
    """``JobContext`` as the executor and ``run_local`` make it, its ``report`` also recording when it is called."""

    def make(**fields: Any) -> JobContext:
        inner: Callable[[int, Mapping[str, float]], None] | None = fields.pop("report", None)
        me = str(fields["me"])

        def report(epoch: int, metrics: Mapping[str, float]) -> None:
            recorder.report(me, epoch, time.perf_counter())
            if inner is not None:
                inner(epoch, metrics)

        return JobContext(**fields, report=report)

    return make


@contextlib.contextmanager
def instrumented(recorder: Recorder) -> Iterator[Recorder]:
    """Record every party's accelerator calls, sends, gathers and epoch reports into ``recorder`` while inside."""
    patches = [
        mock.patch.object(AccelClient, "request", _timed(recorder, "accel", AccelClient.request, _service_node)),
        *(
            mock.patch.object(cls, method, _timed(recorder, kind, getattr(cls, method), _me))
            for cls in (BusChannel, LocalChannel)
            for method, kind in (("send", "send"), ("gather", "gather"))
        ),
        mock.patch.object(executor_service, "JobContext", _reporting(recorder)),
        mock.patch.object(local_run, "JobContext", _reporting(recorder)),
    ]
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        yield recorder


def _service_node(client: Any) -> str:
    """The node whose accelerator a client reaches: the party itself (its own workers, or in-process)."""
    return str(client.service_node)


def _me(channel: Any) -> str:
    return str(channel.me)
