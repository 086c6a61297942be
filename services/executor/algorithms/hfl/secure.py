"""Secure-aggregation primitives: pairwise X25519 masks over fixed point, and packed Paillier updates.

Masks (after Bonawitz et al., without their self-masks): parties i < j agree on a secret by
X25519; for round r both expand HKDF-SHA256(secret, "interfed-hfl-mask/<job>/<r>") through
ChaCha20 into a vector of uint64 masks; i adds it and j subtracts it, mod 2^64, from its
fixed-point update (``FRACTION_BITS`` fractional bits). The masks cancel in the sum of all
parties. When a party drops, each survivor reveals only that *round's* seed with the dropped
party, so the aggregator can take those masks out again.

Paillier: updates are quantised and packed by ``accel.packing`` (``PACKING`` below) and
encrypted under the key holder's public key through ``AccelClient``; packed vectors travel
as their ciphertexts at the fixed width of n^2 (``packed_to_message``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from accel import Gmpy2Backend, PackedVector, PackingSpec, PublicKey

#: Fixed point of masked updates: x -> round(x * 2^32) mod 2^64; |x| must stay below 2^30.
FRACTION_BITS = 32
FIXED_LIMIT = float(2**30)


class SecureAggregationError(Exception):
    """An update cannot be aggregated securely as asked (out of range, bad peer key, refused reveal)."""


def to_fixed(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint64]:
    if not np.all(np.isfinite(values)) or np.any(np.abs(values) >= FIXED_LIMIT):
        raise SecureAggregationError("an update value is not finite or beyond +-2^30: cannot mask it exactly")
    return np.rint(values * 2.0**FRACTION_BITS).astype(np.int64).view(np.uint64)


def from_fixed(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
    return values.view(np.int64).astype(np.float64) / 2.0**FRACTION_BITS


def new_mask_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def mask_key(secret: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(secret)


def private_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def round_seed(mine: X25519PrivateKey, peer_public: bytes, job_id: str, round_no: int) -> bytes:
    """The 32-byte seed of one pair's masks in one round (what a survivor reveals for a dropped peer)."""
    try:
        secret = mine.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:
        raise SecureAggregationError(f"bad X25519 public key from a peer: {exc}") from exc
    info = f"interfed-hfl-mask/{job_id}/{round_no}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def expand(seed: bytes, size: int) -> npt.NDArray[np.uint64]:
    """ChaCha20 keystream of ``seed`` as ``size`` uint64 masks (the key is fresh each round: nonce zero)."""
    stream = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor().update(b"\0" * (8 * size))
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64)


def pair_sign(me: int, peer: int) -> int:
    """+1 when this party adds the pair's mask (the lower index), -1 when it subtracts it."""
    return 1 if me < peer else -1


def apply_mask(total: npt.NDArray[np.uint64], mask: npt.NDArray[np.uint64], sign: int) -> npt.NDArray[np.uint64]:
    """total +- mask mod 2^64 (numpy's unsigned arithmetic wraps, which is the point)."""
    with np.errstate(over="ignore"):
        return total + mask if sign > 0 else total - mask


# -- Paillier ------------------------------------------------------------------------------


def packing_spec(clip: float, parties: int) -> PackingSpec:
    """48-bit values clipped to +-clip (resolution clip / (2^47 - 1)), headroom for up to 2^8 parties."""
    headroom = max(1, (parties - 1).bit_length())
    return PackingSpec(value_bits=48, headroom_bits=max(headroom, 8), clip=clip, max_terms=None)


def packed_to_message(vector: PackedVector) -> dict[str, npt.NDArray[np.int64] | bytes]:
    """A packed vector as a round message: its ciphertexts at the fixed width of n^2, and (length, terms)."""
    width = (vector.backend.public_key.nsquare.bit_length() + 7) // 8
    body = b"".join(int(c).to_bytes(width, "little") for c in vector.ciphertexts)
    return {"ciphertexts": body, "shape": np.array([vector.length, vector.terms], dtype=np.int64)}


def packed_from_message(message: Mapping[str, Any], public: PublicKey, spec: PackingSpec) -> PackedVector:
    """The inverse of ``packed_to_message``, checking every ciphertext lies in [1, n^2) and the counts fit."""
    body, shape = message.get("ciphertexts"), message.get("shape")
    if not isinstance(body, bytes) or not isinstance(shape, np.ndarray) or shape.shape != (2,):
        raise SecureAggregationError("a packed update lacks its ciphertexts or shape")
    length, terms = int(shape[0]), int(shape[1])
    width = (public.nsquare.bit_length() + 7) // 8
    count = -(-length // spec.slots(public.bits))
    if length < 0 or len(body) != count * width or not 1 <= terms <= spec.terms_limit:
        raise SecureAggregationError("a packed update's size does not match its key and length")
    ciphertexts = [int.from_bytes(body[i : i + width], "little") for i in range(0, len(body), width)]
    if any(not 0 < c < public.nsquare for c in ciphertexts):
        raise SecureAggregationError("a ciphertext outside [1, n^2)")
    return PackedVector(Gmpy2Backend(public), ciphertexts, length, spec, terms)
