"""``KEYGEN`` on the in-process path: a node's accelerator makes a key pair for that node only, and keeps it.

The same ``Engine`` runs in the service (tests/integration/test_accel_service.py has the broker side):
the key is written to the store's folder as ``interfed accel keygen`` writes it, and a second store
on the same folder (another instance of the node's accelerator) finds it on a miss.
"""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from accel.client import AccelClient, request_record
from accel.engine import Engine
from accel.errors import AccelRequestError, KeygenRefusedError
from accel.keys import MIN_KEY_BITS
from accel.keystore import KeyStore

BITS = 512


async def test_a_generated_key_is_kept_in_the_folder_and_decrypts_what_others_encrypt(tmp_path: Path) -> None:
    folder = tmp_path / "accel" / "keys"
    owner = AccelClient.in_process("owner", KeyStore(folder))
    key = await owner.generate_key(BITS)
    assert key.public_key.bits == BITS
    assert key.djn_base is not None  # published with the key, so every encryptor uses the same base
    path = folder / f"{key.key_id}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyStore(folder).ids() == [key.key_id]  # as `interfed accel keygen` would have left it
    values = np.array([1.5, -2.25, 0.0, 1e3])
    encrypted = await AccelClient.in_process("party").encrypt(key, values, precision=16, fast=True)
    np.testing.assert_array_equal(await owner.decrypt(encrypted), values)


async def test_safe_primes_are_asked_for_and_given(tmp_path: Path) -> None:
    owner = AccelClient.in_process("owner", KeyStore(tmp_path))
    key = await owner.generate_key(BITS, safe_primes=True)
    held = KeyStore(tmp_path).get(key.key_id)
    assert held is not None
    for prime in (held.private_key.p, held.private_key.q):
        assert pow(2, (prime - 1) // 2 - 1, (prime - 1) // 2) == 1  # (p - 1)/2 passes a Fermat test


def test_keygen_is_refused_to_every_node_but_the_accelerators_own() -> None:
    keys = KeyStore.empty()
    engine = Engine("owner", keys, lambda *_: pytest.fail("no backend is built for KEYGEN"))
    with pytest.raises(KeygenRefusedError, match="own node owner; party1 asked"):
        engine.compute(request_record("owner", "KEYGEN", None, keygen={"bits": BITS, "safe_primes": False}), "party1")
    assert len(keys) == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"keygen": {"bits": 513, "safe_primes": False}}, "even key sizes of 512 to 8192 bits, not 513"),
        ({"keygen": {"bits": MIN_KEY_BITS, "safe_primes": False}}, f"8192 bits, not {MIN_KEY_BITS}"),
        ({"keygen": None}, "takes its keygen parameters"),
        ({"key_id": "ab" * 16}, "an empty key_id"),
        ({"values": [1.0]}, "takes no operands"),
    ],
)
async def test_a_malformed_keygen_is_refused_with_its_reason(change: dict[str, object], reason: str) -> None:
    keys = KeyStore.empty()
    client = AccelClient.in_process("owner", keys)
    with pytest.raises(AccelRequestError, match=reason) as refused:
        await client.request("KEYGEN", None, **{"keygen": {"bits": BITS, "safe_primes": False}, **change})
    assert refused.value.code == "MALFORMED_REQUEST"
    assert len(keys) == 0


async def test_another_store_on_the_same_folder_finds_a_new_key_on_a_miss(tmp_path: Path) -> None:
    first, second = KeyStore(tmp_path), KeyStore(tmp_path)  # two instances of one node's accelerator
    made = first.generate(BITS)
    assert made.key_id not in second  # loaded at start, before the key existed
    found = second.get(made.key_id)
    assert found is not None
    assert found.private_key.p == made.private_key.p
    assert found.published == made.published
    assert second.get("0" * 32) is None  # a miss that is not on disk either
    assert second.get("../" + made.key_id) is None  # only key ids name files
