"""Hetero LR aligned by PSI matches centralised logistic regression trained the same way (issue 6 part 3)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine

from accel.client import AccelClient
from accel.keystore import KeyStore
from accel.pool import WorkerPool
from services.executor.algorithms.hetero_lr import codec
from services.executor.algorithms.hetero_lr.component import HeteroLR, side_by_side
from services.executor.algorithms.local_run import Party, run_local
from services.executor.algorithms.vertical_data import vertical_split
from services.executor.algorithms.vertical_run import LR_DEFAULTS, VerticalSummary, run_vertical
from services.executor.api import ComponentResult, MemoryCheckpoints, QuorumError

FAST = {"key_bits": 1024, "max_epochs": 4, "batch_size": 64}


async def _run(tmp_path: Path, x: np.ndarray, y: np.ndarray, columns: list[range], **lr: object) -> VerticalSummary:
    guest, *hosts = vertical_split(tmp_path, x, y.astype(np.float64), columns)
    return await run_vertical(
        guest, {f"host{i}": h for i, h in enumerate(hosts)}, tmp_path / "work", lr_params={**FAST, **lr}
    )


async def test_breast_cancer_federated_auc_within_0005_of_centralised(tmp_path: Path) -> None:
    """Guest: label + 10 features, host: 20 features, 20% of each side's ids unknown to the other."""
    x, y = load_breast_cancer(return_X_y=True)
    summary = await _run(tmp_path, x, y, [range(10), range(10, 30)])
    assert 300 < summary.intersection < 420  # about 0.8 x 0.8 of 569 rows survive the PSI
    assert abs(summary.auc_federated - summary.auc_centralised) <= 0.005
    assert summary.auc_federated > 0.95
    assert summary.rounds == summary.epochs * -(-summary.intersection // 64)
    assert summary.lr_bytes > 0
    assert summary.psi_bytes > 0


async def test_wine_binarised_federated_auc_within_0005_of_centralised(tmp_path: Path) -> None:
    """The second dataset: wine, class 0 against the rest; guest 5 features, host 8."""
    x, y = load_wine(return_X_y=True)
    summary = await _run(tmp_path, x, (y == 0).astype(np.float64), [range(5), range(5, 13)], batch_size=32)
    assert abs(summary.auc_federated - summary.auc_centralised) <= 0.005
    assert summary.auc_federated > 0.9


async def test_two_hosts_train_the_same_model_as_centralised(tmp_path: Path) -> None:
    """With two hosts the gradients still match centralised training (the loss is not computed: no early stop)."""
    x, y = load_breast_cancer(return_X_y=True)
    summary = await _run(tmp_path, x, y, [range(10), range(10, 20), range(20, 30)], max_epochs=2)
    assert abs(summary.auc_federated - summary.auc_centralised) <= 0.005
    assert summary.epochs == 2
    assert np.isnan(summary.loss)


async def test_early_stopping_on_the_taylor_loss_stops_where_centralised_stops(tmp_path: Path) -> None:
    """A loose tolerance stops both trainings at the same epoch, before max_epochs."""
    x, y = load_breast_cancer(return_X_y=True)
    summary = await _run(tmp_path, x, y, [range(10), range(10, 30)], max_epochs=30, tol=0.02, batch_size=128)
    assert summary.epochs < 30
    assert summary.epochs == summary.epochs_centralised
    assert abs(summary.auc_federated - summary.auc_centralised) <= 0.005


@pytest.mark.parametrize("pack", [True, False])
async def test_packed_and_unpacked_gradients_train_identically(tmp_path: Path, pack: bool) -> None:
    """Packing is exact: the model does not depend on it (both equal the centralised one to fixed-point error)."""
    x, y = load_breast_cancer(return_X_y=True)
    summary = await _run(tmp_path, x, y, [range(10), range(10, 30)], max_epochs=1, pack_gradients=pack)
    assert abs(summary.auc_federated - summary.auc_centralised) <= 0.005


async def test_a_restarted_arbiter_decrypts_under_the_key_its_accelerator_kept(tmp_path: Path) -> None:
    """The arbiter's checkpoint holds the job key's public form only; resumed with a new accelerator client on the
    same key folder (a restarted node), the job ends exactly as an uninterrupted one does."""
    x, y = load_breast_cancer(return_X_y=True)
    guest, host = vertical_split(tmp_path, x[:192], y[:192].astype(np.float64), [range(10), range(10, 30)], absent=0.0)
    folder = tmp_path / "arbiter" / "accel" / "keys"

    async def train(epochs: int, keys: KeyStore, saved: dict[str, MemoryCheckpoints]) -> dict[str, ComponentResult]:
        params = {**LR_DEFAULTS, **FAST, "max_epochs": epochs, "tol": 0.0}
        return await run_local(
            HeteroLR(),
            [
                Party("guest", "guest", {"train": guest}, AccelClient.in_process("guest"), params, saved["guest"]),
                Party("host", "host", {"train": host}, AccelClient.in_process("host"), params, saved["host"]),
                Party("arbiter", "arbiter", {}, AccelClient.in_process("arbiter", keys), params, saved["arbiter"]),
            ],
        )

    saved = {n: MemoryCheckpoints() for n in ("guest", "host", "arbiter")}
    await train(1, KeyStore(folder), saved)
    latest = saved["arbiter"].latest()
    assert latest is not None
    assert sorted(latest[1]) == ["key", "losses"]  # no factor of n
    assert KeyStore(folder).ids() == [codec.key_of(latest[1]["key"]).key_id]
    resumed = await train(2, KeyStore(folder), saved)
    assert len(KeyStore(folder).ids()) == 1  # resumed under the kept key, not a new one
    straight = await train(2, KeyStore.empty(), {n: MemoryCheckpoints() for n in saved})
    assert resumed["arbiter"].metrics == straight["arbiter"].metrics
    for party in ("guest", "host"):
        assert sorted(resumed[party].model) == sorted(straight[party].model)
        for name, value in straight[party].model.items():
            np.testing.assert_array_equal(resumed[party].model[name], value)


async def test_the_model_does_not_depend_on_where_the_accelerator_runs(tmp_path: Path) -> None:
    """One thread or the node's worker processes (the round's calls overlapping there): the same weights, bit for bit,
    and the work really ran on the workers."""
    x, y = load_breast_cancer(return_X_y=True)
    guest, host = vertical_split(tmp_path, x[:192], y[:192].astype(np.float64), [range(10), range(10, 30)], absent=0.0)
    params = {**LR_DEFAULTS, **FAST, "max_epochs": 2, "tol": 0.0}

    async def train(clients: dict[str, AccelClient]) -> dict[str, ComponentResult]:
        return await run_local(
            HeteroLR(),
            [
                Party("guest", "guest", {"train": guest}, clients["guest"], params),
                Party("host", "host", {"train": host}, clients["host"], params),
                Party("arbiter", "arbiter", {}, clients["arbiter"], params),
            ],
        )

    threads = await train({n: AccelClient.in_process(n) for n in ("guest", "host", "arbiter")})
    pool = WorkerPool(2)
    try:
        keys = {n: KeyStore(tmp_path / n / "keys") for n in ("guest", "host", "arbiter")}
        workers = await train({n: AccelClient.on_workers(n, keys[n], pool) for n in keys})
        served = pool.submitted
    finally:
        pool.close()
    assert served > 0
    assert threads["arbiter"].metrics == workers["arbiter"].metrics
    for party in ("guest", "host"):
        assert sorted(workers[party].model) == sorted(threads[party].model)
        for name, value in threads[party].model.items():
            np.testing.assert_array_equal(workers[party].model[name], value)


async def test_a_failed_step_cancels_the_steps_beside_it_and_raises_as_it_is() -> None:
    """An arbiter waiting on two parties' gradients: one party's quorum error must not leave the other's wait (and its
    decryption and reply) running after the job has failed."""
    finished: list[str] = []

    async def quorum_lost() -> str:
        await asyncio.sleep(0.01)
        raise QuorumError("hlr.grad", 3, [], 1)

    async def slow_party() -> str:
        await asyncio.sleep(5)
        finished.append("slow")
        return "slow"

    slow = asyncio.ensure_future(slow_party())
    with pytest.raises(QuorumError):
        await side_by_side(quorum_lost(), slow)
    assert slow.cancelled()
    assert finished == []
    assert await side_by_side(asyncio.sleep(0, "a"), asyncio.sleep(0, "b")) == ["a", "b"]
