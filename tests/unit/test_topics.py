"""Which topic each payload type travels on."""

from __future__ import annotations

import pytest

from mesh.errors import WrongTopicError
from mesh.topics import TOPICS, check_payload_topic, topic_for


@pytest.mark.parametrize(
    ("payload_type", "topic"),
    [
        ("interfed.registry.Heartbeat", "heartbeats"),
        ("interfed.registry.JoinRequested", "registry"),
        ("interfed.registry.SomethingNewer", "registry"),
        ("interfed.mesh.SchemaPublished", "schemas"),
        ("interfed.mesh.DeadLetter", "deadletter"),
        ("interfed.accel.request.Encrypt", "accel.requests"),
    ],
)
def test_a_payload_type_has_exactly_one_topic_the_most_specific_namespace_wins(payload_type: str, topic: str) -> None:
    assert topic_for(payload_type) == topic
    check_payload_topic(payload_type, topic)
    for other in TOPICS:
        if other != topic:
            with pytest.raises(WrongTopicError):
                check_payload_topic(payload_type, other)


def test_a_chunk_travels_on_any_topic() -> None:
    for topic in TOPICS:
        check_payload_topic("interfed.mesh.Chunk", topic)


def test_a_payload_no_topic_carries_is_wrong_topic_everywhere() -> None:
    assert topic_for("com.example.Thing") is None
    assert topic_for("interfed.registryX.Thing") is None
    with pytest.raises(WrongTopicError, match="no topic carries it"):
        check_payload_topic("com.example.Thing", "registry")
