"""A Java party (clients/java, written from docs/protocol.md alone) in a Python federation, on a real broker.

The Java node applies, the Python operator approves it, every Python party sees it healthy, the Java node
lists the Python nodes, and its bad events are refused by the Python services with the reasons a Python
sender would get. The federation runs its evidence services, and its audit passes with the Java node's
announcement evidenced by the Java node itself. Envelopes the Java client makes verify in Python.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mesh.brokers import BrokerError
from mesh.brokers.kafka import require_java
from mesh.codec import SchemaStore
from mesh.envelope import Envelope
from mesh.evidence import GOVERNED
from mesh.membership import Health
from mesh.signing import Verifier
from mesh.testing import eventually, fresh_settings, read_topic
from services.evidence.cli import replay
from services.testbed import TestFederation, auditor_home, evidence_settled, federation

pytestmark = [pytest.mark.java]

JAVA_NODE = "jvm-bank"
ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "clients" / "java" / "pom.xml"
JAR = POM.parent / "target" / "interfed-java.jar"


class JavaNode:
    """A running ``join``: its stdout milestones as they come, stopped with SIGTERM as an operator would."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.stderr = ""

    async def milestone(self, word: str, timeout: float) -> str:
        """The first stdout line that starts with ``word``; fails with the node's output if it never comes."""
        assert self.proc.stdout is not None
        for line in self.lines:
            if line.startswith(word):
                return line
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), left)
            except TimeoutError:
                break
            if not raw:
                await self.stop()
                raise AssertionError(f"the Java node exited before '{word}':\n{self.output()}")
            self.lines.append(raw.decode().strip())
            if self.lines[-1].startswith(word):
                return self.lines[-1]
        raise AssertionError(f"no '{word}' from the Java node within {timeout} s:\n{self.output()}")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), 30)
        except TimeoutError:
            self.proc.kill()
            out, err = await self.proc.communicate()
        self.lines += out.decode().splitlines()
        self.stderr += err.decode()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def output(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.stderr


class JavaClient:
    """The Java client's command line (``java -jar interfed-java.jar``)."""

    def __init__(self, java: str, jar: Path) -> None:
        self.command = [java, "-jar", str(jar)]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.command, *args], capture_output=True, text=True, timeout=180, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"java client {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    async def start(self, *args: str) -> JavaNode:
        proc = await asyncio.create_subprocess_exec(
            *self.command, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        return JavaNode(proc)


@pytest.fixture(scope="session")
def java() -> JavaClient:
    """The built Java client; built here (without its own tests) if make test did not build it first."""
    try:
        runtime = require_java()
    except BrokerError as exc:
        pytest.skip(f"the Java client needs Java 17+ and Maven: {exc}")
    mvn = shutil.which("mvn")
    if mvn is None:
        pytest.skip("the Java client needs Maven (mvn not found)")
    if not JAR.exists():
        build = subprocess.run(
            [mvn, "-B", "-q", "-f", str(POM), "package", "-DskipTests"], capture_output=True, text=True, check=False
        )
        assert build.returncode == 0, f"mvn package failed:\n{build.stdout}\n{build.stderr}"
    return JavaClient(runtime, JAR)


def test_java_made_envelopes_verify_in_python(java: JavaClient, tmp_path: Path) -> None:
    out = tmp_path / "java-envelopes.json"
    java.run("envelopes", "--out", str(out))
    made = json.loads(out.read_text())
    assert {m["payload_type"] for m in made} == {
        "interfed.registry.Heartbeat",
        "interfed.registry.NodeAnnounced",
        "interfed.registry.JoinRequested",
    }
    schemas = SchemaStore.load()
    for case in made:
        value = bytes.fromhex(case["encoded_hex"])
        env = Envelope.decode(value)  # strict: canonical encoding, UUID form, sequence >= 1
        assert env.encode() == value
        assert (env.sender, env.sequence, env.subject) == (case["sender"], case["sequence"], case["subject"])
        Verifier(bytes.fromhex(case["public_key_hex"])).verify(env.signature, env.signing_bytes())
        schemas.decode(env.payload_type, env.payload_fingerprint, env.payload)
        tampered = bytearray(value)
        tampered[-1] ^= 1
        with pytest.raises(Exception, match="signature"):
            Verifier(bytes.fromhex(case["public_key_hex"])).verify(
                Envelope.decode(bytes(tampered)).signature, env.signing_bytes()
            )


def test_a_bad_argument_is_one_line_and_exit_2(java: JavaClient) -> None:
    proc = java.run("join", "--home", check=False)
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith("error:"), proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "Exception" not in proc.stderr


@pytest.mark.broker
@pytest.mark.timeout(300)
async def test_java_node_joins_and_is_healthy_everywhere(java: JavaClient, bootstrap: str, tmp_path: Path) -> None:
    settings = fresh_settings(heartbeat_interval=0.3, unreachable_after=5.0)
    async with federation(tmp_path / "homes", bootstrap, 2, settings=settings, evidence=0.5) as fed:
        home = tmp_path / "java-home"
        java.run(
            "init", "--home", str(home), "--federation", str(fed.operator.home.federation_path),
            "--node-id", JAVA_NODE, "--institution", "JVM Bank", "--platform", "jvm-fl",
            "--platform-version", "1.0", "--name", "JVM Bank node",
        )  # fmt: skip
        wire = ["--bootstrap", bootstrap, "--topic-prefix", settings.topic_prefix]
        node = await java.start("join", "--home", str(home), *wire, "--heartbeat-ms", "500")
        try:
            contract = (await node.milestone("applied", timeout=60)).split()[1]
            op = fed.operator.registry
            await eventually(lambda: contract in op.directory.contracts, timeout=30, what="the Java join request")
            await op.approve(contract)
            serial = (await node.milestone("approved", timeout=60)).split()[1]
            await node.milestone("beating", timeout=60)
            await eventually(lambda: everyone_sees_healthy(fed), timeout=30, what="the Java node healthy everywhere")
            for member in fed.everyone:
                entry = member.registry.directory.nodes[JAVA_NODE]
                assert entry.certificate_serial == serial
                assert (entry.platform, entry.institution) == ("jvm-fl", "JVM Bank")

            # The Java node's own view of the federation, read-only from the beginning.
            listed = await asyncio.to_thread(java.run, "nodes", "--home", str(home), *wire, "--json")
            rows = {r["node_id"]: r for r in map(json.loads, listed.stdout.splitlines())}
            for member in fed.members:
                assert rows[member.node_id]["status"] == "APPROVED", rows
                assert rows[member.node_id]["health"] == "HEALTHY", rows
            assert rows[JAVA_NODE]["health"] == "HEALTHY", rows

            # Bad events from the Java node: the Python services refuse them as they would a Python one's.
            for kind, reason in (("bad-signature", "BAD_SIGNATURE"), ("replayed-sequence", "REPLAYED_SEQUENCE")):
                before = {m.node_id: m.registry.counts[f"dead:{reason}"] for m in fed.everyone}
                injected = await asyncio.to_thread(java.run, "inject", "--home", str(home), *wire, "--kind", kind)
                bad_id = json.loads(injected.stdout)["event_ids"][-1]
                await eventually(
                    lambda r=reason, b=before: all(m.registry.counts[f"dead:{r}"] > b[m.node_id] for m in fed.everyone),
                    timeout=30,
                    what=f"{reason} refusal by every Python party",
                )
                await eventually_async(
                    lambda i=bad_id: refusers(fed, i), {m.node_id for m in fed.everyone}, what=f"{reason} letters"
                )
                letters = await refusals(fed, bad_id)
                for sender, letter in letters:
                    assert letter["reason"] == reason, (sender, letter)
                    assert letter["key"] == JAVA_NODE.encode()
                # Each party's registry refuses it, and so does its evidence service (it reads heartbeats too).
                by = {(sender, letter["service"]) for sender, letter in letters}
                assert {(m.node_id, "registry") for m in fed.everyone} <= by, by
                assert {service for _, service in by} <= {"registry", "evidence"}, by

            # The audit of the whole federation passes: the Java node evidenced its announcement.
            await eventually(lambda: evidence_settled(fed), timeout=60, what="the evidence logs agreeing")
            auditor = await replay(auditor_home(tmp_path, fed), fed.settings, bootstrap)
            report = auditor.report()
            assert report["violations"] == [], report["violations"]
            assert report["passed"]
            java_steps = {g.event_id: g.payload_type for g in auditor.governed.values() if g.sender == JAVA_NODE}
            assert sorted(java_steps.values()) == ["interfed.registry.JoinRequested", "interfed.registry.NodeAnnounced"]
            recorders = {(e.payload["event_id"], e.recorder, e.payload["action"]) for e in auditor.evidence}
            for event_id, payload_type in java_steps.items():
                # An applicant has no certificate: its request is recorded by the operator (§13.7).
                recorder = JAVA_NODE if payload_type.endswith("NodeAnnounced") else fed.operator.node_id
                assert (event_id, recorder, GOVERNED[payload_type]) in recorders, (payload_type, recorders)
        finally:
            await node.stop()
        assert node.returncode == 0, node.output()


def everyone_sees_healthy(fed: TestFederation) -> bool:
    now = int(time.time() * 1000)
    window = int(fed.settings.unreachable_after * 1000)
    return all(
        (entry := m.registry.directory.nodes.get(JAVA_NODE)) is not None and entry.health(now, window) is Health.HEALTHY
        for m in fed.everyone
    )


async def refusals(fed: TestFederation, event_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(refusing node, dead letter) for each dead letter whose original record is the event ``event_id``."""
    found = []
    for env, letter in await read_topic(fed.bootstrap, fed.settings, "deadletter"):
        original = Envelope.decode(letter["original"])
        if original.event_id == event_id:
            found.append((env.sender, letter))
    return found


async def refusers(fed: TestFederation, event_id: str) -> set[str]:
    return {sender for sender, _ in await refusals(fed, event_id)}


async def eventually_async(
    probe: Callable[[], Awaitable[set[str]]], expected: set[str], *, what: str, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        seen = await probe()
        if seen >= expected:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {sorted(seen)} of {sorted(expected)}")
