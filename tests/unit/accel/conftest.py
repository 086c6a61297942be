"""Paillier test fixtures: small keys made once per session, and one backend of each kind per key."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import phe
import pytest

from accel import Encryption, Gmpy2Backend, KeyPair, PaillierBackend, PheBackend, from_phe, generate_keypair
from accel.pool import PooledBackend, WorkerPool

#: Small keys keep the suite fast; the arithmetic does not depend on the size.
TEST_KEY_BITS = 512

BackendFactory = Callable[[KeyPair], PaillierBackend]

#: Every backend the contract suite runs over, by name.
BACKENDS: dict[str, BackendFactory] = {
    "phe": lambda kp: PheBackend(kp.public_key, kp.private_key),
    "gmpy2-textbook": lambda kp: Gmpy2Backend(kp.public_key, kp.private_key),
    "gmpy2-key-owner": lambda kp: Gmpy2Backend(kp.public_key, kp.private_key, encryption=Encryption.KEY_OWNER),
    "gmpy2-djn": lambda kp: Gmpy2Backend(kp.public_key, kp.private_key, encryption=Encryption.DJN),
}


@pytest.fixture(scope="session")
def keypair() -> KeyPair:
    return generate_keypair(TEST_KEY_BITS)


@pytest.fixture(scope="session")
def phe_keypair() -> KeyPair:
    """A key made by phe itself (its p - 1 is generally not certifiable: the key-owner fallback path)."""
    public, private = phe.generate_paillier_keypair(n_length=TEST_KEY_BITS)
    ours, our_private = from_phe(public, private)
    assert our_private is not None
    return KeyPair(ours, our_private)


@pytest.fixture(scope="session")
def worker_pool() -> Iterator[WorkerPool]:
    """Two worker processes: enough for every slice boundary (one slice, two, empty) to be crossed."""
    pool = WorkerPool(2)
    pool.warm()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def backends(keypair: KeyPair, worker_pool: WorkerPool) -> dict[str, PaillierBackend]:
    made = {name: make(keypair) for name, make in BACKENDS.items()}
    made["pool2-gmpy2-key-owner"] = PooledBackend(
        worker_pool, keypair.public_key, keypair.private_key, encryption=Encryption.KEY_OWNER
    )
    return made


@pytest.fixture(scope="module", params=[*BACKENDS, "pool2-gmpy2-key-owner"])
def backend(request: pytest.FixtureRequest, backends: dict[str, PaillierBackend]) -> PaillierBackend:
    return backends[request.param]


@pytest.fixture
def reference(backends: dict[str, PaillierBackend]) -> PaillierBackend:
    return backends["phe"]
