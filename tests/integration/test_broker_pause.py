"""A broker paused at random moments never makes a replay, an audit or a listing pass off a partial read as whole.

The broker is stopped with SIGSTOP (it keeps its connections and answers nothing) for up to two seconds, at a
random moment of each run, many times; each run must then still read everything that was there when it began.
The moments come from a seeded generator, so a failing run can be replayed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from mesh.brokers import Broker
from mesh.bus import Reader, Record
from mesh.codec import SchemaStore
from mesh.envelope import Envelope
from mesh.events import EVIDENCE_RECORDED, HEARTBEAT
from mesh.identity import generate_key
from mesh.node import open_context
from mesh.testing import copy_topics, eventually, fresh_settings
from services.evidence.cli import replay
from services.registry.service import RegistryService
from services.testbed import AuditedHistory, TestFederation, dead_letters, federation

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(600)]

RUNS = 10
CLI_RUNS = 3


async def pause_at_random(
    broker: Broker, rng: random.Random, within: float, longest: float = 2.0, after: asyncio.Event | None = None
) -> None:
    """Stop the broker's process group once, at a random moment in the ``within`` seconds after ``after`` is set."""
    if after is not None:
        await after.wait()
    await asyncio.sleep(rng.uniform(0, within))
    assert broker.pid is not None
    os.killpg(broker.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(rng.uniform(0.2, longest))
    finally:
        os.killpg(broker.pid, signal.SIGCONT)


def summary(report: dict[str, Any]) -> tuple[Any, ...]:
    return report["records_read"], report["tree_size"], report["root_hash"], report["governed_events"]


async def test_a_replay_reads_everything_whenever_the_broker_pauses(
    history: AuditedHistory, broker_process: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = (await replay(history.auditor, history.settings, history.bootstrap)).report()
    assert whole["passed"]
    assert whole["complete"]
    # Half the pauses fall just after a reader has started, the moment an empty fetch used to pass for
    # "caught up": the real Reader.start, followed by a signal to the pausing task.
    reader_started = asyncio.Event()
    start = Reader.start

    async def start_and_signal(self: Reader) -> None:
        await start(self)
        reader_started.set()

    monkeypatch.setattr(Reader, "start", start_and_signal)
    rng = random.Random(20261207)
    for run in range(RUNS):
        reader_started.clear()
        after = reader_started if run % 2 == 0 else None
        pause = asyncio.create_task(pause_at_random(broker_process, rng, within=0.4 if after else 1.5, after=after))
        try:
            report = (await replay(history.auditor, history.settings, history.bootstrap, timeout=120)).report()
        finally:
            await pause
        assert report["complete"], (run, report["unread"])
        assert summary(report) == summary(whole), run
        assert report["passed"], (run, report["violations"])


def flip_one_evidence_byte(records: list[Record]) -> list[Record]:
    """The second evidence record with one byte of the digest it vouches for flipped."""
    at = [i for i, r in enumerate(records) if Envelope.decode(r.value).payload_type == EVIDENCE_RECORDED][1]
    r = records[at]
    env = Envelope.decode(r.value)
    digest = SchemaStore.load().decode(EVIDENCE_RECORDED, env.payload_fingerprint, env.payload)["event_sha256"]
    value = bytearray(r.value)
    value[r.value.index(digest) + 5] ^= 0x01
    return [*records[:at], Record(r.topic, r.partition, r.offset, r.key, bytes(value)), *records[at + 1 :]]


async def interfed(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """The command's exit code and what it printed on stdout (stderr says where a listing came from)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "interfed",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + ("" if proc.returncode == 0 else err.decode())


async def test_the_command_line_never_passes_a_tampered_log_or_lists_part_of_a_directory_while_the_broker_pauses(
    history: AuditedHistory, broker_process: Broker
) -> None:
    tampered = fresh_settings()
    await copy_topics(history.bootstrap, history.settings, tampered, {"evidence": flip_one_evidence_byte})
    env = {
        **os.environ,
        "INTERFED_BOOTSTRAP": history.bootstrap,
        "INTERFED_TOPIC_PREFIX": tampered.topic_prefix,
        "COLUMNS": "200",
    }
    home = str(Path(history.auditor.path))
    rng = random.Random(7)
    for run in range(CLI_RUNS):
        # The process starts in about a second; pauses fall before, during and after its reader starts.
        pause = asyncio.create_task(pause_at_random(broker_process, rng, within=3.0))
        try:
            code, out = await interfed("audit", "--home", home, env=env)
        finally:
            await pause
        assert code == 6, (run, code, out)
        assert "MISSING_EVIDENCE" in out, (run, out)
        pause = asyncio.create_task(pause_at_random(broker_process, rng, within=3.0))
        try:
            code, out = await interfed("registry", "nodes", "--home", home, "--json", env=env)
        finally:
            await pause
        assert code == 0, (run, out)
        assert sorted(row["node_id"] for row in json.loads(out)) == ["party0", "party1"], run


async def flood(bootstrap: str, fed: TestFederation, junk: int, *, strangers: bool = True) -> dict[str, int]:
    """Write ``junk`` records to party0's heartbeats partition at once: random bytes, and with ``strangers``
    every other one a well-formed heartbeat of a sender nobody knows (it waits for a fence over registry)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    topic = fed.operator.bus.names("heartbeats")
    template = fed.member("party0").registry.ctx.publisher.envelope(
        HEARTBEAT, {"node_id": "party0", "interval_ms": 1}, subject="party0"
    )
    try:
        sent = []
        for i in range(junk):
            if i % 2 or not strangers:
                value = os.urandom(64)
            else:
                stranger = dataclasses.replace(template, sender=f"stranger{i}", signature=b"")
                value = stranger.signed(generate_key()).encode()
            sent.append(await producer.send(topic, value=value, key=b"party0"))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    if not strangers:
        return {"MALFORMED_ENVELOPE": junk}
    return {"MALFORMED_ENVELOPE": junk // 2, "UNKNOWN_SENDER": junk - junk // 2}


def refused(service: RegistryService, expected: dict[str, int]) -> bool:
    return all(service.counts[f"dead:{reason}"] >= n for reason, n in expected.items())


@pytest.mark.reference_lane
async def test_a_node_outlives_a_minute_without_its_broker_and_loses_no_dead_letter(
    bootstrap: str, broker_process: Broker, home_root: Path
) -> None:
    """A party refusing a flood of junk loses its broker for a minute mid-flood: its dead-letter sends time out,
    and so do the end offsets its waiting records' fences ask for. It keeps running, and once the broker is back
    every refusal is on the dead-letter topic."""
    settings = fresh_settings(heartbeat_interval=1.0, unreachable_after=90.0)
    async with federation(home_root, bootstrap, n=1, settings=settings) as fed:
        expected = await flood(bootstrap, fed, 20_000)
        witness = RegistryService(open_context(fed.operator.home, fed.operator.bus, fed.settings))
        stop = asyncio.Event()
        task = asyncio.create_task(witness.run(stop))
        try:
            await eventually(lambda: witness.counts["dead_letters_sent"] >= 1, 60, "the first letters")
            os.killpg(broker_process.pid or 0, signal.SIGSTOP)
            try:
                await asyncio.sleep(60)
            finally:
                os.killpg(broker_process.pid or 0, signal.SIGCONT)
            await eventually(lambda: refused(witness, expected), 180, "every refusal sent")
            for service_task in (task, fed.operator.task, fed.members[0].task):
                assert service_task is not None
                assert not service_task.done()
        finally:
            stop.set()
            await task
        assert witness.counts["dead_letter_publish_failed"] >= 1, "the outage never met a dead letter in flight"
        letters = [d for d in await dead_letters(fed) if d["service"] == "registry"]
        assert len({(d["partition"], d["offset"]) for d in letters}) == sum(expected.values())


@pytest.mark.reference_lane
async def test_a_party_stops_promptly_while_its_broker_takes_no_dead_letters(
    bootstrap: str, broker_process: Broker, home_root: Path
) -> None:
    """With the broker paused and the dead-letter queue full, asking a service to stop still stops it: the letters
    it could not send are counted and logged (a restart reports those refusals again)."""
    settings = fresh_settings(heartbeat_interval=1.0, unreachable_after=90.0)
    async with federation(home_root, bootstrap, n=1, settings=settings) as fed:
        await flood(bootstrap, fed, 8_000, strangers=False)  # refused as fast as read: no fence needs the broker
        witness = RegistryService(open_context(fed.operator.home, fed.operator.bus, fed.settings))
        stop = asyncio.Event()
        task = asyncio.create_task(witness.run(stop))
        await eventually(lambda: witness.counts["dead_letters_sent"] >= 1, 60, "the first letters")
        os.killpg(broker_process.pid or 0, signal.SIGSTOP)
        try:
            await eventually(witness._letters.full, 60, "the dead-letter queue full")
            stop.set()
            await asyncio.wait_for(task, 45)
        finally:
            os.killpg(broker_process.pid or 0, signal.SIGCONT)
        assert witness.counts["dead_letters_unsent"] >= 1
