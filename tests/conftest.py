"""Test configuration: the broker lane (--broker), a session broker, a secured Apache Kafka, a fresh federation per
test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh import logs
from mesh.brokers import Broker, BrokerError
from mesh.home import NodeConfig, create_federation
from mesh.testing import BROKER_ENV, SecuredKafka, start_secured_kafka, start_test_broker


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--broker",
        default=os.environ.get(BROKER_ENV, "kafka"),
        help="broker lane: 'kafka' (Apache Kafka, the reference), 'tansu' (embedded), or HOST:PORT of a running one",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Service logs go to a file per run, as in production; a failing test's log is there to read.
    logs.configure(path=Path(tempfile.gettempdir()) / f"interfed-tests-{os.getpid()}.jsonl", level="debug")
    config.addinivalue_line(
        "markers", "tansu_limitation(reason): the embedded broker cannot pass this test; skipped on its lane"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    lane = config.getoption("--broker")
    for item in items:
        mark = item.get_closest_marker("tansu_limitation")
        if mark is not None and lane == "tansu":
            item.add_marker(pytest.mark.skip(reason=f"tansu limitation: {mark.args[0]}"))


@pytest.fixture(scope="session")
def broker_lane(pytestconfig: pytest.Config) -> str:
    return str(pytestconfig.getoption("--broker"))


@pytest.fixture(scope="session")
def lane_broker(broker_lane: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Broker | None]]:
    """The lane's broker, started once per session: its address, and its handle when this session runs it."""
    workdir = tmp_path_factory.mktemp(f"broker-{broker_lane.replace(':', '_')}")
    try:
        address, broker = start_test_broker(broker_lane, workdir)
    except BrokerError as exc:
        pytest.exit(f"the {broker_lane} broker did not start: {exc}", returncode=3)
    try:
        yield address, broker
    finally:
        if broker is not None:
            broker.stop()


@pytest.fixture(scope="session")
def bootstrap(lane_broker: tuple[str, Broker | None]) -> str:
    """The bootstrap address of the lane's broker."""
    return lane_broker[0]


@pytest.fixture
def broker_process(lane_broker: tuple[str, Broker | None]) -> Broker:
    """The lane's broker process, for tests that pause or stop it (not a broker given by its address)."""
    broker = lane_broker[1]
    if broker is None:
        pytest.skip("the broker was given by its address: this session cannot pause or stop it")
    return broker


@pytest.fixture
def home_root(tmp_path: Path) -> Path:
    return tmp_path / "homes"


@pytest.fixture(scope="session")
def secured_kafka(broker_lane: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    """Started once per session on the Kafka lane only (tansu has neither TLS nor ACLs). Each test copies the
    operator's home (``services.testbed.federation(operator=...)``) and uses its own topic prefix."""
    if broker_lane != "kafka":
        pytest.skip("the secured broker is Apache Kafka's: run with --broker=kafka")
    root = tmp_path_factory.mktemp("secured-kafka")
    config = NodeConfig(
        node_id="operator", name="secured", institution="Secured, Ltd.", platform="interfed", role="operator"
    )
    operator = create_federation(root / "operator", "secured", config)
    try:
        broker = start_secured_kafka(root / "broker", operator)
    except BrokerError as exc:
        pytest.exit(f"the secured kafka broker did not start: {exc}", returncode=3)
    try:
        yield SecuredKafka(broker.bootstrap, operator)
    finally:
        broker.stop()
