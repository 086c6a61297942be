"""Serialisation: keys and ciphertext vectors round-trip through bytes, big integers little-endian."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel import Gmpy2Backend, KeyPair, MalformedCiphertextError, Packer, PackingSpec, Paillier, PaillierBackend
from accel.serial import (
    int_to_le,
    le_to_int,
    packed_from_bytes,
    packed_to_bytes,
    private_key_from_bytes,
    private_key_to_bytes,
    public_key_from_bytes,
    public_key_to_bytes,
    vector_from_bytes,
    vector_to_bytes,
)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**4096))
def test_integers_are_minimal_little_endian(x: int) -> None:
    raw = int_to_le(x)
    assert le_to_int(raw) == x
    assert raw == x.to_bytes(len(raw), "little")
    assert not raw or raw[-1] != 0


def test_public_key_layout_is_magic_version_then_le_n(keypair: KeyPair) -> None:
    data = public_key_to_bytes(keypair.public_key)
    n = keypair.public_key.n
    size = (n.bit_length() + 7) // 8
    assert data[:5] == b"IFPK\x01"
    assert int.from_bytes(data[5:9], "little") == size
    assert data[9 : 9 + size] == n.to_bytes(size, "little")
    assert public_key_from_bytes(data) == (keypair.public_key, None)


def test_keys_round_trip_with_the_djn_base(keypair: KeyPair, backends: dict[str, PaillierBackend]) -> None:
    djn = backends["gmpy2-djn"]
    assert isinstance(djn, Gmpy2Backend)
    public, hs = public_key_from_bytes(public_key_to_bytes(keypair.public_key, djn.djn_base))
    assert public == keypair.public_key
    assert hs == djn.djn_base
    assert private_key_from_bytes(private_key_to_bytes(keypair.private_key)) == keypair.private_key


def test_vectors_round_trip_and_decrypt(backend: PaillierBackend) -> None:
    ops = Paillier(backend)
    encrypted = ops.encrypt(np.array([1.25, -3.5, 0.0]), precision=20)
    restored = vector_from_bytes(vector_to_bytes(encrypted), backend)
    assert list(restored.ciphertexts) == [int(c) for c in encrypted.ciphertexts]
    assert (restored.exponent, restored.bound) == (encrypted.exponent, encrypted.bound)
    np.testing.assert_array_equal(ops.decrypt(restored), [1.25, -3.5, 0.0])


def test_packed_vectors_round_trip_with_their_budget(backends: dict[str, PaillierBackend]) -> None:
    backend = backends["gmpy2-key-owner"]
    packer = Packer(backend, PackingSpec(16, 8, clip=2.0, max_terms=10))
    packed = packer.encrypt(np.linspace(-2, 2, 30))
    packed = packed + packed
    restored = packed_from_bytes(packed_to_bytes(packed), backend)
    assert (restored.spec, restored.length, restored.terms) == (packed.spec, packed.length, 2)
    np.testing.assert_array_equal(packer.decrypt_quantised(restored), packer.decrypt_quantised(packed))


def test_malformed_bytes_are_refused(backends: dict[str, PaillierBackend]) -> None:
    backend = backends["gmpy2-textbook"]
    good = vector_to_bytes(Paillier(backend).encrypt(np.array([1.0])))
    with pytest.raises(MalformedCiphertextError):
        vector_from_bytes(good[:-1], backend)
    with pytest.raises(MalformedCiphertextError):
        vector_from_bytes(good + b"\x00", backend)
    with pytest.raises(MalformedCiphertextError):
        vector_from_bytes(b"IFPK" + good[4:], backend)
    n2 = backend.public_key.nsquare
    forged = b"IFCV\x01" + (0).to_bytes(4, "little") + b"\x00" * 4 + (1).to_bytes(4, "little")
    raw = int_to_le(n2)
    with pytest.raises(MalformedCiphertextError, match="outside"):
        vector_from_bytes(forged + len(raw).to_bytes(4, "little") + raw, backend)
