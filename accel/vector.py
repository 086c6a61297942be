"""Encrypted vectors: fixed-point Paillier ciphertexts with one exponent and a tracked magnitude bound.

Every operation computes, before touching a ciphertext, a bound on the magnitude of the
result's encoded integers (from the operands' bounds and the plaintext operands); an
operation whose bound could exceed the signed range n//3 - 1 is refused with
``PaillierOverflowError``. So an overflow is an error up front, never a wrong decryption;
the signed-range check at decryption stays as a second line.

The bound travels with the ciphertexts. By default ``Paillier.encrypt`` sets it to
2^b - 1 where b is the bit length of the largest encoded magnitude, which reveals that bit
length to whoever holds the ciphertexts; pass ``value_bound`` to declare a public bound
instead, and nothing data-dependent is revealed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from accel.backend import PaillierBackend
from accel.encoding import DEFAULT_PRECISION, decode, encode, from_residues, to_residues
from accel.errors import BoundViolatedError, ExponentMismatchError, PaillierOverflowError, ShapeMismatchError

Plain = float | int | npt.ArrayLike


@dataclass(frozen=True, eq=False)
class EncryptedVector:
    """[[m_i]] with x_i = m_i * 2^exponent and |m_i| <= bound, computed on by ``backend``."""

    backend: PaillierBackend
    ciphertexts: Sequence[int]
    exponent: int
    bound: int

    #: numpy must defer to our reflected operators: ``array @ enc``, ``array * enc``, ``array + enc``.
    __array_ufunc__: ClassVar[None] = None

    def __len__(self) -> int:
        return len(self.ciphertexts)

    def _check_range(self, bound: int) -> int:
        """``bound`` if results that large still decrypt right; refuses the operation otherwise."""
        if bound > self.backend.public_key.max_int:
            raise PaillierOverflowError(
                f"result could reach {bound.bit_length()} bits, beyond the signed range of"
                f" {self.backend.public_key.max_int.bit_length()} bits: it would decrypt wrong"
            )
        return bound

    def _derive(self, ciphertexts: Sequence[int], exponent: int, bound: int) -> EncryptedVector:
        return EncryptedVector(self.backend, ciphertexts, exponent, bound)

    def _plain(self, other: Plain, precision: int) -> list[int]:
        array = np.asarray(other)
        if array.ndim == 0:
            array = np.full(len(self), array.item(), dtype=array.dtype)
        if array.shape != (len(self),):
            raise ShapeMismatchError(f"plaintext of shape {array.shape} for an encrypted vector of length {len(self)}")
        return encode(array, precision)

    # -- addition ---------------------------------------------------------------------

    def __add__(self, other: EncryptedVector | Plain) -> EncryptedVector:
        """[[x]] + [[y]] (same key, same exponent, same length) or [[x]] + plaintext (scalar or array)."""
        if isinstance(other, EncryptedVector):
            self.backend.public_key.check_same(other.backend.public_key)
            if other.exponent != self.exponent:
                raise ExponentMismatchError(
                    f"exponents {self.exponent} and {other.exponent} differ: call .align() on one first"
                )
            if len(other) != len(self):
                raise ShapeMismatchError(f"encrypted vectors of lengths {len(self)} and {len(other)}")
            bound = self._check_range(self.bound + other.bound)
            return self._derive(self.backend.add(self.ciphertexts, other.ciphertexts), self.exponent, bound)
        return self.add_encoded(self._plain(other, -self.exponent))

    __radd__ = __add__

    def add_encoded(self, mantissas: Sequence[int]) -> EncryptedVector:
        """[[x]] + m for signed integers m already at this vector's exponent (values m * 2^exponent)."""
        if len(mantissas) != len(self):
            raise ShapeMismatchError(f"{len(mantissas)} plaintexts for an encrypted vector of length {len(self)}")
        bound = self._check_range(self.bound + max(map(abs, mantissas), default=0))
        residues = to_residues(mantissas, self.backend.public_key.n)
        return self._derive(self.backend.add_plain(self.ciphertexts, residues), self.exponent, bound)

    def __neg__(self) -> EncryptedVector:
        return self.mul(-1)

    def __sub__(self, other: EncryptedVector | Plain) -> EncryptedVector:
        if isinstance(other, EncryptedVector):
            return self + (-other)
        return self + -np.asarray(other)

    def __rsub__(self, other: Plain) -> EncryptedVector:
        return (-self) + other

    # -- multiplication by plaintext ----------------------------------------------------

    def mul(self, other: Plain, precision: int | None = None) -> EncryptedVector:
        """Elementwise [[x]] * k for a plaintext scalar or vector k, encoded with ``precision`` fractional bits.

        ``precision`` defaults to 0 for integers and ``DEFAULT_PRECISION`` for floats; the
        result's exponent is ``self.exponent - precision``.
        """
        bits = default_precision(other) if precision is None else precision
        return self.mul_encoded(self._plain(other, bits), -bits)

    def mul_encoded(self, scalars: Sequence[int], exponent: int) -> EncryptedVector:
        """Elementwise [[x]] * k for signed integers k standing for k * 2^exponent; exponents add."""
        if len(scalars) != len(self):
            raise ShapeMismatchError(f"{len(scalars)} scalars for an encrypted vector of length {len(self)}")
        bound = self._check_range(self.bound * max(map(abs, scalars), default=0))
        return self._derive(self.backend.mul_plain(self.ciphertexts, scalars), self.exponent + exponent, bound)

    def __mul__(self, other: Plain) -> EncryptedVector:
        return self.mul(other)

    __rmul__ = __mul__

    def align(self, exponent: int) -> EncryptedVector:
        """The same values at a lower (finer) exponent, so they can be added to a vector that has it."""
        if exponent > self.exponent:
            raise ExponentMismatchError("can only lower an exponent (raising it would drop bits)")
        shift = self.exponent - exponent
        if shift == 0:
            return self
        bound = self._check_range(self.bound << shift)
        return self._derive(self.backend.mul_plain(self.ciphertexts, [1 << shift] * len(self)), exponent, bound)

    # -- reductions -------------------------------------------------------------------

    def sum(self) -> EncryptedVector:
        """[[sum_i x_i]] as a vector of length 1."""
        bound = self._check_range(self.bound * len(self))
        return self._derive([self.backend.sum(self.ciphertexts)], self.exponent, bound)

    def left_matmul(self, matrix: npt.ArrayLike, precision: int | None = None) -> EncryptedVector:
        """M @ [[x]] for a plaintext matrix M of shape (k, len(self)): k ciphertexts."""
        array = np.asarray(matrix)
        if array.ndim != 2 or array.shape[1] != len(self):
            raise ShapeMismatchError(f"matrix of shape {array.shape} for an encrypted vector of length {len(self)}")
        bits = default_precision(array) if precision is None else precision
        return self.left_matmul_encoded([encode(row, bits) for row in array], -bits)

    def left_matmul_encoded(self, rows: Sequence[Sequence[int]], exponent: int) -> EncryptedVector:
        """M @ [[x]] for M given as rows of signed integers standing for m * 2^exponent: one ciphertext per row."""
        if any(len(row) != len(self) for row in rows):
            raise ShapeMismatchError(f"matrix rows of lengths other than the vector's {len(self)}")
        bound = self._check_range(self.bound * max((sum(map(abs, row)) for row in rows), default=0))
        return self._derive(self.backend.matmul(self.ciphertexts, rows), self.exponent + exponent, bound)

    def transpose_dot(self, matrix: npt.ArrayLike, precision: int | None = None) -> EncryptedVector:
        """X^T @ [[d]] for X of shape (len(self), k): the gradient step of vertical logistic regression."""
        return self.left_matmul(np.asarray(matrix).T, precision)

    def __rmatmul__(self, matrix: npt.ArrayLike) -> EncryptedVector:
        return self.left_matmul(matrix)

    def with_backend(self, backend: PaillierBackend) -> EncryptedVector:
        """The same ciphertexts, computed on (or decrypted) by another backend of the same key."""
        self.backend.public_key.check_same(backend.public_key)
        return EncryptedVector(backend, self.ciphertexts, self.exponent, self.bound)


class Paillier:
    """Encrypt and decrypt float vectors with one backend; the arithmetic is on ``EncryptedVector``."""

    def __init__(self, backend: PaillierBackend) -> None:
        self.backend = backend

    def encrypt(
        self, values: npt.ArrayLike, precision: int = DEFAULT_PRECISION, value_bound: float | int | None = None
    ) -> EncryptedVector:
        """[[round(x * 2^precision)]] for a 1-D array; ``value_bound`` declares a public bound on |x|."""
        declared = None if value_bound is None else encode(np.array([abs(value_bound)], dtype=object), precision)[0]
        return self.encrypt_encoded(encode(values, precision), -precision, declared)

    def encrypt_encoded(self, mantissas: Sequence[int], exponent: int, bound: int | None = None) -> EncryptedVector:
        """[[m_i]] for signed integers standing for m_i * 2^exponent; ``bound`` declares a public bound on |m_i|."""
        largest = max(map(abs, mantissas), default=0)
        if bound is None:
            bound = (1 << largest.bit_length()) - 1
        elif largest > bound:
            raise PaillierOverflowError(f"a value exceeds the declared bound of {bound.bit_length()} bits")
        public = self.backend.public_key
        if bound > public.max_int:
            raise PaillierOverflowError("values too large for the key's signed range at this precision")
        return EncryptedVector(self.backend, self.backend.encrypt(to_residues(mantissas, public.n)), exponent, bound)

    def decrypt_mantissas(self, vector: EncryptedVector) -> list[int]:
        """The exact signed integers m_i (values are m_i * 2^exponent)."""
        public = self.backend.public_key
        public.check_same(vector.backend.public_key)
        mantissas = from_residues(self.backend.decrypt(vector.ciphertexts), public.n, public.max_int)
        # The bound travelled with the ciphertexts and no one but the key owner can check it: a value
        # beyond it means the bound was understated (so overflow checks were skipped) or a party lied.
        beyond = sum(1 for m in mantissas if abs(m) > vector.bound)
        if beyond:
            raise BoundViolatedError(
                f"{beyond} of {len(mantissas)} decrypted values exceed the vector's declared bound of"
                f" {vector.bound.bit_length()} bits: the bound was false or a party computed wrong"
            )
        return mantissas

    def decrypt(self, vector: EncryptedVector) -> npt.NDArray[np.float64]:
        """The values as float64."""
        return decode(self.decrypt_mantissas(vector), vector.exponent)


def default_precision(values: Plain) -> int:
    """0 for integers (of any size: big ones arrive as object arrays), ``DEFAULT_PRECISION`` otherwise."""
    array = np.asarray(values)
    if array.dtype.kind in "iub":
        return 0
    if array.dtype.kind == "O" and all(isinstance(x, int) for x in array.flat):
        return 0
    return DEFAULT_PRECISION
