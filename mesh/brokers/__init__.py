"""Local Kafka-compatible brokers on loopback: the embedded tansu and Apache Kafka (KRaft)."""

from __future__ import annotations

from pathlib import Path

from mesh.brokers._base import Broker, BrokerError, BrokerStartError, BrokerUnavailableError
from mesh.brokers.kafka import KAFKA_VERSION, ApacheKafkaBroker, fetch_kafka
from mesh.brokers.tansu import TansuBroker

__all__ = [
    "KAFKA_VERSION",
    "ApacheKafkaBroker",
    "Broker",
    "BrokerError",
    "BrokerStartError",
    "BrokerUnavailableError",
    "TansuBroker",
    "broker_from_name",
    "fetch_kafka",
]

#: Names accepted by broker_from_name (and the ``--broker`` options built on it).
BROKER_NAMES = ("tansu", "kafka")


def broker_from_name(name: str, workdir: Path, port: int | None = None) -> Broker:
    """A not-yet-started broker: ``"tansu"`` (embedded) or ``"kafka"`` (Apache Kafka); a free port unless given."""
    if name == "tansu":
        return TansuBroker(workdir, port)
    if name == "kafka":
        return ApacheKafkaBroker(workdir, port)
    raise ValueError(f"unknown broker {name!r}; expected one of {', '.join(BROKER_NAMES)}")
