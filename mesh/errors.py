"""Errors of the mesh runtime, each carrying its reason code and its policy."""

from __future__ import annotations


class MeshError(Exception):
    """Base of every interfed error.

    ``reason`` is the code written to the dead-letter topic and logs.
    ``retriable`` errors may succeed once something other topics bring has been read (a schema,
    a certificate, a job proposal): ``waits_for`` names those protocol topics. The service base
    holds the record's partition back until they have been read as far as they were when the
    record came (a fence, docs/protocol.md §6.5), tries once more, and refuses it if it still fails.
    ``dead_letter`` errors are about one record: the record is refused and the
    service goes on. Errors with neither flag stop the service.
    """

    reason = "MESH_ERROR"
    retriable = False
    dead_letter = False
    waits_for: tuple[str, ...] = ()


class RejectedEventError(MeshError):
    """A record that must not be applied; it goes to the dead-letter topic."""

    reason = "REJECTED"
    dead_letter = True


class MalformedEnvelopeError(RejectedEventError):
    """An envelope that does not decode, or is not the canonical encoding of its fields."""

    reason = "MALFORMED_ENVELOPE"


class MalformedPayloadError(RejectedEventError):
    """A payload that does not decode under its schema, or holds values the protocol does not allow."""

    reason = "MALFORMED_PAYLOAD"


class MalformedChunkError(RejectedEventError):
    """A chunk that does not fit its event: wrong sender, index or digest, or a chunk inside a chunk."""

    reason = "MALFORMED_CHUNK"


class OversizedRecordError(RejectedEventError):
    """A record over the size limit of its topic (larger events are chunked)."""

    reason = "OVERSIZED"


class UnknownSchemaError(RejectedEventError):
    """A payload fingerprint no schema known here has: the schema may be on its way on ``schemas``."""

    reason = "UNKNOWN_SCHEMA"
    retriable = True
    waits_for = ("schemas",)


class UnannouncedCoreSchemaError(UnknownSchemaError):
    """A core payload type (never announced) under another fingerprint than the built-in one: final at once."""

    retriable = False


class IncompatibleSchemaError(RejectedEventError):
    """A writer schema that does not resolve against this party's reader schema of the same name."""

    reason = "INCOMPATIBLE_SCHEMA"


class WrongTopicError(RejectedEventError):
    """A payload type that does not travel on the topic it came on."""

    reason = "WRONG_TOPIC"


class KeyMismatchError(RejectedEventError):
    """A record whose key is not the envelope's signed subject."""

    reason = "KEY_MISMATCH"


class UnknownSenderError(RejectedEventError):
    """A sender that is no member known here: its approval may be on its way on ``registry``."""

    reason = "UNKNOWN_SENDER"
    retriable = True
    waits_for = ("registry",)


class InvalidCertificateError(RejectedEventError):
    """A certificate that does not parse, is not issued by the federation root, or does not fit the profile."""

    reason = "INVALID_CERTIFICATE"


class NoValidCertificateError(InvalidCertificateError):
    """``issued_at`` outside every certificate known for the sender: a newer one may be on its way on ``registry``."""

    retriable = True
    waits_for = ("registry",)


class RevokedSenderError(RejectedEventError):
    """Signed under a certificate revoked from a time at or before its ``issued_at``.

    Retriable once: the node may have been approved again under the same key, and the newer
    certificate be on its way.
    """

    reason = "REVOKED_SENDER"
    retriable = True
    waits_for = ("registry",)


class BadSignatureError(RejectedEventError):
    """A signature that does not verify under the sender's key."""

    reason = "BAD_SIGNATURE"


class UnmatchedSignatureError(BadSignatureError):
    """A certified sender's signature that no certificate known here for it verifies.

    A newer certificate (the node approved again under a new key) may still be on its way on
    ``registry``, so it is waited for once.
    """

    retriable = True
    waits_for = ("registry",)


class ReplayedSequenceError(RejectedEventError):
    """A sequence number already used by the sender for another event, or below its replay window."""

    reason = "REPLAYED_SEQUENCE"


class UnauthorisedError(RejectedEventError):
    """The sender is who it says, but may not do this."""

    reason = "UNAUTHORISED"


class InvalidTransitionError(RejectedEventError):
    """The event does not fit the current state (e.g. approving an unknown contract)."""

    reason = "INVALID_TRANSITION"


class HandlerFailedError(RejectedEventError):
    """A handler raised something unexpected; the event is refused, the service goes on."""

    reason = "HANDLER_FAILED"


class ConfigurationError(MeshError):
    """Bad settings or a bad node home; fatal at start-up."""

    reason = "CONFIGURATION"


class IdentityError(MeshError):
    """Keys or certificates are missing or do not match."""

    reason = "IDENTITY"


class PrivateFileError(IdentityError):
    """A file holding secrets (a key, a checkpoint with keys in it) that others than its owner may read."""

    reason = "PRIVATE_FILE_EXPOSED"


class PayloadTooLargeError(MeshError):
    """A producer tried to send more than the configured maximum even after chunking."""

    reason = "PAYLOAD_TOO_LARGE"


class BrokerAccessError(MeshError):
    """The broker refused this party: its TLS certificate, or its authorisation (ACLs) for a topic or group."""

    reason = "BROKER_REFUSED"
