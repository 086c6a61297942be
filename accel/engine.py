"""What the accelerator computes for one request: key resolution, who may ask for what, and the operations.

The service and the client's in-process path both run requests through ``Engine``, so a
request means the same thing wherever it runs; only the backend differs (worker
processes in the service, the gmpy2 backend in the caller's process). Each operation
reads its operands from the ``AccelRequest`` record and returns the result fields of the
``AccelReply`` (protocol.md §14.5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from accel.backend import PaillierBackend
from accel.errors import (
    AccelError,
    DecryptRefusedError,
    ExponentMismatchError,
    KeygenRefusedError,
    KeyTooLargeError,
    MalformedCiphertextError,
    MalformedRequestError,
    MissingPrivateKeyError,
    PaillierKeyMismatchError,
    UnknownKeyError,
)
from accel.gmp_backend import Encryption, make_djn_base
from accel.keys import PrivateKey
from accel.keystore import KeyStore
from accel.lru import Lru
from accel.packing import PackedVector, Packer
from accel.vector import EncryptedVector, Paillier
from accel.wire import (
    PublishedKey,
    le_to_int,
    packed_from_record,
    packed_record,
    plain_from_record,
    plain_record,
    public_key_from_record,
    public_key_record,
    spec_from_record,
    vector_from_record,
    vector_record,
)
from mesh import events

#: Operations that need the private key: served only to the key owner's own node.
DECRYPTING = frozenset({"DECRYPT", "PACKED_DECRYPT"})
ENCRYPTING = frozenset({"ENCRYPT", "PACKED_ENCRYPT"})
#: Key sizes ``KEYGEN`` makes (those of ``interfed accel keygen``); the size must also be even.
KEYGEN_BITS = range(512, 8193)
#: The largest modulus served (protocol.md §14.7, ``KEY_TOO_LARGE``): the largest KEYGEN makes.
#: Requesters choose the keys they send, and work grows with the cube of n's size.
MAX_KEY_BITS = 8192
#: Backends kept, per (key, encryption mode, owned): the most recently used ones.
BACKEND_CACHE = 32
#: DJN bases drawn for FAST encryption under keys published without one, per key.
DJN_BASE_CACHE = 256

Record = dict[str, Any]
MakeBackend = Callable[[PublishedKey, PrivateKey | None, Encryption, int | None], PaillierBackend]


class Engine:
    """Runs requests for one node: its own keys from ``keys``, any other key given in the request."""

    def __init__(self, node_id: str, keys: KeyStore, make_backend: MakeBackend) -> None:
        self.node_id = node_id
        self.keys = keys
        self._make_backend = make_backend
        # Requesters choose the keys, so both caches are bounded: an evicted backend is built
        # again on its next use, an evicted DJN base drawn again (any base encrypts correctly).
        self.backends: Lru[tuple[str, str, bool], PaillierBackend] = Lru(BACKEND_CACHE)
        # FAST encryption under a key published without a DJN base: one base per key, drawn here.
        self.djn_bases: Lru[str, int] = Lru(DJN_BASE_CACHE)

    def compute(self, request: events.AccelRequest, requester: str) -> Record:
        """The reply's result fields for ``request`` sent by node ``requester``; raises an ``AccelError``."""
        operation = request["operation"]
        if operation in DECRYPTING and requester != self.node_id:
            raise DecryptRefusedError(
                f"decryption is served only to the key owner's own node {self.node_id}; {requester} asked"
            )
        if operation == "KEYGEN":
            if requester != self.node_id:
                raise KeygenRefusedError(
                    f"keys are made only for the accelerator's own node {self.node_id}; {requester} asked"
                )
            return self.keygen(request)
        backend = self.backend_for(request)
        try:
            return OPERATIONS[operation](request, backend)
        except AccelError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise MalformedRequestError(f"{operation}: {exc}") from exc

    def keygen(self, request: events.AccelRequest) -> Record:
        """A fresh key pair with a DJN base, kept in this node's key store; the reply carries its public form."""
        params = request["keygen"]
        if params is None or request["key_id"] or request["public_key"] is not None:
            raise MalformedRequestError("KEYGEN takes its keygen parameters, an empty key_id and no public_key")
        if any(request[name] for name in ("vectors", "packed", "values")) or any(
            request[name] is not None for name in ("plain", "bound", "matrix", "packing")
        ):
            raise MalformedRequestError("KEYGEN takes no operands")
        bits = params["bits"]
        if bits % 2 or bits not in KEYGEN_BITS:
            raise MalformedRequestError(f"KEYGEN makes even key sizes of 512 to 8192 bits, not {bits}")
        owned = self.keys.generate(bits, safe_primes=params["safe_primes"])
        return {"public_key": public_key_record(owned.published)}

    def resolve(self, request: events.AccelRequest) -> tuple[PublishedKey, PrivateKey | None]:
        """The request's key: this node's own (with its private key), or the public key the request carries."""
        owned = self.keys.get(request["key_id"])
        if owned is not None:
            _check_size(owned.published.public_key.n.bit_length())
            return owned.published, owned.private_key
        if request["public_key"] is None:
            raise UnknownKeyError(f"key {request['key_id']} is not held here and the request carries no public key")
        n_bytes = request["public_key"]["n"]
        if len(n_bytes) > MAX_KEY_BITS // 8 + 1:  # by its length alone, before reading a huge integer
            raise KeyTooLargeError(f"a key of {len(n_bytes)} bytes; {_SERVED}")
        _check_size(le_to_int(n_bytes).bit_length())
        published = public_key_from_record(request["public_key"])
        if published.key_id != request["key_id"]:
            raise PaillierKeyMismatchError(f"the public key's id is {published.key_id}, not {request['key_id']}")
        return published, None

    def backend_for(self, request: events.AccelRequest) -> PaillierBackend:
        """The (cached) backend a request computes on: the private key only to decrypt, or to encrypt as owner."""
        published, private = self.resolve(request)
        operation = request["operation"]
        djn_base = None
        if operation in DECRYPTING:
            if private is None:
                raise MissingPrivateKeyError(f"this node holds no private key for {published.key_id}")
            mode = Encryption.TEXTBOOK
        elif operation in ENCRYPTING and private is not None:
            mode = Encryption.KEY_OWNER  # exactly the textbook distribution (accel.gmp_backend), and faster
        elif operation in ENCRYPTING and request["encryption"] == "FAST":
            mode = Encryption.DJN
            djn_base = published.djn_base
            if djn_base is None:
                djn_base = self.djn_bases.get(published.key_id, lambda: make_djn_base(published.public_key))
        else:
            mode, private = Encryption.TEXTBOOK, None  # public-key work never needs the factors
        return self.backends.get(
            (published.key_id, mode.value, private is not None),
            lambda: self._make_backend(published, private, mode, djn_base),
        )


_SERVED = f"this accelerator serves keys of at most {MAX_KEY_BITS} bits"


def _check_size(bits: int) -> None:
    if bits > MAX_KEY_BITS:
        raise KeyTooLargeError(f"a key of {bits} bits; {_SERVED}")


# -- the operations ---------------------------------------------------------------------------


def _vectors(request: events.AccelRequest, backend: PaillierBackend, count: int) -> list[EncryptedVector]:
    if len(request["vectors"]) != count:
        raise MalformedRequestError(f"{request['operation']} takes {count} ciphertext vector(s)")
    return [vector_from_record(v, backend) for v in request["vectors"]]


def _packed(request: events.AccelRequest, backend: PaillierBackend, least: int, most: int) -> list[PackedVector]:
    if not least <= len(request["packed"]) <= most:
        raise MalformedRequestError(f"{request['operation']} takes {least} to {most} packed vectors")
    return [packed_from_record(v, backend) for v in request["packed"]]


def _plain(request: events.AccelRequest) -> tuple[list[int], int]:
    if request["plain"] is None:
        raise MalformedRequestError(f"{request['operation']} needs a plaintext operand")
    return plain_from_record(request["plain"])


def _encrypt(request: events.AccelRequest, backend: PaillierBackend) -> Record:
    mantissas, exponent = _plain(request)
    bound = None if request["bound"] is None else le_to_int(request["bound"])
    return {"vector": vector_record(Paillier(backend).encrypt_encoded(mantissas, exponent, bound))}


def _decrypt(request: events.AccelRequest, backend: PaillierBackend) -> Record:
    (vector,) = _vectors(request, backend, 1)
    return {"plain": plain_record(Paillier(backend).decrypt_mantissas(vector), vector.exponent)}


def _add(request: events.AccelRequest, backend: PaillierBackend) -> Record:
    a, b = _vectors(request, backend, 2)
    return {"vector": vector_record(a + b)}


def _add_plain(request: events.AccelRequest, backend: PaillierBackend) -> Record:
    (vector,) = _vectors(request, backend, 1)
    mantissas, exponent = _plain(request)
    if exponent != vector.exponent:
        raise ExponentMismatchError(f"plaintext exponent {exponent} is not the vector's {vector.exponent}")
    return {"vector": vector_record(vector.add_encoded(mantissas))}


def _mul_plain(request: events.AccelRequest, backend: PaillierBackend) -> Record:
    (vector,) = _vectors(request, backend, 1)
    return {"vector": vector_record(vector.mul_encoded(*_plain(request)))}


def _dot(request: events.AccelRequest, backend: PaillierBackend) -> Record:
    (vector,) = _vectors(request, backend, 1)
    mantissas, exponent = _plain(request)
    return {"vector": vector_record(vector.left_matmul_encoded([mantissas], exponent))}


def _sum(request: events.AccelRequest, backend: PaillierBackend) -> Record:
    (vector,) = _vectors(request, backend, 1)
    return {"vector": vector_record(vector.sum())}


def _matmul(request: events.AccelRequest, backend: PaillierBackend) -> Record:
    """X^T [[d]] for X of shape (len(d), k), row-major: k ciphertexts."""
    (vector,) = _vectors(request, backend, 1)
    matrix = request["matrix"]
    if matrix is None:
        raise MalformedRequestError("MATMUL needs a matrix")
    rows, columns, exponent = matrix["rows"], matrix["columns"], matrix["exponent"]
    if rows != len(vector) or columns < 1 or len(matrix["mantissas"]) != rows * columns:
        raise MalformedRequestError(
            f"a {rows} x {columns} matrix with {len(matrix['mantissas'])} entries for X^T [[d]]"
        )
    entries, _ = plain_from_record({"exponent": exponent, "mantissas": matrix["mantissas"]})
    transposed = [entries[j::columns] for j in range(columns)]
    return {"vector": vector_record(vector.left_matmul_encoded(transposed, exponent))}


def _packed_encrypt(request: events.AccelRequest, backend: PaillierBackend) -> Record:
    if request["packing"] is None:
        raise MalformedRequestError("PACKED_ENCRYPT needs a packing spec")
    spec = spec_from_record(request["packing"])
    if spec.slots(backend.public_key.bits) < 1:
        raise MalformedCiphertextError(f"a {backend.public_key.bits}-bit key holds no {spec.slot_bits}-bit slot")
    packer = Packer(backend, spec)
    return {"packed": packed_record(packer.encrypt(np.asarray(request["values"], dtype=np.float64)))}


def _packed_add(request: events.AccelRequest, backend: PaillierBackend) -> Record:
    first, *rest = _packed(request, backend, 2, 1 << 16)
    for other in rest:
        first += other
    return {"packed": packed_record(first)}


def _packed_decrypt(request: events.AccelRequest, backend: PaillierBackend) -> Record:
    (vector,) = _packed(request, backend, 1, 1)
    sums = Packer(backend, vector.spec).decrypt_quantised(vector)
    return {"plain": plain_record([int(x) for x in sums.tolist()], 0)}


OPERATIONS: dict[str, Callable[[events.AccelRequest, PaillierBackend], Record]] = {
    "ENCRYPT": _encrypt,
    "DECRYPT": _decrypt,
    "ADD": _add,
    "ADD_PLAIN": _add_plain,
    "MUL_PLAIN": _mul_plain,
    "DOT": _dot,
    "SUM": _sum,
    "MATMUL": _matmul,
    "PACKED_ENCRYPT": _packed_encrypt,
    "PACKED_ADD": _packed_add,
    "PACKED_DECRYPT": _packed_decrypt,
}
