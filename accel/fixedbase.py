"""Fixed-base windowed exponentiation: g^e mod M for a fixed g and many random e.

With a table of g^(d * 2^(w*i)) for every window i and digit d, g^e costs one modular
multiplication per non-zero w-bit digit of e and no squarings: ~e_bits/w multiplications
instead of ~e_bits squarings plus e_bits/5 multiplications for a general powmod.
"""

from __future__ import annotations

from accel import _gmp


class FixedBaseTable:
    """Precomputed powers of one base modulo one modulus, for exponents below 2^exponent_bits.

    Memory is ceil(exponent_bits/8) * 256 residues (window of 8 bits, so the digits of an
    exponent are simply its little-endian bytes): e.g. 128 * 256 * 256 bytes = 8 MiB for a
    1024-bit exponent modulo a 2048-bit p^2.
    """

    __slots__ = ("_modulus", "_nbytes", "_rows", "exponent_bits")

    def __init__(self, base: int, modulus: int, exponent_bits: int) -> None:
        self.exponent_bits = exponent_bits
        self._modulus = _gmp.mpz(modulus)
        self._nbytes = (exponent_bits + 7) // 8
        rows: list[list[int]] = []
        step = _gmp.mpz(base) % self._modulus
        for _ in range(self._nbytes):
            row = [_gmp.mpz(1), step]
            for _ in range(254):
                row.append(row[-1] * step % self._modulus)
            rows.append(row)
            step = row[-1] * step % self._modulus  # step^256: the next window's base
        self._rows = rows

    def pow(self, exponent: int) -> int:
        """base^exponent mod modulus, for 0 <= exponent < 2^exponent_bits."""
        if exponent < 0 or exponent.bit_length() > self.exponent_bits:
            raise ValueError("exponent outside the table's range")
        modulus = self._modulus
        acc = _gmp.mpz(1)
        for row, digit in zip(self._rows, int(exponent).to_bytes(self._nbytes, "little"), strict=True):
            if digit:
                acc = acc * row[digit] % modulus
        return acc
