"""The service base's lifecycle on a real broker: catching up, clean stop, and no silent death of background work."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mesh.node import connect, open_context
from mesh.service import Service
from mesh.testing import fresh_settings
from services.registry.service import RegistryService
from services.testbed import create_homes, federation

pytestmark = [pytest.mark.broker, pytest.mark.timeout(60)]


class Failing(Service):
    name: ClassVar[str] = "failing"

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [self._boom()]

    async def _boom(self) -> None:
        raise RuntimeError("background work failed")


async def test_a_failed_background_task_stops_the_service_with_its_error(bootstrap: str, home_root: Path) -> None:
    settings = fresh_settings()
    operator = create_homes(home_root, [])[0]
    async with connect(settings, bootstrap) as bus:
        service = Failing(open_context(operator, bus, settings))
        with pytest.raises(RuntimeError, match="background work failed"):
            await asyncio.wait_for(service.run(asyncio.Event()), 30)


async def test_a_service_stops_cleanly_when_asked(bootstrap: str, home_root: Path) -> None:
    settings = fresh_settings()
    operator = create_homes(home_root, [])[0]
    async with connect(settings, bootstrap) as bus:
        service = Service(open_context(operator, bus, settings))
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        await asyncio.wait_for(service.caught_up.wait(), 30)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert task.exception() is None


async def test_a_service_catches_up_with_topics_too_busy_to_ever_be_idle(bootstrap: str, home_root: Path) -> None:
    """Heartbeats every 10 ms from three parties leave no fetch empty; caught up comes from the high watermarks."""
    settings = fresh_settings(heartbeat_interval=0.01, unreachable_after=3.0)
    async with federation(home_root, bootstrap, n=3, settings=settings) as fed:
        await asyncio.sleep(1.0)  # a backlog of beats, and more arriving all the time
        # A registry service: the one service that reads heartbeats (health is all they carry).
        service = RegistryService(open_context(fed.operator.home, fed.operator.bus, settings), readonly=True)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            await asyncio.wait_for(service.caught_up.wait(), 20)
            assert service.counts["applied"] > 50  # it read the backlog before saying so
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
