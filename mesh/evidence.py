"""Evidence of a step: every governance or computation event a party publishes is followed by its evidence record."""

from __future__ import annotations

import hashlib

from mesh import events
from mesh.envelope import Envelope

#: Every governance payload type, with the evidence action that must accompany each of its events
#: (docs/protocol.md §13.6). The auditor checks completeness from this table alone, so a new governed
#: step is one entry here and ``evidence=`` on its publish. Kept sorted, one entry a line.
GOVERNED: dict[str, str] = {
    events.ACCESS_GRANTED: "catalog.grant",
    events.ACCESS_REJECTED: "catalog.reject",
    events.ACCESS_REQUESTED: "catalog.request",
    events.ACCESS_TERMINATED: "catalog.terminate",
    events.DATASET_PUBLISHED: "catalog.publish",
    events.DATASET_RETRACTED: "catalog.retract",
    events.DATASET_UPDATED: "catalog.update",
    events.DATASET_USED: "catalog.use",
    events.COMPONENT_DISABLED: "components.disable",
    events.COMPONENT_ENABLED: "components.enable",
    events.COMPONENT_INSTALLED: "components.install",
    events.COMPONENT_PUBLISHED: "components.publish",
    events.COMPONENT_RETRACTED: "components.retract",
    events.CERTIFICATE_REVOKED: "registry.revoke",
    events.CONTRACT_TERMINATED: "registry.terminate",
    events.JOIN_APPROVED: "registry.approve",
    events.JOIN_REJECTED: "registry.reject",
    events.JOIN_REQUESTED: "registry.apply",
    events.NODE_ANNOUNCED: "registry.announce",
    events.JOB_ACCEPTED: "tasks.accept",
    events.JOB_PROPOSED: "tasks.propose",
    events.JOB_REJECTED: "tasks.reject",
    events.JOB_STARTED: "tasks.start",
    events.JOB_STOPPED: "tasks.stop",
    events.MODEL_RELEASE_APPROVED: "tasks.release_approve",
    events.MODEL_RELEASE_PROPOSED: "tasks.release_propose",
    events.MODEL_RELEASED: "tasks.release",
    events.PARTY_FINISHED: "tasks.finish",
}


def evidence_of(action: str, topic: str, env: Envelope) -> events.EvidenceRecorded:
    """The EvidenceRecorded payload for event ``env`` (as sent on protocol topic ``topic``) taken as ``action``."""
    return {
        "action": action,
        "subject": env.subject,
        "event_id": env.event_id,
        "event_topic": topic,
        "event_type": env.payload_type,
        "event_sha256": hashlib.sha256(env.encode()).digest(),
        "occurred_at": env.issued_at,
    }
