"""The catalog state machine: who may publish, request, decide, terminate and use, and what each refusal is called."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from mesh.errors import InvalidTransitionError, KeyMismatchError, MalformedPayloadError, UnauthorisedError
from mesh.events import (
    ACCESS_GRANTED,
    ACCESS_REJECTED,
    ACCESS_REQUESTED,
    ACCESS_TERMINATED,
    DATASET_PUBLISHED,
    DATASET_RETRACTED,
    DATASET_UPDATED,
    DATASET_USED,
)
from services.catalog.errors import (
    DatasetRetractedError,
    NoPermitError,
    OutOfScopeError,
    PermitExhaustedError,
    PermitExpiredError,
    PermitTerminatedError,
)
from services.catalog.state import Catalog, DatasetStatus, PermitStatus
from services.executor.state import job_use_id

T0 = 1_800_000_000_000
DIGEST = b"\x11" * 32
DS = "bank/loans"


def metadata(**over: Any) -> dict[str, Any]:
    p = {
        "dataset_id": DS,
        "owner": "bank",
        "name": "loans",
        "description": "",
        "category": "credit",
        "format": "csv",
        "row_count": 10,
        "columns": [
            {"name": "id", "data_type": "int", "role": "id", "distribution": "DISCRETE", "stats": None},
            {"name": "x", "data_type": "double", "role": "feature", "distribution": "CONTINUOUS", "description": ""},
        ],
        "content_sha256": DIGEST,
    }
    return p | over


def request(rid: str, **over: Any) -> dict[str, Any]:
    return {
        "request_id": rid,
        "dataset_id": DS,
        "requester": "telecom",
        "purpose": "credit model",
        "scope_type": "PROJECT",
        "scope_ids": ["p1"],
        "not_after": T0 + 10_000,
        "use_limit": 2,
    } | over


def grant(rid: str, **over: Any) -> dict[str, Any]:
    return {
        "request_id": rid,
        "dataset_id": DS,
        "requester": "telecom",
        "scope_type": "PROJECT",
        "scope_ids": ["p1"],
        "not_after": T0 + 10_000,
        "use_limit": 2,
        "decided_by": "manual",
    } | over


def use(rid: str, **over: Any) -> dict[str, Any]:
    return {
        "use_id": str(uuid.uuid4()),
        "request_id": rid,
        "dataset_id": DS,
        "scope_type": "PROJECT",
        "scope_id": "p1",
        "content_sha256": DIGEST,
    } | over


def ev(cat: Catalog, kind: str, p: dict[str, Any], sender: str, at: int = T0) -> object:
    return cat.apply(kind, p, sender, at, p["dataset_id"])


@pytest.fixture
def cat() -> Catalog:
    c = Catalog()
    ev(c, DATASET_PUBLISHED, metadata(), "bank")
    return c


@pytest.fixture
def permit_id(cat: Catalog) -> str:
    rid = str(uuid.uuid4())
    ev(cat, ACCESS_REQUESTED, request(rid), "telecom")
    ev(cat, ACCESS_GRANTED, grant(rid), "bank", T0 + 1)
    return rid


def refused(  # noqa: PLR0917  # reads as the event it refuses
    cat: Catalog, error: type[Exception], kind: str, p: dict[str, Any], sender: str, at: int = T0
) -> None:
    before = copy.deepcopy((cat.datasets, cat.permits, cat.uses))
    with pytest.raises(error):
        ev(cat, kind, p, sender, at)
    assert (cat.datasets, cat.permits, cat.uses) == before, "a refused event changed the catalog"


def test_publish_update_retract_by_the_owner(cat: Catalog) -> None:
    ev(cat, DATASET_UPDATED, metadata(version=2, row_count=12, content_sha256=b"\x22" * 32), "bank", T0 + 5)
    ds = cat.datasets[DS]
    assert (ds.version, ds.row_count, ds.content_sha256, ds.updated_at) == (2, 12, b"\x22" * 32, T0 + 5)
    ev(cat, DATASET_RETRACTED, {"dataset_id": DS, "reason": "stale"}, "bank")
    assert ds.status is DatasetStatus.RETRACTED
    refused(cat, InvalidTransitionError, DATASET_UPDATED, metadata(version=3), "bank")


def test_only_the_owner_speaks_for_a_dataset(cat: Catalog) -> None:
    refused(cat, UnauthorisedError, DATASET_PUBLISHED, metadata(dataset_id="bank/other"), "telecom")
    refused(cat, UnauthorisedError, DATASET_PUBLISHED, metadata(dataset_id="telecom/x", owner="bank"), "telecom")
    refused(cat, UnauthorisedError, DATASET_UPDATED, metadata(version=2), "telecom")
    refused(cat, UnauthorisedError, DATASET_RETRACTED, {"dataset_id": DS, "reason": ""}, "telecom")


def test_publish_twice_and_out_of_order_updates_are_invalid_transitions(cat: Catalog) -> None:
    refused(cat, InvalidTransitionError, DATASET_PUBLISHED, metadata(), "bank")
    refused(cat, InvalidTransitionError, DATASET_UPDATED, metadata(version=3), "bank")
    refused(cat, InvalidTransitionError, DATASET_UPDATED, metadata(dataset_id="bank/none", version=2), "bank")


@pytest.mark.parametrize(
    "bad",
    [
        {"dataset_id": "loans"},
        {"dataset_id": "bank/Loans"},
        {"format": "xlsx"},
        {"row_count": -1},
        {"content_sha256": b"short"},
        {"columns": []},
        {"columns": [{"name": "a", "data_type": "int", "role": "key", "distribution": "DISCRETE", "description": ""}]},
        {"columns": [{"name": "a", "data_type": "int", "role": "id", "distribution": "NORMAL", "description": ""}]},
    ],
)
def test_bad_metadata_values_are_malformed_payload(bad: dict[str, Any]) -> None:
    p = metadata(**bad)
    with pytest.raises(MalformedPayloadError):
        Catalog().apply(DATASET_PUBLISHED, p, "bank", T0, p["dataset_id"])


def test_subject_must_be_the_dataset_id(cat: Catalog) -> None:
    with pytest.raises(KeyMismatchError):
        cat.apply(DATASET_RETRACTED, {"dataset_id": DS, "reason": ""}, "bank", T0, "bank/other")


def test_apply_confirm_terminate(cat: Catalog) -> None:
    rid = str(uuid.uuid4())
    ev(cat, ACCESS_REQUESTED, request(rid), "telecom")
    permit = cat.permits[rid]
    assert (permit.status, permit.owner, permit.requester) == (PermitStatus.REQUESTED, "bank", "telecom")
    ev(cat, ACCESS_GRANTED, grant(rid, use_limit=1, decided_by="policy:partners"), "bank", T0 + 3)
    assert (permit.status, permit.use_limit, permit.decided_by, permit.decided_at) == (
        PermitStatus.GRANTED,
        1,
        "policy:partners",
        T0 + 3,
    )
    ev(cat, ACCESS_TERMINATED, {"request_id": rid, "dataset_id": DS, "reason": "done"}, "telecom")
    assert (permit.status, permit.terminated_by) == (PermitStatus.TERMINATED, "telecom")
    refused(cat, InvalidTransitionError, ACCESS_TERMINATED, {"request_id": rid, "dataset_id": DS, "reason": ""}, "bank")


def test_reject_is_final(cat: Catalog) -> None:
    rid = str(uuid.uuid4())
    ev(cat, ACCESS_REQUESTED, request(rid), "telecom")
    ev(cat, ACCESS_REJECTED, {"request_id": rid, "dataset_id": DS, "reason": "no", "decided_by": "manual"}, "bank")
    assert cat.permits[rid].status is PermitStatus.REJECTED
    refused(cat, InvalidTransitionError, ACCESS_GRANTED, grant(rid), "bank")
    refused(cat, NoPermitError, DATASET_USED, use(rid), "telecom")


def test_requests_are_checked(cat: Catalog) -> None:
    rid = str(uuid.uuid4())
    refused(cat, UnauthorisedError, ACCESS_REQUESTED, request(rid), "hospital")  # requester is not the sender
    refused(cat, InvalidTransitionError, ACCESS_REQUESTED, request(rid, requester="bank"), "bank")  # owner
    refused(cat, InvalidTransitionError, ACCESS_REQUESTED, request(rid, dataset_id="bank/none"), "telecom")
    refused(cat, MalformedPayloadError, ACCESS_REQUESTED, request(rid, scope_type="TEAM"), "telecom")
    refused(cat, MalformedPayloadError, ACCESS_REQUESTED, request(rid, scope_ids=[]), "telecom")
    refused(cat, MalformedPayloadError, ACCESS_REQUESTED, request(rid, use_limit=0), "telecom")
    refused(cat, MalformedPayloadError, ACCESS_REQUESTED, request(rid, not_after=T0), "telecom")
    refused(cat, MalformedPayloadError, ACCESS_REQUESTED, request("not-a-uuid"), "telecom")
    ev(cat, ACCESS_REQUESTED, request(rid), "telecom")
    refused(cat, InvalidTransitionError, ACCESS_REQUESTED, request(rid), "telecom")  # id reused


def test_only_the_owner_decides_and_never_wider_than_asked(cat: Catalog) -> None:
    rid = str(uuid.uuid4())
    ev(cat, ACCESS_REQUESTED, request(rid), "telecom")
    refused(cat, UnauthorisedError, ACCESS_GRANTED, grant(rid), "telecom")
    rejection = {"request_id": rid, "dataset_id": DS, "reason": "", "decided_by": "manual"}
    refused(cat, UnauthorisedError, ACCESS_REJECTED, rejection, "hospital")
    refused(cat, InvalidTransitionError, ACCESS_GRANTED, grant(rid, use_limit=3), "bank")
    refused(cat, InvalidTransitionError, ACCESS_GRANTED, grant(rid, not_after=T0 + 10_001), "bank")
    refused(cat, InvalidTransitionError, ACCESS_GRANTED, grant(rid, scope_ids=["p1", "p2"]), "bank")
    refused(cat, InvalidTransitionError, ACCESS_GRANTED, grant(str(uuid.uuid4())), "bank")
    refused(cat, UnauthorisedError, ACCESS_TERMINATED, {"request_id": rid, "dataset_id": DS, "reason": ""}, "hospital")


def test_uses_count_against_the_permit_until_exhausted(cat: Catalog, permit_id: str) -> None:
    ev(cat, DATASET_USED, use(permit_id), "telecom", T0 + 2)
    ev(cat, DATASET_USED, use(permit_id), "bank", T0 + 3)  # the owner, using the data for the holder
    permit = cat.permits[permit_id]
    assert (permit.uses, permit.last_used_at, len(cat.uses)) == (2, T0 + 3, 2)
    assert permit.standing(T0 + 4) == "EXHAUSTED"
    refused(cat, PermitExhaustedError, DATASET_USED, use(permit_id), "telecom", T0 + 4)


def test_a_use_is_judged_by_its_signed_time(cat: Catalog, permit_id: str) -> None:
    ev(cat, DATASET_USED, use(permit_id), "telecom", T0 + 10_000)  # the last allowed millisecond
    refused(cat, PermitExpiredError, DATASET_USED, use(permit_id), "telecom", T0 + 10_001)
    assert cat.permits[permit_id].standing(T0 + 10_001) == "EXPIRED"


def test_uses_refused_with_their_reason(cat: Catalog, permit_id: str) -> None:
    refused(cat, NoPermitError, DATASET_USED, use(str(uuid.uuid4())), "telecom")
    refused(cat, UnauthorisedError, DATASET_USED, use(permit_id), "hospital")
    refused(cat, OutOfScopeError, DATASET_USED, use(permit_id, scope_id="p2"), "telecom")
    refused(cat, OutOfScopeError, DATASET_USED, use(permit_id, scope_type="NODE", scope_id="p1"), "telecom")
    refused(cat, InvalidTransitionError, DATASET_USED, use(permit_id, content_sha256=b"\x33" * 32), "telecom")
    once = use(permit_id)
    ev(cat, DATASET_USED, once, "telecom")
    refused(cat, InvalidTransitionError, DATASET_USED, once, "telecom")  # the same use again


def test_terminated_permit_and_retracted_dataset_refuse_uses(cat: Catalog, permit_id: str) -> None:
    other = str(uuid.uuid4())
    ev(cat, ACCESS_REQUESTED, request(other), "telecom")
    ev(cat, ACCESS_GRANTED, grant(other), "bank")
    ev(cat, ACCESS_TERMINATED, {"request_id": permit_id, "dataset_id": DS, "reason": "breach"}, "bank")
    refused(cat, PermitTerminatedError, DATASET_USED, use(permit_id), "telecom")
    ev(cat, DATASET_RETRACTED, {"dataset_id": DS, "reason": "withdrawn"}, "bank")
    refused(cat, DatasetRetractedError, DATASET_USED, use(other), "telecom")
    refused(cat, InvalidTransitionError, ACCESS_REQUESTED, request(str(uuid.uuid4())), "telecom")


def test_judging_without_commit_changes_nothing(cat: Catalog, permit_id: str) -> None:
    before = copy.deepcopy(cat.permits)
    cat.apply(DATASET_USED, use(permit_id), "telecom", T0, DS, commit=False)
    assert cat.permits == before


def test_a_use_id_signed_again_never_counts_twice_whoever_signs_it(cat: Catalog, permit_id: str) -> None:
    """A job's use id is derived (protocol 16.4): a party that restarts after publishing it may sign it again.
    Every receiver refuses the second event with INVALID_TRANSITION and the permit keeps one use."""
    first = use(permit_id, use_id=job_use_id(str(uuid.uuid4()), DS, "bank"))
    ev(cat, DATASET_USED, first, "bank")
    for sender, at in (("bank", T0 + 2), ("telecom", T0 + 3)):
        refused(cat, InvalidTransitionError, DATASET_USED, dict(first), sender, at)
    assert cat.permits[permit_id].uses == 1
    assert cat.permits[permit_id].use_ids == [first["use_id"]]


def test_a_resumed_job_is_not_refused_for_the_use_it_already_counted(cat: Catalog, permit_id: str) -> None:
    """check_use(counted=...) judges the limit without the caller's own recorded use, and only that one."""
    job = str(uuid.uuid4())
    mine = job_use_id(job, DS, "bank")
    ev(cat, DATASET_USED, use(permit_id), "bank")
    ev(cat, DATASET_USED, use(permit_id, use_id=mine), "bank")
    check = {"user": "bank", "scope_type": "PROJECT", "scope_id": "p1", "at": T0 + 5}
    with pytest.raises(PermitExhaustedError):
        cat.check_use(permit_id, DS, **check)  # type: ignore[arg-type]
    with pytest.raises(PermitExhaustedError):  # another job's (unrecorded) id frees nothing
        cat.check_use(permit_id, DS, counted=job_use_id(str(uuid.uuid4()), DS, "bank"), **check)  # type: ignore[arg-type]
    assert cat.check_use(permit_id, DS, counted=mine, **check).request_id == permit_id  # type: ignore[arg-type]


def test_job_use_ids_are_canonical_uuids_fixed_by_job_dataset_and_node() -> None:
    job = "0b6f1f2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
    same = job_use_id(job, DS, "bank")
    assert str(uuid.UUID(same)) == same
    assert uuid.UUID(same).version == 5
    assert same == job_use_id(job, DS, "bank")
    others = {
        job_use_id(job, "bank/other", "bank"),
        job_use_id(job, DS, "telecom"),
        job_use_id(str(uuid.uuid4()), DS, "bank"),
    }
    assert same not in others
    assert len(others) == 3
