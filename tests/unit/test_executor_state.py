"""The job state machine: who may send each job event, and in which state; a refusal changes nothing."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from mesh.errors import InvalidTransitionError, MalformedPayloadError
from mesh.events import (
    JOB_ACCEPTED,
    JOB_PROPOSED,
    JOB_REJECTED,
    JOB_STARTED,
    JOB_STOPPED,
    MODEL_RELEASE_APPROVED,
    MODEL_RELEASE_PROPOSED,
    MODEL_RELEASED,
    PARTY_FINISHED,
)
from services.executor.errors import NotParticipantError
from services.executor.state import Jobs, JobStatus, release_digest

JOB = "0b6c2c52-96a2-4c8e-9b43-2a1f0a1e6a10"


def proposal(**over: Any) -> dict[str, Any]:
    return {
        "job_id": JOB,
        "initiator": "a",
        "project": "p",
        "component_code": "c",
        "component_version": "1",
        "component_sha256": b"\x01" * 32,
        "participants": [
            {"node_id": "a", "role": "aggregator", "slot": 0},
            {"node_id": "b", "role": "host", "slot": 0},
            {"node_id": "c", "role": "host", "slot": 1},
        ],
        "datasets": [{"node_id": "b", "input": "train", "dataset_id": "b/x", "request_id": "r"}],
        "params_json": json.dumps({}),
        "round_deadline_ms": 1000,
        "seed": 1,
    } | over


def step(jobs: Jobs, t: str, sender: str, **p: Any) -> None:
    jobs.apply(t, {"job_id": JOB, **p}, sender, 0, JOB)


def finished(ok: bool = True) -> dict[str, Any]:
    return {"ok": ok, "model_sha256": b"m", "metrics_json": "{}", "reason_code": "" if ok else "X", "reason": ""}


def test_the_whole_life_of_a_job() -> None:
    jobs = Jobs()
    jobs.apply(JOB_PROPOSED, proposal(), "a", 0, JOB)
    job = jobs.jobs[JOB]
    assert job.roles == {"aggregator": ["a"], "host": ["b", "c"]}
    for node in "abc":
        assert job.status is JobStatus.PENDING
        step(jobs, JOB_ACCEPTED, node, decided_by="manual")
    assert job.status is JobStatus.READY
    with pytest.raises(NotParticipantError):
        step(jobs, JOB_STARTED, "b")
    step(jobs, JOB_STARTED, "a")
    assert job.status is JobStatus.RUNNING
    for node in "abc":
        step(jobs, PARTY_FINISHED, node, **finished())
    assert job.status is JobStatus.SUCCESS
    with pytest.raises(InvalidTransitionError):
        step(jobs, MODEL_RELEASE_PROPOSED, "a", model_sha256=b"other")
    step(jobs, MODEL_RELEASE_PROPOSED, "a", model_sha256=b"m")
    step(jobs, MODEL_RELEASE_APPROVED, "a", model_sha256=b"m")
    step(jobs, MODEL_RELEASE_APPROVED, "b", model_sha256=b"m")
    with pytest.raises(InvalidTransitionError):  # c has not approved yet
        step(jobs, MODEL_RELEASED, "a", model_sha256=b"m")
    step(jobs, MODEL_RELEASE_APPROVED, "c", model_sha256=b"m")
    step(jobs, MODEL_RELEASED, "a", model_sha256=b"m")
    assert job.released


def test_a_rejection_fails_the_job_and_nothing_else_moves_it() -> None:
    jobs = Jobs()
    jobs.apply(JOB_PROPOSED, proposal(), "a", 0, JOB)
    step(jobs, JOB_REJECTED, "c", reason_code="PERMIT_INVALID", reason="no", decided_by="check")
    assert jobs.jobs[JOB].status is JobStatus.FAILED
    assert jobs.jobs[JOB].reason_code == "PERMIT_INVALID"
    with pytest.raises(InvalidTransitionError):
        step(jobs, JOB_ACCEPTED, "b", decided_by="manual")


def test_only_the_initiator_stops_and_a_stopped_job_is_failed() -> None:
    jobs = Jobs()
    jobs.apply(JOB_PROPOSED, proposal(), "a", 0, JOB)
    with pytest.raises(NotParticipantError):
        step(jobs, JOB_STOPPED, "b", reason="mine")
    step(jobs, JOB_STOPPED, "a", reason="changed my mind")
    assert jobs.jobs[JOB].status is JobStatus.FAILED
    assert jobs.jobs[JOB].reason_code == "STOPPED"


def test_outsiders_and_bad_proposals_are_refused() -> None:
    jobs = Jobs()
    with pytest.raises(NotParticipantError):
        jobs.apply(JOB_PROPOSED, proposal(), "z", 0, JOB)
    with pytest.raises(MalformedPayloadError):
        jobs.apply(JOB_PROPOSED, proposal(participants=[{"node_id": "a", "role": "boss", "slot": 0}]), "a", 0, JOB)
    with pytest.raises(MalformedPayloadError):
        jobs.apply(
            JOB_PROPOSED,
            proposal(datasets=[{"node_id": "b", "input": "t", "dataset_id": "b/x", "request_id": None}]),
            "a",
            0,
            JOB,
        )
    assert not jobs.jobs
    jobs.apply(JOB_PROPOSED, proposal(), "a", 0, JOB)
    with pytest.raises(NotParticipantError):
        step(jobs, JOB_ACCEPTED, "z", decided_by="manual")


def test_a_party_failing_fails_the_job() -> None:
    jobs = Jobs()
    jobs.apply(JOB_PROPOSED, proposal(), "a", 0, JOB)
    for node in "abc":
        step(jobs, JOB_ACCEPTED, node, decided_by="manual")
    step(jobs, JOB_STARTED, "a")
    step(jobs, PARTY_FINISHED, "b", **finished(ok=False))
    assert jobs.jobs[JOB].status is JobStatus.FAILED


EARLIER = "5d2f0f3e-2d7c-4d55-8f0e-7e1c2b9d4a01"


@pytest.mark.parametrize(
    ("job_input", "why"),
    [
        ({"node_id": "z", "input": "ids", "job_id": EARLIER, "output": "o"}, "not a participant"),
        ({"node_id": "b", "input": "ids", "job_id": "job-1", "output": "o"}, "not an earlier job's id"),
        ({"node_id": "b", "input": "ids", "job_id": JOB, "output": "o"}, "not an earlier job's id"),
        ({"node_id": "b", "input": "train", "job_id": EARLIER, "output": "o"}, "named twice"),
    ],
)
def test_a_job_input_for_an_outsider_a_bad_job_id_or_an_input_named_twice_is_malformed(
    job_input: dict[str, str], why: str
) -> None:
    jobs = Jobs()
    with pytest.raises(MalformedPayloadError, match=why):
        jobs.apply(JOB_PROPOSED, proposal(job_inputs=[job_input]), "a", 0, JOB)
    assert not jobs.jobs
    good = {"node_id": "b", "input": "ids", "job_id": EARLIER, "output": "o"}
    assert jobs.apply(JOB_PROPOSED, proposal(job_inputs=[good]), "a", 0, JOB).job_inputs_of("b") == [good]


def _succeeded(models: dict[str, bytes]) -> Jobs:
    jobs = Jobs()
    jobs.apply(JOB_PROPOSED, proposal(), "a", 0, JOB)
    for node in "abc":
        step(jobs, JOB_ACCEPTED, node, decided_by="manual")
    step(jobs, JOB_STARTED, "a")
    for node in "abc":
        step(jobs, PARTY_FINISHED, node, **finished() | {"model_sha256": models.get(node, b"")})
    return jobs


def test_a_model_every_party_holds_whole_is_released_by_its_own_digest() -> None:
    jobs = _succeeded({"a": b"m", "b": b"m", "c": b"m"})
    assert release_digest(jobs.jobs[JOB]) == b"m"


def test_a_model_in_parts_is_released_by_the_digest_of_its_parts_and_by_nothing_else() -> None:
    """Vertical: each party its own weights (c, like an arbiter, holds none): one digest names the parts."""
    jobs = _succeeded({"a": b"\x01" * 32, "b": b"\x02" * 32})
    parts = f"a {'01' * 32}\nb {'02' * 32}\n".encode()
    assert release_digest(jobs.jobs[JOB]) == hashlib.sha256(parts).digest()
    for part in (b"\x01" * 32, b"\x02" * 32):
        with pytest.raises(InvalidTransitionError, match="not the release digest"):
            step(jobs, MODEL_RELEASE_PROPOSED, "a", model_sha256=part)
    step(jobs, MODEL_RELEASE_PROPOSED, "a", model_sha256=hashlib.sha256(parts).digest())
    assert jobs.jobs[JOB].release_sha256 == hashlib.sha256(parts).digest()
