"""Evidence of a step: every governance or computation event a party publishes is followed by its evidence record."""

from __future__ import annotations

import hashlib
from typing import Any

from mesh.envelope import Envelope

EVIDENCE_RECORDED = "interfed.evidence.EvidenceRecorded"


def evidence_of(action: str, topic: str, env: Envelope) -> dict[str, Any]:
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


#: Payload type -> the evidence action that must follow every such event. The auditor checks
#: completeness against it: each of these events has its EvidenceRecorded, with this action.
GOVERNED: dict[str, str] = {
    "interfed.catalog.AccessGranted": "catalog.grant",
    "interfed.catalog.AccessRejected": "catalog.reject",
    "interfed.catalog.AccessRequested": "catalog.request",
    "interfed.catalog.AccessTerminated": "catalog.terminate",
    "interfed.catalog.DatasetPublished": "catalog.publish",
    "interfed.catalog.DatasetRetracted": "catalog.retract",
    "interfed.catalog.DatasetUpdated": "catalog.update",
    "interfed.catalog.DatasetUsed": "catalog.use",
}
