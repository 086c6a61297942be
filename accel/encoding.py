"""Fixed-point encoding of float arrays as signed integers mod n, one exponent per vector.

A value x is stored as the integer round(x * 2^precision) with exponent -precision, so
x ~= m * 2^exponent. One exponent for a whole vector means homomorphic additions never
re-encode anything. Signed integers live in the usual range |m| <= n//3 - 1 (phe's
``max_int``): negatives as n - |m|, and the band in between is left unused so that a
decryption falling there is recognised as an overflow instead of decoding wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from accel.errors import PaillierOverflowError

#: Default fractional bits of encrypted vectors and of plaintext scalars/matrices multiplied into them.
DEFAULT_PRECISION = 32


def encode(values: npt.ArrayLike, precision: int) -> list[int]:
    """round(x * 2^precision) for each x of a 1-D array; integers are scaled exactly."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {array.shape}")
    if precision < 0:
        raise ValueError("precision must be >= 0")
    if array.dtype.kind in "iub":
        return [int(x) << precision for x in array.tolist()]
    if array.dtype.kind == "O":
        return [_encode_one(x, precision) for x in array.tolist()]
    floats = array.astype(np.float64)
    if not np.all(np.isfinite(floats)):
        raise ValueError("cannot encode NaN or infinity")
    # rint of a float64 is an exact integer-valued float; int() of it is exact too.
    return [int(x) for x in np.rint(np.ldexp(floats, precision)).tolist()]


def _encode_one(x: object, precision: int) -> int:
    if isinstance(x, int):
        return x << precision
    if isinstance(x, float | Fraction):
        if isinstance(x, float) and not math.isfinite(x):
            raise ValueError("cannot encode NaN or infinity")
        return round(Fraction(x) * (1 << precision))
    raise TypeError(f"cannot encode {type(x).__name__}")


def decode(mantissas: Sequence[int], exponent: int) -> npt.NDArray[np.float64]:
    """m * 2^exponent as float64 (correctly rounded while |m| < 2^1000, via Fraction beyond)."""
    out = np.empty(len(mantissas), dtype=np.float64)
    for i, m in enumerate(mantissas):
        if abs(m) < 1 << 1000:
            out[i] = math.ldexp(float(m), exponent)
        else:
            out[i] = float(Fraction(m) * Fraction(2) ** exponent)
    return out


def to_residues(mantissas: Sequence[int], n: int) -> list[int]:
    """Signed integers as plaintexts in [0, n)."""
    return [m % n for m in mantissas]


def from_residues(plaintexts: Sequence[int], n: int, max_int: int) -> list[int]:
    """Plaintexts in [0, n) back to signed integers; the unused middle band means overflow."""
    out = []
    low = n - max_int
    for d in plaintexts:
        if d <= max_int:
            out.append(int(d))
        elif d >= low:
            out.append(int(d) - n)
        else:
            raise PaillierOverflowError("decrypted value outside the signed range: an operation overflowed")
    return out
