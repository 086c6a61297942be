"""The protocol's topics: names, partition counts, configs, and which payloads may travel on each."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from mesh.errors import WrongTopicError
from mesh.events import CHUNK, DEAD_LETTER, HEARTBEAT, SCHEMA_PUBLISHED
from mesh.home import NODE_ID_PATTERN

NEVER = "-1"
THIRTY_DAYS_MS = str(30 * 24 * 3600 * 1000)


@dataclass(frozen=True)
class TopicSpec:
    """One protocol topic. ``namespaces`` are the Avro namespaces whose payloads belong on it."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    namespaces: tuple[str, ...] = ()


_KEEP = {"cleanup.policy": "delete", "retention.ms": NEVER, "retention.bytes": "-1"}
_THIRTY_DAYS = {"cleanup.policy": "delete", "retention.ms": THIRTY_DAYS_MS}

TOPICS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        TopicSpec("registry", 3, _KEEP, ("interfed.registry",)),
        # Presence, not history: compaction keeps each node's latest beat, so reading it from
        # the beginning costs one record per node however long the federation has run.
        TopicSpec("heartbeats", 3, {"cleanup.policy": "compact"}, (HEARTBEAT,)),
        TopicSpec("catalog", 3, _KEEP, ("interfed.catalog",)),
        TopicSpec("components", 3, _KEEP, ("interfed.components",)),
        TopicSpec("artifacts", 3, _KEEP, ("interfed.artifacts",)),
        TopicSpec("tasks", 3, _KEEP, ("interfed.tasks",)),
        TopicSpec("rounds", 6, _THIRTY_DAYS, ("interfed.rounds",)),
        # One partition: one total order of evidence, so every honest party's log is the same
        # leaves in the same order, and a tree head always follows the leaves it covers.
        TopicSpec("evidence", 1, _KEEP, ("interfed.evidence",)),
        TopicSpec("schemas", 1, {"cleanup.policy": "compact"}, (SCHEMA_PUBLISHED,)),
        TopicSpec("deadletter", 3, _THIRTY_DAYS, (DEAD_LETTER,)),
    )
}

#: Topics of one node each, named ``<head>.<node id>.<tail>`` for a family ``<head>.<tail>``: only that node
#: reads them on a secured broker (docs/protocol.md §3.1). Its accelerator's requests, and the replies to its own.
NODE_TOPICS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        TopicSpec("accel.requests", 6, _THIRTY_DAYS, ("interfed.accel.request",)),
        TopicSpec("accel.replies", 6, _THIRTY_DAYS, ("interfed.accel.reply",)),
    )
}
ACCEL_REQUESTS = "accel.requests"
ACCEL_REPLIES = "accel.replies"

#: A node topic names only a well-formed node id.
NODE_ID = re.compile(NODE_ID_PATTERN)


def node_topic(family: str, node_id: str) -> str:
    """The protocol name of ``node_id``'s topic of ``family``, e.g. ``accel.bank.requests``."""
    if family not in NODE_TOPICS:
        raise KeyError(f"{family} is not a family of node topics")
    if not NODE_ID.fullmatch(node_id):
        raise ValueError(f"{node_id!r} is not a node id")
    head, tail = family.split(".")
    return f"{head}.{node_id}.{tail}"


def parse_node_topic(name: str) -> tuple[str, str] | None:
    """``(family, node id)`` of a node topic's protocol name, or None if it is not one."""
    for family in NODE_TOPICS:
        head, tail = family.split(".")
        start, end = head + ".", "." + tail
        if name.startswith(start) and name.endswith(end):
            node_id = name[len(start) : len(name) - len(end)]
            if NODE_ID.fullmatch(node_id):
                return family, node_id
    return None


def spec_of(name: str) -> TopicSpec:
    """The spec of a protocol topic: a shared one, or the family of a node topic."""
    if name in TOPICS:
        return TOPICS[name]
    parsed = parse_node_topic(name)
    if parsed is None:
        raise KeyError(f"{name} is not a protocol topic")
    return NODE_TOPICS[parsed[0]]


class TopicNames:
    """Maps protocol topic names to the deployment's Kafka topic names (``<prefix><name>``)."""

    def __init__(self, prefix: str = "interfed.") -> None:
        self.prefix = prefix

    def __call__(self, name: str) -> str:
        """The Kafka topic name of a protocol topic: the prefix, then the name (a shared or a node topic only)."""
        spec_of(name)  # a shared topic or a node topic, nothing else
        return self.prefix + name

    def protocol_name(self, kafka_topic: str) -> str:
        """The protocol topic a Kafka topic name stands for; KeyError for a name outside this prefix or the protocol."""
        name = kafka_topic.removeprefix(self.prefix)
        if not kafka_topic.startswith(self.prefix):
            raise KeyError(kafka_topic)
        spec_of(name)
        return name


#: The membership topics: who is a member and with what key (``registry``, which every service reads), and who is
#: alive (``heartbeats``, read by the registry service alone: health is its concern).
MEMBERSHIP_TOPICS = ("registry", "heartbeats")


@functools.lru_cache(maxsize=4096)
def topic_for(payload_type: str) -> str | None:
    """The one topic (or family of node topics) a payload type travels on: the one naming the longest prefix of it."""
    best: tuple[int, str] | None = None
    for spec in (*TOPICS.values(), *NODE_TOPICS.values()):
        for ns in spec.namespaces:
            if (payload_type == ns or payload_type.startswith(ns + ".")) and (best is None or len(ns) > best[0]):
                best = (len(ns), spec.name)
    return best[1] if best else None


def check_payload_topic(payload_type: str, topic: str) -> None:
    """Each payload type belongs to exactly one topic; elsewhere it is WRONG_TOPIC."""
    if payload_type == CHUNK:  # may travel on any topic: it carries a piece of an event that belongs there
        return
    home = topic_for(payload_type)
    parsed = parse_node_topic(topic)
    here = parsed[0] if parsed is not None else topic if topic in TOPICS else None
    if home is None or home != here:
        if home is None:
            where = "no topic carries it"
        elif home in NODE_TOPICS:
            head, tail = home.split(".")
            where = f"it belongs on a node's {head}.<node id>.{tail}"
        else:
            where = f"it belongs on {home}"
        raise WrongTopicError(f"{payload_type} does not belong on topic {topic}; {where}")
