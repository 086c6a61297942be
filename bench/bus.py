"""Bus benchmark: verified events per second end to end, latency at a fixed offered load, resident memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from bench.publisher import offer
from mesh import events
from mesh.events import HEARTBEAT
from mesh.home import NodeConfig, NodeHome, create_federation
from mesh.node import connect, open_context, running
from mesh.service import Event, Service, handles
from mesh.settings import MeshSettings
from mesh.testing import eventually
from services.registry.service import RegistryService

Progress = Callable[[str, float], None]


@dataclass
class BusResult:
    events: int
    publish_per_second: float
    verify_apply_per_second: float
    end_to_end_per_second: float
    offered_rate: float
    ack_p50_ms: float
    ack_p99_ms: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    two_process_ack_p99_ms: float
    two_process_latency_p50_ms: float
    two_process_latency_p99_ms: float
    node_rss_mb: float | None
    bench_rss_mb: float

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


class _Sink(Service):
    """Applies heartbeats by counting them and noting when each one arrived."""

    name: ClassVar[str] = "bench-sink"
    topics: ClassVar[tuple[str, ...]] = ("registry", "heartbeats")  # heartbeats are read only where asked for

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.applied = 0
        self.latencies: list[float] = []
        self.measure = False
        self.done = asyncio.Event()
        self.done_at = 0.0
        self.target = 0

    @handles(HEARTBEAT)
    async def on_beat(self, ev: Event[events.Heartbeat]) -> None:
        self.applied += 1
        if self.measure:
            self.latencies.append(time.time() * 1000 - ev.envelope.issued_at)
        if self.applied >= self.target and not self.done.is_set():
            self.done_at = time.perf_counter()
            self.done.set()


@contextlib.asynccontextmanager
async def _member(root: Path, settings: MeshSettings, bootstrap: str) -> AsyncIterator[tuple[NodeHome, NodeHome]]:
    """A federation with one approved member, ready to beat."""
    op = create_federation(
        root / "operator",
        "bench",
        NodeConfig(node_id="operator", name="op", institution="bench", platform="interfed", role="operator"),
    )
    member = NodeHome.create(
        root / "member",
        NodeConfig(node_id="member", name="member", institution="bench", platform="bench"),
        op.federation_path,
    )
    async with connect(settings, bootstrap) as bus:
        reg_op = RegistryService(open_context(op, bus, settings), readonly=True)
        reg_member = RegistryService(open_context(member, bus, settings), readonly=True)
        async with running(reg_op), running(reg_member):
            contract = await reg_member.request_join()
            await eventually(lambda: contract in reg_op.directory.contracts, what="join request received")
            await reg_op.approve(contract)
            await eventually(member.cert_path.exists, what="certificate stored")
    yield op, member


async def run_bus_bench(
    root: Path,
    settings: MeshSettings,
    bootstrap: str,
    events: int,
    rate: float,
    seconds: float,
    progress: Progress,
) -> BusResult:
    beat = {"node_id": "member", "interval_ms": 1000}
    async with _member(root, settings, bootstrap) as (op, member), connect(settings, bootstrap) as bus:
        pub = open_context(member, bus, settings).publisher

        async def publish_burst(count: int, phase: str) -> None:
            window = 256
            for first in range(0, count, window):
                batch = min(window, count - first)
                await asyncio.gather(
                    *(pub.publish("heartbeats", HEARTBEAT, beat, subject="member") for _ in range(batch))
                )
                progress(phase, (first + batch) / count)

        # 1. Sign, encode and produce (acks=all), nothing consuming.
        started = time.perf_counter()
        await publish_burst(events, "publish")
        publish_rate = events / (time.perf_counter() - started)
        # 2. A fresh service replays them all: consume, verify, decode, apply (what a restart costs).
        sink = _Sink(open_context(op, bus, settings), readonly=True)
        sink.target = events
        started = time.perf_counter()
        async with running(sink, timeout=300):
            await asyncio.wait_for(sink.done.wait(), 300)
            progress("verify", 1.0)
            apply_rate = events / (sink.done_at - started)
            # 3. Both at once in this one process: the end-to-end rate on one core.
            sink.done.clear()
            sink.target = sink.applied + events
            started = time.perf_counter()
            await publish_burst(events, "end to end")
            await asyncio.wait_for(sink.done.wait(), 300)
            end_to_end = events / (sink.done_at - started)
            # 4. Latency at a steady offered load, each event timed from issue to apply.
            total = int(rate * seconds)
            sink.done.clear()
            sink.target = sink.applied + total
            sink.measure = True
            acks = await offer(pub, "member", rate, total, lambda done: progress("latency", done))
            await asyncio.wait_for(sink.done.wait(), 120)
            progress("latency", 1.0)
            one_process = sorted(sink.latencies)
            # 5. The same load from another process, as another party would send it.
            sink.done.clear()
            sink.latencies = []
            sink.target = sink.applied + total
            child_acks = await _publish_from_another_process(member, settings, bootstrap, rate, total)
            await asyncio.wait_for(sink.done.wait(), 120)
            progress("two processes", 1.0)
    lat, ack, two = one_process, sorted(acks), sorted(sink.latencies)
    return BusResult(
        events=events,
        publish_per_second=round(publish_rate, 1),
        verify_apply_per_second=round(apply_rate, 1),
        end_to_end_per_second=round(end_to_end, 1),
        offered_rate=rate,
        ack_p50_ms=round(statistics.median(ack), 2),
        ack_p99_ms=round(ack[int(len(ack) * 0.99) - 1], 2),
        latency_p50_ms=round(statistics.median(lat), 2),
        latency_p99_ms=round(lat[int(len(lat) * 0.99) - 1], 2),
        latency_max_ms=round(lat[-1], 2),
        two_process_ack_p99_ms=round(child_acks[int(len(child_acks) * 0.99) - 1], 2),
        two_process_latency_p50_ms=round(statistics.median(two), 2),
        two_process_latency_p99_ms=round(two[int(len(two) * 0.99) - 1], 2),
        node_rss_mb=node_rss_mb(member, bootstrap),
        bench_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )


async def _publish_from_another_process(
    member: NodeHome, settings: MeshSettings, bootstrap: str, rate: float, total: int
) -> list[float]:
    """Run the offered load in a child process; return its acknowledgement latencies (ms), sorted."""
    env = {**os.environ, "INTERFED_TOPIC_PREFIX": settings.topic_prefix}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.publisher",
        str(member.path),
        bootstrap,
        str(rate),
        str(total),
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench publisher exited {proc.returncode}")
    return sorted(json.loads(out))


def node_rss_mb(home: NodeHome, bootstrap: str, settle: float = 3.0) -> float | None:
    """Resident memory of a real `interfed node up` process for ``home`` once it is running."""
    env = {**os.environ, "INTERFED_BOOTSTRAP": bootstrap}
    proc = subprocess.Popen(
        [sys.executable, "-m", "interfed", "node", "up", "--home", str(home.path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(settle)
        if proc.poll() is not None:
            return None
        status = Path(f"/proc/{proc.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return round(kb / 1024, 1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
