"""One party's executor as its own process, for the kill-and-restart test.

``python -m tests.integration.executor_party HOME BOOTSTRAP PREFIX [die-after-use | workers]``:

It runs a read-only catalog (for permits and local files; it records uses through this
process's publisher), a read-only components service (the directory; the installation is the
one party2's in-federation components service made in this home) and the executor with the
accept-all policy, until it is killed. With ``die-after-use`` it kills itself (SIGKILL) right
after its first DatasetUsed and its evidence are published, before the executor writes anything
more: the crash point between recording a use and remembering it. With ``workers`` its Paillier work runs on
one accelerator worker process (``node up``'s default mode), and SIGTERM stops it cleanly, as Ctrl-C stops
``node up``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from mesh.home import NodeHome
from mesh.logs import configure
from mesh.node import connect, open_context, run_services, stop_on_signals
from mesh.settings import load_settings
from services.accel.placement import AcceleratorSettings, in_process, node_accelerator
from services.catalog.service import CatalogService
from services.components.service import ComponentsService
from services.executor.policy import JobPolicy
from services.executor.service import ExecutorService

ACCEPT_ALL = JobPolicy.model_validate({"rule": [{"name": "tests", "decision": "accept"}]})


class DyingCatalog(CatalogService):
    """A catalog whose process dies the moment a use it records is on the broker."""

    async def use(self, request_id: str, scope_id: str, **kwargs: str) -> str:
        use_id = await super().use(request_id, scope_id, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return use_id


async def main(home_path: Path, bootstrap: str, prefix: str, flags: list[str]) -> None:
    settings = load_settings(topic_prefix=prefix)
    home = NodeHome(home_path)
    stop = asyncio.Event()
    stop_on_signals(stop)
    async with connect(settings, bootstrap) as bus:
        ctx = open_context(home, bus, settings)
        catalog = (DyingCatalog if "die-after-use" in flags else CatalogService)(ctx, readonly=True)
        store = ComponentsService(ctx, readonly=True)
        if "workers" in flags:
            accel = node_accelerator(ctx, AcceleratorSettings(mode="workers", workers=1)).client
        else:
            accel = in_process(ctx)
        executor = ExecutorService(ctx, catalog=catalog, components=store, accel=accel, policy=ACCEPT_ALL)
        await run_services([catalog, store, executor], stop)


if __name__ == "__main__":
    configure(Path(sys.argv[1]) / "executor-party.log")
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]))
