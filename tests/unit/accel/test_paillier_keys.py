"""Keys: generation, conversion to and from phe, and the key-owner encryption paths."""

from __future__ import annotations

import numpy as np
import phe
import pytest

from accel import (
    Encryption,
    Gmpy2Backend,
    KeyPair,
    MissingPrivateKeyError,
    Paillier,
    PheBackend,
    from_phe,
    generate_keypair,
    to_phe,
)
from accel.fixedbase import FixedBaseTable
from accel.gmp_backend import djn_exponent_bits, factor_p_minus_1


def test_generated_keys_are_admissible(keypair: KeyPair) -> None:
    public, private = keypair.public_key, keypair.private_key
    assert public.bits == 512
    assert private.p % 4 == 3
    assert private.q % 4 == 3
    assert factor_p_minus_1(private.p) is not None
    assert "p=" not in repr(private)


@pytest.mark.parametrize("bits", [256, 512, 1024])
def test_sieved_primes_have_the_certified_form(bits: int) -> None:
    """Each factor is p = 2*s*p' + 1 with s odd below 2^16 and p' prime, above sqrt(2) * 2^(bits/2 - 1)."""
    pair = generate_keypair(bits)
    assert pair.public_key.n.bit_length() == bits
    for prime in (pair.private_key.p, pair.private_key.q):
        assert prime.bit_length() == bits // 2
        assert prime * prime > 1 << (bits - 1)
        factors = factor_p_minus_1(prime)
        assert factors is not None
        assert factors[0] == 2
        assert (prime - 1) % 4 == 2
        assert all(f < 1 << 16 for f in factors[:-1])
        assert factors[-1].bit_length() >= bits // 2 - 17


def test_safe_prime_keys() -> None:
    pair = generate_keypair(256, safe_primes=True)
    for prime in (pair.private_key.p, pair.private_key.q):
        assert factor_p_minus_1(prime) == [2, (prime - 1) // 2]


def test_keys_convert_to_phe_and_back(keypair: KeyPair) -> None:
    public, private = to_phe(keypair.public_key, keypair.private_key)
    assert private is not None
    assert private.decrypt(public.encrypt(-12.5)) == -12.5
    assert from_phe(public, private) == (keypair.public_key, keypair.private_key)


def test_phe_made_keys_work_in_every_encryption_mode(phe_keypair: KeyPair) -> None:
    reference = Paillier(PheBackend(phe_keypair.public_key, phe_keypair.private_key))
    for mode in Encryption:
        encrypted = Paillier(Gmpy2Backend(phe_keypair.public_key, phe_keypair.private_key, encryption=mode)).encrypt(
            np.array([3, -4]), precision=0
        )
        assert reference.decrypt_mantissas(encrypted.with_backend(reference.backend)) == [3, -4]


def test_phe_objects_are_wrapped_directly() -> None:
    public, private = phe.generate_paillier_keypair(n_length=256)
    backend = PheBackend.from_phe_keys(public, private)
    assert backend.phe_public_key.n == public.n
    assert Paillier(backend).decrypt(Paillier(backend).encrypt(np.array([0.5])))[0] == 0.5


def test_key_owner_uses_the_fixed_base_path_for_our_keys(keypair: KeyPair) -> None:
    assert Gmpy2Backend(keypair.public_key, keypair.private_key, encryption=Encryption.KEY_OWNER).key_owner_fixed_base


def test_key_owner_encryption_needs_the_private_key(keypair: KeyPair) -> None:
    with pytest.raises(MissingPrivateKeyError):
        Gmpy2Backend(keypair.public_key, encryption=Encryption.KEY_OWNER)
    with pytest.raises(MissingPrivateKeyError):
        Gmpy2Backend(keypair.public_key).decrypt([1])


def test_key_owner_residues_are_nth_residues(keypair: KeyPair) -> None:
    """Encryptions of 0 are r^n: raising to lambda gives 1 mod n^2 (they lie in the n-th residue subgroup)."""
    backend = Gmpy2Backend(keypair.public_key, keypair.private_key, encryption=Encryption.KEY_OWNER)
    p, q, n2 = keypair.private_key.p, keypair.private_key.q, keypair.public_key.nsquare
    lam = (p - 1) * (q - 1)
    zeros = backend.encrypt([0] * 5)
    assert all(pow(int(c), lam, n2) == 1 for c in zeros)
    assert len(set(zeros)) == 5


def test_fixed_base_table_matches_powmod() -> None:
    modulus = 1_000_000_007 * 998_244_353
    table = FixedBaseTable(123_456_789, modulus, 70)
    for e in (0, 1, 255, 256, 2**69 + 12345, 2**70 - 1):
        assert table.pow(e) == pow(123_456_789, e, modulus)
    with pytest.raises(ValueError, match="range"):
        table.pow(2**70)


def test_djn_exponent_is_twice_the_security_level() -> None:
    assert djn_exponent_bits(2048) == 224
    assert djn_exponent_bits(3072) == 256
