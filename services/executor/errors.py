"""Errors of the executor: why a job is refused, rejected or fails, and why a round message is refused."""

from __future__ import annotations

from mesh.errors import MeshError, RejectedEventError


class NotParticipantError(RejectedEventError):
    """A job or round event from a node that is not a participant of that job (or not the one who may send it)."""

    reason = "NOT_PARTICIPANT"


class UnknownJobError(RejectedEventError):
    """A job event or round message about a job nobody proposed."""

    reason = "UNKNOWN_JOB"
    retriable = True
    waits_for = ("tasks",)  # the proposal may still be on its way on another partition


class BadRoundMessageError(RejectedEventError):
    """A round piece that does not fit its field: digest, size, dtype, shape or numbering wrong."""

    reason = "BAD_ROUND_MESSAGE"


class InboxFullError(RejectedEventError):
    """A sender has more unfinished round data outstanding than a receiver holds for one sender."""

    reason = "INBOX_FULL"


class JobCheckError(MeshError):
    """Why a participant rejects a job (its JobRejected reason_code); never dead-lettered: it is an answer."""

    reason = "JOB_CHECK"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


#: Reason codes of JobRejected and PartyFinished (docs/protocol.md section 16.7).
POLICY_REFUSED = "POLICY_REFUSED"
PERMIT_INVALID = "PERMIT_INVALID"
JOB_INPUT_INVALID = "JOB_INPUT_INVALID"
COMPONENT_NOT_INSTALLED = "COMPONENT_NOT_INSTALLED"
COMPONENT_DISABLED = "COMPONENT_DISABLED"
COMPONENT_DIGEST_MISMATCH = "COMPONENT_DIGEST_MISMATCH"
BAD_PARAMS = "BAD_PARAMS"
BAD_ROLES = "BAD_ROLES"
MANUAL_REJECT = "MANUAL_REJECT"
QUORUM_LOST = "QUORUM_LOST"
COMPONENT_FAILED = "COMPONENT_FAILED"
