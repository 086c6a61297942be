"""The reference backend: python-paillier (``phe``) through its public API.

Every operation goes through phe's own code (``raw_encrypt``, ``EncryptedNumber``
arithmetic, ``raw_decrypt``), so the contract tests compare our fast backends against an
independent implementation. Fixed-point exponents are ours, so phe only ever sees exponent 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import phe

from accel.errors import MissingPrivateKeyError, ShapeMismatchError
from accel.keys import PrivateKey, PublicKey, from_phe, to_phe


class PheBackend:
    """``PaillierBackend`` over phe's key objects (built from ours, or wrapping phe's own)."""

    name = "phe"

    def __init__(self, public_key: PublicKey, private_key: PrivateKey | None = None) -> None:
        self.public_key = public_key
        self._private_key = private_key
        self.phe_public_key, self.phe_private_key = to_phe(public_key, private_key)

    @classmethod
    def from_phe_keys(
        cls, public_key: phe.PaillierPublicKey, private_key: phe.PaillierPrivateKey | None = None
    ) -> PheBackend:
        """Wrap keys made by phe (e.g. ``phe.generate_paillier_keypair()``)."""
        public, private = from_phe(public_key, private_key)
        return cls(public, private)

    @property
    def private_key(self) -> PrivateKey | None:
        """The private key this backend decrypts with, if it was given one."""
        return self._private_key

    def _wrap(self, ciphertext: int) -> phe.EncryptedNumber:
        return phe.EncryptedNumber(self.phe_public_key, int(ciphertext), 0)

    def _scalar(self, k: int) -> phe.EncodedNumber:
        # phe's encoding of a signed integer: k mod n, negatives at the top of the range.
        return phe.EncodedNumber(self.phe_public_key, int(k) % self.public_key.n, 0)

    def encrypt(self, plaintexts: Sequence[int]) -> list[int]:
        """phe's ``raw_encrypt`` of each plaintext."""
        return [int(self.phe_public_key.raw_encrypt(int(m))) for m in plaintexts]

    def decrypt(self, ciphertexts: Sequence[int]) -> list[int]:
        """phe's ``raw_decrypt`` of each ciphertext."""
        if self.phe_private_key is None:
            raise MissingPrivateKeyError("the phe backend was built without the private key")
        return [int(self.phe_private_key.raw_decrypt(int(c))) for c in ciphertexts]

    def add(self, a: Sequence[int], b: Sequence[int]) -> list[int]:
        """phe's ``EncryptedNumber`` addition, elementwise."""
        _same_length(a, b)
        return [int((self._wrap(x) + self._wrap(y)).ciphertext(be_secure=False)) for x, y in zip(a, b, strict=True)]

    def add_plain(self, a: Sequence[int], plaintexts: Sequence[int]) -> list[int]:
        """phe's addition of an encoded plaintext, elementwise."""
        _same_length(a, plaintexts)
        return [
            int((self._wrap(x) + self._scalar(m)).ciphertext(be_secure=False))
            for x, m in zip(a, plaintexts, strict=True)
        ]

    def mul_plain(self, a: Sequence[int], scalars: Sequence[int]) -> list[int]:
        """phe's multiplication by an encoded scalar, elementwise."""
        _same_length(a, scalars)
        return [
            int((self._wrap(x) * self._scalar(k)).ciphertext(be_secure=False)) for x, k in zip(a, scalars, strict=True)
        ]

    def dot(self, a: Sequence[int], scalars: Sequence[int]) -> int:
        """phe's arithmetic term by term, from an encryption of zero (the integer 1)."""
        _same_length(a, scalars)
        total = self._wrap(1)
        for x, k in zip(a, scalars, strict=True):
            total = total + self._wrap(x) * self._scalar(k)
        return int(total.ciphertext(be_secure=False))

    def matmul(self, a: Sequence[int], rows: Sequence[Sequence[int]]) -> list[int]:
        """``dot`` once per row: phe shares nothing between rows."""
        return [self.dot(a, row) for row in rows]

    def sum(self, a: Sequence[int]) -> int:
        """phe's additions, from an encryption of zero (the integer 1)."""
        total = self._wrap(1)
        for x in a:
            total = total + self._wrap(x)
        return int(total.ciphertext(be_secure=False))


def _same_length(a: Sequence[int], b: Sequence[int]) -> None:
    if len(a) != len(b):
        raise ShapeMismatchError(f"operands of lengths {len(a)} and {len(b)}")
