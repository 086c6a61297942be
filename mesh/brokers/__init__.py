"""Local Kafka-compatible brokers on loopback: the embedded tansu and Apache Kafka (KRaft).

Apache Kafka's launcher and the broker's TLS material load on first use (PEP 562): the embedded broker and the
errors come without the cryptography behind them, which keeps the command line's start quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mesh.brokers._base import Broker, BrokerError, BrokerStartError, BrokerUnavailableError

if TYPE_CHECKING:
    from mesh.brokers.kafka import KAFKA_VERSION, ApacheKafkaBroker, fetch_kafka
    from mesh.brokers.security import BrokerSecurity, issue_broker_security
    from mesh.brokers.tansu import TansuBroker

from mesh.lazy import lazy_exports

_WHERE = {
    "KAFKA_VERSION": "mesh.brokers.kafka",
    "ApacheKafkaBroker": "mesh.brokers.kafka",
    "fetch_kafka": "mesh.brokers.kafka",
    "BrokerSecurity": "mesh.brokers.security",
    "issue_broker_security": "mesh.brokers.security",
    "TansuBroker": "mesh.brokers.tansu",
}

__all__ = [
    "KAFKA_VERSION",
    "ApacheKafkaBroker",
    "Broker",
    "BrokerError",
    "BrokerSecurity",
    "BrokerStartError",
    "BrokerUnavailableError",
    "TansuBroker",
    "broker_from_name",
    "fetch_kafka",
    "issue_broker_security",
]

#: Names accepted by broker_from_name (and the ``--broker`` options built on it).
BROKER_NAMES = ("tansu", "kafka")


def broker_from_name(
    name: str, workdir: Path, port: int | None = None, security: BrokerSecurity | None = None
) -> Broker:
    """A not-yet-started broker: ``"tansu"`` (embedded) or ``"kafka"`` (Apache Kafka); a free port unless given.

    ``security`` (mutual TLS and ACLs for one federation) is for Apache Kafka only: tansu has neither.
    """
    if name == "tansu":
        from mesh.brokers.tansu import TansuBroker

        if security is not None:
            raise BrokerError("the embedded tansu broker has neither TLS nor ACLs; secure Apache Kafka (--kind kafka)")
        return TansuBroker(workdir, port)
    if name == "kafka":
        from mesh.brokers.kafka import ApacheKafkaBroker

        return ApacheKafkaBroker(workdir, port, security=security)
    raise ValueError(f"unknown broker {name!r}; expected one of {', '.join(BROKER_NAMES)}")


__getattr__ = lazy_exports("mesh.brokers", _WHERE, globals())
