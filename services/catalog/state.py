"""What the catalog materialises from its topic: the dataset directory and the permits, by one state machine.

Every receiver applies the same events in the same order (all events about a dataset share its
partition, keyed by dataset id), judging times by the events' signed ``issued_at`` and never by
its own clock, so replaying the topic rebuilds exactly the same directory and permits.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias

from mesh import events
from mesh.errors import InvalidTransitionError, KeyMismatchError, MalformedPayloadError, UnauthorisedError
from services.catalog.errors import (
    DatasetRetractedError,
    NoPermitError,
    OutOfScopeError,
    PermitExhaustedError,
    PermitExpiredError,
    PermitTerminatedError,
)

#: Any catalog event's payload: what ``Catalog.apply`` takes (each of its steps takes its own record).
CatalogPayload: TypeAlias = (
    events.DatasetPublished
    | events.DatasetUpdated
    | events.DatasetRetracted
    | events.AccessRequested
    | events.AccessGranted
    | events.AccessRejected
    | events.AccessTerminated
    | events.DatasetUsed
)

#: The part of a dataset id after ``<owner>/``: the node id rule of docs/protocol.md §4.4.
LOCAL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
ROLES = ("id", "feature", "label")
DISTRIBUTIONS = ("DISCRETE", "CONTINUOUS")
FORMATS = ("csv", "parquet")
SCOPE_TYPES = ("NODE", "PROJECT", "COMPONENT")


class DatasetStatus(StrEnum):
    PUBLISHED = "PUBLISHED"
    RETRACTED = "RETRACTED"


class PermitStatus(StrEnum):
    """The BFIA dataset-audit states, as recorded by events."""

    REQUESTED = "REQUESTED"
    GRANTED = "GRANTED"
    REJECTED = "REJECTED"
    TERMINATED = "TERMINATED"


@dataclass
class Dataset:
    """One dataset as the directory knows it: metadata only; the rows stay with the owner."""

    dataset_id: str
    owner: str
    name: str
    description: str
    category: str
    format: str
    row_count: int
    columns: list[dict[str, Any]]
    content_sha256: bytes
    published_at: int
    updated_at: int
    version: int = 1
    status: DatasetStatus = DatasetStatus.PUBLISHED
    reason: str = ""


@dataclass
class Permit:
    """One access request and, once decided, its permit (id = the request id)."""

    request_id: str
    dataset_id: str
    owner: str
    requester: str
    purpose: str
    scope_type: str
    scope_ids: list[str]
    requested_not_after: int
    requested_use_limit: int
    requested_at: int
    status: PermitStatus = PermitStatus.REQUESTED
    not_after: int | None = None
    use_limit: int | None = None
    decided_by: str = ""
    decided_at: int | None = None
    reason: str = ""
    terminated_by: str = ""
    uses: int = 0
    last_used_at: int | None = None
    use_ids: list[str] = field(default_factory=list)

    def standing(self, now_ms: int) -> str:
        """The status a person wants to see at ``now_ms``: GRANTED permits can also be EXPIRED or EXHAUSTED."""
        if self.status is PermitStatus.GRANTED:
            assert self.not_after is not None
            assert self.use_limit is not None
            if now_ms > self.not_after:
                return "EXPIRED"
            if self.uses >= self.use_limit:
                return "EXHAUSTED"
        return self.status.value


def owner_of(dataset_id: str) -> str:
    """The node a dataset id belongs to: ids are ``<owner>/<local name>``, so nobody can squat another's."""
    owner, slash, local = dataset_id.partition("/")
    if not slash or not owner or not LOCAL_NAME.match(local):
        raise MalformedPayloadError(f"dataset id {dataset_id!r} is not <owner node id>/<local name>")
    return owner


def _uuid(value: str, what: str) -> None:
    try:
        ok = str(uuid.UUID(value)) == value
    except ValueError:
        ok = False
    if not ok:
        raise MalformedPayloadError(f"{what} {value!r} is not a canonical lower-case UUID")


def _check_metadata(p: events.DatasetPublished | events.DatasetUpdated) -> None:
    if p["format"] not in FORMATS:
        raise MalformedPayloadError(f"format {p['format']!r} is not one of {', '.join(FORMATS)}")
    if p["row_count"] < 0:
        raise MalformedPayloadError(f"row_count {p['row_count']} is negative")
    if len(p["content_sha256"]) != 32:
        raise MalformedPayloadError("content_sha256 is not 32 bytes")
    names = [c["name"] for c in p["columns"]]
    if not names or "" in names or len(set(names)) != len(names):
        raise MalformedPayloadError("columns must be at least one, with unique non-empty names")
    for c in p["columns"]:
        if c["role"] not in ROLES or c["distribution"] not in DISTRIBUTIONS:
            raise MalformedPayloadError(
                f"column {c['name']!r}: role {c['role']!r} / distribution {c['distribution']!r} "
                f"not in {ROLES} / {DISTRIBUTIONS}"
            )


def _check_scope(scope_type: str, scope_ids: list[str]) -> None:
    if scope_type not in SCOPE_TYPES:
        raise MalformedPayloadError(f"scope_type {scope_type!r} is not one of {', '.join(SCOPE_TYPES)}")
    if not scope_ids or "" in scope_ids:
        raise MalformedPayloadError("scope_ids must name at least one non-empty node, project or component")


class Catalog:
    """Datasets by id, permits by request id; every method applies one verified event or raises why not.

    Each method checks everything before it changes anything, so a refused event leaves the
    catalog exactly as it was. With ``commit=False`` a method only judges: a node runs its own
    commands through the same checks before it signs anything.
    """

    def __init__(self) -> None:
        self.datasets: dict[str, Dataset] = {}
        self.permits: dict[str, Permit] = {}
        self.uses: dict[str, str] = {}  # use id -> request id

    def apply(
        self, payload_type: str, p: CatalogPayload, sender: str, issued_at: int, subject: str, *, commit: bool = True
    ) -> Dataset | Permit:
        """Apply one catalog event (subject = its dataset id, so one dataset's events share a partition)."""
        if subject != p["dataset_id"]:
            raise KeyMismatchError(f"catalog event about {p['dataset_id']!r} under subject {subject!r}")
        method = getattr(self, _METHODS[payload_type])
        result: Dataset | Permit = method(p, sender, issued_at, commit=commit)
        return result

    # -- datasets --------------------------------------------------------------------

    def _owned(self, p: events.DatasetPublished | events.DatasetUpdated | events.DatasetRetracted, sender: str) -> str:
        owner = owner_of(p["dataset_id"])
        if sender != owner or p.get("owner", owner) != owner:
            raise UnauthorisedError(f"{sender} may not speak for {p['dataset_id']}, which belongs to {owner}")
        return owner

    def _published(self, dataset_id: str) -> Dataset:
        ds = self.datasets.get(dataset_id)
        if ds is None:
            raise InvalidTransitionError(f"no dataset {dataset_id}")
        if ds.status is not DatasetStatus.PUBLISHED:
            raise InvalidTransitionError(f"dataset {dataset_id} is {ds.status}")
        return ds

    def published(self, p: events.DatasetPublished, sender: str, at: int, *, commit: bool = True) -> Dataset:
        owner = self._owned(p, sender)
        _check_metadata(p)
        if p["dataset_id"] in self.datasets:
            raise InvalidTransitionError(f"dataset {p['dataset_id']} already exists; publish an update instead")
        ds = Dataset(
            dataset_id=p["dataset_id"],
            owner=owner,
            name=p["name"],
            description=p["description"],
            category=p["category"],
            format=p["format"],
            row_count=p["row_count"],
            columns=[dict(c) for c in p["columns"]],
            content_sha256=p["content_sha256"],
            published_at=at,
            updated_at=at,
        )
        if commit:
            self.datasets[ds.dataset_id] = ds
        return ds

    def updated(self, p: events.DatasetUpdated, sender: str, at: int, *, commit: bool = True) -> Dataset:
        self._owned(p, sender)
        _check_metadata(p)
        ds = self._published(p["dataset_id"])
        if p["version"] != ds.version + 1:
            raise InvalidTransitionError(f"update to version {p['version']} of {ds.dataset_id}, now at {ds.version}")
        if commit:
            ds.name, ds.description, ds.category, ds.format = p["name"], p["description"], p["category"], p["format"]
            ds.row_count, ds.content_sha256, ds.version = p["row_count"], p["content_sha256"], p["version"]
            ds.columns = [dict(c) for c in p["columns"]]
            ds.updated_at = at
        return ds

    def retracted(self, p: events.DatasetRetracted, sender: str, at: int, *, commit: bool = True) -> Dataset:
        self._owned(p, sender)
        ds = self._published(p["dataset_id"])
        if commit:
            ds.status = DatasetStatus.RETRACTED
            ds.reason = p["reason"]
            ds.updated_at = at
        return ds

    # -- access ----------------------------------------------------------------------

    def requested(self, p: events.AccessRequested, sender: str, at: int, *, commit: bool = True) -> Permit:
        _uuid(p["request_id"], "request_id")
        _check_scope(p["scope_type"], p["scope_ids"])
        if p["use_limit"] < 1 or p["not_after"] <= at:
            raise MalformedPayloadError("a request needs use_limit >= 1 and not_after after its issued_at")
        if p["requester"] != sender:
            raise UnauthorisedError(f"{sender} may not request access for {p['requester']}")
        ds = self._published(p["dataset_id"])
        if sender == ds.owner:
            raise InvalidTransitionError(f"{sender} owns {ds.dataset_id}; an owner needs no permit")
        if p["request_id"] in self.permits:
            raise InvalidTransitionError(f"request {p['request_id']} already exists")
        permit = Permit(
            request_id=p["request_id"],
            dataset_id=ds.dataset_id,
            owner=ds.owner,
            requester=sender,
            purpose=p["purpose"],
            scope_type=p["scope_type"],
            scope_ids=list(p["scope_ids"]),
            requested_not_after=p["not_after"],
            requested_use_limit=p["use_limit"],
            requested_at=at,
        )
        if commit:
            self.permits[permit.request_id] = permit
        return permit

    def _pending(self, p: events.AccessGranted | events.AccessRejected, sender: str) -> Permit:
        """The REQUESTED permit of ``p`` that ``sender``, who must own its dataset, is deciding."""
        owner = owner_of(p["dataset_id"])
        if sender != owner:
            raise UnauthorisedError(f"only {owner}, the owner of {p['dataset_id']}, decides its requests")
        permit = self.permits.get(p["request_id"])
        if permit is None or permit.dataset_id != p["dataset_id"]:
            raise InvalidTransitionError(f"no request {p['request_id']} for {p['dataset_id']}")
        if permit.status is not PermitStatus.REQUESTED:
            raise InvalidTransitionError(f"request {permit.request_id} is {permit.status}, not REQUESTED")
        return permit

    def granted(self, p: events.AccessGranted, sender: str, at: int, *, commit: bool = True) -> Permit:
        permit = self._pending(p, sender)
        self._published(permit.dataset_id)
        if (p["requester"], p["scope_type"], list(p["scope_ids"])) != (
            permit.requester,
            permit.scope_type,
            permit.scope_ids,
        ):
            raise InvalidTransitionError(f"grant of {permit.request_id} is not for the requester and scope requested")
        if not (1 <= p["use_limit"] <= permit.requested_use_limit and p["not_after"] <= permit.requested_not_after):
            raise InvalidTransitionError(f"grant of {permit.request_id} is wider than the request")
        if commit:
            permit.status = PermitStatus.GRANTED
            permit.not_after = p["not_after"]
            permit.use_limit = p["use_limit"]
            permit.decided_by = p["decided_by"]
            permit.decided_at = at
        return permit

    def rejected(self, p: events.AccessRejected, sender: str, at: int, *, commit: bool = True) -> Permit:
        permit = self._pending(p, sender)
        if commit:
            permit.status = PermitStatus.REJECTED
            permit.reason = p["reason"]
            permit.decided_by = p["decided_by"]
            permit.decided_at = at
        return permit

    def terminated(self, p: events.AccessTerminated, sender: str, at: int, *, commit: bool = True) -> Permit:
        permit = self.permits.get(p["request_id"])
        if permit is None or permit.dataset_id != p["dataset_id"]:
            raise InvalidTransitionError(f"no request {p['request_id']} for {p['dataset_id']}")
        if sender not in (permit.owner, permit.requester):
            raise UnauthorisedError(f"only {permit.owner} or {permit.requester} may terminate {permit.request_id}")
        if permit.status not in (PermitStatus.REQUESTED, PermitStatus.GRANTED):
            raise InvalidTransitionError(f"request {permit.request_id} is already {permit.status}")
        if commit:
            permit.status = PermitStatus.TERMINATED
            permit.reason = p["reason"]
            permit.terminated_by = sender
        return permit

    # -- use -------------------------------------------------------------------------

    def check_use(
        self,
        request_id: str,
        dataset_id: str,
        *,
        user: str,
        scope_type: str,
        scope_id: str,
        at: int,
        counted: str | None = None,
    ) -> Permit:
        """The permit under which ``user`` may use ``dataset_id`` at signed time ``at``, or why not.

        The same judgement at the point of use (before a node signs a use) and in every receiver.
        ``counted``: the id of a use already recorded under this permit that the caller is
        continuing (a resumed job's own use): the use limit is judged as if it were not counted.
        """
        permit = self.permits.get(request_id)
        if permit is None or permit.dataset_id != dataset_id:
            raise NoPermitError(f"no permit {request_id} for {dataset_id}")
        if user not in (permit.requester, permit.owner):
            raise UnauthorisedError(f"permit {request_id} is {permit.requester}'s; {user} may not use it")
        if permit.status is PermitStatus.TERMINATED:
            raise PermitTerminatedError(f"permit {request_id} was terminated by {permit.terminated_by}")
        if permit.status is not PermitStatus.GRANTED:
            raise NoPermitError(f"request {request_id} is {permit.status}, not GRANTED")
        assert permit.not_after is not None
        assert permit.use_limit is not None
        if self.datasets[dataset_id].status is DatasetStatus.RETRACTED:
            raise DatasetRetractedError(f"dataset {dataset_id} was retracted by its owner")
        if at > permit.not_after:
            raise PermitExpiredError(f"permit {request_id} expired at {permit.not_after} (use at {at})")
        own = 1 if counted is not None and self.uses.get(counted) == request_id else 0
        if permit.uses - own >= permit.use_limit:
            raise PermitExhaustedError(f"permit {request_id} has used all of its {permit.use_limit} uses")
        if scope_type != permit.scope_type or scope_id not in permit.scope_ids:
            raise OutOfScopeError(
                f"permit {request_id} covers {permit.scope_type} {', '.join(permit.scope_ids)}, "
                f"not {scope_type} {scope_id}"
            )
        return permit

    def used(self, p: events.DatasetUsed, sender: str, at: int, *, commit: bool = True) -> Permit:
        _uuid(p["use_id"], "use_id")
        if p["use_id"] in self.uses:
            raise InvalidTransitionError(f"use {p['use_id']} is already recorded")
        permit = self.check_use(
            p["request_id"], p["dataset_id"], user=sender, scope_type=p["scope_type"], scope_id=p["scope_id"], at=at
        )
        if p["content_sha256"] != self.datasets[permit.dataset_id].content_sha256:
            raise InvalidTransitionError(f"use of a version of {permit.dataset_id} that is not the current one")
        if commit:
            permit.uses += 1
            permit.last_used_at = at
            permit.use_ids.append(p["use_id"])
            self.uses[p["use_id"]] = permit.request_id
        return permit


_METHODS = {
    events.DATASET_PUBLISHED: "published",
    events.DATASET_UPDATED: "updated",
    events.DATASET_RETRACTED: "retracted",
    events.ACCESS_REQUESTED: "requested",
    events.ACCESS_GRANTED: "granted",
    events.ACCESS_REJECTED: "rejected",
    events.ACCESS_TERMINATED: "terminated",
    events.DATASET_USED: "used",
}
CATALOG_TYPES = tuple(_METHODS)
