"""The broker launchers start a broker that really speaks Kafka, stop it without leftovers, and explain failures."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from mesh.brokers import (
    ApacheKafkaBroker,
    Broker,
    BrokerStartError,
    BrokerUnavailableError,
    TansuBroker,
    broker_from_name,
)

BROKERS = [
    pytest.param("tansu", marks=pytest.mark.tansu),
    pytest.param("kafka", marks=pytest.mark.kafka),
]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(params=BROKERS)
def started(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """A broker of each kind, started in its own directory; kafka is skipped only when it cannot run here."""
    broker = broker_from_name(request.param, tmp_path / request.param)
    try:
        broker.start()
    except BrokerUnavailableError as exc:
        pytest.skip(str(exc))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.broker
@pytest.mark.timeout(180)
async def test_keyed_record_round_trips_and_stop_leaves_no_process(started: Broker) -> None:
    """A topic created by the admin client takes an acks=all keyed record that a manually assigned reader gets back."""
    topic = f"t{uuid.uuid4().hex[:10]}.brokers"
    admin = AIOKafkaAdminClient(bootstrap_servers=started.bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=started.bootstrap, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, key=b"party-1", value=b"hello mesh")
    finally:
        await producer.stop()
    assert sent.partition == 0

    consumer = AIOKafkaConsumer(bootstrap_servers=started.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        record = await consumer.getone(tp)
    finally:
        await consumer.stop()
    assert (record.key, record.value, record.offset) == (b"party-1", b"hello mesh", sent.offset)

    pid = started.pid
    assert pid is not None
    started.stop()
    started.stop()  # idempotent
    assert not started.running
    assert _gone(pid)


@pytest.mark.broker
@pytest.mark.timeout(60)
def test_start_error_carries_the_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker binary that dies at start-up gives BrokerStartError with its own last words, and leaves nothing."""
    bogus = tmp_path / "bogus-tansu"
    bogus.write_text("#!/bin/sh\necho 'bogus tansu: refusing to start' >&2\nexit 1\n")
    bogus.chmod(0o755)
    monkeypatch.setenv("CALF_TANSU_BIN", str(bogus))

    broker = TansuBroker(tmp_path / "work")
    with pytest.raises(BrokerStartError) as caught:
        broker.start()
    message = str(caught.value)
    assert "exited with code 1" in message
    assert "bogus tansu: refusing to start" in message
    assert not broker.running


@pytest.mark.broker
@pytest.mark.timeout(60)
def test_missing_java_is_one_line_saying_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without java on PATH, Apache Kafka is unavailable with a single actionable line."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BrokerUnavailableError) as caught:
        ApacheKafkaBroker(tmp_path / "work").start()
    message = str(caught.value)
    assert "\n" not in message
    assert "java not found" in message
    assert "--broker tansu" in message
