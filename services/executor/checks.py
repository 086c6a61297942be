"""The acceptance checks a participant makes of a job: installation, roles, parameters, permits, job inputs.

A participant runs them when it decides on a proposal (by policy or by hand) and again before it
runs the job; a failed check names its reason code (services.executor.errors), which the rejection
or the party's failure carries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mesh.clock import now_ms
from mesh.errors import ConfigurationError, MeshError
from mesh.service import Context
from services.catalog.service import CatalogService
from services.components.errors import ParamsError
from services.components.service import ComponentsService
from services.components.spec import validate_params
from services.components.store import InstalledComponent
from services.executor.checkpoints import FileCheckpoints
from services.executor.errors import (
    BAD_PARAMS,
    BAD_ROLES,
    COMPONENT_DIGEST_MISMATCH,
    COMPONENT_DISABLED,
    COMPONENT_NOT_INSTALLED,
    JOB_INPUT_INVALID,
    PERMIT_INVALID,
    JobCheckError,
)
from services.executor.state import Job, Jobs, JobStatus, job_use_id


class JobChecks:
    """The executor's checks of a job against this node's views: its component store, the catalog, its jobs.

    A part of ExecutorService (services.executor.service), which sets the attributes below.
    """

    ctx: Context
    me: str
    jobs: Jobs
    catalog: CatalogService
    components: ComponentsService | None

    def _installed(self, code: str, version: str) -> InstalledComponent | None:
        if self.components is None:
            raise ConfigurationError("this executor was opened without a component store (read-only views)")
        return self.components.installed(code, version)

    def folder(self, job_id: str) -> Path:
        return self.ctx.home.state_path / "executor" / job_id

    def check(self, job: Job) -> dict[str, Any]:
        """This node's checks of a job it takes part in: installation, roles, parameters, permits.

        Returns the validated parameters; raises JobCheckError with the reason code of a rejection.
        """
        found = self._installed(job.component_code, job.component_version)
        what = f"{job.component_code} {job.component_version}"
        if found is None:
            raise JobCheckError(COMPONENT_NOT_INSTALLED, f"component {what} is not installed here")
        if not found.enabled:
            raise JobCheckError(COMPONENT_DISABLED, f"component {what} is disabled here")
        if found.artifact_sha256 != job.component_sha256:
            raise JobCheckError(
                COMPONENT_DIGEST_MISMATCH,
                f"the installed {what} is {found.artifact_sha256.hex()[:16]}, not the proposed one",
            )
        assert self.components is not None
        try:  # retracted since, its publisher revoked since, or installed with another than the published artifact
            found = self.components.runnable(job.component_code, job.component_version)
        except MeshError as exc:
            raise JobCheckError(COMPONENT_DISABLED, f"component {what} may not run here: {exc}") from None
        if job.role_of(self.me) not in found.spec.roles:
            raise JobCheckError(BAD_ROLES, f"component {what} has no role {job.role_of(self.me)}")
        try:
            params = validate_params(found.spec, job.params)
        except ParamsError as exc:
            raise JobCheckError(BAD_PARAMS, str(exc)) from None
        for d in job.datasets_of(self.me):
            self.scope_of(job, d)
        for i in job.job_inputs_of(self.me):
            self.output_of(job, i)
        return params

    def scope_of(self, job: Job, d: dict[str, Any]) -> str | None:
        """The permit scope id under which this node uses dataset ``d`` in ``job`` (None: its own, no permit)."""
        ds = self.catalog.catalog.datasets.get(d["dataset_id"])
        if ds is None or ds.owner != self.me:
            raise JobCheckError(PERMIT_INVALID, f"dataset {d['dataset_id']} is not a dataset of {self.me}")
        if d["request_id"] is None:
            if job.initiator != self.me:
                raise JobCheckError(PERMIT_INVALID, f"dataset {d['dataset_id']} is named without a permit")
            return None
        permit = self.catalog.catalog.permits.get(d["request_id"])
        if permit is None or permit.requester != job.initiator:
            raise JobCheckError(PERMIT_INVALID, f"no permit {d['request_id']} of {job.initiator} for {d['dataset_id']}")
        scope = {"PROJECT": job.project, "COMPONENT": job.component_code, "NODE": job.initiator}.get(
            permit.scope_type, ""
        )
        try:
            self.catalog.catalog.check_use(
                d["request_id"],
                d["dataset_id"],
                user=self.me,
                scope_type=permit.scope_type,
                scope_id=scope,
                at=now_ms(),
                counted=job_use_id(job.job_id, d["dataset_id"], self.me),
            )
        except MeshError as exc:
            raise JobCheckError(PERMIT_INVALID, f"{exc.reason}: {exc}") from None
        return scope

    def output_of(self, job: Job, named: dict[str, Any]) -> dict[str, Any]:
        """The stored output of an earlier job that ``job`` names as this node's input ``named`` (protocol.md 16.4).

        Raises JobCheckError(JOB_INPUT_INVALID) with the reason when it may not or cannot be used.
        """
        earlier = self.jobs.jobs.get(named["job_id"])
        what = f"input {named['input']}: job {named['job_id']}"
        if earlier is None:
            raise JobCheckError(JOB_INPUT_INVALID, f"{what} is unknown here")
        if earlier.project != job.project:
            raise JobCheckError(JOB_INPUT_INVALID, f"{what} is of project {earlier.project!r}, not {job.project!r}")
        if self.me not in earlier.nodes:
            raise JobCheckError(JOB_INPUT_INVALID, f"{what}: {self.me} took no part in it")
        if earlier.status is not JobStatus.SUCCESS:
            ended = f" ({earlier.reason_code}: {earlier.reason})" if earlier.reason_code else ""
            raise JobCheckError(JOB_INPUT_INVALID, f"{what} is {earlier.status}, not SUCCESS{ended}")
        found = self._installed(earlier.component_code, earlier.component_version)
        outputs = [o.name for o in found.spec.outputs] if found is not None else []
        if named["output"] not in outputs:
            raise JobCheckError(
                JOB_INPUT_INVALID,
                f"{what} ran {earlier.component_code} {earlier.component_version}, whose outputs here are "
                f"{', '.join(outputs) or 'unknown'}, not {named['output']!r}",
            )
        stored = FileCheckpoints(self.folder(earlier.job_id) / "model").latest()
        if stored is None or not stored[1]:
            raise JobCheckError(JOB_INPUT_INVALID, f"{what}: this node holds no stored output of it")
        columns = stored[1]
        lengths: dict[str, tuple[int, ...]] = {name: getattr(v, "shape", ()) for name, v in columns.items()}
        if any(len(shape) != 1 for shape in lengths.values()) or len({s[0] for s in lengths.values()}) != 1:
            raise JobCheckError(JOB_INPUT_INVALID, f"{what}: its output {lengths} is not a table of equal columns")
        return columns
