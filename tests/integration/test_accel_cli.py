"""``interfed accel`` as an operator runs it: keygen, keys, and ``accel up`` as its own process serving members."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from accel.client import AccelClient
from accel.keystore import KeyStore
from mesh.node import open_context
from mesh.testing import fresh_settings
from services.testbed import create_homes, federation, party_configs

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]


def interfed(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interfed", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.mark.reference_lane
async def test_accel_up_serves_members_and_stops_cleanly(bootstrap: str, home_root: Path) -> None:
    settings = fresh_settings(heartbeat_interval=0.3, unreachable_after=3.0)
    env = {**os.environ, "INTERFED_TOPIC_PREFIX": settings.topic_prefix, "INTERFED_BOOTSTRAP": bootstrap}
    async with federation(home_root, bootstrap, 2, settings=settings) as fed:
        owner, other = fed.member("party0"), fed.member("party1")
        made = interfed("accel", "keygen", "--home", str(owner.home.path), "--bits", "512", env=env)
        assert made.returncode == 0, made.stderr
        (key_ref,) = KeyStore.of_home(owner.home.path).ids()
        listed = interfed("accel", "keys", "--home", str(owner.home.path), env=env)
        assert key_ref in listed.stdout
        owned = KeyStore.of_home(owner.home.path).get(key_ref)
        assert owned is not None

        service = subprocess.Popen(  # noqa: ASYNC220 - a long-running child, stopped below
            [sys.executable, "-m", "interfed", "accel", "up", "--home", str(owner.home.path), "--workers", "1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            async with (
                AccelClient.connect(open_context(other.home, other.bus, settings), "party0", timeout=20) as theirs,
                AccelClient.connect(open_context(owner.home, owner.bus, settings), "party0", timeout=20) as mine,
            ):
                encrypted = await theirs.encrypt(owned.published, np.array([1.5, -2.0]), fast=True)
                summed = await theirs.sum(encrypted)
                np.testing.assert_array_equal(await mine.decrypt(summed), [-0.5])
        finally:
            service.send_signal(signal.SIGINT)
            out, err = await asyncio.to_thread(service.communicate, timeout=60)
        assert service.returncode == 0, err
        assert "accelerator of party0 up" in out


def test_accel_up_without_a_broker_says_what_to_do(home_root: Path) -> None:
    settings = fresh_settings()
    env = {k: v for k, v in os.environ.items() if k != "INTERFED_BOOTSTRAP"}
    _, node = create_homes(home_root, party_configs(1))
    proc = interfed(
        "accel", "up", "--home", str(node.path), env={**env, "INTERFED_TOPIC_PREFIX": settings.topic_prefix}
    )
    assert proc.returncode == 3
    assert "--bootstrap" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
