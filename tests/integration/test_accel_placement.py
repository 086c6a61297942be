"""Where a node's Paillier work runs, as `interfed node up` opens it (services/accel/placement.py), on a broker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accel import generate_keypair
from accel.client import AccelClient, LocalTransport
from accel.errors import AccelTimeoutError
from accel.keystore import KeyStore
from mesh.node import open_context, running
from mesh.testing import fresh_settings
from services.accel.placement import AcceleratorSettings, node_accelerator
from services.accel.service import AccelService
from services.testbed import federation

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]


async def test_workers_mode_computes_on_the_nodes_own_workers_without_the_broker(
    bootstrap: str, home_root: Path
) -> None:
    """The executor's client owns the workers (and stops them); with ``serve`` the node also answers its request topic
    over the broker, on the same workers."""
    settings = fresh_settings(heartbeat_interval=5.0, unreachable_after=60.0)
    async with federation(home_root, bootstrap, 2, settings=settings) as fed:
        member = fed.member("party0")
        ctx = open_context(member.home, member.bus, settings)
        accelerator = node_accelerator(ctx, AcceleratorSettings(mode="workers", workers=2, serve=True))
        (service,) = accelerator.services
        assert isinstance(service, AccelService)
        assert accelerator.describe() == {
            "mode": "workers",
            "runs_on": "the node's 2 accelerator worker process(es)",
            "workers": 2,
            "serves": True,
        }
        transport = accelerator.client.transport
        assert isinstance(transport, LocalTransport)
        assert transport.pool is service.pool  # one set of workers for both
        other = fed.member("party1")
        async with (
            running(service),
            AccelClient.connect(open_context(other.home, other.bus, settings), "party0", timeout=60) as remote,
        ):
            key = await accelerator.client.generate_key(1024)  # kept in the node's home, as a job key is
            vector = await accelerator.client.encrypt(key, np.arange(64, dtype=np.float64))
            summed = await accelerator.client.add(vector, vector)
            np.testing.assert_array_equal(await accelerator.client.decrypt(summed), 2 * np.arange(64))
            assert service.counts["replied"] == 0  # the node's own work never went through the broker ...
            submitted = transport.pool.submitted
            assert submitted > 0  # ... but to the workers
            await remote.add(vector, vector)  # another node's public-key work, over the broker
            assert service.counts["replied"] == 1
            assert transport.pool.submitted > submitted  # on the same workers
        assert dict(transport.served) == {"KEYGEN": 1, "ENCRYPT": 1, "ADD": 1, "DECRYPT": 1}
        assert KeyStore.of_home(member.home.path).ids() == [key.key_id]
        await accelerator.client.close()  # what the executor does when it stops
        with pytest.raises(RuntimeError):
            await accelerator.client.add(vector, vector)
        # by default no service: nothing else asks a node's accelerator, and an idle service's readers poll the broker
        plain = node_accelerator(ctx, AcceleratorSettings(mode="workers", workers=1))
        assert plain.services == []
        assert plain.describe()["serves"] is False
        await plain.client.close()


async def test_service_mode_sends_every_operation_to_the_nodes_running_instances(
    bootstrap: str, home_root: Path
) -> None:
    """What `node up --accel service` does beside an `interfed accel up` of the same home; without one, a clear
    timeout naming what to start, never a silent in-process answer."""
    settings = fresh_settings(heartbeat_interval=5.0, unreachable_after=60.0)
    async with federation(home_root, bootstrap, 1, settings=settings) as fed:
        member = fed.member("party0")
        accelerator = node_accelerator(
            open_context(member.home, member.bus, settings), AcceleratorSettings(mode="service", timeout=3, retries=0)
        )
        (listener,) = accelerator.services
        key = generate_keypair(1024).public_key
        async with running(listener):
            with pytest.raises(AccelTimeoutError, match="interfed accel up"):
                await accelerator.client.encrypt(key, [1.0, 2.0])
            instance = AccelService(open_context(member.home, member.bus, settings), workers=1)
            async with running(instance):
                vector = await accelerator.client.encrypt(key, [1.0, 2.0])
                await accelerator.client.add(vector, vector)
        # the two, and the request that had timed out, still on the topic when the instance started: every request
        # gets its reply (the client had given it up)
        assert instance.counts["replied"] == 3
        assert accelerator.describe()["runs_on"] == "the accelerator service of party0, through the broker"
