"""Paillier key material (n; p, q) as plain values, conversion to and from phe's keys, key generation.

Keys hold integers only: every backend derives its own precomputation from them, so the
same key material works under every backend and converts losslessly to phe's key objects.
"""

from __future__ import annotations

import functools
import math
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from accel import _gmp
from accel.errors import PaillierKeyMismatchError

if TYPE_CHECKING:
    import phe

#: Smallest key accepted; tests use 512-bit keys, production 2048 and up.
MIN_KEY_BITS = 256

#: Bits of the random cofactor s in p = 2*s*p' + 1 (see ``_certified_prime``).
_COFACTOR_BITS = 16


@dataclass(frozen=True)
class PublicKey:
    """A Paillier public key with g = n + 1 (the textbook choice that phe and SecretFlow use)."""

    n: int

    @functools.cached_property
    def nsquare(self) -> int:
        """n², the modulus of ciphertexts."""
        return self.n * self.n

    @functools.cached_property
    def max_int(self) -> int:
        """Largest magnitude of a signed plaintext; the same n//3 - 1 as phe, so the two decode alike."""
        return self.n // 3 - 1

    @property
    def bits(self) -> int:
        """The size of n in bits, e.g. 2048."""
        return self.n.bit_length()

    def check_same(self, other: PublicKey) -> None:
        """Refuse to mix ciphertexts of two keys: the result would decrypt to garbage."""
        if self.n != other.n:
            raise PaillierKeyMismatchError("ciphertexts are under different public keys")


@dataclass(frozen=True)
class PrivateKey:
    """The factorisation of n; every secret quantity a backend needs derives from it."""

    public_key: PublicKey
    p: int
    q: int

    def __post_init__(self) -> None:
        if self.p * self.q != self.public_key.n:
            raise PaillierKeyMismatchError("p * q is not n")
        if self.p == self.q:
            raise ValueError("p and q must differ")
        if self.p > self.q:  # one order, so one key has one value (phe keeps p < q too)
            p, q = self.q, self.p
            object.__setattr__(self, "p", p)
            object.__setattr__(self, "q", q)

    def __repr__(self) -> str:
        # Never print the factors (logs, tracebacks).
        return f"PrivateKey(n=<{self.public_key.bits} bits>)"


@dataclass(frozen=True)
class KeyPair:
    """A public key and the private key that belongs to it."""

    public_key: PublicKey
    private_key: PrivateKey


def generate_keypair(bits: int = 2048, *, safe_primes: bool = False) -> KeyPair:
    """A fresh key pair with an n of exactly ``bits`` bits.

    By default p - 1 = 2*s*p' with p' prime and s < 2^16 odd, so the factorisation of p - 1
    is recoverable from p alone: the gmpy2 backend needs it to find a generator for
    key-owner encryption (see ``accel.gmp_backend``). This is no weaker than a random prime
    (p - 1 has a ~1000-bit prime factor, which also defeats Pollard's p - 1). ``safe_primes``
    gives p = 2p' + 1 instead, which is slower to generate. Both give p = q = 3 (mod 4), the
    "admissible" moduli the DJN variant is analysed for, and gcd(p - 1, q - 1) = 2.
    """
    if bits < MIN_KEY_BITS or bits % 2:
        raise ValueError(f"key bits must be even and >= {MIN_KEY_BITS}, got {bits}")
    half = bits // 2
    make = _safe_prime if safe_primes else _certified_prime
    p = make(half)
    while True:  # both primes exceed sqrt(2) * 2^(half-1), so n has its full length; only q is redrawn
        q = make(half)
        n = p * q
        if p != q and n.bit_length() == bits and _gmp.gcd(p - 1, q - 1) == 2:
            public = PublicKey(n)
            return KeyPair(public, PrivateKey(public, p, q))


def _random_odd(bits: int) -> int:
    # The top two bits set: the product of two such numbers has exactly 2*bits bits.
    return secrets.randbits(bits) | (3 << (bits - 2)) | 1


def _certified_prime(bits: int) -> int:
    """A prime p > sqrt(2) * 2^(bits-1) of ``bits`` bits with p - 1 = 2*s*p', p' prime, s odd and below 2^16.

    For one random prime p', the odd s in [sqrt(2) * 2^(bits-1) / (2p'), 2^16) are up to ~2^13
    candidates. A sieve by the odd primes below 2^12 removes every s for which p has such a
    factor (a prime p always survives), and the survivors are tried in a random order: s is
    uniform over the s that make p prime, as when s is drawn at random and retried, at a tenth of
    the primality tests. The lower bound makes the product of two such primes 2 * bits long.
    """
    lowest = math.isqrt(1 << (2 * bits - 1)) + 1  # > sqrt(2) * 2^(bits-1)
    while True:
        inner = int(_gmp.next_prime(_random_odd(bits - 1 - _COFACTOR_BITS)))
        first = -(-(lowest - 1) // (2 * inner)) | 1  # the smallest odd s giving p >= lowest
        size = max(0, ((1 << _COFACTOR_BITS) - first + 1) // 2)  # s = first + 2i for i < size
        survivors = bytearray([1]) * size
        for r in small_primes(1 << 12)[1:]:
            # p = 2*s*p' + 1 is divisible by r iff s = -(2p')^-1 (mod r), i.e. i = (that - first) / 2 (mod r)
            forbidden = -pow(2 * inner, -1, r) % r
            start = (forbidden - first) * pow(2, -1, r) % r
            survivors[start::r] = bytes(len(range(start, size, r)))
        left = [i for i in range(size) if survivors[i]]
        while left:  # a uniformly random survivor each time, without replacement
            pick = secrets.randbelow(len(left))
            i = left[pick]
            left[pick] = left[-1]
            left.pop()
            p = 2 * (first + 2 * i) * inner + 1
            if _gmp.is_prime(p):
                return p


def _safe_prime(bits: int) -> int:
    """A prime p = 2p' + 1 with p' prime (a safe prime)."""
    while True:
        inner = _random_odd(bits - 1)
        # A cheap sieve first: p' and 2p'+1 must both avoid the small primes.
        if any(inner % r == 0 or (2 * inner + 1) % r == 0 for r in _SIEVE):
            continue
        if _gmp.is_prime(inner) and _gmp.is_prime(2 * inner + 1):
            return 2 * inner + 1


@functools.cache
def small_primes(bound: int) -> tuple[int, ...]:
    """The primes below ``bound`` (a sieve of Eratosthenes)."""
    sieve = bytearray([1]) * bound
    sieve[0:2] = b"\x00\x00"
    for i in range(2, int(bound**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(range(i * i, bound, i)))
    return tuple(i for i, flag in enumerate(sieve) if flag)


_SIEVE = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)


def from_phe(
    public_key: phe.PaillierPublicKey, private_key: phe.PaillierPrivateKey | None = None
) -> tuple[PublicKey, PrivateKey | None]:
    """Our key values from phe's key objects (phe also uses g = n + 1)."""
    public = PublicKey(int(public_key.n))
    if private_key is None:
        return public, None
    if int(private_key.public_key.n) != public.n:
        raise PaillierKeyMismatchError("phe private key belongs to another public key")
    return public, PrivateKey(public, int(private_key.p), int(private_key.q))


def to_phe(
    public_key: PublicKey, private_key: PrivateKey | None = None
) -> tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey | None]:
    """phe's key objects for our key values."""
    import phe

    public = phe.PaillierPublicKey(public_key.n)
    if private_key is None:
        return public, None
    return public, phe.PaillierPrivateKey(public, private_key.p, private_key.q)
