"""The protocol's topics: names, partition counts, configs, and which payloads may travel on each."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from mesh.errors import WrongTopicError

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

TOPICS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        TopicSpec("registry", 3, _KEEP, ("interfed.registry",)),
        # Presence, not history: compaction keeps each node's latest beat, so reading it from
        # the beginning costs one record per node however long the federation has run.
        TopicSpec("heartbeats", 3, {"cleanup.policy": "compact"}, ("interfed.registry.Heartbeat",)),
        TopicSpec("catalog", 3, _KEEP, ("interfed.catalog",)),
        TopicSpec("components", 3, _KEEP, ("interfed.components",)),
        TopicSpec("artifacts", 3, _KEEP, ("interfed.artifacts",)),
        TopicSpec("tasks", 3, _KEEP, ("interfed.tasks",)),
        TopicSpec("rounds", 6, {"cleanup.policy": "delete", "retention.ms": THIRTY_DAYS_MS}, ("interfed.rounds",)),
        TopicSpec(
            "accel.requests",
            6,
            {"cleanup.policy": "delete", "retention.ms": THIRTY_DAYS_MS},
            ("interfed.accel.request",),
        ),
        TopicSpec(
            "accel.replies", 6, {"cleanup.policy": "delete", "retention.ms": THIRTY_DAYS_MS}, ("interfed.accel.reply",)
        ),
        # One partition: one total order of evidence, so every honest party's log is the same
        # leaves in the same order, and a tree head always follows the leaves it covers.
        TopicSpec("evidence", 1, _KEEP, ("interfed.evidence",)),
        TopicSpec("schemas", 1, {"cleanup.policy": "compact"}, ("interfed.mesh.SchemaPublished",)),
        TopicSpec(
            "deadletter", 3, {"cleanup.policy": "delete", "retention.ms": THIRTY_DAYS_MS}, ("interfed.mesh.DeadLetter",)
        ),
    )
}

#: May travel on any topic: it carries a piece of an event that belongs there.
CHUNK_TYPE = "interfed.mesh.Chunk"


class TopicNames:
    """Maps protocol topic names to the deployment's Kafka topic names (``<prefix><name>``)."""

    def __init__(self, prefix: str = "interfed.") -> None:
        self.prefix = prefix

    def __call__(self, name: str) -> str:
        if name not in TOPICS:
            raise KeyError(f"{name} is not a protocol topic")
        return self.prefix + name

    def protocol_name(self, kafka_topic: str) -> str:
        name = kafka_topic.removeprefix(self.prefix)
        if name not in TOPICS or not kafka_topic.startswith(self.prefix):
            raise KeyError(kafka_topic)
        return name


#: Topics every service reads, whatever else it reads: who is a member, and with what key.
MEMBERSHIP_TOPICS = ("registry", "heartbeats")


@functools.lru_cache(maxsize=4096)
def topic_for(payload_type: str) -> str | None:
    """The one topic a payload type travels on: the topic naming the longest prefix of it."""
    best: tuple[int, str] | None = None
    for spec in TOPICS.values():
        for ns in spec.namespaces:
            if (payload_type == ns or payload_type.startswith(ns + ".")) and (best is None or len(ns) > best[0]):
                best = (len(ns), spec.name)
    return best[1] if best else None


def check_payload_topic(payload_type: str, topic: str) -> None:
    """Each payload type belongs to exactly one topic; elsewhere it is WRONG_TOPIC."""
    if payload_type == CHUNK_TYPE:
        return
    home = topic_for(payload_type)
    if home != topic:
        where = f"it belongs on {home}" if home else "no topic carries it"
        raise WrongTopicError(f"{payload_type} does not belong on topic {topic}; {where}")
