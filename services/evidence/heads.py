"""Signed tree heads and countersignatures: their signing bytes (domain-separated), signing and checking."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from mesh import events
from mesh.errors import BadSignatureError
from mesh.signing import Signer, Verifier
from services.evidence.merkle import HASH_SIZE, MAX_TREE_SIZE

# Like the envelope's tag (docs/protocol.md §4.2): a head signature can never pass for an envelope
# signature or a cosignature made with the same key, nor the other way round.
HEAD_TAG = b"interfed/tree-head/v1\x00"
COSIGNATURE_TAG = b"interfed/tree-head-cosignature/v1\x00"


def _name(value: str) -> bytes:
    raw = value.encode()
    if not 0 < len(raw) < 1 << 16:
        raise ValueError(f"node id of {len(raw)} bytes cannot be framed")
    return struct.pack(">H", len(raw)) + raw


@dataclass(frozen=True, slots=True)
class TreeHead:
    """What a log keeper states: its log ``log_id`` held ``tree_size`` leaves with ``root_hash`` at ``timestamp``."""

    log_id: str
    tree_size: int
    root_hash: bytes
    timestamp: int
    signature: bytes = b""

    @classmethod
    def from_payload(cls, p: events.TreeHead) -> TreeHead:
        return cls(p["log_id"], p["tree_size"], p["root_hash"], p["timestamp"], p["signature"])

    def payload(self) -> events.TreeHead:
        return {
            "log_id": self.log_id,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "timestamp": self.timestamp,
            "signature": self.signature,
        }

    def body(self) -> bytes:
        """u16 len ‖ log_id ‖ u64 tree_size ‖ u64 timestamp ‖ root_hash (32), big-endian."""
        if not 0 <= self.tree_size <= MAX_TREE_SIZE or not 0 <= self.timestamp < 1 << 64:
            raise ValueError("tree size and timestamp must be uint64")
        if len(self.root_hash) != HASH_SIZE:
            raise ValueError(f"root hash of {len(self.root_hash)} bytes, not {HASH_SIZE}")
        return _name(self.log_id) + struct.pack(">QQ", self.tree_size, self.timestamp) + self.root_hash

    def signing_bytes(self) -> bytes:
        return HEAD_TAG + self.body()

    def signed(self, key: Signer) -> TreeHead:
        return TreeHead(self.log_id, self.tree_size, self.root_hash, self.timestamp, key.sign(self.signing_bytes()))

    def verify(self, public_key: bytes) -> None:
        """Raise BadSignatureError unless the head is well formed and signed by ``public_key``."""
        try:
            data = self.signing_bytes()
        except ValueError as exc:
            raise BadSignatureError(f"tree head cannot be signed as given: {exc}") from None
        if len(self.signature) != 64:
            raise BadSignatureError(f"tree head signature of {len(self.signature)} bytes, not 64")
        Verifier(public_key).verify(self.signature, data)

    def to_json(self) -> dict[str, Any]:
        return {
            "log_id": self.log_id,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": self.timestamp,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TreeHead:
        return cls(
            str(d["log_id"]),
            int(d["tree_size"]),
            bytes.fromhex(d["root_hash"]),
            int(d["timestamp"]),
            bytes.fromhex(d["signature"]),
        )


def cosignature_bytes(head: TreeHead, witness: str) -> bytes:
    """COSIGNATURE_TAG ‖ u16 len ‖ witness ‖ the head's body: what a witness signs."""
    return COSIGNATURE_TAG + _name(witness) + head.body()


def cosign(head: TreeHead, witness: str, key: Signer) -> events.TreeHeadCosigned:
    """The TreeHeadCosigned payload of ``witness`` for ``head``."""
    return {
        "log_id": head.log_id,
        "tree_size": head.tree_size,
        "root_hash": head.root_hash,
        "timestamp": head.timestamp,
        "witness": witness,
        "signature": key.sign(cosignature_bytes(head, witness)),
    }


def cosigned_head(p: events.TreeHeadCosigned) -> TreeHead:
    """The (unsigned) head a TreeHeadCosigned payload countersigns."""
    return TreeHead(p["log_id"], p["tree_size"], p["root_hash"], p["timestamp"])


def verify_cosignature(p: events.TreeHeadCosigned, public_key: bytes) -> None:
    """Raise BadSignatureError unless the TreeHeadCosigned payload ``p`` is signed by ``public_key``."""
    try:
        data = cosignature_bytes(cosigned_head(p), p["witness"])
    except ValueError as exc:
        raise BadSignatureError(f"cosignature cannot be signed as given: {exc}") from None
    if len(p["signature"]) != 64:
        raise BadSignatureError(f"cosignature of {len(p['signature'])} bytes, not 64")
    Verifier(public_key).verify(p["signature"], data)
