"""The seam between the vector API and the arithmetic: what every Paillier backend implements.

Backends see only integers: plaintexts already encoded into [0, n), ciphertexts in
Z*_{n^2}, and signed plaintext scalars. Fixed-point encoding, exponents, range tracking
and packing live above this seam (``accel.vector``, ``accel.packing``), so a new backend
(a process pool, a GPU) is one new class that passes ``tests/unit/accel``'s contract suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from accel.keys import PrivateKey, PublicKey


@runtime_checkable
class PaillierBackend(Protocol):
    """Paillier arithmetic on lists of integers, all with g = n + 1 (textbook-compatible ciphertexts).

    Any backend decrypts any other backend's ciphertexts under the same key: they are all
    the same group elements, only computed differently.
    """

    #: Short name shown in benchmarks and errors, e.g. ``"gmpy2-djn"``.
    name: str
    public_key: PublicKey

    @property
    def private_key(self) -> PrivateKey | None:
        """The factorisation, if this backend belongs to the key owner."""
        ...

    def encrypt(self, plaintexts: Sequence[int]) -> list[int]:
        """Fresh randomised ciphertexts of plaintexts in [0, n)."""
        ...

    def decrypt(self, ciphertexts: Sequence[int]) -> list[int]:
        """Plaintexts in [0, n); raises ``MissingPrivateKeyError`` without the private key."""
        ...

    def add(self, a: Sequence[int], b: Sequence[int]) -> list[int]:
        """Elementwise [[x]] * [[y]] = [[x + y]]."""
        ...

    def add_plain(self, a: Sequence[int], plaintexts: Sequence[int]) -> list[int]:
        """Elementwise [[x]] * (1 + n*m) = [[x + m]] for m in [0, n); not re-randomised."""
        ...

    def mul_plain(self, a: Sequence[int], scalars: Sequence[int]) -> list[int]:
        """Elementwise [[x]]^k = [[k*x]] for signed integers k (negative k through one inversion)."""
        ...

    def dot(self, a: Sequence[int], scalars: Sequence[int]) -> int:
        """prod_i [[x_i]]^k_i = [[sum_i k_i*x_i]] for signed integers k_i."""
        ...

    def matmul(self, a: Sequence[int], rows: Sequence[Sequence[int]]) -> list[int]:
        """[dot(a, row) for row in rows]: M @ [[x]] for M given by its rows of signed integers.

        One call for the whole matrix, so a backend can share work on the bases [[x_i]] across rows.
        """
        ...

    def sum(self, a: Sequence[int]) -> int:
        """prod_i [[x_i]] = [[sum_i x_i]]; [[0]] (the integer 1) for an empty list."""
        ...
