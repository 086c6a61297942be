"""Running a node: opening its home against a broker and running its services until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka.errors import KafkaConnectionError

from mesh.bus import KafkaBus
from mesh.codec import SchemaStore
from mesh.errors import ConfigurationError
from mesh.home import NodeHome
from mesh.publisher import Publisher
from mesh.service import Context, Service
from mesh.settings import MeshSettings
from mesh.signing import NodeSigner
from mesh.tls import client_options, refusal
from mesh.topics import TopicNames


@contextlib.asynccontextmanager
async def connect(
    settings: MeshSettings, bootstrap: str, home: NodeHome | None = None, *, applicant: bool | None = None
) -> AsyncIterator[KafkaBus]:
    """A started bus with every protocol topic created.

    With ``settings.tls`` the bus shows the broker ``home``'s credential (``mesh.tls.credential_of``; ``applicant``
    as there), and only an operator creates topics: a member may not, and finds them made.
    """
    security: dict[str, Any] = {}
    credential = None
    if settings.tls:
        if home is None:
            raise ConfigurationError("INTERFED_TLS is set: this command needs a node home (--home) for its certificate")
        security, credential = client_options(home, applicant)
    bus = KafkaBus(
        bootstrap,
        TopicNames(settings.topic_prefix),
        settings.max_record_bytes,
        security=security,
        creates_topics=credential is None or home is None or home.config().role == "operator",
    )
    try:
        await bus.ensure_topics()
        await bus.start()
    except KafkaConnectionError:
        if credential is None:
            raise
        await bus.stop()
        raise refusal(bootstrap, security["ssl_context"], credential) from None
    try:
        yield bus
    finally:
        await bus.stop()


def open_context(home: NodeHome, bus: KafkaBus, settings: MeshSettings) -> Context:
    """Load a node's identity and wire it to ``bus``; fails early on a bad home."""
    config = home.config()
    federation = home.federation()
    publisher = Publisher(
        bus,
        SchemaStore.load(),
        sender=config.node_id,
        key=NodeSigner(home.key()),
        sequence=home.sequence(),
        max_event_bytes=settings.max_event_bytes,
    )
    return Context(home=home, config=config, federation=federation, bus=bus, publisher=publisher)


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM ask the services to finish their batch and stop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_services(services: Sequence[Service], stop: asyncio.Event) -> None:
    """Run services side by side; if one fails, stop the others and raise its error."""
    tasks = [asyncio.create_task(s.run(stop), name=s.name) for s in services]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def until_caught_up(services: Sequence[Service], timeout: float = 60.0) -> None:
    """Wait until every one of ``services`` has caught up with its topics; TimeoutError after ``timeout`` seconds."""
    await asyncio.wait_for(asyncio.gather(*(s.caught_up.wait() for s in services)), timeout)


@contextlib.asynccontextmanager
async def running(service: Service, timeout: float = 60.0) -> AsyncIterator[Service]:
    """Run one service in the background, yield it once it has caught up, stop it on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop), name=service.name)
    caught = asyncio.create_task(service.caught_up.wait())
    done, _ = await asyncio.wait({task, caught}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        caught.cancel()
        task.result()  # raises the service's error
        raise RuntimeError(f"{service.name} stopped before catching up")
    if caught not in done:
        caught.cancel()
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        raise TimeoutError(
            f"{service.name} did not catch up with its topics within {timeout:.0f} s "
            "(a slow broker, or events this federation cannot verify under the same topic prefix?)"
        )
    try:
        yield service
    finally:
        stop.set()
        await task
