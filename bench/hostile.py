"""Hostile input during a job: forged records on ``registry``, ``heartbeats`` and ``rounds`` while a FedAvg job runs.

A federation of an operator and three parties (an aggregator and two hosts, every party in this
process with its own broker connection, as the other benchmarks), each with its registry, evidence,
components and executor services, runs the rounds benchmark's FedAvg component three times with the same
parameters: undisturbed, then while a separate process, which holds no key of the federation,
writes forged records at a steady rate spread over the undisturbed job's length: junk bytes,
envelopes signed by nobody in a member's name, join requests under made-up fingerprints, and events
of senders nobody knows (the round parts addressed to the running job, on its partition), then
undisturbed again. The undisturbed figure is the median of both undisturbed jobs' rounds (each job's
first round left out), so drift in the machine's speed weighs on both sides of the ratio.
Afterwards every forged record must be on ``deadletter`` from every party that reads its topic, with
the reason its kind calls for, no service may have stopped, and an audit must pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import resource
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.rounds import COMPONENT, _installed, _services
from mesh.envelope import new_envelope
from mesh.events import HEARTBEAT, JOIN_REQUESTED, NODE_ANNOUNCED, ROUND_PART
from mesh.home import NodeConfig
from mesh.identity import generate_key
from mesh.settings import MeshSettings
from mesh.signing import NodeSigner
from mesh.testing import eventually, read_topic
from mesh.topics import TopicNames
from services.components.service import ComponentsService
from services.evidence.cli import replay
from services.executor.service import ExecutorService
from services.executor.state import JobStatus
from services.testbed import Member, TestFederation, auditor_home, evidence_settled, federation

#: What each kind of forged record is refused as, by every party that reads its topic.
KINDS = {
    "junk": "MALFORMED_ENVELOPE",
    "unsigned": "BAD_SIGNATURE",
    "core_fingerprint": "UNKNOWN_SCHEMA",
    "unknown_sender": "UNKNOWN_SENDER",
}
#: Which kinds go on which topic (a join request only makes sense on ``registry``).
TOPIC_KINDS = {
    "registry": ("junk", "unsigned", "core_fingerprint", "unknown_sender"),
    "heartbeats": ("junk", "unsigned", "unknown_sender"),
    "rounds": ("junk", "unsigned", "unknown_sender"),
}
#: The service of each party that reports a refused record of the topic (docs/protocol.md §7).
REPORTER = {"registry": "registry", "heartbeats": "registry", "rounds": "executor"}
PARTIES = ("aggregator", "host1", "host2")
REPO = Path(__file__).resolve().parents[1]


@dataclass
class HostileFigures:
    forged: int
    rounds: int
    size: int
    undisturbed_round_s: float
    hostile_round_s: float
    forge_seconds: float
    by_reason: dict[str, int]
    by_registry: dict[str, int]
    reported_by: dict[str, int]
    missing_letters: int
    wrong_reason: int
    crashed: list[str]
    rss_mb: dict[str, float]
    audit_passed: bool
    audit_refused_input: dict[str, int]
    audit_violations: dict[str, int]

    @property
    def round_ratio(self) -> float:
        return self.hostile_round_s / self.undisturbed_round_s


def rss_mb() -> float:
    """This process's resident set now (every party of the benchmark lives in it)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _propose(aggregator: ExecutorService, rounds: int, size: int) -> str:
    return await aggregator.propose(
        component=("bench_roundtrip", "0.1.0"),
        participants=[(p, "aggregator" if p == "aggregator" else "host") for p in PARTIES],
        datasets=[],
        params={"rounds": rounds, "size": size},
        project="bench",
        round_deadline=600,
    )


async def _job_rounds(aggregator: ExecutorService, job_id: str, rounds: int) -> list[float]:
    def ended() -> bool:
        job = aggregator.jobs.jobs.get(job_id)
        return job is not None and job.ended

    await eventually(ended, 3600, f"job {job_id}")
    job = aggregator.jobs.jobs[job_id]
    if job.status is not JobStatus.SUCCESS:
        raise RuntimeError(f"bench job {job.status}: {job.reason}")
    metrics = aggregator.results[job_id].metrics
    return [metrics[f"round_{r}_seconds"] for r in range(rounds)]


def _median_after_first(times: list[float]) -> float:
    return statistics.median(times[1:] or times)


async def run_hostile_bench(
    root: Path,
    settings: MeshSettings,
    address: str,
    forged: int,
    rounds: int,
    size: int,
    progress: Callable[[str], None],
) -> HostileFigures:
    configs = [NodeConfig(node_id=p, name=p, institution="bench", platform="interfed") for p in PARTIES]
    async with federation(root / "fed", address, configs, settings=settings, services=_services, evidence=1.0) as fed:
        progress("publishing and installing the component")
        publisher = fed.member("aggregator").service("components")
        assert isinstance(publisher, ComponentsService)
        await publisher.publish_folder(COMPONENT)
        for m in fed.everyone:
            await eventually(partial(_installed, m.service("components")), 120, f"{m.node_id} installing")
        progress(f"undisturbed job: {rounds} rounds of {size:,} parameters")
        rss_before = rss_mb()
        aggregator = fed.member("aggregator").service("executor")
        assert isinstance(aggregator, ExecutorService)
        started = time.perf_counter()
        quiet = await _job_rounds(aggregator, await _propose(aggregator, rounds, size), rounds)
        quiet_seconds = time.perf_counter() - started
        rss_quiet = rss_mb()

        progress(f"the same job under {forged:,} forged records")
        job_id = await _propose(aggregator, rounds, size)
        forger = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.hostile",
            address,
            settings.topic_prefix,
            str(forged),
            f"{quiet_seconds:.3f}",
            job_id,
            ",".join(PARTIES),
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
        )
        rss_peak = rss_quiet
        rounds_task = asyncio.create_task(_job_rounds(aggregator, job_id, rounds))
        while not rounds_task.done():
            rss_peak = max(rss_peak, rss_mb())
            await asyncio.sleep(0.2)
        hostile = rounds_task.result()
        out, _ = await forger.communicate()
        if forger.returncode != 0:
            raise RuntimeError(f"the forging process failed with exit code {forger.returncode}")
        written = json.loads(out)
        progress("waiting for every refusal to be reported")
        expected = {(w["topic"], w["partition"], w["offset"]): w["reason"] for w in written["records"]}
        await eventually(lambda: all(_reported(m) >= len(expected) for m in fed.everyone), 600, "every refusal sent")
        rss_after = rss_mb()  # before this process reads the letters back (that is the benchmark's own memory)
        got = await _letters_of_every_party(fed, address, expected)
        missing = sum(len(fed.everyone) - len(got.get(spot, {})) for spot in expected)
        wrong = sum(1 for spot, by in got.items() for reason in by.values() if reason != expected[spot])
        by_reason = Counter(expected.values())
        reported_by = Counter(sender for by in got.values() for sender in by)
        crashed = [m.node_id for m in fed.everyone if m.task is None or m.task.done()]
        # The undisturbed job again, so the machine's drift (warm caches, other load) weighs on both sides.
        progress("the undisturbed job again")
        quiet += (await _job_rounds(aggregator, await _propose(aggregator, rounds, size), rounds))[1:]

        progress("auditing")
        await eventually(lambda: evidence_settled(fed), 120, "the evidence logs agreeing")
        report = (await replay(auditor_home(root, fed), fed.settings, address)).report()
        refused = report["refused_input"]["by_topic"].get("registry", {})  # the audited topic the forger wrote
    return HostileFigures(
        forged=len(expected),
        rounds=rounds,
        size=size,
        undisturbed_round_s=_median_after_first(quiet),
        hostile_round_s=_median_after_first(hostile),
        forge_seconds=written["seconds"],
        by_reason=dict(sorted(by_reason.items())),
        by_registry=dict(sorted(Counter(r for (t, _, _), r in expected.items() if t == "registry").items())),
        reported_by=dict(sorted(reported_by.items())),
        missing_letters=missing,
        wrong_reason=wrong,
        crashed=crashed,
        rss_mb={
            "before": round(rss_before, 1),
            "after_undisturbed_job": round(rss_quiet, 1),
            "peak_during_hostile_job": round(rss_peak, 1),
            "after_refusals": round(rss_after, 1),
            "process_peak": round(peak_rss_mb(), 1),
        },
        audit_passed=bool(report["passed"]),
        audit_refused_input=dict(refused),
        audit_violations=dict(report["violations_by_reason"]),
    )


def _reported(member: Member) -> int:
    """Dead letters a party's services have on the broker (each party reports a refused record once)."""
    return sum(svc.counts["dead_letters_sent"] for svc in member.services)


async def _letters_of_every_party(
    fed: TestFederation, address: str, expected: dict[tuple[str, int, int], str]
) -> dict[tuple[str, int, int], dict[str, str]]:
    """The dead letters about the forged records, per record: who reported it with which reason.

    Read again until every party has reported every record (each party reports a record once, from the
    service whose topic it is), or ten minutes have passed.
    """
    names = TopicNames(fed.settings.topic_prefix)
    deadline = time.monotonic() + 600
    while True:
        got: dict[tuple[str, int, int], dict[str, str]] = {}
        for env, p in await read_topic(address, fed.settings, "deadletter"):
            topic = names.protocol_name(p["topic"])
            spot = (topic, p["partition"], p["offset"])
            if spot in expected and p["service"] == REPORTER[topic]:
                got.setdefault(spot, {})[env.sender] = p["reason"]
        if sum(map(len, got.values())) >= len(expected) * len(fed.everyone) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(2)


# -- the forging process ------------------------------------------------------------------------------


def _envelope(kind: str, topic: str, members: list[str], job_id: str, rng: random.Random) -> tuple[bytes, bytes]:
    """One forged record (key, value) of ``kind`` for ``topic``."""
    member = rng.choice(members)
    if kind == "junk":
        return member.encode(), os.urandom(rng.randint(16, 400))
    stranger = f"stranger-{uuid.uuid4().hex[:8]}"
    payload_type = {
        "registry": NODE_ANNOUNCED,
        "heartbeats": HEARTBEAT,
        "rounds": ROUND_PART,
    }[topic]
    subject = job_id if topic == "rounds" else member
    sender = member
    if kind == "core_fingerprint":
        payload_type, subject, sender = JOIN_REQUESTED, stranger, stranger
    elif kind == "unknown_sender":
        sender = stranger
    env = new_envelope(
        payload_type=payload_type,
        payload_fingerprint=os.urandom(8),
        payload=os.urandom(rng.randint(8, 200)),
        sender=sender,
        sequence=rng.randint(1, 2**40),
        subject=subject,
    )
    if kind == "unknown_sender":
        env = env.signed(NodeSigner(generate_key()))
    else:  # a member's name (or an applicant's) with a signature nobody made
        env = dataclasses.replace(env, signature=os.urandom(64))
    return subject.encode(), env.encode()


async def forge(bootstrap: str, prefix: str, count: int, seconds: float, job_id: str, members: list[str]) -> None:
    """Write ``count`` forged records spread evenly over ``seconds``; print where each landed as JSON."""
    names = TopicNames(prefix)
    rng = random.Random(count)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    records: list[dict[str, Any]] = []
    pending = []
    started = time.monotonic()
    try:
        for i in range(count):
            topic = rng.choice(list(TOPIC_KINDS))
            kind = rng.choice(TOPIC_KINDS[topic])
            key, value = _envelope(kind, topic, members, job_id, rng)
            pending.append((topic, kind, await producer.send(names(topic), value=value, key=key)))
            lag = started + seconds * (i + 1) / count - time.monotonic()
            if lag > 0:
                await asyncio.sleep(lag)
        for topic, kind, future in pending:
            meta = await future
            records.append({"topic": topic, "partition": meta.partition, "offset": meta.offset, "reason": KINDS[kind]})
    finally:
        await producer.stop()
    print(json.dumps({"seconds": round(time.monotonic() - started, 3), "records": records}))


if __name__ == "__main__":
    address, topic_prefix, how_many, spread, job, parties = sys.argv[1:7]
    asyncio.run(forge(address, topic_prefix, int(how_many), float(spread), job, parties.split(",")))
