"""Round time through the real transport against the number of parties and the model size (plaintext FedAvg rounds).

One federation per party count, every party in this process with its own broker connection and
executor; one job per model size, proposed and accepted through the ordinary path, running the
``bench_roundtrip`` component (bench/components/roundtrip), published by the aggregator and
installed by every party through their components services. The figure is the
aggregator's median round time over the rounds after the first (the first includes start-up).

Secure aggregation: the overhead figures against these plaintext rounds come from the HFL
component (services/executor/algorithms/hfl); ``SECURE_SCHEMES`` is the hook its benchmark
fills (one job per scheme with the same sizes), none in this build.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mesh.home import NodeConfig
from mesh.service import Context, Service
from mesh.settings import MeshSettings
from mesh.testing import eventually
from services.accel.placement import in_process
from services.catalog.service import CatalogService
from services.components.service import ComponentsService
from services.executor.policy import JobPolicy
from services.executor.service import ExecutorService
from services.executor.state import JobStatus
from services.testbed import federation

COMPONENT = Path(__file__).parent / "components" / "roundtrip"
ACCEPT = JobPolicy.model_validate({"rule": [{"name": "bench", "decision": "accept"}]})
#: Secure-aggregation schemes to compare with plaintext: filled by the HFL component's benchmark.
SECURE_SCHEMES: dict[str, Callable[..., object]] = {}


@dataclass(frozen=True)
class RoundFigure:
    parties: int
    size: int
    rounds: int
    median_s: float
    max_s: float
    job_s: float


def _ended(executor: ExecutorService, job_id: str) -> bool:
    job = executor.jobs.jobs.get(job_id)
    return job is not None and job.ended


def _services(ctx: Context) -> Sequence[Service]:
    catalog = CatalogService(ctx, readonly=True)
    store = ComponentsService(ctx)
    return [
        catalog,
        store,
        ExecutorService(ctx, catalog=catalog, components=store, accel=in_process(ctx), policy=ACCEPT),
    ]


def _installed(store: Service) -> bool:
    return isinstance(store, ComponentsService) and store.installed("bench_roundtrip", "0.1.0") is not None


async def run_rounds_bench(
    root: Path,
    settings: MeshSettings,
    address: str,
    parties: Sequence[int],
    sizes: Sequence[int],
    rounds: int,
    progress: Callable[[str], None],
) -> list[RoundFigure]:
    figures = []
    for n in parties:
        configs = [
            NodeConfig(node_id=f"p{i:02d}", name=f"P{i}", institution="bench", platform="interfed") for i in range(n)
        ]
        fresh = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}{n}."})
        async with federation(root / f"n{n}", address, configs, settings=fresh, services=_services) as fed:
            aggregator = fed.member("p00").service("executor")
            assert isinstance(aggregator, ExecutorService)
            publisher = fed.member("p00").service("components")
            assert isinstance(publisher, ComponentsService)
            await publisher.publish_folder(COMPONENT)
            for m in fed.everyone:
                await eventually(partial(_installed, m.service("components")), 120, f"{m.node_id} installing")
            for size in sizes:
                progress(f"{n} parties, {size:,} parameters")
                started = time.perf_counter()
                job_id = await aggregator.propose(
                    component=("bench_roundtrip", "0.1.0"),
                    participants=[(c.node_id, "aggregator" if i == 0 else "host") for i, c in enumerate(configs)],
                    datasets=[],
                    params={"rounds": rounds, "size": size},
                    project="bench",
                    round_deadline=600,
                )
                await eventually(partial(_ended, aggregator, job_id), 3600, f"the job of {n} parties, {size:,}")
                job = aggregator.jobs.jobs[job_id]
                if job.status is not JobStatus.SUCCESS:
                    raise RuntimeError(f"bench job {job.status}: {job.reason}")
                metrics = aggregator.results[job_id].metrics
                times = [metrics[f"round_{r}_seconds"] for r in range(rounds)]
                later = times[1:] or times
                figures.append(
                    RoundFigure(n, size, rounds, statistics.median(later), max(later), time.perf_counter() - started)
                )
    return figures
