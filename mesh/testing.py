"""Test and benchmark helpers on the transport floor: a broker to test against, prefixes, waiting, raw topics.

Fresh topic prefixes per test, waiting for a condition, and reading or copying raw topics. A
federation of in-process parties running the services is ``services.testbed``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from mesh.brokers import ApacheKafkaBroker, Broker, broker_from_name, issue_broker_security
from mesh.bus import KafkaBus, Record
from mesh.codec import SchemaStore
from mesh.envelope import Envelope
from mesh.home import NodeHome
from mesh.node import connect
from mesh.settings import MeshSettings, load_settings
from mesh.topics import TOPICS, TopicNames

#: ``INTERFED_TEST_BROKER``: "kafka", "tansu", or a bootstrap address of a broker you run yourself.
BROKER_ENV = "INTERFED_TEST_BROKER"


def start_test_broker(choice: str, workdir: Path) -> tuple[str, Broker | None]:
    """Start the named broker (or use an external address); return its bootstrap and the handle to stop."""
    if choice in ("kafka", "tansu"):
        broker = broker_from_name(choice, workdir)
        broker.start()
        return broker.bootstrap, broker
    return choice, None


@dataclass(frozen=True)
class SecuredKafka:
    """A running Apache Kafka with mutual TLS and ACLs, and the home of the operator of its one federation.

    That federation is the one it lets in; ``federation(operator=...)`` copies the operator's home.
    """

    bootstrap: str
    operator: NodeHome


def start_secured_kafka(workdir: Path, operator: NodeHome) -> ApacheKafkaBroker:
    """Apache Kafka with mutual TLS and ACLs for ``operator``'s federation (mesh/brokers/security.py), started.

    Nobody but the operator and the broker gets in until the operator's ACLs let them (``AclKeeper``).
    """
    broker = ApacheKafkaBroker(workdir, security=issue_broker_security(operator, workdir / "tls"))
    broker.start()
    return broker


def fresh_settings(**overrides: object) -> MeshSettings:
    """Settings with a topic prefix no other test uses, so tests never see each other's events."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    return load_settings(topic_prefix=prefix, **overrides)


async def eventually(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` is truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.05)


async def read_topic(
    bootstrap: str, settings: MeshSettings, topic: str, idle: float = 0.5
) -> list[tuple[Envelope, dict[str, Any]]]:
    """Every envelope on a protocol topic with its decoded payload (not verified: for inspection only)."""
    bus = KafkaBus(bootstrap, TopicNames(settings.topic_prefix), settings.max_record_bytes)
    reader = bus.reader([bus.names(topic)])
    schemas = SchemaStore.load()
    await reader.start()
    found: list[tuple[Envelope, dict[str, Any]]] = []
    quiet_since = time.monotonic()
    try:
        async for batch in reader.batches(timeout_ms=100):
            for record in batch:
                env = Envelope.decode(record.value)
                found.append((env, schemas.decode(env.payload_type, env.payload_fingerprint, env.payload)))
            if batch:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > idle:
                break
    finally:
        await reader.stop()
    return found


async def read_records(bootstrap: str, settings: MeshSettings, topic: str, idle: float = 0.5) -> list[Record]:
    """Every raw record of a protocol topic, in partition order (for copying and tampering)."""
    bus = KafkaBus(bootstrap, TopicNames(settings.topic_prefix), settings.max_record_bytes)
    reader = bus.reader([bus.names(topic)])
    await reader.start()
    found: list[Record] = []
    quiet_since = time.monotonic()
    try:
        async for batch in reader.batches(timeout_ms=100):
            found += batch
            if batch:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > idle:
                break
    finally:
        await reader.stop()
    return sorted(found, key=lambda r: (r.partition, r.offset))


async def copy_topics(
    bootstrap: str,
    source: MeshSettings,
    target: MeshSettings,
    edit: dict[str, Callable[[list[Record]], list[Record]]] | None = None,
) -> None:
    """Copy every protocol topic of ``source``'s prefix to ``target``'s, partition for partition.

    Kafka records cannot be edited in place, so a tampered history is a copy: ``edit`` maps a
    protocol topic to a function that gets its records in order and returns what the copy holds.
    """
    edit = edit or {}
    async with connect(target, bootstrap) as bus:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2 * bus.max_record_bytes)
        await producer.start()
        try:
            for topic in TOPICS:
                records = await read_records(bootstrap, source, topic, idle=0.3)
                if topic in edit:
                    records = edit[topic](records)
                for r in records:
                    await producer.send_and_wait(bus.names(topic), value=r.value, key=r.key, partition=r.partition)
        finally:
            await producer.stop()
