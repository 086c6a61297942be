"""A PSI job, then a hetero LR job on its output, through the executors on a real broker (issue 6 part 4).

The demo's parties and services: the bank (guest) and the hospital (host) each with its own
accelerator service, telecom the arbiter; the components are the bank's built-ins, installed by
every party through the store. The chain's AUC matches the centralised reference; a job naming
an unknown job, a failed job, or a job the naming party took no part in is refused with
JOB_INPUT_INVALID.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from rich.console import Console

from accel.client import LocalTransport
from accel.keystore import KeyStore
from demos.jobs import _ex, _installed, _store, demo_services
from demos.main import PARTIES
from demos.vertical import LR_COMPONENT, LR_PARAMS, PROJECT, PSI_COMPONENT, vertical
from mesh.testing import eventually, fresh_settings
from services.executor.errors import BAD_PARAMS, JOB_INPUT_INVALID
from services.executor.state import JobStatus, release_digest
from services.testbed import TestFederation, federation

pytestmark = [pytest.mark.broker, pytest.mark.reference_lane, pytest.mark.timeout(300)]


@contextlib.contextmanager
def quiet(_name: str) -> Iterator[None]:
    yield


async def _failed(fed: TestFederation, job_id: str) -> tuple[str, str]:
    bank = _ex(fed, "bank")
    await eventually(lambda: job_id in bank.jobs.jobs and bank.jobs.jobs[job_id].status is JobStatus.FAILED, 30)
    job = bank.jobs.jobs[job_id]
    return job.reason_code, job.reason


async def _propose_lr(fed: TestFederation, inputs: list[tuple[str, str, str, str]]) -> str:
    """A hetero LR job with only the bank's own table (no permit involved), naming ``inputs``."""
    guest = "bank/vfl-guest"
    return await _ex(fed, "bank").propose(
        component=LR_COMPONENT,
        participants=[("bank", "guest"), ("hospital", "host"), ("telecom", "arbiter")],
        datasets=[("bank", "train", guest, None)],
        job_inputs=inputs,
        params=LR_PARAMS,
        project=PROJECT,
    )


async def test_psi_then_hetero_lr_chain_matches_centralised_and_refuses_bad_inputs(
    bootstrap: str, home_root: Path
) -> None:
    settings = fresh_settings(heartbeat_interval=1.0, unreachable_after=30.0)
    async with federation(home_root, bootstrap, PARTIES, settings=settings, services=demo_services) as fed:
        await _store(fed, "bank").publish_builtin()
        for m in fed.everyone:
            for code, version in (PSI_COMPONENT, LR_COMPONENT):
                await eventually(partial(_installed, _store(fed, m.node_id), code, version), 30, "installation")
        figures = await vertical(fed, home_root, quiet, Console(quiet=True))
        # an input naming a job nobody proposed: the bank (which names it) refuses
        unknown = str(uuid.uuid4())
        code, reason = await _failed(fed, await _propose_lr(fed, [("bank", "intersection", unknown, "intersection")]))
        assert (code, f"job {unknown} is unknown here" in reason) == (JOB_INPUT_INVALID, True), reason

        bank = _ex(fed, "bank")
        psi_id = next(j.job_id for j in bank.jobs.jobs.values() if j.component_code == "psi")
        lr = next(j for j in bank.jobs.jobs.values() if j.component_code == "hetero_lr" and j.released)
        # the chain: the federated parts score like the centralised reference on the intersection
        assert abs(figures.compared.auc_federated - figures.compared.auc_centralised) <= 0.005
        assert figures.compared.auc_federated > 0.95
        assert 300 < figures.compared.rows < 420
        assert lr.job_inputs == [
            {"node_id": n, "input": "intersection", "job_id": psi_id, "output": "intersection"}
            for n in ("bank", "hospital")
        ]
        # each party's part, its own digest; the release is by the digest of the parts
        assert sorted(figures.parts) == ["bank", "hospital"]
        assert len(set(figures.parts.values())) == 2
        assert lr.release_sha256 == release_digest(lr) == bytes.fromhex(figures.release)
        # every party's PSI output holds the same ids: the rows the hetero LR job trained on
        tables = [
            (_ex(fed, n).folder(lr.job_id) / "inputs" / "intersection.csv").read_text() for n in ("bank", "hospital")
        ]
        assert all(t.startswith("ids,rows\n") for t in tables)
        ids = [sorted(line.split(",")[0] for line in t.splitlines()[1:]) for t in tables]
        assert ids[0] == ids[1]
        assert len(ids[0]) == figures.compared.rows
        # the arbiter's key was made by telecom's own accelerator, kept in telecom's home only, and every
        # decryption (each party's gradient and the loss, per round) was computed on telecom's worker processes
        homes = {m.node_id: m.home.path for m in fed.everyone}
        assert len(KeyStore.of_home(homes["telecom"]).ids()) == 1
        assert KeyStore.of_home(homes["bank"]).ids() == KeyStore.of_home(homes["hospital"]).ids() == []
        rounds = int(_ex(fed, "telecom").results[lr.job_id].metrics["rounds"])
        transport = _ex(fed, "telecom").accel.transport  # type: ignore[union-attr]
        assert isinstance(transport, LocalTransport)
        assert transport.served["KEYGEN"] == 1
        assert transport.served["DECRYPT"] == 3 * rounds
        assert transport.pool is not None
        assert transport.pool.submitted >= 3 * rounds
        for node in ("bank", "hospital"):  # their public-key work ran on their own workers
            theirs = _ex(fed, node).accel.transport  # type: ignore[union-attr]
            assert isinstance(theirs, LocalTransport)
            assert theirs.pool is not None
            assert theirs.pool.submitted > 0

        # an input naming a failed job: refused with the failed job's status and reason
        bad_psi = await bank.propose(
            component=PSI_COMPONENT,
            participants=[("bank", "guest"), ("hospital", "host")],
            datasets=[("bank", "data", "bank/vfl-guest", None)],
            params={"batch_size": 0},
            project=PROJECT,
        )
        assert (await _failed(fed, bad_psi))[0] == BAD_PARAMS
        code, reason = await _failed(fed, await _propose_lr(fed, [("bank", "intersection", bad_psi, "intersection")]))
        assert code == JOB_INPUT_INVALID
        assert f"job {bad_psi} is FAILED, not SUCCESS (BAD_PARAMS" in reason, reason

        # an input a party takes from a job it took no part in: that party (telecom) refuses
        code, reason = await _failed(
            fed,
            await _propose_lr(
                fed,
                [("bank", "intersection", psi_id, "intersection"), ("telecom", "intersection", psi_id, "intersection")],
            ),
        )
        assert code == JOB_INPUT_INVALID
        assert reason.startswith("rejected by telecom:"), reason
        assert "telecom took no part in it" in reason, reason
        # an output the earlier component does not have
        code, reason = await _failed(fed, await _propose_lr(fed, [("bank", "intersection", psi_id, "model")]))
        assert code == JOB_INPUT_INVALID
        assert "not 'model'" in reason, reason
