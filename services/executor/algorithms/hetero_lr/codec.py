"""Ciphertext vectors, public keys and exact integers as bytes on the round channel.

One framing for all three: a sequence of byte strings, each preceded by its length (4 bytes,
little-endian). Integers inside are little-endian as in ``accel.wire`` (unsigned minimal for
ciphertexts, n and bounds; signed for exponents and mantissas), and received values go
through ``accel.wire``'s checks (ciphertexts in [1, n^2), bounds within the signed range).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from accel import wire
from accel.errors import MalformedCiphertextError
from accel.gmp_backend import Gmpy2Backend
from accel.vector import EncryptedVector
from accel.wire import PublishedKey


def frame(parts: Sequence[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)


def unframe(raw: bytes) -> list[bytes]:
    parts, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise MalformedCiphertextError("truncated frame header")
        (size,) = struct.unpack_from("<I", raw, at)
        if at + 4 + size > len(raw):
            raise MalformedCiphertextError("truncated frame")
        parts.append(raw[at + 4 : at + 4 + size])
        at += 4 + size
    return parts


def vector_bytes(vector: EncryptedVector) -> bytes:
    record = wire.vector_record(vector)
    return frame([wire.signed_to_le(vector.exponent), record["bound"], *record["ciphertexts"]])


def vector_of(raw: bytes, key: PublishedKey) -> EncryptedVector:
    """A received vector under ``key`` (checked: every ciphertext in [1, n^2), bound within range)."""
    parts = unframe(raw)
    if len(parts) < 2:
        raise MalformedCiphertextError("a ciphertext vector needs its exponent and bound")
    record = {"exponent": wire.le_to_signed(parts[0]), "bound": parts[1], "ciphertexts": parts[2:]}
    return wire.vector_from_record(record, Gmpy2Backend(key.public_key))


def key_bytes(key: PublishedKey) -> bytes:
    record = wire.public_key_record(key)
    bits = record["djn_exponent_bits"]
    return frame([record["n"], record["djn_base"] or b"", b"" if bits is None else wire.int_to_le(bits)])


def key_of(raw: bytes) -> PublishedKey:
    parts = unframe(raw)
    if len(parts) != 3:
        raise MalformedCiphertextError("a public key is n, DJN base, DJN exponent bits")
    n, base, bits = parts
    record = {"n": n, "djn_base": base or None, "djn_exponent_bits": wire.le_to_int(bits) if bits else None}
    return wire.public_key_from_record(record)


def ints_bytes(values: Sequence[int], exponent: int = 0) -> bytes:
    """Exact signed integers (masked gradients travel exactly: a float would drop the gradient under the mask)."""
    return frame([wire.signed_to_le(exponent), *(wire.signed_to_le(v) for v in values)])


def ints_of(raw: bytes) -> tuple[list[int], int]:
    parts = unframe(raw)
    if not parts:
        raise MalformedCiphertextError("an integer vector needs its exponent")
    return [wire.le_to_signed(p) for p in parts[1:]], wire.le_to_signed(parts[0])
