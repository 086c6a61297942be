"""The service base's lifecycle on a real broker: clean stop, and no silent death of background work."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mesh.node import connect, open_context
from mesh.service import Service
from mesh.testing import create_homes, fresh_settings

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
