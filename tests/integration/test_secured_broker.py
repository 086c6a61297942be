"""The secured Apache Kafka: mutual TLS against the federation root, and ACLs from the registry's directory.

Nobody without a certificate of the federation gets in; a member reads only its own node topics (its
accelerator's requests, the replies to its requests); a revoked or terminated node is cut off at the next
apply; and the main job runs whole on it. docs/operations.md, "Securing the broker"; protocol §3.5, §5.7.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from demos.main import main_job
from interfed.cli import main
from mesh.bus import Reader
from mesh.cli import EXIT_CONFIG
from mesh.errors import BrokerAccessError
from mesh.home import NodeConfig, create_federation
from mesh.node import connect
from mesh.testing import SecuredKafka, eventually, fresh_settings
from mesh.topics import ACCEL_REPLIES, ACCEL_REQUESTS, node_topic
from services.testbed import TestFederation, create_homes, federation

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


def secured_federation(secured: SecuredKafka, root: Path) -> contextlib.AbstractAsyncContextManager[TestFederation]:
    """Two parties, joined: each started as an applicant and opened again with its certificate once approved."""
    settings = fresh_settings(tls=True, heartbeat_interval=0.3, unreachable_after=3.0)
    return federation(root, secured.bootstrap, 2, settings=settings, operator=secured.operator)


async def test_no_certificate_of_the_federation_no_connection(
    secured_kafka: SecuredKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a client certificate, or with one another federation's root issued, the TLS handshake is refused
    (and the error says so); a command run without the node's certificate stops with one line saying so."""
    root_pem = secured_kafka.operator.federation_path / "root.pem"
    anonymous = ssl.create_default_context(cafile=str(root_pem))
    producer = AIOKafkaProducer(
        bootstrap_servers=secured_kafka.bootstrap, security_protocol="SSL", ssl_context=anonymous
    )
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()

    stranger = create_federation(
        tmp_path / "stranger",
        "elsewhere",
        NodeConfig(node_id="operator", name="x", institution="x", platform="interfed", role="operator"),
    )
    with pytest.raises(BrokerAccessError, match="is not the federation's: its certificate does not verify"):
        async with connect(fresh_settings(tls=True), secured_kafka.bootstrap, stranger):
            pass
    shutil.copy(root_pem, stranger.federation_path / "root.pem")  # it trusts the broker now; the broker not it
    with pytest.raises(BrokerAccessError, match=r"refused .*node\.pem \(node certificate\): TLS alert"):
        async with connect(fresh_settings(tls=True), secured_kafka.bootstrap, stranger):
            pass

    applicant = tmp_path / "applicant"
    main(["node", "create", "--home", str(applicant), "--federation", str(secured_kafka.operator.federation_path),
          "--node-id", "applicant-a", "--institution", "A", "--platform", "fate"])  # fmt: skip
    capsys.readouterr()
    monkeypatch.setenv("INTERFED_TLS", "1")
    with pytest.raises(SystemExit) as exited:  # the command runs its own event loop: off this one
        await asyncio.to_thread(
            main, ["catalog", "list", "--home", str(applicant), "--bootstrap", secured_kafka.bootstrap]
        )
    assert exited.value.code == EXIT_CONFIG
    error = capsys.readouterr().err
    assert "node.pem is missing" in error
    assert len(error.strip().splitlines()) == 1


async def test_a_member_reads_its_own_accelerator_topics_and_no_other_members(
    secured_kafka: SecuredKafka, home_root: Path
) -> None:
    """party1 may write to party0's accelerator topics (a request to it; a reply, as any accelerator may answer
    party0) but reading them is an authorisation error (a DECRYPT reply's plaintext travels there); party0 reads
    what party1 wrote."""
    async with secured_federation(secured_kafka, home_root) as fed:
        party0, party1 = fed.member("party0"), fed.member("party1")
        own = [party0.bus.names(node_topic(family, "party0")) for family in (ACCEL_REQUESTS, ACCEL_REPLIES)]
        for topic in own:
            await party1.bus.send(topic, b"k", b"written by party1")
        for topic in own:
            theirs = party1.bus.reader([topic])
            await theirs.start()
            try:
                with pytest.raises(TopicAuthorizationFailedError):
                    await first_values(theirs, 1)
            finally:
                await theirs.stop()
        mine = party0.bus.reader(own)
        await mine.start()
        try:
            assert await first_values(mine, len(own)) == [b"written by party1"] * len(own)
        finally:
            await mine.stop()


async def first_values(reader: Reader, count: int) -> list[bytes]:
    """The values of the first ``count`` records a started reader reads."""
    seen: list[bytes] = []
    async for batch in reader.batches():
        seen += [r.value for r in batch]
        if len(seen) >= count:
            break
    return seen


async def cut_off(fed: TestFederation, node_id: str) -> None:
    """The node's running services stop on an authorisation error (every read of its refused from now on)."""
    member = fed.member(node_id)
    assert member.task is not None
    with pytest.raises(TopicAuthorizationFailedError):
        await member.task
    member.task = None  # its end is this test's finding, not a failure of the federation's shutdown


async def test_a_revoked_and_a_terminated_node_are_cut_off_at_the_next_apply(
    secured_kafka: SecuredKafka, home_root: Path
) -> None:
    """The operator revokes party1 (its command applies the ACLs); party0 ends its own contract (the operator's
    running registry applies when it reads that): each running node loses the broker, the operator does not."""
    async with secured_federation(secured_kafka, home_root) as fed:
        operator = fed.operator.registry
        await operator.revoke("party1", "key leaked")
        await cut_off(fed, "party1")
        applied = operator.counts["acls_applied"]
        await fed.member("party0").registry.terminate("party0", "leaving the federation")
        await eventually(lambda: operator.counts["acls_applied"] > applied, 30, "the operator applying the ACLs")
        await cut_off(fed, "party0")
        assert operator.counts["acls_failed"] == 0
        assert fed.operator.task is not None
        assert not fed.operator.task.done()


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_the_main_job_runs_whole_on_the_secured_broker(secured_kafka: SecuredKafka, home_root: Path) -> None:
    """The demo's main job (join, catalog, components, HFL, PSI, hetero LR, release, audit) on mutual TLS and ACLs:
    parties start as applicants, each accelerator's topics are its own, the auditor reads with its own credential."""
    settings = fresh_settings(tls=True, heartbeat_interval=0.5, unreachable_after=5.0)
    # Each stage checks itself as the demo does (every party's view, the job results, the audit passing) and
    # raises, naming the step, if anything fails.
    _, stages = await main_job(home_root, secured_kafka.bootstrap, settings, operator=secured_kafka.operator)
    assert [name for name, _ in stages] == [
        "join",
        "datasets and permits",
        "component migration, HFL job",
        "vertical: PSI job, hetero LR job, release",
        "audit",
    ]


def run_interfed(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "interfed", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert proc.returncode == 0, f"interfed {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_node_up_follows_the_registry_as_an_applicant_until_approved_then_runs_as_the_member(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    """The command-line flow of docs/operations.md: ACLs applied, a node applies and runs `node up` before its
    approval (with the applicant credential), the operator approves, and the node starts every service with its
    certificate and is heard HEALTHY."""
    (op,) = create_homes(tmp_path, [], operator=secured_kafka.operator)
    env = {
        **os.environ,
        "INTERFED_TLS": "1",
        "INTERFED_BOOTSTRAP": secured_kafka.bootstrap,
        "INTERFED_TOPIC_PREFIX": fresh_settings().topic_prefix,
        "INTERFED_HEARTBEAT_INTERVAL": "0.5",
        "COLUMNS": "220",
    }
    run_interfed(env, "broker", "acls", "--apply", "--home", str(op.path))
    bank = tmp_path / "bank"
    run_interfed(env, "node", "create", "--home", str(bank), "--federation", str(op.federation_path),
                 "--node-id", "bank", "--institution", "Example Bank", "--platform", "fate")  # fmt: skip
    applied = run_interfed(env, "node", "join", "--home", str(bank)).stdout
    contract = applied.split("contract ")[1].split(";")[0].strip()
    node = subprocess.Popen(
        [sys.executable, "-m", "interfed", "node", "up", "--home", str(bank)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_interfed(env, "registry", "approve", contract, "--home", str(op.path))
        deadline = time.monotonic() + 90
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline and node.poll() is None:
            rows = json.loads(run_interfed(env, "registry", "nodes", "--home", str(op.path), "--json").stdout)
            if rows and rows[0]["health"] == "HEALTHY":
                break
            time.sleep(0.5)
        assert rows[0]["health"] == "HEALTHY", rows
    finally:
        node.terminate()
        printed, err = node.communicate(timeout=60)
    assert node.returncode == 0, err
    assert "no certificate yet: following the registry as an applicant" in printed
    assert "catalog, components, executor" in printed  # every service, once approved
