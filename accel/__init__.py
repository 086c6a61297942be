"""Paillier on vectors: fixed-point encoding, packing, and interchangeable backends (phe, gmpy2).

The accelerator service (to come) serves these operations over ``accel.requests``.
"""

from accel.backend import PaillierBackend
from accel.errors import (
    AccelError,
    ExponentMismatchError,
    MalformedCiphertextError,
    MissingPrivateKeyError,
    PackingBudgetError,
    PaillierKeyMismatchError,
    PaillierOverflowError,
    ShapeMismatchError,
)
from accel.gmp_backend import Encryption, Gmpy2Backend
from accel.keys import KeyPair, PrivateKey, PublicKey, from_phe, generate_keypair, to_phe
from accel.packing import PackedVector, Packer, PackingSpec
from accel.phe_backend import PheBackend
from accel.vector import EncryptedVector, Paillier

__all__ = [
    "AccelError",
    "EncryptedVector",
    "Encryption",
    "ExponentMismatchError",
    "Gmpy2Backend",
    "KeyPair",
    "MalformedCiphertextError",
    "MissingPrivateKeyError",
    "PackedVector",
    "Packer",
    "PackingBudgetError",
    "PackingSpec",
    "Paillier",
    "PaillierBackend",
    "PaillierKeyMismatchError",
    "PaillierOverflowError",
    "PheBackend",
    "PrivateKey",
    "PublicKey",
    "ShapeMismatchError",
    "from_phe",
    "generate_keypair",
    "to_phe",
]
