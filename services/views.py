"""What ``interfed node up`` keeps of its services' views for the command line (the file: ``mesh/snapshot.py``).

The rows are those the read commands print (``registry nodes``, ``catalog list``/``show``/``permits``,
``components list``, ``job list``/``show``), made by the same functions, so an answer from the running node's
view and one replayed from the broker print alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import structlog

from mesh.clock import now_ms
from mesh.service import Service
from mesh.snapshot import SnapshotWriter
from services.catalog.cli import dataset_rows, permit_rows
from services.catalog.service import CatalogService
from services.components.cli import component_row
from services.components.service import ComponentsService
from services.executor.cli import job_detail
from services.executor.service import ExecutorService
from services.registry.cli import directory_entries
from services.registry.service import RegistryService

log = structlog.get_logger("interfed.views")

#: How often the node checks whether a row changed (and so how old a snapshot's rows may be).
CHECK_INTERVAL = 1.0


def node_views(services: Sequence[Service]) -> dict[str, Any]:
    """Every row the read commands print, from the views of the services given (those a node runs)."""
    now = now_ms()
    views: dict[str, Any] = {}
    for svc in services:
        if isinstance(svc, RegistryService):
            views["nodes"] = directory_entries(svc.directory, svc.unreachable_after_ms, now)
        elif isinstance(svc, CatalogService):
            views["datasets"] = dataset_rows(svc.catalog, retracted=True)
            views["permits"] = permit_rows(svc.catalog, now)
        elif isinstance(svc, ComponentsService):
            views["components"] = [component_row(svc, p) for _, p in sorted(svc.components.published.items())]
        elif isinstance(svc, ExecutorService):
            views["jobs"] = [job_detail(j) for j in sorted(svc.jobs.jobs.values(), key=lambda j: j.proposed_at)]
    return views


@contextlib.asynccontextmanager
async def keep_views(
    home: Path,
    services: Sequence[Service],
    *,
    node_id: str,
    bootstrap: str,
    topic_prefix: str,
    accelerator: dict[str, Any] | None = None,
) -> AsyncIterator[SnapshotWriter]:
    """Keep ``HOME/run/views.json`` while the block runs: first once every service has caught up, then checked
    every ``CHECK_INTERVAL`` seconds and replaced when a row changed. ``accelerator``: how the node's accelerator
    runs, for ``interfed node status`` (None: "not reported"). On exit the file goes and the lock is released.
    """
    writer = SnapshotWriter(
        home,
        node_id=node_id,
        bootstrap=bootstrap,
        topic_prefix=topic_prefix,
        services=[s.name for s in services],
        accelerator=accelerator,
    )
    writer.open()
    task = asyncio.create_task(_keep(writer, services), name="views")
    try:
        yield writer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        writer.close()


async def _keep(writer: SnapshotWriter, services: Sequence[Service]) -> None:
    # Before every service has caught up its view is partial: a read replays until then.
    await asyncio.gather(*(s.caught_up.wait() for s in services))
    while True:
        try:
            writer.write(node_views(services))
        except OSError as exc:  # a full disk: reads replay (the file grows old), the node goes on
            log.warning("views_not_written", error=str(exc))
        await asyncio.sleep(CHECK_INTERVAL)
