"""Keys and ciphertext vectors to and from bytes, big integers as little-endian byte strings.

Little-endian unsigned integers are what SecretFlow's Paillier serialisation uses, so the
fields map one to one onto the Avro records that will carry them (``bytes`` fields,
``array<bytes>`` for ciphertexts). Until those schemas exist, each object is laid out as::

    magic (4 bytes) | version (1 byte, = 1) | fields in order

where an integer field is ``u32 length (LE) | that many bytes, LE`` (zero is length 0), an
``int32`` field is 4 bytes two's complement LE, a ``float64`` is 8 bytes IEEE LE, and a
list is ``u32 count`` followed by its items.

============  =====  ===================================================================
object        magic  fields
============  =====  ===================================================================
public key    IFPK   n; djn_base (hs, length 0 when absent)
private key   IFSK   n; p; q
encrypted     IFCV   exponent (int32); bound; ciphertexts (list of integers)
packed        IFPV   value_bits, headroom_bits, max_terms (0 = default), slots, length,
                     terms (all u32); clip (float64); ciphertexts (list of integers)
============  =====  ===================================================================

Ciphertexts carry no key: deserialising takes the backend (hence the key) they are under,
and every ciphertext is checked to lie in [1, n^2).
"""

from __future__ import annotations

import struct

from accel.backend import PaillierBackend
from accel.errors import MalformedCiphertextError, PaillierKeyMismatchError
from accel.keys import PrivateKey, PublicKey
from accel.packing import PackedVector, PackingSpec
from accel.vector import EncryptedVector

VERSION = 1
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_F64 = struct.Struct("<d")


def int_to_le(x: int) -> bytes:
    """A non-negative integer as minimal little-endian bytes (b"" for zero)."""
    x = int(x)
    return x.to_bytes((x.bit_length() + 7) // 8, "little")


def le_to_int(data: bytes) -> int:
    return int.from_bytes(data, "little")


class _Writer:
    def __init__(self, magic: bytes) -> None:
        self.parts = [magic, bytes([VERSION])]

    def integer(self, x: int) -> None:
        raw = int_to_le(x)
        self.parts += [_U32.pack(len(raw)), raw]

    def u32(self, x: int) -> None:
        self.parts.append(_U32.pack(x))

    def i32(self, x: int) -> None:
        self.parts.append(_I32.pack(x))

    def f64(self, x: float) -> None:
        self.parts.append(_F64.pack(x))

    def integers(self, xs: list[int] | tuple[int, ...]) -> None:
        self.u32(len(xs))
        for x in xs:
            self.integer(x)

    def bytes(self) -> bytes:
        return b"".join(self.parts)


class _Reader:
    def __init__(self, data: bytes, magic: bytes) -> None:
        if data[:4] != magic or data[4:5] != bytes([VERSION]):
            raise MalformedCiphertextError(f"not a version-{VERSION} {magic.decode()} object")
        self.data, self.at = data, 5

    def _take(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise MalformedCiphertextError("truncated")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def integer(self) -> int:
        return le_to_int(self._take(self.u32()))

    def u32(self) -> int:
        return int(_U32.unpack(self._take(4))[0])

    def i32(self) -> int:
        return int(_I32.unpack(self._take(4))[0])

    def f64(self) -> float:
        return float(_F64.unpack(self._take(8))[0])

    def integers(self) -> list[int]:
        return [self.integer() for _ in range(self.u32())]

    def end(self) -> None:
        if self.at != len(self.data):
            raise MalformedCiphertextError("trailing bytes")


def public_key_to_bytes(key: PublicKey, djn_base: int | None = None) -> bytes:
    out = _Writer(b"IFPK")
    out.integer(key.n)
    out.integer(djn_base or 0)
    return out.bytes()


def public_key_from_bytes(data: bytes) -> tuple[PublicKey, int | None]:
    """The public key and its DJN base hs, if one was published with it."""
    reader = _Reader(data, b"IFPK")
    n, hs = reader.integer(), reader.integer()
    reader.end()
    if n < 3 or n % 2 == 0:
        raise MalformedCiphertextError("n must be an odd integer")
    if hs and not 1 < hs < n * n:
        raise MalformedCiphertextError("DJN base outside Z*_{n^2}")
    return PublicKey(n), hs or None


def private_key_to_bytes(key: PrivateKey) -> bytes:
    out = _Writer(b"IFSK")
    for x in (key.public_key.n, key.p, key.q):
        out.integer(x)
    return out.bytes()


def private_key_from_bytes(data: bytes) -> PrivateKey:
    reader = _Reader(data, b"IFSK")
    n, p, q = reader.integer(), reader.integer(), reader.integer()
    reader.end()
    try:
        return PrivateKey(PublicKey(n), p, q)
    except (PaillierKeyMismatchError, ValueError) as exc:
        raise MalformedCiphertextError(f"inconsistent private key: {exc}") from exc


def vector_to_bytes(vector: EncryptedVector) -> bytes:
    out = _Writer(b"IFCV")
    out.i32(vector.exponent)
    out.integer(vector.bound)
    out.integers(list(vector.ciphertexts))
    return out.bytes()


def vector_from_bytes(data: bytes, backend: PaillierBackend) -> EncryptedVector:
    reader = _Reader(data, b"IFCV")
    exponent, bound, ciphertexts = reader.i32(), reader.integer(), reader.integers()
    reader.end()
    if bound > backend.public_key.max_int:
        raise MalformedCiphertextError("bound beyond the key's signed range")
    return EncryptedVector(backend, _checked(ciphertexts, backend), exponent, bound)


def packed_to_bytes(vector: PackedVector) -> bytes:
    spec = vector.spec
    out = _Writer(b"IFPV")
    for x in (
        spec.value_bits,
        spec.headroom_bits,
        spec.max_terms or 0,
        spec.slots(vector.backend.public_key.bits),
        vector.length,
        vector.terms,
    ):
        out.u32(x)
    out.f64(spec.clip)
    out.integers(list(vector.ciphertexts))
    return out.bytes()


def packed_from_bytes(data: bytes, backend: PaillierBackend) -> PackedVector:
    reader = _Reader(data, b"IFPV")
    value_bits, headroom_bits, max_terms, slots, length, terms = (reader.u32() for _ in range(6))
    clip = reader.f64()
    ciphertexts = reader.integers()
    reader.end()
    try:
        spec = PackingSpec(value_bits, headroom_bits, clip, max_terms or None)
    except ValueError as exc:
        raise MalformedCiphertextError(f"bad packing parameters: {exc}") from exc
    if slots != spec.slots(backend.public_key.bits) or len(ciphertexts) != -(-length // slots):
        raise MalformedCiphertextError("slot count or length does not match the key and ciphertexts")
    if not 1 <= terms <= spec.terms_limit:
        raise MalformedCiphertextError("terms outside the declared budget")
    return PackedVector(backend, _checked(ciphertexts, backend), length, spec, terms)


def _checked(ciphertexts: list[int], backend: PaillierBackend) -> list[int]:
    n2 = backend.public_key.nsquare
    if any(not 0 < c < n2 for c in ciphertexts):
        raise MalformedCiphertextError("ciphertext outside [1, n^2)")
    return ciphertexts
