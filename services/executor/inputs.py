"""A job's inputs at this node: its datasets (and their recorded uses) and earlier jobs' outputs as tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from structlog.typing import FilteringBoundLogger

from services.executor.api import LocalDataset
from services.executor.checks import JobChecks
from services.executor.state import Job, JobStatus, job_use_id


class JobInputs(JobChecks):
    """Resolves this node's inputs of a job, and which pending jobs wait for an earlier one to end.

    A part of ExecutorService (services.executor.service), which sets the attributes below.
    """

    log: FilteringBoundLogger

    def _awaiting(self, earlier: str) -> list[Job]:
        """The pending jobs whose inputs of this node name job ``earlier``."""
        return [
            j
            for j in self.jobs.jobs.values()
            if j.status is JobStatus.PENDING and any(i["job_id"] == earlier for i in j.job_inputs_of(self.me))
        ]

    def _inputs_pending(self, job: Job) -> bool:
        """Whether an earlier job this node's inputs name is known here but has not ended yet in this node's view.

        Its last events may be on another partition than this proposal: the decision waits for them.
        """
        earlier = (self.jobs.jobs.get(i["job_id"]) for i in job.job_inputs_of(self.me))
        return any(e is not None and not e.ended for e in earlier)

    async def _record_uses(self, job: Job) -> None:
        """Record the one use of each of this node's datasets in the job through the catalog (protocol.md 16.4).

        Each use id is derived from (job, dataset, node), so a use already on the log, by this run
        or by one that crashed right after publishing it, is known to this node's catalog (caught up
        before any job resumes) and is not signed again: the permit counts it once, and it has one
        evidence record. The marker file only saves the look-up once every use is known.
        """
        marker = self.folder(job.job_id) / "uses.json"
        if marker.exists():
            return
        uses = []
        for d in job.datasets_of(self.me):
            scope = self.scope_of(job, d)
            if d["request_id"] is None or scope is None:
                continue
            use_id = job_use_id(job.job_id, d["dataset_id"], self.me)
            if use_id in uses:
                continue  # one dataset under two inputs of the job: one use of it
            if use_id in self.catalog.catalog.uses:
                self.log.info("use_already_recorded", job=job.job_id, dataset=d["dataset_id"], use_id=use_id)
            else:
                await self.catalog.use(d["request_id"], scope, use_id=use_id)
            uses.append(use_id)
        marker.write_text(json.dumps(uses), encoding="utf-8")

    def inputs_of(self, job: Job) -> dict[str, LocalDataset]:
        """This node's inputs of ``job`` by input name: its datasets, and earlier jobs' outputs as tables."""
        out = {}
        for d in job.datasets_of(self.me):
            ds = self.catalog.catalog.datasets[d["dataset_id"]]
            path = Path(self.catalog.local.get(d["dataset_id"]).path)
            out[d["input"]] = LocalDataset(d["dataset_id"], path, {c["name"]: c["role"] for c in ds.columns})
        for i in job.job_inputs_of(self.me):
            out[i["input"]] = self._output_table(job, i)
        return out

    def _output_table(self, job: Job, named: dict[str, Any]) -> LocalDataset:
        """An earlier job's stored output as a CSV table in this job's folder: a column per tensor, ``ids`` the id."""
        columns = self.output_of(job, named)
        names = sorted(columns)
        path = self.folder(job.job_id) / "inputs" / f"{named['input']}.csv"
        path.parent.mkdir(exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(names)
            writer.writerows(zip(*(columns[n].tolist() for n in names), strict=True))
        roles = {n: "id" if n == "ids" else "feature" for n in names}
        return LocalDataset(f"job:{named['job_id']}/{named['output']}", path, roles)
