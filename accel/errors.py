"""Errors of the Paillier library, each carrying its reason code and its policy (see ``mesh.errors``)."""

from __future__ import annotations

from mesh.errors import MeshError


class AccelError(MeshError):
    """Base of every ``accel`` error.

    A request that cannot be computed correctly is about that one request, so by default
    it is dead-lettered and the accelerator goes on with the next one.
    """

    reason = "ACCEL_ERROR"
    dead_letter = True


class PaillierOverflowError(AccelError, OverflowError):
    """The result would leave the signed plaintext range (|m| <= n//3 - 1): it would decrypt wrong."""

    reason = "PAILLIER_OVERFLOW"


class ExponentMismatchError(AccelError, ValueError):
    """Two encrypted vectors with different fixed-point exponents were combined; align one first."""

    reason = "EXPONENT_MISMATCH"


class PackingBudgetError(AccelError, OverflowError):
    """A packed operation would exceed the declared number of additions (the slots' headroom)."""

    reason = "PACKING_BUDGET"


class PaillierKeyMismatchError(AccelError, ValueError):
    """Ciphertexts under different public keys were combined, or decrypted with the wrong key."""

    reason = "PAILLIER_KEY_MISMATCH"


class ShapeMismatchError(AccelError, ValueError):
    """Operand lengths or matrix shapes do not fit."""

    reason = "SHAPE_MISMATCH"


class MalformedCiphertextError(AccelError, ValueError):
    """Serialised key or ciphertext bytes that do not parse, or values outside their group."""

    reason = "MALFORMED_CIPHERTEXT"


class MissingPrivateKeyError(AccelError):
    """Decryption or key-owner encryption asked of a backend built without the private key.

    A configuration error, not a bad request: the service should stop, not dead-letter.
    """

    reason = "NO_PRIVATE_KEY"
    dead_letter = False


# -- the accelerator service and its client (protocol.md §14.7) --------------------------------


class UnknownKeyError(AccelError):
    """A request names a key the service does not hold and does not carry the public key itself."""

    reason = "UNKNOWN_KEY"


class DecryptRefusedError(AccelError):
    """Decryption asked by a node other than the key owner's own node."""

    reason = "DECRYPT_REFUSED"


class KeygenRefusedError(AccelError):
    """Key generation asked by a node other than the accelerator's own: a node makes keys only for itself."""

    reason = "KEYGEN_REFUSED"


class MalformedRequestError(AccelError, ValueError):
    """A request whose operands do not fit its operation (missing, extra, or of the wrong shape)."""

    reason = "MALFORMED_REQUEST"


class BoundViolatedError(AccelError):
    """A decrypted value outside what its vector declared (its ``bound``, or its packing's ``terms``).

    The declaration was false, or a party computed wrong. Detected by the key owner, the only party who can.
    """

    reason = "BOUND_VIOLATED"


class KeyTooLargeError(AccelError):
    """A key whose modulus is larger than the accelerator serves (``accel.engine.MAX_KEY_BITS``)."""

    reason = "KEY_TOO_LARGE"


class DeadlineExceededError(AccelError):
    """The request's deadline passed before its result was ready; the same request sent again may succeed."""

    reason = "DEADLINE_EXCEEDED"
    retriable = True


class ClockSkewError(AccelError):
    """A request signed further ahead of the accelerator's clock than the tolerance (protocol.md §14.8)."""

    reason = "CLOCK_SKEW"


class AccelTimeoutError(AccelError, TimeoutError):
    """The client got no reply within its timeout, after every retry."""

    reason = "ACCEL_TIMEOUT"
    dead_letter = False


class AccelRequestError(AccelError):
    """A request was answered with an error (by the service, or the in-process path); ``code`` is its reason."""

    dead_letter = False

    def __init__(self, code: str, message: str, retriable: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.reason = code
        self.code = code
        self.retriable = retriable
