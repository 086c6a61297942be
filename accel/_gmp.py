"""Typed view of the few gmpy2 functions the backends use.

gmpy2 2.3 ships no type information, so mypy sees its names as ``Any``. Giving each a
signature here keeps ``Any`` out of the rest of the package. ``mpz`` values are typed as
``int``: they support every integer operation we use, but are not ``int`` instances, so
code must never ``isinstance``-check a ciphertext.
"""

from __future__ import annotations

from collections.abc import Callable

import gmpy2

mpz: Callable[[int], int] = gmpy2.mpz
powmod: Callable[[int, int, int], int] = gmpy2.powmod
invert: Callable[[int, int], int] = gmpy2.invert
gcd: Callable[[int, int], int] = gmpy2.gcd
lcm: Callable[[int, int], int] = gmpy2.lcm
next_prime: Callable[[int], int] = gmpy2.next_prime
_is_prime: Callable[[int, int], bool] = gmpy2.is_prime


def is_prime(x: int) -> bool:
    """Miller-Rabin with 40 rounds (error below 2^-80 for any input), after gmpy2's trial division."""
    return bool(_is_prime(x, 40))
