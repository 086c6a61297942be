"""Paillier on vectors: fixed-point encoding, packing, interchangeable backends, and the accelerator client.

``Paillier``/``EncryptedVector`` and ``Packer``/``PackedVector`` compute on any
``PaillierBackend`` (``PheBackend``, ``Gmpy2Backend``, ``PooledBackend``); ``accel.wire`` maps
keys and vectors to the Avro records of ``schemas/accel/``; ``AccelClient`` sends requests to its node's
``accel.<node>.requests`` (or runs them in-process), which the accelerator service (``services.accel``) serves.
"""

from accel.backend import PaillierBackend
from accel.client import AccelClient
from accel.errors import (
    AccelError,
    AccelRequestError,
    AccelTimeoutError,
    DeadlineExceededError,
    DecryptRefusedError,
    ExponentMismatchError,
    MalformedCiphertextError,
    MalformedRequestError,
    MissingPrivateKeyError,
    PackingBudgetError,
    PaillierKeyMismatchError,
    PaillierOverflowError,
    ShapeMismatchError,
    UnknownKeyError,
)
from accel.gmp_backend import Encryption, Gmpy2Backend
from accel.keys import KeyPair, PrivateKey, PublicKey, from_phe, generate_keypair, to_phe
from accel.keystore import KeyStore, OwnedKey
from accel.packing import PackedVector, Packer, PackingSpec
from accel.phe_backend import PheBackend
from accel.pool import PooledBackend, WorkerPool
from accel.vector import EncryptedVector, Paillier
from accel.wire import PublishedKey, key_id

__all__ = [
    "AccelClient",
    "AccelError",
    "AccelRequestError",
    "AccelTimeoutError",
    "DeadlineExceededError",
    "DecryptRefusedError",
    "EncryptedVector",
    "Encryption",
    "ExponentMismatchError",
    "Gmpy2Backend",
    "KeyPair",
    "KeyStore",
    "MalformedCiphertextError",
    "MalformedRequestError",
    "MissingPrivateKeyError",
    "OwnedKey",
    "PackedVector",
    "Packer",
    "PackingBudgetError",
    "PackingSpec",
    "Paillier",
    "PaillierBackend",
    "PaillierKeyMismatchError",
    "PaillierOverflowError",
    "PheBackend",
    "PooledBackend",
    "PrivateKey",
    "PublicKey",
    "PublishedKey",
    "ShapeMismatchError",
    "UnknownKeyError",
    "WorkerPool",
    "from_phe",
    "generate_keypair",
    "key_id",
    "to_phe",
]
