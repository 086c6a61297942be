"""The gmpy2 backend: CRT decryption and three interchangeable ways to encrypt.

All three produce textbook ciphertexts c = (1 + n*m) * r^n mod n^2 (g = n + 1), so any
backend decrypts them; they differ in how the n-th residue r^n is drawn.

``TEXTBOOK`` (default): r uniform in [1, n), one powmod with an n-bit exponent mod n^2,
exactly as phe and the Paillier paper do.

``KEY_OWNER`` (needs p, q): by the CRT, the n-th residues mod n^2 are N_p x N_q, where N_p,
the n-th residues mod p^2, is cyclic of order p - 1 (Z*_{p^2} is cyclic of order
p(p - 1), and raising to n = p*q keeps exactly the subgroup of order p - 1 because
gcd(q, p - 1) = 1). For r uniform in Z*_n, r^n mod n^2 is uniform on N_p x N_q (r -> r^n
is a bijection from Z*_n onto it since gcd(n, phi(n)) = 1). If h_p generates N_p and e is
uniform in [0, p - 1), h_p^e is uniform on N_p; drawing e_p and e_q independently and
combining by the CRT therefore gives exactly the distribution of textbook r^n, with no
extra assumption. h_p = g^p mod p^2 for a primitive root g mod p (x -> x^p mod p^2 is an
isomorphism from Z*_p onto N_p), which needs the factorisation of p - 1: our key
generation makes it recoverable (p - 1 = 2*s*p', s < 2^16). For keys whose p - 1 does not
factor over primes below 2^16 times one prime (most keys made by phe), the backend falls
back to x^p mod p^2 for x uniform in [1, p) - still exact, but a plain powmod, ~4x faster
than textbook rather than ~20x. ``key_owner_fixed_base`` says which path a key got.
h_p^e is a fixed-base exponentiation (``accel.fixedbase``) with a |p|-bit exponent modulo
p^2: about |p|/8 multiplications of half-size residues and no squaring, twice, then the CRT.

``DJN`` (opt-in, any holder of the public key): the short-exponent variant of Damgård,
Jurik and Nielsen. Once per key, h = -x^2 mod n for x uniform in Z*_n and hs = h^n mod n^2;
each encryption uses r^n = hs^a for a uniform in [0, 2^l) with l = 2 * (security level
of the modulus in bits), i.e. 224 bits for 2048-bit n (NIST SP 800-57: 112-bit security).
hs^a comes from a fixed-base table, ~l/8 multiplications mod n^2. Security rests on an
extra assumption: that hs^a with a short a is indistinguishable from a uniform n-th residue
(the short-exponent discrete-log assumption; the best generic attacks on an l-bit exponent
cost 2^(l/2), hence l = 2 * security level). hs may be published with the public key
(serialised with it), and every encryptor may use the same one.
"""

from __future__ import annotations

import enum
import functools
import secrets
from collections.abc import Callable, Sequence

from accel import _gmp
from accel.errors import MissingPrivateKeyError, PaillierKeyMismatchError, ShapeMismatchError
from accel.fixedbase import FixedBaseTable
from accel.keys import PrivateKey, PublicKey, small_primes
from accel.multiexp import multi_exp, multi_exp_rows


class Encryption(enum.Enum):
    """How the gmpy2 backend draws the n-th residue r^n; see the module docstring."""

    TEXTBOOK = "textbook"
    KEY_OWNER = "key-owner"
    DJN = "djn"


def security_bits(modulus_bits: int) -> int:
    """Security level of an RSA/Paillier modulus (NIST SP 800-57 Part 1, Table 2)."""
    for bits, level in ((15360, 256), (7680, 192), (3072, 128), (2048, 112)):
        if modulus_bits >= bits:
            return level
    return 80


def djn_exponent_bits(modulus_bits: int) -> int:
    """Default DJN exponent length: twice the security level (224 bits for a 2048-bit n)."""
    return 2 * security_bits(modulus_bits)


def make_djn_base(public_key: PublicKey) -> int:
    """A fresh DJN base hs = (-x^2)^n mod n^2, for x uniform in Z*_n."""
    n = public_key.n
    while True:
        x = secrets.randbelow(n - 2) + 2
        if _gmp.gcd(x, n) == 1:
            return int(_gmp.powmod(n - x * x % n, n, public_key.nsquare))


class Gmpy2Backend:
    """``PaillierBackend`` on gmpy2: CRT decryption, and the encryption path chosen by ``encryption``."""

    def __init__(
        self,
        public_key: PublicKey,
        private_key: PrivateKey | None = None,
        *,
        encryption: Encryption = Encryption.TEXTBOOK,
        djn_base: int | None = None,
        djn_exponent_bits: int | None = None,
    ) -> None:
        if private_key is not None:
            public_key.check_same(private_key.public_key)
        self.public_key = public_key
        self._private_key = private_key
        self.encryption = encryption
        self.name = f"gmpy2-{encryption.value}"
        self._n = _gmp.mpz(public_key.n)
        self._n2 = _gmp.mpz(public_key.nsquare)
        self._encrypt_residue: Callable[[], int] = self._textbook_residue
        self.key_owner_fixed_base = False
        if encryption is Encryption.KEY_OWNER:
            if private_key is None:
                raise MissingPrivateKeyError("key-owner encryption needs the private key")
            self._encrypt_residue = self._init_key_owner(private_key)
        elif encryption is Encryption.DJN:
            self._encrypt_residue = self._init_djn(djn_base, djn_exponent_bits)

    @property
    def private_key(self) -> PrivateKey | None:
        """The factorisation (for CRT decryption and key-owner encryption), if this backend was given it."""
        return self._private_key

    # -- encryption -------------------------------------------------------------------

    def encrypt(self, plaintexts: Sequence[int]) -> list[int]:
        """(1 + n*m) * r^n mod n^2, with r^n from the path ``encryption`` chose (textbook, key owner, DJN)."""
        n, n2, residue = self._n, self._n2, self._encrypt_residue
        # (1 + n)^m = 1 + n*m mod n^2: no exponentiation for the message part.
        return [(1 + n * m) * residue() % n2 for m in plaintexts]

    def _textbook_residue(self) -> int:
        return _gmp.powmod(secrets.randbelow(self.public_key.n - 1) + 1, self._n, self._n2)

    def _init_djn(self, base: int | None, exponent_bits: int | None) -> Callable[[], int]:
        self.djn_base = make_djn_base(self.public_key) if base is None else int(base)
        if not 1 < self.djn_base < self.public_key.nsquare:
            raise PaillierKeyMismatchError("DJN base outside Z*_{n^2}")
        self.djn_exponent_bits = exponent_bits or djn_exponent_bits(self.public_key.bits)
        table = FixedBaseTable(self.djn_base, self.public_key.nsquare, self.djn_exponent_bits)
        return functools.partial(_djn_residue, table, self.djn_exponent_bits)

    def _init_key_owner(self, key: PrivateKey) -> Callable[[], int]:
        if _gmp.gcd(key.public_key.n, (key.p - 1) * (key.q - 1)) != 1:
            raise PaillierKeyMismatchError("gcd(n, phi(n)) != 1: not a valid Paillier key")
        residue = _KeyOwnerResidue(key)
        self.key_owner_fixed_base = all(isinstance(s, FixedBaseTable) for s in residue.samplers)
        return residue

    # -- decryption -------------------------------------------------------------------

    @functools.cached_property
    def _crt_decryption(self) -> tuple[int, int, int, int, int, int, int]:
        key = self._private_key
        if key is None:
            raise MissingPrivateKeyError(f"the {self.name} backend was built without the private key")
        p, q = _gmp.mpz(key.p), _gmp.mpz(key.q)
        p2, q2 = p * p, q * q
        # h_p = L_p(g^(p-1) mod p^2)^-1 mod p, with g = n + 1 and L_p(x) = (x - 1) / p.
        hp = _gmp.invert((_gmp.powmod(self._n + 1, p - 1, p2) - 1) // p, p)
        hq = _gmp.invert((_gmp.powmod(self._n + 1, q - 1, q2) - 1) // q, q)
        return p, q, p2, q2, hp, hq, _gmp.invert(q, p)

    def decrypt(self, ciphertexts: Sequence[int]) -> list[int]:
        """Decryption by the Chinese remainder theorem, modulo p^2 and q^2 separately."""
        p, q, p2, q2, hp, hq, q_inv = self._crt_decryption
        out = []
        for c in ciphertexts:
            mp = (_gmp.powmod(c, p - 1, p2) - 1) // p * hp % p
            mq = (_gmp.powmod(c, q - 1, q2) - 1) // q * hq % q
            out.append(int(mq + q * ((mp - mq) * q_inv % p)))
        return out

    # -- homomorphic operations (public key only) --------------------------------------

    def add(self, a: Sequence[int], b: Sequence[int]) -> list[int]:
        """Products of the ciphertexts modulo n^2."""
        _same_length(a, b)
        n2 = self._n2
        return [x * y % n2 for x, y in zip(a, b, strict=True)]

    def add_plain(self, a: Sequence[int], plaintexts: Sequence[int]) -> list[int]:
        """[[x]] * (1 + n*m) mod n^2: one multiplication, no exponentiation."""
        _same_length(a, plaintexts)
        n, n2 = self._n, self._n2
        return [x * (1 + n * m) % n2 for x, m in zip(a, plaintexts, strict=True)]

    def mul_plain(self, a: Sequence[int], scalars: Sequence[int]) -> list[int]:
        """[[x]]^k mod n^2; a negative k is one inversion by gmpy2's powmod."""
        _same_length(a, scalars)
        n2 = self._n2
        # gmpy2's powmod takes a negative exponent as a power of the inverse: one inversion, not an
        # exponent of |n| bits as k mod n would be.
        return [_gmp.powmod(x, k, n2) for x, k in zip(a, scalars, strict=True)]

    def dot(self, a: Sequence[int], scalars: Sequence[int]) -> int:
        """One simultaneous multi-exponentiation (``accel.multiexp``)."""
        _same_length(a, scalars)
        return multi_exp(a, scalars, self._n2)

    def matmul(self, a: Sequence[int], rows: Sequence[Sequence[int]]) -> list[int]:
        """Multi-exponentiations of the same bases for every row, sharing their precomputation."""
        for row in rows:
            _same_length(a, row)
        return multi_exp_rows(a, rows, self._n2)

    def sum(self, a: Sequence[int]) -> int:
        """The product of the ciphertexts modulo n^2 (the integer 1 for none)."""
        n2 = self._n2
        total = _gmp.mpz(1)
        for x in a:
            total = total * x % n2
        return total


def _djn_residue(table: FixedBaseTable, bits: int) -> int:
    return table.pow(secrets.randbits(bits))


class _KeyOwnerResidue:
    """Draws r^n mod n^2 as CRT(uniform element of N_p, uniform element of N_q)."""

    def __init__(self, key: PrivateKey) -> None:
        self.p, self.q = _gmp.mpz(key.p), _gmp.mpz(key.q)
        self.p2, self.q2 = self.p * self.p, self.q * self.q
        self.samplers = (_prime_sampler(key.p), _prime_sampler(key.q))
        self.crt = _gmp.invert(self.q2, self.p2)

    def __call__(self) -> int:
        rp = _sample_residue(self.samplers[0], self.p, self.p2)
        rq = _sample_residue(self.samplers[1], self.q, self.q2)
        return rq + self.q2 * ((rp - rq) * self.crt % self.p2)


def _sample_residue(sampler: FixedBaseTable | int, p: int, p2: int) -> int:
    """A uniform element of N_p, the n-th residues mod p^2 (see the module docstring)."""
    if isinstance(sampler, FixedBaseTable):
        return sampler.pow(secrets.randbelow(p - 1))
    return _gmp.powmod(secrets.randbelow(p - 1) + 1, p, p2)


def _prime_sampler(p: int) -> FixedBaseTable | int:
    """A fixed-base table for a generator h_p of N_p, or p itself when p - 1 cannot be factored."""
    factors = factor_p_minus_1(p)
    if factors is None:
        return p
    g = next(g for g in range(2, p) if all(_gmp.powmod(g, (p - 1) // f, p) != 1 for f in factors))
    return FixedBaseTable(_gmp.powmod(g, p, p * p), p * p, (p - 2).bit_length())


def factor_p_minus_1(p: int, bound: int = 1 << 16) -> list[int] | None:
    """The distinct prime factors of p - 1 if it is (primes below ``bound``) times at most one prime."""
    rest = p - 1
    factors = []
    for r in small_primes(bound):
        if rest % r == 0:
            factors.append(r)
            while rest % r == 0:
                rest //= r
    if rest == 1:
        return factors
    if _gmp.is_prime(rest):
        return [*factors, rest]
    return None


def _same_length(a: Sequence[int], b: Sequence[int]) -> None:
    if len(a) != len(b):
        raise ShapeMismatchError(f"operands of lengths {len(a)} and {len(b)}")
