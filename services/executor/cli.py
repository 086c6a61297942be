"""CLI for jobs: propose, list, show, watch (round progress), accept, reject, stop, release and approve it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from mesh.errors import ConfigurationError
from services.registry.cli import BootstrapOpt, HomeOpt, JsonOpt, ReplayOpt, _open_home, _settings, node_view, replayed

if TYPE_CHECKING:
    from mesh.settings import MeshSettings
    from services.executor.service import ExecutorService
    from services.executor.state import Job

out = Console(highlight=False)
T = TypeVar("T")

job_app = typer.Typer(
    help="Jobs: a component run by several parties once every one of them accepts.", no_args_is_help=True
)
ReasonOpt = Annotated[str, typer.Option(help="why, recorded in the event")]
COLOURS = {"PENDING": "cyan", "READY": "blue", "RUNNING": "yellow", "SUCCESS": "green", "FAILED": "red"}


@contextlib.asynccontextmanager
async def job_session(home: Path, settings: MeshSettings, *, with_store: bool) -> AsyncIterator[ExecutorService]:
    """A read-only executor (and catalog, and with ``with_store`` the components directory over this node's
    store) for one command, caught up with ``tasks``, ``rounds``, ``catalog`` (and ``components``, ``artifacts``).

    It neither dead-letters, decides nor runs jobs: that is the running node's job.
    """
    from mesh.node import connect, open_context, running
    from services.catalog.service import CatalogService
    from services.components.service import ComponentsService
    from services.executor.service import ExecutorService

    assert settings.bootstrap
    node = _open_home(home)
    async with connect(settings, settings.bootstrap, node, applicant=False) as bus:
        ctx = open_context(node, bus, settings)
        catalog = CatalogService(ctx, readonly=True)
        store = ComponentsService(ctx, readonly=True) if with_store else None
        executor = ExecutorService(ctx, catalog=catalog, components=store, accel=None, readonly=True)
        async with contextlib.AsyncExitStack() as stack:
            for svc in (catalog, store):  # the directories the executor's checks read, caught up first
                if svc is not None:
                    await stack.enter_async_context(running(svc))
            await stack.enter_async_context(running(executor))
            yield executor


def _run(
    home: Path, bootstrap: str | None, action: Callable[[ExecutorService], Awaitable[T]], *, with_store: bool = False
) -> T:
    settings = _settings(bootstrap)

    async def go() -> T:
        async with job_session(home, settings, with_store=with_store) as svc:
            return await action(svc)

    return asyncio.run(go())


def job_row(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "status": job.status.value,
        "initiator": job.initiator,
        "project": job.project,
        "component": f"{job.component_code}:{job.component_version}",
        "participants": {p["node_id"]: f"{p['role']}[{p['slot']}]" for p in job.participants},
        "accepted": sorted(job.accepted),
        "finished": sorted(job.finished),
        "reason_code": job.reason_code,
        "reason": job.reason,
        "model_sha256": job.release_sha256.hex() if job.release_sha256 else "",
        "release_approved": sorted(job.release_approved),
        "released": job.released,
    }


def job_detail(job: Job) -> dict[str, Any]:
    """``job_row`` and what ``interfed job show`` adds: parameters, inputs and each party's result."""
    return job_row(job) | {
        "params": job.params,
        "datasets": job.datasets,
        "job_inputs": job.job_inputs,
        "results": {
            n: {
                "ok": f["ok"],
                "model_sha256": f["model_sha256"].hex(),
                "metrics": json.loads(f["metrics_json"]),
                "reason": f["reason"],
            }
            for n, f in job.finished.items()
        },
    }


#: What ``job_detail`` adds to ``job_row``: left out of ``job list``.
DETAIL_ONLY = ("params", "datasets", "job_inputs", "results")


def _find_row(rows: list[dict[str, Any]], job_id: str) -> dict[str, Any]:
    found = [r for r in rows if r["job_id"].startswith(job_id)]
    if len(found) != 1:
        raise ConfigurationError(
            f"{'no' if not found else 'more than one'} job {job_id}; list them with 'interfed job list'"
        )
    return found[0]


def print_jobs(rows: list[dict[str, Any]], title: str, console: Console = out) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("job", "status", "initiator", "component", "project", "participants", "accepted", "reason"):
        table.add_column(col, no_wrap=col in ("job", "status"))
    for r in rows:
        parts = ", ".join(f"{n} {role}" for n, role in r["participants"].items())
        accepted = f"{len(r['accepted'])}/{len(r['participants'])}"
        status = r["status"] + (" released" if r["released"] else "")
        colour = COLOURS.get(r["status"], "white")
        table.add_row(
            r["job_id"][:8],
            f"[{colour}]{status}[/]",
            r["initiator"],
            r["component"],
            r["project"],
            parts,
            accepted,
            r["reason"],
        )
    console.print(table)


def _find(svc: ExecutorService, job_id: str) -> Job:
    jobs = {j.job_id: j for j in svc.jobs.jobs.values()}
    return jobs[_find_row([{"job_id": i} for i in jobs], job_id)["job_id"]]


@job_app.command("list")
def list_jobs(
    home: HomeOpt, as_json: JsonOpt = False, bootstrap: BootstrapOpt = None, replay: ReplayOpt = False
) -> None:
    """Every job of the federation with its status (PENDING, READY, RUNNING, SUCCESS, FAILED)."""

    async def rows(svc: ExecutorService) -> list[dict[str, Any]]:
        return [job_row(j) for j in sorted(svc.jobs.jobs.values(), key=lambda j: j.proposed_at)]

    seen = node_view(home, bootstrap, replay, "jobs")
    if seen is not None:
        found = [{k: v for k, v in r.items() if k not in DETAIL_ONLY} for r in seen.views["jobs"]]
    else:
        found = _run(home, bootstrap, rows)
        replayed(bootstrap)
    if as_json:
        print(json.dumps(found, indent=2))
    else:
        print_jobs(found, f"jobs ({len(found)})")


@job_app.command("show")
def show(
    job_id: str, home: HomeOpt, as_json: JsonOpt = False, bootstrap: BootstrapOpt = None, replay: ReplayOpt = False
) -> None:
    """One job (an id or its first characters): roles, acceptances, results, release."""

    async def row(svc: ExecutorService) -> dict[str, Any]:
        return job_detail(_find(svc, job_id))

    seen = node_view(home, bootstrap, replay, "jobs")
    if seen is not None and any(r["job_id"].startswith(job_id) for r in seen.views["jobs"]):
        found = _find_row(seen.views["jobs"], job_id)
    else:  # not in the running node's view (yet: proposed a moment ago?): the broker decides
        found = _run(home, bootstrap, row)
        replayed(bootstrap)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    print_jobs([found], f"job {found['job_id']}")
    for node, res in found["results"].items():
        out.print(
            f"  {node}: {'ok' if res['ok'] else 'failed'} model {res['model_sha256'][:16] or '-'}"
            f" {res['metrics']} {res['reason']}"
        )
    if found["model_sha256"]:
        state = (
            "released" if found["released"] else f"approved by {', '.join(found['release_approved']) or 'nobody yet'}"
        )
        out.print(f"  model {found['model_sha256'][:16]}: {state}")


@job_app.command("watch")
def watch(job_id: str, home: HomeOpt, bootstrap: BootstrapOpt = None) -> None:
    """Follow a job until it ends: its status, and this node's rounds as a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    async def follow(svc: ExecutorService) -> str:
        job = _find(svc, job_id)
        total = int(job.params.get("rounds", job.params.get("epochs", 0))) or None
        progress_file = svc.folder(job.job_id) / "progress.json"
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=out) as bar:
            task = bar.add_task(f"{job.job_id[:8]} {job.status}", total=total)
            while not job.ended:
                done, metrics = 0, ""
                if progress_file.exists():
                    seen = json.loads(progress_file.read_text(encoding="utf-8"))
                    done = seen["round"] + 1
                    metrics = " ".join(f"{k}={v:.4g}" for k, v in seen["metrics"].items())
                bar.update(task, completed=done, description=f"{job.job_id[:8]} {job.status} {metrics}")
                await asyncio.sleep(0.3)
            bar.update(task, completed=total, description=f"{job.job_id[:8]} {job.status}")
        return f"{job.status} {job.reason}"

    out.print(_run(home, bootstrap, follow))


@job_app.command("propose")
def propose(
    home: HomeOpt,
    component: Annotated[str, typer.Option(help="CODE:VERSION of an installed component")],
    party: Annotated[list[str], typer.Option(help="NODE=ROLE, once per participant, in slot order")],
    dataset: Annotated[list[str], typer.Option(help="NODE=INPUT=DATASET_ID[=REQUEST_ID], once per input")] = [],  # noqa: B006
    output: Annotated[
        list[str], typer.Option("--input", help="NODE=INPUT=JOB_ID=OUTPUT: an earlier job's output, once per input")
    ] = [],  # noqa: B006
    project: Annotated[str, typer.Option(help="what the job is for (the permits' PROJECT scope)")] = "default",
    params: Annotated[str, typer.Option(help="parameters as a JSON object")] = "{}",
    round_deadline: Annotated[float, typer.Option(help="seconds each round may take")] = 60.0,
    seed: Annotated[int, typer.Option(help="the job's deterministic seed")] = 0,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Propose a job; it runs once every participant has accepted it."""
    code, _, version = component.partition(":")
    roles: list[tuple[str, str]] = []
    for p in party:
        node, eq, role = p.partition("=")
        if not eq or not node or not role:
            raise ConfigurationError(f"--party {p!r}: use NODE=ROLE")
        roles.append((node, role))
    inputs: list[tuple[str, str, str, str | None]] = []
    for d in dataset:
        bits = d.split("=")
        if len(bits) not in (3, 4) or not all(bits):  # NODE=INPUT=DATASET[=REQUEST]
            raise ConfigurationError(f"--dataset {d!r}: use NODE=INPUT=DATASET_ID[=REQUEST_ID]")
        inputs.append((bits[0], bits[1], bits[2], bits[3] if len(bits) == 4 else None))
    earlier: list[tuple[str, str, str, str]] = []
    for o in output:
        bits = o.split("=")
        if len(bits) != 4 or not all(bits):
            raise ConfigurationError(f"--input {o!r}: use NODE=INPUT=JOB_ID=OUTPUT")
        earlier.append((bits[0], bits[1], bits[2], bits[3]))
    try:
        values = json.loads(params)
    except ValueError:
        values = None
    if not isinstance(values, dict):
        raise ConfigurationError("--params must be a JSON object")
    if not code or not version:
        raise ConfigurationError(f"--component {component!r}: use CODE:VERSION")

    async def go(svc: ExecutorService) -> str:
        return await svc.propose(
            component=(code, version),
            participants=roles,
            datasets=inputs,
            job_inputs=earlier,
            params=values,
            project=project,
            round_deadline=round_deadline,
            seed=seed,
        )

    out.print(f"proposed job {_run(home, bootstrap, go, with_store=True)}")


@job_app.command("accept")
def accept(job_id: str, home: HomeOpt, bootstrap: BootstrapOpt = None) -> None:
    """Accept a job by hand (after this node's checks of installation, permits and parameters)."""
    _run(home, bootstrap, lambda svc: svc.accept(_find(svc, job_id).job_id), with_store=True)
    out.print(f"accepted {job_id}")


@job_app.command("reject")
def reject(job_id: str, home: HomeOpt, reason: ReasonOpt, bootstrap: BootstrapOpt = None) -> None:
    """Reject a job by hand; it fails with this reason."""
    _run(home, bootstrap, lambda svc: svc.reject(_find(svc, job_id).job_id, "MANUAL_REJECT", reason))
    out.print(f"rejected {job_id}")


@job_app.command("stop")
def stop(job_id: str, home: HomeOpt, reason: ReasonOpt, bootstrap: BootstrapOpt = None) -> None:
    """Initiator: stop a job that has not ended; it is FAILED with this reason."""
    _run(home, bootstrap, lambda svc: svc.stop(_find(svc, job_id).job_id, reason))
    out.print(f"stopped {job_id}")


@job_app.command("release")
def release(job_id: str, home: HomeOpt, bootstrap: BootstrapOpt = None) -> None:
    """Initiator: propose releasing the trained model of a SUCCESS job, by its digest."""
    digest = _run(home, bootstrap, lambda svc: svc.propose_release(_find(svc, job_id).job_id))
    out.print(f"proposed the release of model {digest.hex()}")


@job_app.command("approve-release")
def approve_release(job_id: str, home: HomeOpt, bootstrap: BootstrapOpt = None) -> None:
    """Participant: approve the proposed release; once all have, the initiator's node records ModelReleased."""
    _run(home, bootstrap, lambda svc: svc.approve_release(_find(svc, job_id).job_id))
    out.print(f"approved the release of {job_id}")
