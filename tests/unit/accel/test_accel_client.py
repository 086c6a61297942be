"""The accelerator's operations through ``AccelClient``'s in-process path: the same engine the service runs.

Every operation is checked against plaintext arithmetic, exactly after decryption, and every
refusal against its reason code. (The service over a real broker: tests/integration/test_accel_service.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from accel import KeyPair, PackingSpec
from accel.client import AccelClient
from accel.engine import Engine
from accel.errors import AccelRequestError, DecryptRefusedError, UnknownKeyError
from accel.gmp_backend import make_djn_base
from accel.keystore import KeyStore
from accel.wire import PublishedKey, plain_record, public_key_record


@pytest.fixture
def store(keypair: KeyPair) -> KeyStore:
    keys = KeyStore.empty()
    keys.add(keypair, djn_base=make_djn_base(keypair.public_key))
    return keys


@pytest.fixture
def client(store: KeyStore) -> AccelClient:
    return AccelClient.in_process("owner", store)


async def test_every_vector_operation_matches_plaintext_arithmetic(client: AccelClient, keypair: KeyPair) -> None:
    x = np.array([1.5, -2.25, 0.0, 1e3])
    y = np.array([0.5, 0.25, -4.0, -1e3])
    k = np.array([3, -2, 7, 1])
    key = keypair.public_key
    ex = await client.encrypt(key, x, precision=16)
    ey = await client.encrypt(key, y, precision=16, fast=True)
    np.testing.assert_array_equal(await client.decrypt(ex), x)
    np.testing.assert_array_equal(await client.decrypt(await client.add(ex, ey)), x + y)
    np.testing.assert_array_equal(await client.decrypt(await client.add_plain(ex, y)), x + y)
    np.testing.assert_array_equal(await client.decrypt(await client.mul_plain(ex, k)), x * k)
    np.testing.assert_array_equal(await client.decrypt(await client.mul_plain(ex, 0.5)), x * 0.5)
    np.testing.assert_array_equal(await client.decrypt(await client.dot(ex, k)), [x @ k])
    np.testing.assert_array_equal(await client.decrypt(await client.sum(ex)), [x.sum()])
    matrix = np.arange(12, dtype=np.int64).reshape(4, 3) - 5
    np.testing.assert_array_equal(await client.decrypt(await client.transpose_dot(ex, matrix)), matrix.T @ x)


async def test_packed_operations_add_slotwise_and_refuse_to_break_the_budget(
    client: AccelClient, keypair: KeyPair
) -> None:
    spec = PackingSpec(16, 8, clip=1.0, max_terms=3)
    values = np.linspace(-1, 1, 200)
    packed = await client.packed_encrypt(keypair.public_key, values, spec)
    quantised = spec.quantise(values)
    total = await client.packed_add(packed, packed, packed)
    np.testing.assert_array_equal(await client.packed_decrypt(total), 3 * quantised)
    with pytest.raises(AccelRequestError) as refused:
        await client.packed_add(total, packed)
    assert refused.value.code == "PACKING_BUDGET"


@pytest.mark.parametrize(
    ("call", "code"),
    [
        ("overflow", "PAILLIER_OVERFLOW"),
        ("exponents", "EXPONENT_MISMATCH"),
        ("shapes", "SHAPE_MISMATCH"),
        ("nan", "MALFORMED_REQUEST"),
        ("no_private_key", "NO_PRIVATE_KEY"),
    ],
)
async def test_failing_requests_raise_their_reason_code(
    client: AccelClient, keypair: KeyPair, call: str, code: str
) -> None:
    key = keypair.public_key
    ex = await client.encrypt(key, np.array([1.0, 2.0]), precision=16)
    # Same length at another exponent, or the same exponent at another length.
    other = await (
        client.encrypt(key, np.array([1.0, 2.0]), precision=8)
        if call == "exponents"
        else client.encrypt(key, np.array([1.0]), precision=16)
    )
    calls = {
        "overflow": lambda: client.mul_plain(ex, np.array([2**600, 1])),
        "exponents": lambda: client.add(ex, other),
        "shapes": lambda: client.add(ex, other),
        "nan": lambda: client.packed_encrypt(key, np.array([np.nan])),
        "no_private_key": lambda: AccelClient.in_process("owner", KeyStore.empty()).decrypt(ex),
    }
    with pytest.raises(AccelRequestError) as refused:
        await calls[call]()
    assert refused.value.code == code
    assert not refused.value.retriable


def test_decryption_is_refused_to_every_node_but_the_owner(store: KeyStore, keypair: KeyPair) -> None:
    engine = Engine("owner", store, lambda *_: pytest.fail("no backend may be built for a refused request"))
    request = _request(keypair, "DECRYPT")
    with pytest.raises(DecryptRefusedError, match="key owner's own node owner; party1 asked"):
        engine.compute(request, "party1")


def test_a_key_neither_held_nor_given_is_unknown(keypair: KeyPair) -> None:
    engine = Engine("owner", KeyStore.empty(), lambda *_: pytest.fail("unreachable"))
    with pytest.raises(UnknownKeyError):
        engine.compute({**_request(keypair, "ENCRYPT"), "public_key": None}, "owner")


def _request(keypair: KeyPair, operation: str) -> dict[str, object]:
    published = PublishedKey(keypair.public_key)
    return {
        "request_id": "r1",
        "operation": operation,
        "key_id": published.key_id,
        "public_key": public_key_record(published),
        "encryption": "TEXTBOOK",
        "vectors": [],
        "packed": [],
        "plain": plain_record([1], 0),
        "bound": None,
        "matrix": None,
        "values": [],
        "packing": None,
    }
