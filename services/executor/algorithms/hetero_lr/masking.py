"""Masking encrypted gradients for the arbiter, and packing several masked values into one ciphertext.

A party adds a random mask R_j to its encrypted gradient [[g_j]] (|g_j| <= 2^b, b from the
vector's tracked bound): R_j is uniform in [2^b, 2^(b+40)), so g_j + R_j is positive, below
2^w with w = b + 41, and hides g_j statistically (2^-40). Masks come from the OS's
randomness, never from the job seed (the arbiter knows the seed); they cancel exactly, so the
training stays deterministic given the seed.

Packing: positive values below 2^w can share one plaintext, s = floor((bits(max_int) - 2) / w)
per ciphertext: [[sum_j (g_j + R_j) 2^(w (j mod s))]] = P^T [[g + R]] for the 0/2^(w t) matrix
P, one MATMUL request. The arbiter then decrypts ceil(k/s) ciphertexts instead of k. The
vectors the protocol multiplies by plaintext ([[u]], [[d]]) cannot be packed: a product of a
packed ciphertext with a plaintext scales every slot by the same scalar, not each by its own.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from accel.client import AccelClient
from accel.vector import EncryptedVector

STATISTICAL_BITS = 40


@dataclass(frozen=True)
class Masked:
    """What a party keeps to unmask: the masks, the slot layout and the gradient's exponent."""

    masks: list[int]
    width: int  # bits per slot
    slots: int  # values per packed ciphertext (1: not packed)
    exponent: int

    def layout(self) -> np.ndarray:
        return np.array([len(self.masks), self.width, self.slots, self.exponent], dtype=np.int64)

    def unmask(self, masked: list[int]) -> np.ndarray:
        """g_j = (g_j + R_j) - R_j, as floats at the gradient's exponent."""
        if len(masked) != len(self.masks):
            raise ValueError(f"{len(masked)} masked values back for {len(self.masks)} sent")
        scale = Fraction(2) ** self.exponent
        return np.array([float((m - r) * scale) for m, r in zip(masked, self.masks, strict=True)])


async def mask_and_pack(accel: AccelClient, gradient: EncryptedVector, pack: bool) -> tuple[EncryptedVector, Masked]:
    bits = gradient.bound.bit_length()
    width = bits + STATISTICAL_BITS + 1
    masks = [
        (1 << bits) + secrets.randbelow((1 << (bits + STATISTICAL_BITS)) - (1 << bits)) for _ in gradient.ciphertexts
    ]
    scale = Fraction(2) ** gradient.exponent
    masked = await accel.add_plain(gradient, np.array([Fraction(r) * scale for r in masks], dtype=object))
    slots = max(1, (gradient.backend.public_key.max_int.bit_length() - 2) // width) if pack else 1
    if slots == 1:
        return masked, Masked(masks, width, 1, gradient.exponent)
    k = len(masks)
    packing = np.zeros((k, -(-k // slots)), dtype=object)
    for j in range(k):
        packing[j, j // slots] = 1 << (width * (j % slots))
    return await accel.transpose_dot(masked, packing, precision=0), Masked(masks, width, slots, gradient.exponent)


def unpack(plain: list[int], layout: np.ndarray) -> list[int]:
    """The arbiter's side: the masked values from the decrypted (packed) integers."""
    count, width, slots, _ = (int(x) for x in layout)
    if slots == 1:
        return plain
    mask = (1 << width) - 1
    out = [(p >> (width * t)) & mask for p in plain for t in range(slots)]
    return out[:count]
