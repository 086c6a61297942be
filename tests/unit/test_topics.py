"""Which topic each payload type travels on."""

from __future__ import annotations

import pytest

from mesh.errors import WrongTopicError
from mesh.topics import NODE_TOPICS, TOPICS, TopicNames, check_payload_topic, node_topic, parse_node_topic, topic_for


@pytest.mark.parametrize(
    ("payload_type", "topic"),
    [
        ("interfed.registry.Heartbeat", "heartbeats"),
        ("interfed.registry.JoinRequested", "registry"),
        ("interfed.registry.SomethingNewer", "registry"),
        ("interfed.mesh.SchemaPublished", "schemas"),
        ("interfed.mesh.DeadLetter", "deadletter"),
    ],
)
def test_a_payload_type_has_exactly_one_topic_the_most_specific_namespace_wins(payload_type: str, topic: str) -> None:
    assert topic_for(payload_type) == topic
    check_payload_topic(payload_type, topic)
    for other in TOPICS:
        if other != topic:
            with pytest.raises(WrongTopicError):
                check_payload_topic(payload_type, other)
    with pytest.raises(WrongTopicError):
        check_payload_topic(payload_type, node_topic("accel.requests", "bank"))


@pytest.mark.parametrize(
    ("payload_type", "family"),
    [("interfed.accel.request.AccelRequest", "accel.requests"), ("interfed.accel.reply.AccelReply", "accel.replies")],
)
def test_accelerator_payloads_travel_on_any_nodes_topic_of_their_family_only(payload_type: str, family: str) -> None:
    assert topic_for(payload_type) == family
    for node_id in ("bank", "bank.eu", "a_b-1"):
        check_payload_topic(payload_type, node_topic(family, node_id))
    other = next(f for f in NODE_TOPICS if f != family)
    for wrong in (family, node_topic(other, "bank"), *TOPICS):  # the bare family name is no topic
        with pytest.raises(WrongTopicError):
            check_payload_topic(payload_type, wrong)


def test_a_node_topic_names_exactly_one_node_and_nothing_else_parses_as_one() -> None:
    assert node_topic("accel.requests", "bank.eu") == "accel.bank.eu.requests"
    assert parse_node_topic("accel.bank.eu.requests") == ("accel.requests", "bank.eu")
    assert parse_node_topic("accel.bank.replies") == ("accel.replies", "bank")
    for not_one in ("accel.requests", "accel..requests", "accel.Bank.requests", "accel.bank.request", "registry"):
        assert parse_node_topic(not_one) is None
    with pytest.raises(ValueError, match="not a node id"):
        node_topic("accel.requests", "Bank")
    names = TopicNames("t.")
    assert names.protocol_name(names("accel.bank.requests")) == "accel.bank.requests"
    with pytest.raises(KeyError):
        names("accel.requests")


def test_a_chunk_travels_on_any_topic() -> None:
    for topic in TOPICS:
        check_payload_topic("interfed.mesh.Chunk", topic)


def test_a_payload_no_topic_carries_is_wrong_topic_everywhere() -> None:
    assert topic_for("com.example.Thing") is None
    assert topic_for("interfed.registryX.Thing") is None
    with pytest.raises(WrongTopicError, match="no topic carries it"):
        check_payload_topic("com.example.Thing", "registry")
