"""What the executor materialises from ``tasks``: every job and its state machine, the same at every party.

Every job event is keyed by its job id, so one job's events share a partition and every
receiver applies them in one order; judging uses only the events, so a replay rebuilds the
same jobs. Each method checks everything before it changes anything (``commit=False`` only judges).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias, cast

from mesh import events
from mesh.errors import InvalidTransitionError, KeyMismatchError, MalformedPayloadError
from services.executor.errors import NotParticipantError

#: Any job event's payload: what a handler of every type on ``tasks`` takes (each step takes its own record).
JobPayload: TypeAlias = (
    events.JobProposed
    | events.JobAccepted
    | events.JobRejected
    | events.JobStarted
    | events.JobStopped
    | events.PartyFinished
    | events.ModelReleaseProposed
    | events.ModelReleaseApproved
    | events.ModelReleased
)
ROLES = ("guest", "host", "arbiter", "aggregator")

#: The UUIDv5 namespace of a job's use ids (docs/protocol.md 16.4).
USE_ID_NAMESPACE = uuid.UUID("6b0c1d3e-52a4-4f0e-9d1a-7f3c2e8b4a10")


def job_use_id(job_id: str, dataset_id: str, node_id: str) -> str:
    """The use id of ``node_id``'s one use of ``dataset_id`` in job ``job_id`` (protocol.md 16.4).

    Derived, not drawn: a party that crashed after publishing the use and restarts signs the same
    id again, which its own catalog (and every receiver's) already holds, so the use counts once.
    """
    return str(uuid.uuid5(USE_ID_NAMESPACE, f"{job_id}/{dataset_id}/{node_id}"))


class JobStatus(StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


@dataclass
class Job:
    """One job as every party knows it."""

    job_id: str
    initiator: str
    project: str
    component_code: str
    component_version: str
    component_sha256: bytes
    participants: list[dict[str, Any]]
    datasets: list[dict[str, Any]]
    params: dict[str, Any]
    round_deadline_ms: int
    seed: int
    proposed_at: int
    #: inputs that are outputs of earlier jobs: node_id, input, job_id, output (protocol.md 16.4)
    job_inputs: list[dict[str, Any]] = field(default_factory=list)
    status: JobStatus = JobStatus.PENDING
    accepted: dict[str, str] = field(default_factory=dict)  # node -> decided_by
    reason: str = ""
    reason_code: str = ""
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> its PartyFinished
    release_sha256: bytes | None = None
    release_approved: set[str] = field(default_factory=set)
    released: bool = False
    #: rounds reported by this node's own run, for progress displays (not replicated)
    progress: dict[str, Any] = field(default_factory=dict)

    @property
    def nodes(self) -> list[str]:
        return list(dict.fromkeys(p["node_id"] for p in self.participants))

    @property
    def roles(self) -> dict[str, list[str]]:
        """role -> node ids in slot order."""
        out: dict[str, list[str]] = {}
        for p in sorted(self.participants, key=lambda p: (p["role"], p["slot"])):
            out.setdefault(p["role"], []).append(p["node_id"])
        return out

    def role_of(self, node: str) -> str:
        return str(next(p["role"] for p in self.participants if p["node_id"] == node))

    def datasets_of(self, node: str) -> list[dict[str, Any]]:
        return [d for d in self.datasets if d["node_id"] == node]

    def job_inputs_of(self, node: str) -> list[dict[str, Any]]:
        return [i for i in self.job_inputs if i["node_id"] == node]

    @property
    def ended(self) -> bool:
        return self.status in (JobStatus.SUCCESS, JobStatus.FAILED)


def _canonical(job_id: str) -> bool:
    try:
        return str(uuid.UUID(job_id)) == job_id
    except ValueError:
        return False


def _check_proposal(p: events.JobProposed, sender: str) -> None:  # noqa: C901, PLR0912  # one check per field, in order
    if not _canonical(p["job_id"]):
        raise MalformedPayloadError(f"job_id {p['job_id']!r} is not a canonical lower-case UUID")
    if p["initiator"] != sender:
        raise NotParticipantError(f"{sender} may not propose a job as {p['initiator']}")
    nodes = [x["node_id"] for x in p["participants"]]
    if sender not in nodes:
        raise MalformedPayloadError("the initiator must be a participant of its job")
    if len(set(nodes)) != len(nodes):
        raise MalformedPayloadError("a node takes one role in a job")
    for role in {x["role"] for x in p["participants"]}:
        if role not in ROLES:
            raise MalformedPayloadError(f"role {role!r} is not one of {', '.join(ROLES)}")
        slots = sorted(x["slot"] for x in p["participants"] if x["role"] == role)
        if slots != list(range(len(slots))):
            raise MalformedPayloadError(f"the slots of role {role} must be 0..{len(slots) - 1}")
    for d in p["datasets"]:
        if d["node_id"] not in nodes:
            raise MalformedPayloadError(f"dataset {d['dataset_id']} is for {d['node_id']}, not a participant")
        if d["request_id"] is None and d["node_id"] != sender:
            raise MalformedPayloadError(f"dataset {d['dataset_id']} of {d['node_id']} needs a permit")
    named: set[tuple[str, str]] = set()
    for i in [*p["datasets"], *p.get("job_inputs", [])]:
        if (i["node_id"], i["input"]) in named:
            raise MalformedPayloadError(f"input {i['input']} of {i['node_id']} is named twice")
        named.add((i["node_id"], i["input"]))
    for i in p.get("job_inputs", []):
        if i["node_id"] not in nodes:
            raise MalformedPayloadError(f"the input {i['input']} is for {i['node_id']}, not a participant")
        if not _canonical(i["job_id"]) or i["job_id"] == p["job_id"]:
            raise MalformedPayloadError(f"input {i['input']} names {i['job_id']!r}, not an earlier job's id")
    if p["round_deadline_ms"] <= 0:
        raise MalformedPayloadError("round_deadline_ms must be positive")
    try:
        params = json.loads(p["params_json"])
    except ValueError:
        raise MalformedPayloadError("params_json is not JSON") from None
    if not isinstance(params, dict):
        raise MalformedPayloadError("params_json is not a JSON object")


class Jobs:
    """Jobs by id; each method applies one verified event or raises why not."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def apply(
        self, payload_type: str, p: Mapping[str, Any], sender: str, issued_at: int, subject: str, *, commit: bool = True
    ) -> Job:
        """Apply one job event: ``p`` is the record of ``payload_type`` (a JobPayload, or the dict a command builds),
        which picks the step that reads it as its own TypedDict."""
        if subject != p["job_id"]:
            raise KeyMismatchError(f"job event about {p['job_id']!r} under subject {subject!r}")
        if payload_type == events.JOB_PROPOSED:
            return self._proposed(cast(events.JobProposed, p), sender, issued_at, commit)
        job = self.jobs.get(p["job_id"])
        if job is None:
            raise InvalidTransitionError(f"no job {p['job_id']}")
        step = _STEPS[payload_type]
        step(job, p, sender, commit)
        return job

    def _proposed(self, p: events.JobProposed, sender: str, at: int, commit: bool) -> Job:
        _check_proposal(p, sender)
        if p["job_id"] in self.jobs:
            raise InvalidTransitionError(f"job {p['job_id']} already exists")
        job = Job(
            job_id=p["job_id"],
            initiator=sender,
            project=p["project"],
            component_code=p["component_code"],
            component_version=p["component_version"],
            component_sha256=p["component_sha256"],
            participants=[dict(x) for x in p["participants"]],
            datasets=[dict(x) for x in p["datasets"]],
            params=json.loads(p["params_json"]),
            round_deadline_ms=p["round_deadline_ms"],
            seed=p["seed"],
            proposed_at=at,
            job_inputs=[dict(x) for x in p.get("job_inputs", [])],
        )
        if commit:
            self.jobs[job.job_id] = job
        return job


def _participant(job: Job, sender: str) -> None:
    if sender not in job.nodes:
        raise NotParticipantError(f"{sender} is not a participant of job {job.job_id}")


def _initiator(job: Job, sender: str) -> None:
    if sender != job.initiator:
        raise NotParticipantError(f"only {job.initiator}, the initiator, may do this to job {job.job_id}")


def _in(job: Job, *statuses: JobStatus) -> None:
    if job.status not in statuses:
        raise InvalidTransitionError(f"job {job.job_id} is {job.status}, not {' or '.join(statuses)}")


def _accepted(job: Job, p: events.JobAccepted, sender: str, commit: bool) -> None:
    _participant(job, sender)
    _in(job, JobStatus.PENDING)
    if sender in job.accepted:
        raise InvalidTransitionError(f"{sender} already accepted job {job.job_id}")
    if commit:
        job.accepted[sender] = p["decided_by"]
        if set(job.accepted) == set(job.nodes):
            job.status = JobStatus.READY


def _rejected(job: Job, p: events.JobRejected, sender: str, commit: bool) -> None:
    _participant(job, sender)
    _in(job, JobStatus.PENDING)
    if commit:
        job.status = JobStatus.FAILED
        job.reason_code = p["reason_code"]
        job.reason = f"rejected by {sender}: {p['reason']}"


def _started(job: Job, p: events.JobStarted, sender: str, commit: bool) -> None:
    _initiator(job, sender)
    _in(job, JobStatus.READY)
    if commit:
        job.status = JobStatus.RUNNING


def _stopped(job: Job, p: events.JobStopped, sender: str, commit: bool) -> None:
    _initiator(job, sender)
    _in(job, JobStatus.PENDING, JobStatus.READY, JobStatus.RUNNING)
    if commit:
        job.status = JobStatus.FAILED
        job.reason_code = "STOPPED"
        job.reason = f"stopped by {sender}: {p['reason']}"


def _finished(job: Job, p: events.PartyFinished, sender: str, commit: bool) -> None:
    _participant(job, sender)
    _in(job, JobStatus.RUNNING)
    if sender in job.finished:
        raise InvalidTransitionError(f"{sender} already finished job {job.job_id}")
    if commit:
        job.finished[sender] = dict(p)
        if not p["ok"]:
            job.status = JobStatus.FAILED
            job.reason_code = p["reason_code"]
            job.reason = f"{sender} failed: {p['reason']}"
        elif set(job.finished) == set(job.nodes):
            job.status = JobStatus.SUCCESS


def release_digest(job: Job) -> bytes | None:
    """The digest a job's model is released by (protocol.md 16.6), from the parties' reported digests; None: no model.

    One model every reporting party holds whole (HFL) is released by its own digest; parts held by
    different parties (a vertical model: each its own weights) by the digest of the list of parts.
    """
    parts = {node: bytes(f["model_sha256"]) for node, f in job.finished.items() if f["model_sha256"]}
    if not parts:
        return None
    if len(set(parts.values())) == 1:
        return next(iter(parts.values()))
    listing = "".join(f"{node} {parts[node].hex()}\n" for node in sorted(parts))
    return hashlib.sha256(listing.encode()).digest()


def _release_proposed(job: Job, p: events.ModelReleaseProposed, sender: str, commit: bool) -> None:
    _initiator(job, sender)
    _in(job, JobStatus.SUCCESS)
    if job.release_sha256 is not None:
        raise InvalidTransitionError(f"a release of job {job.job_id} is already proposed")
    expected = release_digest(job)
    if expected is None or p["model_sha256"] != expected:
        raise InvalidTransitionError(
            f"{p['model_sha256'].hex()} is not the release digest of the models reported in job {job.job_id}"
        )
    if commit:
        job.release_sha256 = p["model_sha256"]


def _release_approved(job: Job, p: events.ModelReleaseApproved, sender: str, commit: bool) -> None:
    _participant(job, sender)
    if job.release_sha256 is None or job.released or p["model_sha256"] != job.release_sha256:
        raise InvalidTransitionError(f"no open release of that model in job {job.job_id}")
    if sender in job.release_approved:
        raise InvalidTransitionError(f"{sender} already approved the release of job {job.job_id}")
    if commit:
        job.release_approved.add(sender)


def _released(job: Job, p: events.ModelReleased, sender: str, commit: bool) -> None:
    _initiator(job, sender)
    if job.release_sha256 is None or job.released or p["model_sha256"] != job.release_sha256:
        raise InvalidTransitionError(f"no open release of that model in job {job.job_id}")
    if job.release_approved != set(job.nodes):
        missing = sorted(set(job.nodes) - job.release_approved)
        raise InvalidTransitionError(f"the release of job {job.job_id} still awaits {', '.join(missing)}")
    if commit:
        job.released = True


#: Each step after the proposal, by payload type: the type names the record its step reads (hence Any here).
_STEPS: dict[str, Callable[[Job, Any, str, bool], None]] = {
    events.JOB_ACCEPTED: _accepted,
    events.JOB_REJECTED: _rejected,
    events.JOB_STARTED: _started,
    events.JOB_STOPPED: _stopped,
    events.PARTY_FINISHED: _finished,
    events.MODEL_RELEASE_PROPOSED: _release_proposed,
    events.MODEL_RELEASE_APPROVED: _release_approved,
    events.MODEL_RELEASED: _released,
}
JOB_TYPES = (events.JOB_PROPOSED, *_STEPS)
