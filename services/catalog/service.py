"""The catalog service: publish datasets as metadata, request and decide access, record every use.

Every catalog event is keyed by its dataset id, so all events about one dataset are in one
partition, in one order, for every receiver. Each step a node takes is published with its
evidence (``catalog.<verb>``, see mesh.evidence.GOVERNED).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aiokafka.errors import KafkaError

from mesh import events
from mesh.clock import now_ms
from mesh.envelope import Envelope
from mesh.errors import ConfigurationError, InvalidTransitionError, MeshError
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
from mesh.evidence import GOVERNED
from mesh.service import Context, Event, Service, handles
from services.catalog.files import describe
from services.catalog.policy import Policy
from services.catalog.state import (
    CATALOG_TYPES,
    LOCAL_NAME,
    Catalog,
    CatalogPayload,
    Dataset,
    Permit,
    PermitStatus,
)

#: Where an owner's access policy lives in its home, if it has one.
POLICY_FILE = "catalog-policy.toml"


@dataclass(frozen=True)
class LocalDataset:
    """Where the owner keeps a dataset's rows, and how it describes them; never published."""

    path: str
    id_columns: list[str]
    label_columns: list[str]
    with_stats: bool

    @classmethod
    def at(cls, path: Path, id_columns: list[str], label_columns: list[str], with_stats: bool) -> LocalDataset:
        return cls(str(path.resolve()), id_columns, label_columns, with_stats)


class LocalDatasets:
    """The owner's own index of its datasets' files (``state/catalog/datasets.json`` in its home)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> dict[str, LocalDataset]:
        if not self.path.exists():
            return {}
        raw = json.loads(self.path.read_text(encoding="utf-8"))
        return {k: LocalDataset(**v) for k, v in raw.items()}

    def get(self, dataset_id: str) -> LocalDataset:
        found = self.all().get(dataset_id)
        if found is None:
            raise ConfigurationError(f"{dataset_id} is not a dataset of this node (see 'interfed catalog list')")
        return found

    def put(self, dataset_id: str, entry: LocalDataset) -> None:
        entries = {k: vars(v) for k, v in self.all().items()} | {dataset_id: vars(entry)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(self.path)


class CatalogService(Service):
    """Keeps the federation's dataset directory and permits; for its own datasets, decides requests."""

    name: ClassVar[str] = "catalog"
    topics: ClassVar[tuple[str, ...]] = ("catalog",)

    def __init__(self, ctx: Context, *, readonly: bool = False, policy: Policy | None = None) -> None:
        super().__init__(ctx, readonly=readonly)
        self.me = ctx.config.node_id
        self.catalog = Catalog()
        self.local = LocalDatasets(ctx.home.state_path / "catalog" / "datasets.json")
        if policy is None and (ctx.home.path / POLICY_FILE).exists():
            policy = Policy.load(ctx.home.path / POLICY_FILE)
        self.policy = policy
        self._to_decide: asyncio.Queue[str] = asyncio.Queue()
        self._deciding: set[str] = set()

    # -- handlers ------------------------------------------------------------------------

    @handles(*CATALOG_TYPES)
    async def on_catalog_event(self, ev: Event[CatalogPayload]) -> None:
        env = ev.envelope
        result = self.catalog.apply(env.payload_type, ev.payload, env.sender, env.issued_at, env.subject)
        self.log.info("catalog_applied", change=env.payload_type.rsplit(".", 1)[1], subject=env.subject)
        if (
            env.payload_type == ACCESS_REQUESTED
            and isinstance(result, Permit)
            and result.owner == self.me
            and self.policy is not None
            and self.caught_up.is_set()
        ):
            self._to_decide.put_nowait(result.request_id)

    # -- deciding requests for this node's datasets -----------------------------------------

    async def on_start(self) -> None:
        # Requests that arrived while this node was away are decided now, in the order they came.
        for permit in self.catalog.permits.values():
            if permit.owner == self.me and permit.status is PermitStatus.REQUESTED:
                self._to_decide.put_nowait(permit.request_id)

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [] if self.readonly or self.policy is None else [self._decide_by_policy()]

    async def _decide_by_policy(self) -> None:
        assert self.policy is not None
        while True:
            request_id = await self._to_decide.get()
            permit = self.catalog.permits[request_id]
            if permit.status is not PermitStatus.REQUESTED or request_id in self._deciding:
                continue
            decision = self.policy.decide(permit)
            self.log.info("policy_decision", request_id=request_id, verdict=decision.verdict, by=decision.decided_by)
            try:
                if decision.verdict == "grant":
                    await self.grant(request_id, decided_by=decision.decided_by)
                elif decision.verdict == "reject":
                    await self.reject(request_id, decision.reason, decided_by=decision.decided_by)
            except (KafkaError, TimeoutError, MeshError) as exc:
                # Left REQUESTED (the broker may be back, or the dataset retracted, by the next start,
                # which decides it again); a failed decision must not stop the service.
                self.log.warning("decision_not_published", request_id=request_id, error=f"{type(exc).__name__}: {exc}")

    # -- commands: each is judged by the same state machine before it is signed ---------------

    async def _step(self, payload_type: str, payload: CatalogPayload) -> Envelope:
        self.catalog.apply(payload_type, payload, self.me, now_ms(), payload["dataset_id"], commit=False)
        return await self.ctx.publisher.publish(
            "catalog", payload_type, payload, subject=payload["dataset_id"], evidence=GOVERNED[payload_type]
        )

    def _metadata(
        self, dataset_id: str, entry: LocalDataset, name: str, description: str, category: str
    ) -> events.DatasetPublished:
        """The published metadata of a local file: reads the whole file, so commands run it in a thread."""
        found = describe(
            Path(entry.path),
            id_columns=entry.id_columns,
            label_columns=entry.label_columns,
            with_stats=entry.with_stats,
        )
        return {
            "dataset_id": dataset_id,
            "owner": self.me,
            "name": name,
            "description": description,
            "category": category,
            "format": found.format,
            "row_count": found.row_count,
            "columns": found.columns,
            "content_sha256": found.content_sha256,
        }

    async def publish(
        self,
        path: Path,
        local_name: str,
        *,
        name: str | None = None,
        description: str = "",
        category: str = "",
        id_columns: tuple[str, ...] = (),
        label_columns: tuple[str, ...] = (),
        with_stats: bool = False,
    ) -> str:
        """Describe a local file and publish its metadata as ``<this node>/<local_name>``; returns the id."""
        if not LOCAL_NAME.match(local_name):
            raise ConfigurationError(f"dataset name {local_name!r}: lower-case letters, digits, . _ - (1-63)")
        dataset_id = f"{self.me}/{local_name}"
        entry = LocalDataset.at(path, list(id_columns), list(label_columns), with_stats)
        payload = await asyncio.to_thread(self._metadata, dataset_id, entry, name or local_name, description, category)
        await self._step(DATASET_PUBLISHED, payload)
        self.local.put(dataset_id, entry)
        return dataset_id

    async def update(self, dataset_id: str, path: Path | None = None) -> int:
        """Describe the dataset's file again (or a new file) and publish the new metadata and digest;
        returns the new version."""
        current = self._current(dataset_id)
        entry = self.local.get(dataset_id)
        if path is not None:
            entry = LocalDataset.at(path, entry.id_columns, entry.label_columns, entry.with_stats)
        metadata = await asyncio.to_thread(
            self._metadata, dataset_id, entry, current.name, current.description, current.category
        )
        payload: events.DatasetUpdated = {**metadata, "version": current.version + 1}
        await self._step(DATASET_UPDATED, payload)
        self.local.put(dataset_id, entry)
        return payload["version"]

    async def retract(self, dataset_id: str, reason: str) -> Dataset:
        current = self._current(dataset_id)
        await self._step(DATASET_RETRACTED, events.DatasetRetracted({"dataset_id": dataset_id, "reason": reason}))
        return current

    async def request(
        self, dataset_id: str, purpose: str, *, scope_type: str, scope_ids: list[str], not_after: int, use_limit: int
    ) -> str:
        """Apply for access to another node's dataset; returns the request (and permit) id."""
        request_id = str(uuid.uuid4())
        payload: events.AccessRequested = {
            "request_id": request_id,
            "dataset_id": dataset_id,
            "requester": self.me,
            "purpose": purpose,
            "scope_type": scope_type,
            "scope_ids": scope_ids,
            "not_after": not_after,
            "use_limit": use_limit,
        }
        await self._step(ACCESS_REQUESTED, payload)
        return request_id

    async def grant(self, request_id: str, *, decided_by: str = "manual") -> Permit:
        """Owner: grant the permit as requested."""
        permit = self._request(request_id)
        self._deciding.add(request_id)
        payload: events.AccessGranted = {
            "request_id": request_id,
            "dataset_id": permit.dataset_id,
            "requester": permit.requester,
            "scope_type": permit.scope_type,
            "scope_ids": permit.scope_ids,
            "not_after": permit.requested_not_after,
            "use_limit": permit.requested_use_limit,
            "decided_by": decided_by,
        }
        await self._step(ACCESS_GRANTED, payload)
        return permit

    async def reject(self, request_id: str, reason: str, *, decided_by: str = "manual") -> Permit:
        permit = self._request(request_id)
        self._deciding.add(request_id)
        payload: events.AccessRejected = {
            "request_id": request_id,
            "dataset_id": permit.dataset_id,
            "reason": reason,
            "decided_by": decided_by,
        }
        await self._step(ACCESS_REJECTED, payload)
        return permit

    async def terminate(self, request_id: str, reason: str) -> Permit:
        """The owner or the requester ends a request or permit."""
        permit = self._request(request_id)
        payload: events.AccessTerminated = {"request_id": request_id, "dataset_id": permit.dataset_id, "reason": reason}
        await self._step(ACCESS_TERMINATED, payload)
        return permit

    async def use(self, request_id: str, scope_id: str, *, use_id: str | None = None) -> str:
        """Record one use of a dataset under permit ``request_id`` for ``scope_id``; returns the use id.

        ``use_id``: the caller's id for this use (a job's is derived from the job, protocol.md
        16.4); by default a fresh random one. Refused here, before anything is signed, if the
        permit does not allow it now (expired, used up, terminated, out of scope, an id already
        recorded, ...), with the reason every receiver would give.
        """
        permit = self._request(request_id)
        use_id = use_id or str(uuid.uuid4())
        payload: events.DatasetUsed = {
            "use_id": use_id,
            "request_id": request_id,
            "dataset_id": permit.dataset_id,
            "scope_type": permit.scope_type,
            "scope_id": scope_id,
            "content_sha256": self.catalog.datasets[permit.dataset_id].content_sha256,
        }
        await self._step(DATASET_USED, payload)
        return use_id

    # -- lookups -------------------------------------------------------------------------

    def _current(self, dataset_id: str) -> Dataset:
        found = self.catalog.datasets.get(dataset_id)
        if found is None:
            raise InvalidTransitionError(f"no dataset {dataset_id}; list them with 'interfed catalog list'")
        return found

    def _request(self, request_id: str) -> Permit:
        found = self.catalog.permits.get(request_id)
        if found is None:
            raise InvalidTransitionError(f"no request {request_id}; list them with 'interfed catalog permits'")
        return found
