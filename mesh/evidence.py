"""Evidence of a step: every governance or computation event a party publishes is followed by its evidence record."""

from __future__ import annotations

import hashlib
from typing import Any

from mesh.envelope import Envelope

EVIDENCE_RECORDED = "interfed.evidence.EvidenceRecorded"

#: Every governance payload type, with the evidence action that must accompany each of its events
#: (docs/protocol.md §13.6). The auditor checks completeness from this table alone, so a new governed
#: step is one entry here and ``evidence=`` on its publish. Kept sorted, one entry a line.
GOVERNED: dict[str, str] = {
    "interfed.catalog.AccessGranted": "catalog.grant",
    "interfed.catalog.AccessRejected": "catalog.reject",
    "interfed.catalog.AccessRequested": "catalog.request",
    "interfed.catalog.AccessTerminated": "catalog.terminate",
    "interfed.catalog.DatasetPublished": "catalog.publish",
    "interfed.catalog.DatasetRetracted": "catalog.retract",
    "interfed.catalog.DatasetUpdated": "catalog.update",
    "interfed.catalog.DatasetUsed": "catalog.use",
    "interfed.components.ComponentDisabled": "components.disable",
    "interfed.components.ComponentEnabled": "components.enable",
    "interfed.components.ComponentInstalled": "components.install",
    "interfed.components.ComponentPublished": "components.publish",
    "interfed.components.ComponentRetracted": "components.retract",
    "interfed.registry.CertificateRevoked": "registry.revoke",
    "interfed.registry.ContractTerminated": "registry.terminate",
    "interfed.registry.JoinApproved": "registry.approve",
    "interfed.registry.JoinRejected": "registry.reject",
    "interfed.registry.JoinRequested": "registry.apply",
    "interfed.registry.NodeAnnounced": "registry.announce",
    "interfed.tasks.JobAccepted": "tasks.accept",
    "interfed.tasks.JobProposed": "tasks.propose",
    "interfed.tasks.JobRejected": "tasks.reject",
    "interfed.tasks.JobStarted": "tasks.start",
    "interfed.tasks.JobStopped": "tasks.stop",
    "interfed.tasks.ModelReleaseApproved": "tasks.release_approve",
    "interfed.tasks.ModelReleaseProposed": "tasks.release_propose",
    "interfed.tasks.ModelReleased": "tasks.release",
    "interfed.tasks.PartyFinished": "tasks.finish",
}


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
