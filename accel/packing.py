"""Packing (BatchCrypt style): many quantised values per plaintext, with a budget of additions.

A float x is clipped to [-clip, clip] and quantised to q = round(x / clip * Q), Q = 2^(v-1) - 1
for ``value_bits`` v, so q is in [-Q, Q]. Signs are handled by an **offset** (not two's
complement): slot value u = q + Q in [0, 2^v - 2], so slots never borrow from each other.
Each slot is v + h bits wide (h = ``headroom_bits``); the sum of T slot values stays below
2^(v+h) while T <= 2^h, so adding ciphertexts adds every slot independently. A packed
vector carries its ``terms`` T (how many packed plaintexts were summed into it) and
decoding subtracts T * Q per slot. An addition that would make T exceed the declared
``max_terms`` (at most 2^h) is refused with ``PackingBudgetError``: a carry into the next
slot would otherwise corrupt two values silently.

Slot 0 is the least significant: plaintext = sum_j u_j * 2^(j * (v + h)), and a 2048-bit n
holds floor(2047 / (v + h)) slots (85 for 16 + 8 bits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from accel.backend import PaillierBackend
from accel.errors import BoundViolatedError, PackingBudgetError, PaillierOverflowError, ShapeMismatchError


@dataclass(frozen=True)
class PackingSpec:
    """How values are quantised and laid out; part of every packed ciphertext vector."""

    value_bits: int = 16
    headroom_bits: int = 8
    #: Values are clipped to [-clip, clip] before quantisation.
    clip: float = 1.0
    #: Declared number of packed plaintexts that may be summed into one; default 2^headroom_bits.
    max_terms: int | None = None

    def __post_init__(self) -> None:
        if self.value_bits < 2 or self.headroom_bits < 0 or self.slot_bits > 62:
            raise ValueError("need value_bits >= 2, headroom_bits >= 0 and value_bits + headroom_bits <= 62")
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise ValueError("clip must be a positive finite number")
        if self.max_terms is not None and not 1 <= self.max_terms <= 1 << self.headroom_bits:
            raise ValueError(f"max_terms must be in [1, 2^headroom_bits = {1 << self.headroom_bits}]")

    @property
    def slot_bits(self) -> int:
        """Bits per slot: the value and the headroom its sums may grow into."""
        return self.value_bits + self.headroom_bits

    @property
    def terms_limit(self) -> int:
        """How many packed vectors may be summed before a slot overflows: ``max_terms``, or what the headroom allows."""
        return self.max_terms if self.max_terms is not None else 1 << self.headroom_bits

    @property
    def q_max(self) -> int:
        """Largest quantised magnitude Q, which is also the per-term offset."""
        return (1 << (self.value_bits - 1)) - 1

    def slots(self, modulus_bits: int) -> int:
        """Values per plaintext for an n of ``modulus_bits`` bits (the packed integer stays below n)."""
        return (modulus_bits - 1) // self.slot_bits

    def quantise(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """round(clip(x) / clip * Q) as integers in [-Q, Q]."""
        array = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(array)):
            raise ValueError("cannot quantise NaN or infinity")
        scaled = np.clip(array, -self.clip, self.clip) * (self.q_max / self.clip)
        return np.clip(np.rint(scaled), -self.q_max, self.q_max).astype(np.int64)

    def dequantise(self, sums: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Sums of quantised values back to floats (sums of the clipped inputs, to within rounding)."""
        return sums.astype(np.float64) * (self.clip / self.q_max)


@dataclass(frozen=True, eq=False)
class PackedVector:
    """``length`` values packed into ciphertexts, each the sum of ``terms`` packed plaintexts."""

    backend: PaillierBackend
    ciphertexts: Sequence[int]
    length: int
    spec: PackingSpec
    terms: int = 1

    def __len__(self) -> int:
        return self.length

    @property
    def remaining_additions(self) -> int:
        """How many more packed vectors (of one term each) may still be added to this one."""
        return self.spec.terms_limit - self.terms

    def __add__(self, other: PackedVector) -> PackedVector:
        """Slotwise sum; refused when the declared number of additions would be exceeded."""
        if not isinstance(other, PackedVector):
            return NotImplemented
        self.backend.public_key.check_same(other.backend.public_key)
        if other.spec != self.spec or other.length != self.length:
            raise ShapeMismatchError("packed vectors with different packing or length")
        terms = self.terms + other.terms
        if terms > self.spec.terms_limit:
            raise PackingBudgetError(
                f"sum of {terms} packed terms exceeds the declared budget of {self.spec.terms_limit}"
                f" ({self.spec.headroom_bits} headroom bits): slots would carry into each other"
            )
        return PackedVector(
            self.backend, self.backend.add(self.ciphertexts, other.ciphertexts), self.length, self.spec, terms
        )


class Packer:
    """Encrypt and decrypt packed vectors under one backend and one ``PackingSpec``."""

    def __init__(self, backend: PaillierBackend, spec: PackingSpec | None = None) -> None:
        self.backend = backend
        self.spec = spec or PackingSpec()
        self.slots = self.spec.slots(backend.public_key.bits)
        if self.slots < 1:
            raise ValueError("the key is too small for one slot of this width")

    def pack(self, quantised: npt.NDArray[np.int64]) -> list[int]:
        """Quantised values (in [-Q, Q]) as plaintext integers, ``slots`` per integer."""
        spec = self.spec
        offset = np.asarray(quantised, dtype=np.int64) + spec.q_max
        if offset.size and (offset.min() < 0 or offset.max() > 2 * spec.q_max):
            raise ValueError("quantised values outside [-Q, Q]")
        chunks = -(-offset.size // self.slots)
        padded = np.full(chunks * self.slots, spec.q_max, dtype="<u8")  # padding slots hold q = 0
        padded[: offset.size] = offset
        if spec.slot_bits % 8 == 0:
            width = spec.slot_bits // 8
            rows = padded.view(np.uint8).reshape(-1, 8)[:, :width].reshape(chunks, self.slots * width)
            return [int.from_bytes(row.tobytes(), "little") for row in rows]
        out = []
        for chunk in padded.reshape(chunks, self.slots).tolist():
            acc = 0
            for u in reversed(chunk):
                acc = (acc << spec.slot_bits) | u
            out.append(acc)
        return out

    def unpack(self, plaintexts: Sequence[int], length: int, terms: int) -> npt.NDArray[np.int64]:
        """Per-slot sums of quantised values (offsets removed) for the first ``length`` slots."""
        spec = self.spec
        if spec.slot_bits % 8 == 0:
            width = spec.slot_bits // 8
            try:
                raw = b"".join(int(d).to_bytes(self.slots * width, "little") for d in plaintexts)
            except OverflowError as exc:
                raise PaillierOverflowError("packed plaintext wider than its slots: the budget was broken") from exc
            wide = np.zeros((len(plaintexts) * self.slots, 8), dtype=np.uint8)
            wide[:, :width] = np.frombuffer(raw, dtype=np.uint8).reshape(-1, width)
            slots = wide.view("<u8").reshape(-1).astype(np.int64)
        else:
            mask = (1 << spec.slot_bits) - 1
            values = []
            for d in plaintexts:
                acc = int(d)
                for _ in range(self.slots):
                    values.append(acc & mask)
                    acc >>= spec.slot_bits
                if acc:
                    raise PaillierOverflowError("packed plaintext wider than its slots: the budget was broken")
            slots = np.array(values, dtype=np.int64)
        sums = slots - terms * spec.q_max
        # What the declared terms allow: each slot sums ``terms`` values of [-Q, Q], and the padding
        # slots of the last plaintext (u = Q per term) sum to exactly 0. Only the key owner sees this.
        if length > sums.size or np.any(np.abs(sums[:length]) > terms * spec.q_max) or np.any(sums[length:]):
            raise BoundViolatedError(
                f"packed slots outside what {terms} term(s) of {spec.value_bits}-bit values can hold:"
                " the declared terms or length were false, or a party computed wrong"
            )
        return sums[:length]

    def encrypt(self, values: npt.ArrayLike) -> PackedVector:
        """Quantise, pack and encrypt a 1-D float array."""
        quantised = self.spec.quantise(values)
        if quantised.ndim != 1:
            raise ValueError(f"expected a 1-D array, got shape {quantised.shape}")
        return PackedVector(self.backend, self.backend.encrypt(self.pack(quantised)), quantised.size, self.spec)

    def decrypt_quantised(self, vector: PackedVector) -> npt.NDArray[np.int64]:
        """Exact per-value sums of the quantised inputs."""
        self.backend.public_key.check_same(vector.backend.public_key)
        if vector.spec != self.spec:
            raise ShapeMismatchError("packed vector made with another PackingSpec")
        return self.unpack(self.backend.decrypt(vector.ciphertexts), vector.length, vector.terms)

    def decrypt(self, vector: PackedVector) -> npt.NDArray[np.float64]:
        """Per-value sums as floats."""
        return self.spec.dequantise(self.decrypt_quantised(vector))
