"""What the auditor keeps of what it read (governed events, evidence leaves, heads, countersignatures) and its
findings, each with where it was read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mesh import events
from mesh.evidence import GOVERNED
from mesh.identity import NodeCertificate
from mesh.service import Event
from services.evidence.heads import TreeHead


@dataclass(frozen=True, slots=True)
class Violation:
    """A finding at a place: a violation, or a record refused on input (reported, never a violation)."""

    reason: str
    detail: str
    topic: str = ""
    offset: int = -1
    partition: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.topic, self.partition, self.offset, self.reason, self.detail)


@dataclass(frozen=True, slots=True)
class Signed:
    """Where a record was read and the key it verified under (``key`` None: an applicant, never revoked)."""

    sender: str
    key: bytes | None
    issued_at: int
    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, ev: Event[Any]) -> Signed:
        key = ev.speaker.public_key if isinstance(ev.speaker, NodeCertificate) else None
        return cls(ev.sender, key, ev.envelope.issued_at, ev.topic, ev.partition, ev.offset)

    def where(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True, slots=True)
class Governed:
    """A governance event as the auditor met it."""

    event_id: str
    payload_type: str
    sha256: bytes
    signed: Signed

    @property
    def sender(self) -> str:
        return self.signed.sender

    @property
    def topic(self) -> str:
        return self.signed.topic


@dataclass(frozen=True, slots=True)
class Evidence:
    """An evidence record: who recorded it (its envelope's sender) and what it claims."""

    index: int
    payload: events.EvidenceRecorded
    signed: Signed

    @property
    def recorder(self) -> str:
        return self.signed.sender


@dataclass(frozen=True, slots=True)
class Cosignature:
    witness: str
    head: TreeHead
    signed: Signed


@dataclass
class LogHeads:
    """Every head one log published, in topic order, with where each was signed, and its countersignatures."""

    heads: list[TreeHead] = field(default_factory=list)
    signed: list[Signed] = field(default_factory=list)
    cosignatures: list[Cosignature] = field(default_factory=list)


def unsigned(head: TreeHead) -> TreeHead:
    """The head as a countersignature names it (without the keeper's signature)."""
    return TreeHead(head.log_id, head.tree_size, head.root_hash, head.timestamp)


def matches(p: events.EvidenceRecorded, target: Governed) -> bool:
    """Whether an EvidenceRecorded payload states its event as it is: digest, type, topic and action."""
    claim = (p["event_sha256"], p["event_type"], p["event_topic"], p["action"])
    return claim == (target.sha256, target.payload_type, target.signed.topic, GOVERNED[target.payload_type])
