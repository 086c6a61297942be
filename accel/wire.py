"""Keys and vectors as the Avro records of ``schemas/accel/``: big integers as little-endian bytes.

Unsigned big integers (n, ciphertexts, bounds) are minimal little-endian byte strings, as
SecretFlow's Paillier serialisation writes them; zero is the empty string. Signed
plaintext integers are zigzag-mapped first (m >= 0 -> 2m, m < 0 -> -2m - 1), the rule Avro
itself uses for ``int`` and ``long``. The record dictionaries here are exactly what
``mesh.codec`` encodes, whether standalone (``to_avro``/``from_avro``) or nested in an
``AccelRequest``/``AccelReply``.

Ciphertext records carry no key: reading one takes the backend (hence the key) they are
under, and every ciphertext is checked to lie in [1, n^2). The private key is never on the
wire; ``accel.keystore`` keeps it in a local file.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from accel.backend import PaillierBackend
from accel.errors import MalformedCiphertextError
from accel.keys import PublicKey
from accel.packing import PackedVector, PackingSpec
from accel.vector import EncryptedVector
from mesh.codec import SchemaStore
from mesh.errors import MeshError

Record = dict[str, Any]


def int_to_le(x: int) -> bytes:
    """A non-negative integer as minimal little-endian bytes (b"" for zero)."""
    x = int(x)
    if x < 0:
        raise ValueError("an unsigned big integer cannot be negative")
    return x.to_bytes((x.bit_length() + 7) // 8, "little")


def le_to_int(data: bytes) -> int:
    """An unsigned integer from its little-endian bytes (the wire form of n, ciphertexts and bounds)."""
    return int.from_bytes(data, "little")


def signed_to_le(m: int) -> bytes:
    """A signed integer, zigzag-mapped, as minimal little-endian bytes."""
    m = int(m)
    return int_to_le(2 * m if m >= 0 else -2 * m - 1)


def le_to_signed(data: bytes) -> int:
    """A signed integer from the zigzag little-endian bytes ``signed_to_le`` writes."""
    z = le_to_int(data)
    return z >> 1 if z % 2 == 0 else -((z + 1) >> 1)


def key_id(public_key: PublicKey) -> str:
    """The key reference of requests: hex of the first 16 bytes of SHA-256(n, minimal little-endian)."""
    return hashlib.sha256(int_to_le(public_key.n)).digest()[:16].hex()


@dataclass(frozen=True)
class PublishedKey:
    """A public key as published: n, and optionally the DJN base every encryptor may share."""

    public_key: PublicKey
    djn_base: int | None = None
    djn_exponent_bits: int | None = None

    @property
    def key_id(self) -> str:
        """The key's id: the digest of its public key (``key_id``)."""
        return key_id(self.public_key)


def public_key_record(key: PublishedKey) -> Record:
    """A published key as its Avro record (``schemas/accel``)."""
    return {
        "n": int_to_le(key.public_key.n),
        "djn_base": None if key.djn_base is None else int_to_le(key.djn_base),
        "djn_exponent_bits": key.djn_exponent_bits,
    }


def public_key_from_record(record: Mapping[str, Any]) -> PublishedKey:
    """A published key from its Avro record, refusing an n or a DJN base no key can have."""
    n = le_to_int(record["n"])
    if n < 3 or n % 2 == 0:
        raise MalformedCiphertextError("n must be an odd integer of at least 2 bits")
    public = PublicKey(n)
    hs = None if record["djn_base"] is None else le_to_int(record["djn_base"])
    if hs is not None and not (1 < hs < public.nsquare and math.gcd(hs, n) == 1):
        raise MalformedCiphertextError("DJN base outside Z*_{n^2}")
    bits = record["djn_exponent_bits"]
    if bits is not None and not 64 <= bits <= n.bit_length():
        raise MalformedCiphertextError("DJN exponent length outside [64, bits(n)]")
    return PublishedKey(public, hs, bits)


def vector_record(vector: EncryptedVector) -> Record:
    """An encrypted vector as its Avro record."""
    return {
        "exponent": vector.exponent,
        "bound": int_to_le(vector.bound),
        "ciphertexts": [int_to_le(c) for c in vector.ciphertexts],
    }


def vector_from_record(record: Mapping[str, Any], backend: PaillierBackend) -> EncryptedVector:
    """An encrypted vector from its Avro record, its ciphertexts and bound checked against ``backend``'s key."""
    bound = le_to_int(record["bound"])
    if bound > backend.public_key.max_int:
        raise MalformedCiphertextError("bound beyond the key's signed range")
    return EncryptedVector(backend, _ciphertexts(record["ciphertexts"], backend), record["exponent"], bound)


def spec_record(spec: PackingSpec) -> Record:
    """A packing layout as its Avro record."""
    return {
        "value_bits": spec.value_bits,
        "headroom_bits": spec.headroom_bits,
        "clip": spec.clip,
        "max_terms": spec.max_terms,
    }


def spec_from_record(record: Mapping[str, Any]) -> PackingSpec:
    """A packing layout from its Avro record; bad parameters are a malformed request."""
    try:
        return PackingSpec(record["value_bits"], record["headroom_bits"], record["clip"], record["max_terms"])
    except ValueError as exc:
        raise MalformedCiphertextError(f"bad packing parameters: {exc}") from exc


def packed_record(vector: PackedVector) -> Record:
    """A packed vector as its Avro record."""
    return {
        "spec": spec_record(vector.spec),
        "slots": vector.spec.slots(vector.backend.public_key.bits),
        "length": vector.length,
        "terms": vector.terms,
        "ciphertexts": [int_to_le(c) for c in vector.ciphertexts],
    }


def packed_from_record(record: Mapping[str, Any], backend: PaillierBackend) -> PackedVector:
    """A packed vector from its Avro record, its slots, length and terms checked against the layout and the key."""
    spec = spec_from_record(record["spec"])
    slots, length, terms = record["slots"], record["length"], record["terms"]
    ciphertexts = record["ciphertexts"]
    if spec.slots(backend.public_key.bits) < 1:
        raise MalformedCiphertextError(f"a {backend.public_key.bits}-bit key holds no {spec.slot_bits}-bit slot")
    if slots != spec.slots(backend.public_key.bits) or length < 0 or len(ciphertexts) != -(-length // slots):
        raise MalformedCiphertextError("slot count or length does not match the key and ciphertexts")
    if not 1 <= terms <= spec.terms_limit:
        raise MalformedCiphertextError("terms outside the declared budget")
    return PackedVector(backend, _ciphertexts(ciphertexts, backend), length, spec, terms)


def plain_record(mantissas: Sequence[int], exponent: int) -> Record:
    """Plaintext mantissas and their common exponent as their Avro record."""
    return {"exponent": exponent, "mantissas": [signed_to_le(m) for m in mantissas]}


def plain_from_record(record: Mapping[str, Any]) -> tuple[list[int], int]:
    """The signed integers m_i and the exponent: the values are m_i * 2^exponent."""
    return [le_to_signed(m) for m in record["mantissas"]], record["exponent"]


def _ciphertexts(raw: Sequence[bytes], backend: PaillierBackend) -> list[int]:
    n2 = backend.public_key.nsquare
    out = [le_to_int(c) for c in raw]
    if any(not 0 < c < n2 for c in out):
        raise MalformedCiphertextError("ciphertext outside [1, n^2)")
    return out


# -- standalone Avro binary (files, golden vectors, other transports) ---------------------


def to_avro(full_name: str, record: Mapping[str, Any], schemas: SchemaStore | None = None) -> bytes:
    """The Avro binary of one of the records above under its schema in ``schemas/accel/``."""
    return (schemas or SchemaStore.load()).encode(full_name, record)[1]


def from_avro(full_name: str, data: bytes, schemas: SchemaStore | None = None) -> Record:
    """Decode exactly ``data`` (written under this party's schema of ``full_name``)."""
    store = schemas or SchemaStore.load()
    try:
        return store.decode(full_name, store.by_name(full_name).fingerprint, data)
    except MeshError as exc:
        raise MalformedCiphertextError(f"{full_name}: {exc}") from exc
