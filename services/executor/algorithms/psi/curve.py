"""Hashing identifiers to X25519 u-coordinates and blinding them, batched over worker processes.

The construction (docs/vertical.md, "PSI"): H(id) = SHA-512("interfed.psi.v1" || id)[:32] with
bit 255 cleared is taken as a u-coordinate; blinding is the X25519 function itself,
u -> X25519(k, u) (RFC 7748: the Montgomery ladder with a clamped scalar k). Every u is the
x-coordinate of a point on Curve25519 or on its quadratic twist, and the ladder computes
x([k]P) on whichever of the two it is; clamped scalars multiply, so
X25519(a, X25519(b, u)) = X25519(b, X25519(a, u)): the commutativity ECDH-PSI needs. Security
rests on the random-oracle model for H and on the decisional Diffie-Hellman assumption in the
prime-order subgroups of the curve and of its twist (Curve25519 was chosen to be twist-secure;
clamping clears the cofactor, so small subgroups leak nothing). Whether H(id) lies on the curve
or the twist is public knowledge of id alone, so revealing it reveals nothing new.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor

import nacl.exceptions
from nacl.bindings import crypto_scalarmult

#: Domain separation for the identifier hash: another protocol's hash of the same id differs.
HASH_DOMAIN = b"interfed.psi.v1\x00"
POINT_BYTES = 32


class SmallOrderPointError(ValueError):
    """A received point blinds to the identity: only a small-order point does that, never an honest one."""


def hash_to_u(identifier: str) -> bytes:
    """The u-coordinate an identifier stands for (little-endian, 32 bytes, bit 255 clear)."""
    digest = bytearray(hashlib.sha512(HASH_DOMAIN + identifier.encode("utf-8")).digest()[:POINT_BYTES])
    digest[31] &= 0x7F  # RFC 7748 ignores bit 255; clearing it makes the encoding canonical
    return bytes(digest)


def blind(scalar: bytes, points: bytes) -> bytes:
    """X25519(scalar, u) for each 32-byte u of ``points``, concatenated in order.

    libsodium's ``crypto_scalarmult`` (through PyNaCl): the RFC 7748 function, measured 6-14 %
    cheaper here than OpenSSL's through ``cryptography`` (which also builds two key objects per
    point); the outputs are the same bytes (tests/unit/vertical/test_psi.py checks RFC 7748's
    vectors and OpenSSL's results).
    """
    if len(scalar) != POINT_BYTES or len(points) % POINT_BYTES:
        raise ValueError(f"need a {POINT_BYTES}-byte scalar and whole {POINT_BYTES}-byte points")
    out = bytearray()
    for start in range(0, len(points), POINT_BYTES):
        try:
            out += crypto_scalarmult(scalar, points[start : start + POINT_BYTES])
        except nacl.exceptions.RuntimeError as exc:  # libsodium refuses small-order points (an all-zero result)
            raise SmallOrderPointError(f"point {start // POINT_BYTES} of the batch has small order") from exc
    return bytes(out)


def hash_and_blind(scalar: bytes, identifiers: Sequence[str]) -> bytes:
    """X25519(scalar, H(id)) for each identifier: the first-stage ("enc") ciphertexts."""
    return blind(scalar, b"".join(hash_to_u(i) for i in identifiers))


def new_scalar() -> bytes:
    """A fresh secret X25519 scalar (clamped by X25519 itself when used)."""
    return os.urandom(POINT_BYTES)


#: One pool per worker count, kept for the life of the process: starting worker processes costs
#: a second or more on a busy machine, so every PSI run (and every party of a local run) reuses them.
_POOLS: dict[int, ProcessPoolExecutor] = {}


def worker_pool(workers: int) -> Executor | None:
    """The process's shared pool of ``workers`` processes (the scalar multiplications are CPU-bound).

    None means in this process (``workers`` 1). The pool outlives the run: the secret scalar
    travels with each call, so runs and parties sharing the workers share no state. A pool
    whose worker died is dropped (``forget_pool``) and the next call starts a new one.
    """
    if workers <= 1:
        return None
    pool = _POOLS.get(workers)
    if pool is None:
        pool = _POOLS[workers] = ProcessPoolExecutor(max_workers=workers)
    return pool


def forget_pool(pool: Executor) -> None:
    """Stop using ``pool`` (a worker died): the next ``worker_pool`` call starts a fresh one."""
    for workers, known in list(_POOLS.items()):
        if known is pool:
            del _POOLS[workers]
            known.shutdown(wait=False, cancel_futures=True)
