"""mesh.envelope: signing and verification, tamper evidence, and what Envelope.decode refuses."""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from mesh.codec import SchemaStore
from mesh.envelope import SIGNING_TAG, Envelope, new_envelope
from mesh.errors import BadSignatureError, MalformedEnvelopeError
from mesh.identity import raw_public_key
from mesh.signing import Verifier

STORE = SchemaStore.load()
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def verifier(key: Ed25519PrivateKey) -> Verifier:
    return Verifier(raw_public_key(key.public_key()))


OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(33, 65)))
EVENT_ID = "00000000-0000-4000-8000-000000000001"


def _envelope(**overrides: object) -> Envelope:
    """A small unsigned Heartbeat envelope; ``overrides`` replace any field."""
    schema, payload = STORE.encode("interfed.registry.Heartbeat", {"node_id": "n", "interval_ms": 1000})
    fields: dict[str, object] = {
        "payload_type": schema.full_name,
        "payload_fingerprint": schema.fingerprint,
        "payload": payload,
        "sender": "n",
        "sequence": 1,
        "subject": "n",
        "event_id": EVENT_ID,
        "issued_at": 1_767_225_600_000,
    }
    fields.update(overrides)
    return new_envelope(**fields)  # type: ignore[arg-type]


SIGNED = _envelope().signed(KEY)
SIGNED_BYTES = SIGNED.encode()


# -- signing and verifying -------------------------------------------------------------------


def test_signed_envelope_verifies_under_its_key_and_survives_the_wire() -> None:
    SIGNED.verify(verifier(KEY))
    decoded = Envelope.decode(SIGNED_BYTES)
    assert decoded == SIGNED
    decoded.verify(verifier(KEY))


def test_signature_is_64_bytes_over_the_tagged_unsigned_encoding() -> None:
    assert len(SIGNED.signature) == 64
    assert SIGNED.signing_bytes() == _envelope().signing_bytes()  # the signature is not signed over
    assert SIGNED.signing_bytes() == SIGNING_TAG + _envelope().encode()
    KEY.public_key().verify(SIGNED.signature, SIGNING_TAG + _envelope().encode())


def test_signature_over_the_untagged_encoding_does_not_verify() -> None:
    """Domain separation: the same key signing the bare encoding (not an envelope signature) is refused."""
    forged = dataclasses.replace(SIGNED, signature=KEY.sign(_envelope().encode()))
    with pytest.raises(BadSignatureError):
        forged.verify(verifier(KEY))


def test_envelope_signed_by_another_key_is_bad_signature() -> None:
    with pytest.raises(BadSignatureError):
        SIGNED.verify(verifier(OTHER_KEY))
    with pytest.raises(BadSignatureError):
        _envelope().signed(OTHER_KEY).verify(verifier(KEY))


@pytest.mark.parametrize("signature", [b"", bytes(63), bytes(65), bytes(64)])
def test_missing_short_long_or_zero_signature_is_bad_signature(signature: bytes) -> None:
    with pytest.raises(BadSignatureError):
        dataclasses.replace(SIGNED, signature=signature).verify(verifier(KEY))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", "00000000-0000-4000-8000-000000000002"),
        ("payload_type", "interfed.registry.NodeAnnounced"),
        ("payload_fingerprint", bytes(8)),
        ("sender", "m"),
        ("sequence", 2),
        ("issued_at", 1_767_225_600_001),
        ("subject", "m"),
        ("correlation_id", "task-1"),
        ("payload", b"\x02n\x04"),
    ],
)
def test_changing_any_signed_field_breaks_the_signature(field: str, value: object) -> None:
    with pytest.raises(BadSignatureError):
        dataclasses.replace(SIGNED, **{field: value}).verify(verifier(KEY))


def test_new_envelope_defaults_to_a_fresh_lower_case_uuid_and_the_current_time() -> None:
    before = time.time_ns() // 1_000_000
    env = new_envelope(
        payload_type="interfed.registry.Heartbeat",
        payload_fingerprint=bytes(8),
        payload=b"",
        sender="n",
        sequence=1,
        subject="n",
    )
    after = time.time_ns() // 1_000_000
    assert str(uuid.UUID(env.event_id)) == env.event_id
    assert (
        env.event_id
        != new_envelope(
            payload_type="x", payload_fingerprint=bytes(8), payload=b"", sender="n", sequence=1, subject="n"
        ).event_id
    )
    assert before <= env.issued_at <= after
    assert env.correlation_id is None
    assert env.signature == b""


def test_issued_at_zero_is_kept_not_replaced_by_now() -> None:
    assert _envelope(issued_at=0).issued_at == 0


# -- tamper evidence -------------------------------------------------------------------------


def _assert_no_other_valid_envelope(data: bytes) -> None:
    try:
        decoded = Envelope.decode(data)
        decoded.verify(verifier(KEY))
    except (MalformedEnvelopeError, BadSignatureError):
        return
    assert decoded == SIGNED, f"{data.hex()} decodes and verifies as a different envelope: {decoded}"


def test_no_single_bit_or_inverted_byte_yields_another_valid_envelope() -> None:
    """Every position, every single-bit flip and the all-ones flip: refused, or (at most) the same envelope."""
    for position in range(len(SIGNED_BYTES)):
        for mask in (1, 2, 4, 8, 16, 32, 64, 128, 255):
            tampered = bytearray(SIGNED_BYTES)
            tampered[position] ^= mask
            _assert_no_other_valid_envelope(bytes(tampered))


@pytest.mark.slow
def test_no_single_byte_change_yields_another_valid_envelope() -> None:
    """Every position, every other byte value: MalformedEnvelopeError, BadSignatureError, or the same envelope."""
    for position in range(len(SIGNED_BYTES)):
        for value in range(256):
            if value == SIGNED_BYTES[position]:
                continue
            tampered = bytearray(SIGNED_BYTES)
            tampered[position] = value
            _assert_no_other_valid_envelope(bytes(tampered))


def test_truncated_or_extended_envelope_is_malformed() -> None:
    for cut in range(len(SIGNED_BYTES)):
        with pytest.raises(MalformedEnvelopeError):
            Envelope.decode(SIGNED_BYTES[:cut])
    with pytest.raises(MalformedEnvelopeError):
        Envelope.decode(SIGNED_BYTES + b"\x00")


def test_negative_union_branch_index_is_malformed() -> None:
    """Avro union indexes are 0 or 1 here; zig-zag 0x03 (-2) must not be read as Python's list[-2] ("null").

    Otherwise one envelope has two encodings, and Java or Go parties (whose Avro readers refuse the
    index) disagree with Python ones about whether the record is valid.
    """
    prefix = SIGNED_BYTES[: -(1 + len(SIGNED.payload) + 2 + 64)]  # up to the correlation_id union index
    assert prefix[-1:] == b"\x00"  # the null branch
    tampered = prefix[:-1] + b"\x03" + SIGNED_BYTES[len(prefix) :]
    with pytest.raises(MalformedEnvelopeError):
        Envelope.decode(tampered)


@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_are_malformed_envelopes_never_another_error(data: bytes) -> None:
    with pytest.raises(MalformedEnvelopeError):
        Envelope.decode(data)


@given(position=st.integers(0, len(SIGNED_BYTES)), cut=st.integers(0, 40), insert=st.binary(max_size=40))
def test_spliced_envelope_bytes_raise_only_envelope_or_signature_errors(position: int, cut: int, insert: bytes) -> None:
    """Bytes near a valid envelope (a slice replaced by other bytes) never raise anything unexpected."""
    _assert_no_other_valid_envelope(SIGNED_BYTES[:position] + insert + SIGNED_BYTES[position + cut :])


# -- shape rules Avro cannot express -----------------------------------------------------------


@pytest.mark.parametrize(
    "event_id",
    [
        "not-a-uuid",
        "",
        "00000000-0000-4000-8000-00000000000G",
        "00000000-0000-4000-8000-00000000000A",
        "00000000000040008000000000000001",
        "{00000000-0000-4000-8000-000000000001}",
        "urn:uuid:00000000-0000-4000-8000-000000000001",
        " 00000000-0000-4000-8000-000000000001",
    ],
)
def test_event_id_that_is_not_a_lower_case_hyphenated_uuid_is_malformed(event_id: str) -> None:
    data = dataclasses.replace(_envelope(), event_id=event_id).signed(KEY).encode()
    with pytest.raises(MalformedEnvelopeError, match="event_id"):
        Envelope.decode(data)


@pytest.mark.parametrize("sequence", [0, -1, -(2**63)])
def test_sequence_below_one_is_malformed(sequence: int) -> None:
    data = dataclasses.replace(_envelope(), sequence=sequence).signed(KEY).encode()
    with pytest.raises(MalformedEnvelopeError, match="sequence"):
        Envelope.decode(data)


@pytest.mark.parametrize("field", ["sender", "payload_type"])
def test_empty_sender_or_payload_type_is_malformed(field: str) -> None:
    data = dataclasses.replace(_envelope(), **{field: ""}).signed(KEY).encode()
    with pytest.raises(MalformedEnvelopeError, match="empty"):
        Envelope.decode(data)


def test_malformed_envelope_and_bad_signature_are_dead_lettered_not_retried() -> None:
    for error in (MalformedEnvelopeError, BadSignatureError):
        assert error.dead_letter
        assert not error.retriable
    assert MalformedEnvelopeError.reason == "MALFORMED_ENVELOPE"
    assert BadSignatureError.reason == "BAD_SIGNATURE"
