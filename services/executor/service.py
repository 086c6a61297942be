"""The executor service: jobs on ``tasks`` (propose, accept or reject, start, stop, finish, release) and their runs.

Every party materialises every job (services.executor.state); a participant judges each
proposal by its installation, its permits and its policy (services.executor.checks), and once
the initiator has started a job it runs its component on its inputs (services.executor.inputs)
with a ``BusChannel`` on ``rounds``. Each step is published with its evidence (``tasks.<verb>``,
mesh.evidence.GOVERNED). A restarted executor replays both topics, so its inbox holds every
round message addressed to it, and resumes a RUNNING job from its component's last checkpoint:
what it re-sends has identities already delivered, and receivers ignore them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ClassVar

from aiokafka.errors import KafkaError

from accel.client import AccelClient
from mesh import events
from mesh.clock import now_ms
from mesh.envelope import Envelope
from mesh.errors import ConfigurationError, InvalidTransitionError, MeshError
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
    ROUND_PART,
)
from mesh.evidence import GOVERNED
from mesh.private_files import private_folder
from mesh.service import Context, Event, Service, handles
from services.catalog.service import CatalogService
from services.components.service import ComponentsService
from services.executor.api import ComponentResult, JobContext, QuorumError
from services.executor.checkpoints import FileCheckpoints, model_digest
from services.executor.errors import (
    COMPONENT_FAILED,
    MANUAL_REJECT,
    POLICY_REFUSED,
    QUORUM_LOST,
    JobCheckError,
    NotParticipantError,
    UnknownJobError,
)
from services.executor.inputs import JobInputs
from services.executor.policy import JobPolicy
from services.executor.state import (
    JOB_TYPES,
    Job,
    JobPayload,
    Jobs,
    JobStatus,
    release_digest,
)
from services.executor.transport import BusChannel, Inbox

POLICY_FILE = "job-policy.toml"


class ExecutorService(JobInputs, Service):
    """Keeps every job; for the jobs this node takes part in, decides, runs and reports."""

    name: ClassVar[str] = "executor"
    topics: ClassVar[tuple[str, ...]] = ("tasks", "rounds")

    def __init__(
        self,
        ctx: Context,
        *,
        catalog: CatalogService,
        components: ComponentsService | None,
        accel: AccelClient | None,
        policy: JobPolicy | None = None,
        readonly: bool = False,
    ) -> None:
        """``accel``: where the jobs' Paillier work runs (``services.accel.placement``); None only for a read-only
        executor, which runs no job."""
        super().__init__(ctx, readonly=readonly)
        self.me = ctx.config.node_id
        self.jobs = Jobs()
        self.catalog = catalog
        self.components = components
        if policy is None and (ctx.home.path / POLICY_FILE).exists():
            policy = JobPolicy.load(ctx.home.path / POLICY_FILE)
        self.policy = policy
        self.accel = accel
        self.inbox = Inbox()
        self.results: dict[str, ComponentResult] = {}
        self._work: asyncio.Queue[Callable[[], Coroutine[Any, Any, None]]] = asyncio.Queue()
        self._runs: dict[str, asyncio.Task[None]] = {}
        # Steps this node has signed but may not have read back yet: each is taken once.
        self._taken: set[tuple[str, str]] = set()
        self._ready = False  # set once this executor and the views it checks jobs against have caught up

    # -- handlers ------------------------------------------------------------------------

    @handles(*JOB_TYPES)
    async def on_job_event(self, ev: Event[JobPayload]) -> None:
        env = ev.envelope
        job = self.jobs.apply(env.payload_type, ev.payload, env.sender, env.issued_at, env.subject)
        self.log.info("job_applied", change=env.payload_type.rsplit(".", 1)[1], job=job.job_id, status=job.status)
        if self._ready:
            self._react(job)
            if job.ended:  # decisions that waited for this job's end (an input of theirs)
                for later in self._awaiting(job.job_id):
                    self._react(later)

    @handles(ROUND_PART)
    async def on_round_part(self, ev: Event[events.RoundPart]) -> None:
        p = ev.payload
        if ev.envelope.subject != p["job_id"]:
            raise InvalidTransitionError(f"round message of job {p['job_id']} under subject {ev.envelope.subject!r}")
        job = self.jobs.jobs.get(p["job_id"])
        if job is None:
            raise UnknownJobError(f"no job {p['job_id']}")
        if ev.sender not in job.nodes:
            raise NotParticipantError(f"{ev.sender} is not a participant of job {job.job_id} and may not send in it")
        if job.ended:
            return  # late pieces of an ended job: nobody gathers them
        to = job.roles.get(p["to"], [p["to"]])
        if self.me in to:
            self.inbox.add(ev.sender, p)

    # -- reacting to the state: what this node does next ----------------------------------

    async def on_start(self) -> None:
        # A job's checks read the catalog's permits and the store's installations: deciding or
        # resuming before those have replayed their own topics would fail a job this node could run.
        for view in (self.catalog, self.components):
            if view is not None:
                await view.caught_up.wait()
        self._ready = True
        for job in self.jobs.jobs.values():
            self._react(job)

    def background(self) -> list[Coroutine[Any, Any, None]]:
        return [] if self.readonly else [self._worker()]

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop``; then cancel the job runs still going (a cancelled run publishes nothing: its job stays
        RUNNING and this node resumes it from its checkpoints when it starts again) and only then release what
        its accelerator client owns (the node's worker processes), so no run sees its workers stop."""
        try:
            await super().run(stop)
        finally:
            runs = [run for run in self._runs.values() if not run.done()]
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            if self.accel is not None:
                await self.accel.close()

    def _react(self, job: Job) -> None:
        if self.readonly or self.me not in job.nodes:
            return
        if job.status is JobStatus.PENDING and self.me not in job.accepted and self.policy is not None:
            self._work.put_nowait(lambda: self._decide_by_policy(job.job_id))
        elif job.status is JobStatus.READY and job.initiator == self.me:
            self._work.put_nowait(lambda: self.start(job.job_id))
        elif job.status is JobStatus.RUNNING and self.me not in job.finished and job.job_id not in self._runs:
            self._runs[job.job_id] = asyncio.create_task(self._run(job), name=f"job-{job.job_id}")
        elif job.ended:
            run = self._runs.get(job.job_id)
            if run is not None and not run.done():
                run.cancel()  # stopped, or another party failed: nobody will answer our rounds
            self.inbox.forget_job(job.job_id)
        if (
            job.release_sha256 is not None
            and not job.released
            and job.initiator == self.me
            and job.release_approved == set(job.nodes)
        ):
            self._work.put_nowait(lambda: self._release(job.job_id))

    async def _worker(self) -> None:
        while True:
            step = await self._work.get()
            try:
                await step()
            except (KafkaError, TimeoutError, MeshError) as exc:
                self.log.warning("job_step_failed", error=f"{type(exc).__name__}: {exc}")

    async def _decide_by_policy(self, job_id: str) -> None:
        job = self.jobs.jobs[job_id]
        if job.status is not JobStatus.PENDING or self.me in job.accepted or (job_id, "decide") in self._taken:
            return
        if self._inputs_pending(job):
            return  # decided when the earlier job ends (on_job_event)
        try:
            self.check(job)
        except JobCheckError as exc:
            await self.reject(job_id, exc.reason, str(exc), decided_by="check")
            return
        assert self.policy is not None
        verdict, by, reason = self.policy.decide(job)
        if verdict == "accept":
            await self.accept(job_id, decided_by=by)
        elif verdict == "reject":
            await self.reject(job_id, POLICY_REFUSED, reason, decided_by=by)

    # -- commands --------------------------------------------------------------------------

    async def _step(self, payload_type: str, payload: dict[str, Any]) -> Envelope:
        self.jobs.apply(payload_type, payload, self.me, now_ms(), payload["job_id"], commit=False)
        return await self.ctx.publisher.publish(
            "tasks", payload_type, payload, subject=payload["job_id"], evidence=GOVERNED[payload_type]
        )

    async def propose(
        self,
        *,
        component: tuple[str, str],
        participants: list[tuple[str, str]],
        datasets: list[tuple[str, str, str, str | None]],
        params: dict[str, Any],
        project: str,
        round_deadline: float = 60.0,
        seed: int = 0,
        job_inputs: Sequence[tuple[str, str, str, str]] = (),
    ) -> str:
        """Propose a job: participants as (node, role) in slot order; datasets as (node, input, dataset, permit);
        job inputs, outputs of earlier jobs, as (node, input, earlier job id, output name)."""
        code, version = component
        found = self._installed(code, version)
        if found is None:
            raise ConfigurationError(f"component {code} {version} is not installed here; install it first")
        slots: dict[str, int] = {}
        parts = []
        for node, role in participants:
            parts.append({"node_id": node, "role": role, "slot": slots.get(role, 0)})
            slots[role] = slots.get(role, 0) + 1
        job_id = str(uuid.uuid4())
        payload = {
            "job_id": job_id,
            "initiator": self.me,
            "project": project,
            "component_code": code,
            "component_version": version,
            "component_sha256": found.artifact_sha256,
            "participants": parts,
            "datasets": [{"node_id": n, "input": i, "dataset_id": d, "request_id": r} for n, i, d, r in datasets],
            "job_inputs": [{"node_id": n, "input": i, "job_id": j, "output": o} for n, i, j, o in job_inputs],
            "params_json": json.dumps(params, sort_keys=True),
            "round_deadline_ms": int(round_deadline * 1000),
            "seed": seed,
        }
        await self._step(JOB_PROPOSED, payload)
        return job_id

    async def accept(self, job_id: str, *, decided_by: str = "manual") -> None:
        job = self._job(job_id)
        self.check(job)  # by hand too: a person cannot accept what this node could not run
        self._take(job_id, "decide")
        await self._step(JOB_ACCEPTED, {"job_id": job_id, "decided_by": decided_by})

    async def reject(self, job_id: str, reason_code: str, reason: str, *, decided_by: str = "manual") -> None:
        self._job(job_id)
        code = reason_code or MANUAL_REJECT
        self._take(job_id, "decide")
        await self._step(
            JOB_REJECTED, {"job_id": job_id, "reason_code": code, "reason": reason, "decided_by": decided_by}
        )

    async def start(self, job_id: str) -> None:
        if self._job(job_id).status is JobStatus.READY and (job_id, "start") not in self._taken:
            self._take(job_id, "start")
            await self._step(JOB_STARTED, {"job_id": job_id})

    async def stop(self, job_id: str, reason: str) -> None:
        await self._step(JOB_STOPPED, {"job_id": job_id, "reason": reason})

    async def propose_release(self, job_id: str) -> bytes:
        """Initiator: propose releasing the model the participants reported, by its release digest (protocol 16.6)."""
        job = self._job(job_id)
        digest = release_digest(job)
        if digest is None:
            raise InvalidTransitionError(f"no participant of job {job_id} reported a model")
        await self._step(MODEL_RELEASE_PROPOSED, {"job_id": job_id, "model_sha256": digest})
        return bytes(digest)

    async def approve_release(self, job_id: str) -> None:
        job = self._job(job_id)
        if job.release_sha256 is None:
            raise InvalidTransitionError(f"no release of job {job_id} is proposed")
        await self._step(MODEL_RELEASE_APPROVED, {"job_id": job_id, "model_sha256": job.release_sha256})

    async def _release(self, job_id: str) -> None:
        job = self.jobs.jobs[job_id]
        if not job.released and job.release_sha256 is not None and (job_id, "release") not in self._taken:
            self._take(job_id, "release")
            await self._step(MODEL_RELEASED, {"job_id": job_id, "model_sha256": job.release_sha256})

    def _take(self, job_id: str, what: str) -> None:
        if (job_id, what) in self._taken:
            raise InvalidTransitionError(f"this node already took the {what} step of job {job_id}")
        self._taken.add((job_id, what))

    def _accelerator(self) -> AccelClient:
        if self.accel is None:
            raise RuntimeError("a read-only executor runs no job: it was made without an accelerator")
        return self.accel

    def _job(self, job_id: str) -> Job:
        found = self.jobs.jobs.get(job_id)
        if found is None:
            raise InvalidTransitionError(f"no job {job_id}; list them with 'interfed job list'")
        return found

    async def _run(self, job: Job) -> None:
        finish: dict[str, Any] = {
            "job_id": job.job_id,
            "ok": True,
            "model_sha256": b"",
            "metrics_json": "{}",
            "reason_code": "",
            "reason": "",
        }
        try:
            # made 0700 where missing: it holds checkpoints with the component's keys, and input rows
            private_folder(self.folder(job.job_id))
            params = self.check(job)
            await self._record_uses(job)
            found = self._installed(job.component_code, job.component_version)
            assert found is not None
            progress = self.folder(job.job_id) / "progress.json"

            def report(round_no: int, metrics: Any) -> None:
                job.progress = {"round": round_no, "metrics": dict(metrics)}
                progress.write_text(json.dumps(job.progress), encoding="utf-8")

            channel = BusChannel(self.ctx.publisher, self.inbox, job.job_id, self.me, job.roles)
            ctx = JobContext(
                job_id=job.job_id,
                me=self.me,
                role=job.role_of(self.me),
                roles=job.roles,
                params=params,
                inputs=self.inputs_of(job),
                channel=channel,
                accel=self._accelerator(),
                checkpoints=FileCheckpoints(self.folder(job.job_id) / "checkpoints"),
                round_deadline=job.round_deadline_ms / 1000,
                seed=job.seed,
                report=report,
            )
            result = await found.load().run(ctx)
            self.results[job.job_id] = result
            if result.model:
                finish["model_sha256"] = model_digest(result.model)
                FileCheckpoints(self.folder(job.job_id) / "model").save(0, result.model)
            metrics = {k: float(v) for k, v in result.metrics.items()} | {"bytes_sent": float(channel.sent_bytes)}
            finish["metrics_json"] = json.dumps(metrics, sort_keys=True)
        except asyncio.CancelledError:
            self.log.info("job_run_cancelled", job=job.job_id, status=job.status)
            raise
        except QuorumError as exc:
            finish |= {"ok": False, "reason_code": QUORUM_LOST, "reason": str(exc)}
        except JobCheckError as exc:
            finish |= {"ok": False, "reason_code": exc.reason, "reason": str(exc)}
        except Exception as exc:  # a component's bug fails its job, not the node
            self.log.exception("component_failed", job=job.job_id)
            finish |= {"ok": False, "reason_code": COMPONENT_FAILED, "reason": f"{type(exc).__name__}: {exc}"}
        if job.status is JobStatus.RUNNING:
            await self._step(PARTY_FINISHED, finish)
