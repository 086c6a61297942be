"""The signed Envelope every Kafka record carries: construction, signing bytes, encoding, verification."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field

from mesh.clock import now_ms
from mesh.codec import Schema, decode, encode, schema_dir
from mesh.errors import BadSignatureError, MalformedEnvelopeError, MalformedPayloadError
from mesh.signing import Signer, Verifier

#: Prefixed to the signed bytes so an envelope signature can never be mistaken
#: for a signature over anything else the same key signs (CSRs, tree heads).
SIGNING_TAG = b"interfed/envelope/v1\x00"

SIGNATURE_SIZE = 64

_ENVELOPE_SCHEMA = Schema.from_json((schema_dir() / "mesh" / "Envelope.avsc").read_text(encoding="utf-8"))


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event on the wire. ``payload`` is Avro binary under the schema ``payload_fingerprint`` names."""

    event_id: str
    payload_type: str
    payload_fingerprint: bytes
    sender: str
    sequence: int
    issued_at: int
    subject: str
    correlation_id: str | None
    payload: bytes
    signature: bytes = b""
    # The signing bytes, kept by decode() and signed() so a receiver encodes once; not a
    # field anyone passes, so dataclasses.replace() starts it afresh.
    _signing: bytes = field(default=b"", init=False, repr=False, compare=False)

    def _record(self, signature: bytes) -> dict[str, object]:
        return {
            "event_id": self.event_id,
            "payload_type": self.payload_type,
            "payload_fingerprint": self.payload_fingerprint,
            "sender": self.sender,
            "sequence": self.sequence,
            "issued_at": self.issued_at,
            "subject": self.subject,
            "correlation_id": self.correlation_id,
            "payload": self.payload,
            "signature": signature,
        }

    def signing_bytes(self) -> bytes:
        """The tag followed by the Avro encoding of this envelope with an empty signature."""
        return self._signing or SIGNING_TAG + encode(_ENVELOPE_SCHEMA, self._record(b""))

    def encode(self) -> bytes:
        """The record value: the Avro encoding of the signed envelope.

        The signature is the last field, so this is the signing bytes without the tag,
        whose final 0x00 (an empty bytes value) becomes the signature's length and bytes.
        """
        unsigned = self.signing_bytes()[len(SIGNING_TAG) :]
        return unsigned[:-1] + _avro_bytes(self.signature)

    def signed(self, key: Signer) -> Envelope:
        """This envelope with its signature by ``key`` over its signing bytes."""
        signing = self.signing_bytes()
        env = dataclasses.replace(self, signature=key.sign(signing))
        object.__setattr__(env, "_signing", signing)
        return env

    def verify(self, verifier: Verifier) -> None:
        """Raise BadSignatureError unless ``signature`` is the sender's over the signing bytes."""
        if len(self.signature) != SIGNATURE_SIZE:
            raise BadSignatureError(f"signature is {len(self.signature)} bytes, not {SIGNATURE_SIZE}")
        try:
            verifier.verify(self.signature, self.signing_bytes())
        except BadSignatureError:
            raise BadSignatureError(f"signature does not verify under {self.sender}'s key") from None

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Parse a record value; anything that is not exactly one Envelope is MALFORMED_ENVELOPE."""
        try:
            rec = decode(data, _ENVELOPE_SCHEMA)
        except MalformedPayloadError as exc:
            raise MalformedEnvelopeError(str(exc)) from None
        env = cls(
            event_id=rec["event_id"],
            payload_type=rec["payload_type"],
            payload_fingerprint=rec["payload_fingerprint"],
            sender=rec["sender"],
            sequence=rec["sequence"],
            issued_at=rec["issued_at"],
            subject=rec["subject"],
            correlation_id=rec["correlation_id"],
            payload=rec["payload"],
            signature=rec["signature"],
        )
        # One envelope, one encoding: a non-minimal varint or an odd union index would give
        # the same event two record values (and two digests in an evidence log).
        unsigned = encode(_ENVELOPE_SCHEMA, env._record(b""))
        if unsigned[:-1] + _avro_bytes(env.signature) != data:
            raise MalformedEnvelopeError("not the canonical Avro encoding of its fields")
        object.__setattr__(env, "_signing", SIGNING_TAG + unsigned)
        env.check_shape()
        return env

    def check_shape(self) -> None:
        """Field rules Avro cannot express."""
        try:
            if str(uuid.UUID(self.event_id)) != self.event_id:
                raise ValueError
        except ValueError:
            raise MalformedEnvelopeError(f"event_id {self.event_id!r} is not a lower-case UUID") from None
        if self.sequence < 1:
            raise MalformedEnvelopeError(f"sequence {self.sequence} < 1")
        if not self.sender or not self.payload_type:
            raise MalformedEnvelopeError("empty sender or payload_type")


def _avro_bytes(value: bytes) -> bytes:
    """Avro encoding of a bytes value: zig-zag varint length, then the bytes."""
    n = len(value) << 1
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + value


def new_envelope(
    *,
    payload_type: str,
    payload_fingerprint: bytes,
    payload: bytes,
    sender: str,
    sequence: int,
    subject: str,
    correlation_id: str | None = None,
    event_id: str | None = None,
    issued_at: int | None = None,
) -> Envelope:
    """An unsigned envelope with a fresh event id and the current time."""
    return Envelope(
        event_id=event_id or str(uuid.uuid4()),
        payload_type=payload_type,
        payload_fingerprint=payload_fingerprint,
        sender=sender,
        sequence=sequence,
        issued_at=issued_at if issued_at is not None else now_ms(),
        subject=subject,
        correlation_id=correlation_id,
        payload=payload,
    )
