"""A steady offered load of heartbeats: the sending party of the bus benchmark's latency phases.

``python -m bench.publisher HOME BOOTSTRAP RATE TOTAL`` runs it as another process (as another
party would send) and prints the acknowledgement latencies (ms) as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mesh import logs
from mesh.events import HEARTBEAT
from mesh.home import NodeHome
from mesh.node import connect, open_context
from mesh.publisher import Publisher
from mesh.settings import load_settings


async def offer(
    pub: Publisher, node_id: str, rate: float, total: int, progress: Callable[[float], None] | None = None
) -> list[float]:
    """Publish ``total`` heartbeats at ``rate``/s on schedule (not one acknowledgement after another);
    return each one's issue-to-acknowledgement time in ms."""
    beat = {"node_id": node_id, "interval_ms": 1000}
    acks: list[float] = []

    async def one() -> None:
        env = await pub.publish("heartbeats", HEARTBEAT, beat, subject=node_id)
        acks.append(time.time() * 1000 - env.issued_at)

    start = time.perf_counter()
    sends: list[asyncio.Task[None]] = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sends.append(asyncio.create_task(one()))
        if progress is not None and i % 100 == 0:
            progress(i / total)
    await asyncio.gather(*sends)
    return acks


async def _run(home: NodeHome, bootstrap: str, rate: float, total: int) -> list[float]:
    settings = load_settings()
    async with connect(settings, bootstrap) as bus:
        return await offer(open_context(home, bus, settings).publisher, home.config().node_id, rate, total)


def main() -> None:
    home, bootstrap, rate, total = NodeHome(Path(sys.argv[1])), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    logs.configure(path=home.log_path / "bench-publisher.jsonl")
    print(json.dumps(asyncio.run(_run(home, bootstrap, rate, total))))


if __name__ == "__main__":
    main()
