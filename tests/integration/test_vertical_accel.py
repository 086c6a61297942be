"""PSI then hetero LR with the guest's and host's Paillier work done by the accelerator service on a real broker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from accel.client import AccelClient
from accel.keystore import KeyStore
from mesh.node import open_context, running
from mesh.testing import fresh_settings
from services.accel.service import AccelService
from services.executor.algorithms.vertical_data import vertical_split
from services.executor.algorithms.vertical_run import run_vertical
from services.testbed import federation

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]


async def test_hetero_lr_through_the_accelerator_service_matches_centralised(bootstrap: str, home_root: Path) -> None:
    """A small slice (150 rows, one epoch, 1024-bit key): every Paillier operation goes to an accelerator's topic.

    The guest's and host's public-key work goes to party0's accelerator; the arbiter (party2) has its own,
    which makes the job key (KEYGEN), keeps it in party2's home and decrypts under it."""
    x, y = load_breast_cancer(return_X_y=True)
    (home_root / "data").mkdir(parents=True)
    guest, host = vertical_split(home_root / "data", x[:150], y[:150].astype(np.float64), [range(10), range(10, 30)])
    settings = fresh_settings(heartbeat_interval=1.0, unreachable_after=30.0)
    async with federation(home_root / "fed", bootstrap, 3, settings=settings) as fed:
        one, two, three = fed.member("party0"), fed.member("party1"), fed.member("party2")
        service = AccelService(
            open_context(one.home, one.bus, settings), workers=1, keys=KeyStore.of_home(one.home.path)
        )
        arbiter_service = AccelService(
            open_context(three.home, three.bus, settings), workers=1, keys=KeyStore.of_home(three.home.path)
        )
        async with (
            running(service),
            running(arbiter_service),
            AccelClient.connect(open_context(one.home, one.bus, settings), "party0", timeout=60) as for_guest,
            AccelClient.connect(open_context(two.home, two.bus, settings), "party0", timeout=60) as for_host,
            AccelClient.connect(open_context(three.home, three.bus, settings), "party2", timeout=60) as for_arbiter,
        ):
            summary = await run_vertical(
                guest,
                {"host": host},
                home_root / "work",
                accel={"guest": for_guest, "host": for_host, "arbiter": for_arbiter},
                lr_params={"key_bits": 1024, "max_epochs": 1, "batch_size": 64},
            )
    assert abs(summary.auc_federated - summary.auc_centralised) <= 0.005
    assert summary.rounds == -(-summary.intersection // 64)
    assert len(KeyStore.of_home(three.home.path).ids()) == 1  # the job key, made and kept at the arbiter's node only
    assert KeyStore.of_home(one.home.path).ids() == []
    # One KEYGEN, then per round one gradient per party plus the loss: all decrypted by party2's accelerator.
    assert arbiter_service.counts["replied"] == 1 + 3 * summary.rounds
