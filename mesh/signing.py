"""Ed25519 signing and verification on the hot path (libsodium, through PyNaCl).

Keys live on disk as PKCS#8 through ``cryptography`` (mesh.identity); every event
is signed and verified here, where libsodium is about twice as fast as OpenSSL on
the machines we measured (docs/benchmarks.md). libsodium's verification is the
strict kind the protocol requires: canonical S, no small-order R or public key.
"""

from __future__ import annotations

from typing import Protocol

import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh.errors import BadSignatureError


class Signer(Protocol):
    """Anything that signs bytes with an Ed25519 key (a node key, an HSM, a test key)."""

    def sign(self, data: bytes) -> bytes:
        """The signature of ``data``."""
        ...


class NodeSigner:
    """Signs with a node's Ed25519 private key."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        seed = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        self._key = nacl.signing.SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data`` (64 bytes)."""
        return self._key.sign(data).signature


class Verifier:
    """Verifies signatures under one raw 32-byte Ed25519 public key."""

    __slots__ = ("_key", "public_key")

    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        try:
            self._key = nacl.signing.VerifyKey(public_key)
        except (ValueError, TypeError, nacl.exceptions.CryptoError) as exc:
            raise BadSignatureError(f"not an Ed25519 public key: {exc}") from None

    def verify(self, signature: bytes, data: bytes) -> None:
        """Raise BadSignatureError unless ``signature`` is valid over ``data``."""
        try:
            self._key.verify(data, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            raise BadSignatureError("signature does not verify") from None
