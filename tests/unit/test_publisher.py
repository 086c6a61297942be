"""mesh.publisher: a governed step's event and its evidence survive a broker that fails sends for a while."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, NotLeaderForPartitionError, TopicAuthorizationFailedError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh import publisher as publisher_module
from mesh.codec import SchemaStore
from mesh.envelope import Envelope
from mesh.events import EVIDENCE_RECORDED
from mesh.evidence import GOVERNED
from mesh.home import SequenceCounter
from mesh.publisher import Publisher
from mesh.signing import NodeSigner
from mesh.topics import TopicNames

DATASET_RETRACTED = "interfed.catalog.DatasetRetracted"


class FlakyBus:
    """Takes records like a broker, except that the sends listed in ``failures`` (by attempt number) raise.

    Schema announcements go through and are not counted: the sends under test are the event and its evidence."""

    def __init__(self, failures: dict[int, BaseException]) -> None:
        self.names = TopicNames("t.")
        self.max_record_bytes = 1_000_000
        self.failures = failures
        self.attempts = 0
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        if topic == self.names("schemas"):
            return
        self.attempts += 1
        failure = self.failures.get(self.attempts)
        if failure is not None:
            raise failure
        self.sent.append((topic, value))

    async def ensure_topics(self, names: Iterable[str] | None = None) -> None:
        raise NotImplementedError

    def reader(self, topics: Iterable[str]) -> Any:
        raise NotImplementedError

    def group_reader(self, topics: Iterable[str], group_id: str) -> Any:
        raise NotImplementedError


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher_module, "SEND_BACKOFF", (0.0, 0.0, 0.0))


def publisher(bus: FlakyBus, tmp_path: Path) -> Publisher:
    signer = NodeSigner(Ed25519PrivateKey.generate())
    sequence = SequenceCounter(tmp_path / "sequence")
    return Publisher(bus, SchemaStore.load(), sender="bank", key=signer, sequence=sequence)


async def retract(pub: Publisher) -> Envelope:
    payload = {"dataset_id": "bank/loans", "reason": "stale"}
    return await pub.publish("catalog", DATASET_RETRACTED, payload, "bank/loans", evidence=GOVERNED[DATASET_RETRACTED])


def delivered(bus: FlakyBus) -> list[tuple[str, Envelope]]:
    return [(topic, Envelope.decode(value)) for topic, value in bus.sent]


@pytest.mark.parametrize("failing", [1, 2], ids=["the event's send", "the evidence's send"])
@pytest.mark.parametrize(
    "error", [KafkaTimeoutError(), NotLeaderForPartitionError(), TimeoutError()], ids=lambda e: type(e).__name__
)
async def test_a_transient_failure_is_sent_again_as_the_same_envelope(
    tmp_path: Path, failing: int, error: BaseException
) -> None:
    bus = FlakyBus({failing: error, failing + 1: error})  # twice in a row
    env = await retract(publisher(bus, tmp_path))
    (event_topic, event), (evidence_topic, proof) = delivered(bus)
    assert (event_topic, evidence_topic) == ("t.catalog", "t.evidence")
    assert event.event_id == env.event_id
    assert proof.payload_type == EVIDENCE_RECORDED
    assert bus.attempts == 4  # two sends, each failing twice before one went through: no new envelope


async def test_a_failure_that_stays_is_raised_after_the_last_attempt(tmp_path: Path) -> None:
    bus = FlakyBus({n: KafkaTimeoutError() for n in range(2, 10)})  # the evidence never goes
    with pytest.raises(KafkaTimeoutError):
        await retract(publisher(bus, tmp_path))
    assert bus.attempts == 2 + len(publisher_module.SEND_BACKOFF)
    assert [topic for topic, _ in bus.sent] == ["t.catalog"]


async def test_a_refusal_that_will_not_pass_is_raised_at_once(tmp_path: Path) -> None:
    bus = FlakyBus({1: TopicAuthorizationFailedError()})
    with pytest.raises(TopicAuthorizationFailedError):
        await retract(publisher(bus, tmp_path))
    assert bus.attempts == 1
    assert bus.sent == []


async def test_a_caller_cancelled_after_the_event_still_gets_its_evidence_sent(tmp_path: Path) -> None:
    """A job's run is cancelled when the job ends, which its own last event can make happen: the step goes on."""
    bus = FlakyBus({})
    gate = asyncio.Event()
    sent_event = asyncio.Event()
    send = bus.send

    async def slow_evidence(topic: str, key: bytes, value: bytes) -> None:
        if topic == "t.evidence":
            sent_event.set()
            await gate.wait()
        await send(topic, key, value)

    bus.send = slow_evidence  # type: ignore[method-assign]
    caller = asyncio.ensure_future(retract(publisher(bus, tmp_path)))
    await sent_event.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert [topic for topic, _ in bus.sent] == ["t.catalog", "t.evidence"]
