"""mesh.codec: strict decoding, writer/reader resolution, learning schemas, and encode/decode round trips."""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.codec import Schema, SchemaStore, decode, encode
from mesh.envelope import SIGNING_TAG, Envelope, new_envelope
from mesh.errors import (
    ConfigurationError,
    IncompatibleSchemaError,
    MalformedPayloadError,
    MeshError,
    UnknownSchemaError,
)

STORE = SchemaStore.load()
HEARTBEAT = "interfed.registry.Heartbeat"
ANNOUNCED = "interfed.registry.NodeAnnounced"
CHUNK = "interfed.mesh.Chunk"

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
#: Avro strings are Unicode scalar values: lone surrogates cannot be UTF-8 encoded.
texts = st.text(st.characters(exclude_categories=("Cs",)))
longs = st.integers(LONG_MIN, LONG_MAX)


def _ping(*extra: dict[str, Any]) -> Schema:
    """A test record interfed.test.Ping with node_id and the given extra fields."""
    fields = [{"name": "node_id", "type": "string"}, *extra]
    return Schema.from_json(
        json.dumps({"type": "record", "name": "Ping", "namespace": "interfed.test", "fields": fields})
    )


def _colliding_ping(target: bytes) -> Schema:
    """A Ping whose one field name is chosen so that its fingerprint is ``target``.

    The Rabin fingerprint is affine over GF(2) for inputs of one length, so choosing each
    of 96 letters between 'a' and 'c' (one bit apart) solves for any 64-bit value.
    """
    size = 96

    def fp(name: str) -> int:
        return int.from_bytes(_ping({"name": name, "type": "string"}).fingerprint, "little")

    base = fp("a" * size)
    # Gaussian elimination: rows are (effect on the fingerprint, set of letters that has it).
    pivots: dict[int, tuple[int, int]] = {}
    for i in range(size):
        effect, chosen = fp("a" * i + "c" + "a" * (size - i - 1)) ^ base, 1 << i
        while effect:
            top = effect.bit_length() - 1
            if top not in pivots:
                pivots[top] = (effect, chosen)
                break
            effect, chosen = effect ^ pivots[top][0], chosen ^ pivots[top][1]
    want, chosen = base ^ int.from_bytes(target, "little"), 0
    while want:
        top = want.bit_length() - 1
        want, chosen = want ^ pivots[top][0], chosen ^ pivots[top][1]
    return _ping({"name": "".join("c" if chosen >> i & 1 else "a" for i in range(size)), "type": "string"})


PING = "interfed.test.Ping"
PING_V1 = _ping()
PING_V2 = _ping({"name": "zone", "type": "string", "default": "eu-west"})
PING_V2_NO_DEFAULT = _ping({"name": "zone", "type": "string"})

ANNOUNCED_RECORD = {
    "node_id": "node-a",
    "contract_id": "c-1",
    "name": "Node A",
    "institution": "Hospital",
    "platform": "fate",
    "platform_version": "2.1",
    "address": "https://a.example",
    "services": ["registry", "catalog"],
}
CHUNK_RECORD = {"whole_sha256": bytes(32), "index": 0, "count": 1, "whole_size": 5, "data": b"hello"}


# -- strict decoding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("full_name", "record"),
    [(ANNOUNCED, ANNOUNCED_RECORD), (CHUNK, CHUNK_RECORD), (HEARTBEAT, {"node_id": "n", "interval_ms": 2**40})],
)
def test_every_truncation_of_a_payload_is_malformed(full_name: str, record: dict[str, Any]) -> None:
    schema, data = STORE.encode(full_name, record)
    assert decode(data, schema) == record
    for cut in range(len(data)):
        with pytest.raises(MalformedPayloadError):
            decode(data[:cut], schema)


@pytest.mark.parametrize("trailer", [b"\x00", b"\x01\x02\x03", b"x" * 100])
def test_trailing_bytes_after_a_payload_are_malformed(trailer: bytes) -> None:
    schema, data = STORE.encode(HEARTBEAT, {"node_id": "n", "interval_ms": 1000})
    with pytest.raises(MalformedPayloadError, match="trailing"):
        decode(data + trailer, schema)


def test_negative_length_string_is_malformed() -> None:
    schema = STORE.by_name(HEARTBEAT)
    with pytest.raises(MalformedPayloadError):
        decode(b"\x01abc\x02", schema)  # zig-zag 0x01 is a length of -1


def test_invalid_utf8_string_is_malformed() -> None:
    schema = STORE.by_name(HEARTBEAT)
    with pytest.raises(MalformedPayloadError):
        decode(b"\x04\xff\xfe\x02", schema)


def test_store_decode_checks_the_whole_input_too() -> None:
    schema, data = STORE.encode(HEARTBEAT, {"node_id": "n", "interval_ms": 1000})
    with pytest.raises(MalformedPayloadError):
        STORE.decode(HEARTBEAT, schema.fingerprint, data + b"\x00")
    with pytest.raises(MalformedPayloadError):
        STORE.decode(HEARTBEAT, schema.fingerprint, data[:-1])


def test_encode_refuses_a_record_that_does_not_fit_the_schema() -> None:
    with pytest.raises((TypeError, ValueError)):
        encode(PING_V1, {"node_id": 7})
    with pytest.raises(ValueError, match="more fields"):
        encode(PING_V1, {"node_id": "n", "unknown": 1})


# -- writer/reader resolution ----------------------------------------------------------------


def test_reader_with_an_added_defaulted_field_reads_old_writer_data_with_the_default() -> None:
    data = encode(PING_V1, {"node_id": "node-a"})
    assert decode(data, PING_V1, PING_V2) == {"node_id": "node-a", "zone": "eu-west"}


def test_reader_needing_a_field_without_default_is_incompatible() -> None:
    data = encode(PING_V1, {"node_id": "node-a"})
    with pytest.raises(IncompatibleSchemaError, match="zone"):
        decode(data, PING_V1, PING_V2_NO_DEFAULT)


def test_reader_ignores_a_field_the_writer_added() -> None:
    data = encode(PING_V2, {"node_id": "node-a", "zone": "ap-south"})
    assert decode(data, PING_V2, PING_V1) == {"node_id": "node-a"}


def test_store_resolves_a_learned_writer_into_its_own_reader() -> None:
    store = SchemaStore([PING_V2])
    store.learn(PING_V1.json_text, PING_V1.fingerprint, PING)
    data = encode(PING_V1, {"node_id": "node-a"})
    assert store.decode("interfed.test.Ping", PING_V1.fingerprint, data) == {"node_id": "node-a", "zone": "eu-west"}


def test_store_surfaces_incompatible_learned_writer() -> None:
    store = SchemaStore([PING_V2_NO_DEFAULT])
    store.learn(PING_V1.json_text, PING_V1.fingerprint, PING)
    with pytest.raises(IncompatibleSchemaError):
        store.decode("interfed.test.Ping", PING_V1.fingerprint, encode(PING_V1, {"node_id": "n"}))


# -- learning and looking up schemas ---------------------------------------------------------


def test_learn_refuses_a_schema_under_a_wrong_fingerprint() -> None:
    store = SchemaStore([PING_V2])
    with pytest.raises(IncompatibleSchemaError, match=PING_V2.fingerprint.hex()):
        store.learn(PING_V1.json_text, PING_V2.fingerprint, PING)
    assert store.by_fingerprint(PING_V2.fingerprint) is PING_V2  # the lie did not replace anything
    assert store.by_fingerprint(PING_V1.fingerprint) is None


def test_learn_refuses_a_schema_published_under_another_name() -> None:
    store = SchemaStore([PING_V2])
    with pytest.raises(IncompatibleSchemaError):
        store.learn(PING_V1.json_text, PING_V1.fingerprint, "interfed.test.Pong")
    assert store.by_fingerprint(PING_V1.fingerprint) is None


def test_learn_does_not_replace_a_known_writer() -> None:
    store = SchemaStore([PING_V1])
    same_with_docs = json.loads(PING_V1.json_text)
    same_with_docs["doc"] = "the same schema, documented"
    learned = store.learn(json.dumps(same_with_docs), PING_V1.fingerprint, PING)
    assert learned is PING_V1
    assert store.by_fingerprint(PING_V1.fingerprint) is PING_V1


def test_learn_refuses_another_schema_forged_onto_a_known_fingerprint() -> None:
    """CRC-64 is not a MAC: a schema crafted to collide with a known one must not replace it."""
    forged = _colliding_ping(PING_V1.fingerprint)
    assert forged.fingerprint == PING_V1.fingerprint
    assert forged.json_text != PING_V1.json_text
    store = SchemaStore([PING_V1])
    with pytest.raises(IncompatibleSchemaError, match="another schema"):
        store.learn(forged.json_text, forged.fingerprint, PING)
    assert store.by_fingerprint(PING_V1.fingerprint) is PING_V1


UNKNOWN_TYPE = '{"type": "record", "name": "Ping", "fields": [{"name": "x", "type": "nosuch"}]}'


@pytest.mark.parametrize("json_text", ['"string"', "{not json", "[]", UNKNOWN_TYPE])
def test_learn_of_an_unparsable_or_non_record_schema_is_malformed_payload(json_text: str) -> None:
    with pytest.raises(MalformedPayloadError):
        SchemaStore([PING_V1]).learn(json_text, bytes(8), PING)


def test_unknown_writer_fingerprint_is_unknown_schema_and_retriable() -> None:
    with pytest.raises(UnknownSchemaError) as info:
        STORE.decode(HEARTBEAT, b"\x00" * 8, b"\x02n\x02")
    assert info.value.retriable


def test_unknown_local_schema_name_is_unknown_schema() -> None:
    with pytest.raises(UnknownSchemaError):
        STORE.by_name("interfed.test.Nope")
    with pytest.raises(UnknownSchemaError):
        STORE.encode("interfed.test.Nope", {})


def test_learned_writer_without_a_local_reader_is_unknown_schema() -> None:
    store = SchemaStore([PING_V1])
    other = Schema.from_json(
        json.dumps(
            {"type": "record", "name": "Pong", "namespace": "interfed.test", "fields": [{"name": "n", "type": "long"}]}
        )
    )
    store.learn(other.json_text, other.fingerprint, other.full_name)
    with pytest.raises(UnknownSchemaError):
        store.decode("interfed.test.Pong", other.fingerprint, encode(other, {"n": 1}))


def test_fingerprint_of_another_type_is_malformed_payload() -> None:
    heartbeat = STORE.by_name(HEARTBEAT)
    with pytest.raises(MalformedPayloadError, match=HEARTBEAT):
        STORE.decode(ANNOUNCED, heartbeat.fingerprint, encode(heartbeat, {"node_id": "n", "interval_ms": 1}))


def test_store_refuses_two_schemas_with_one_name() -> None:
    with pytest.raises(ConfigurationError, match="twice"):
        SchemaStore([PING_V1, PING_V2])


def test_load_of_a_folder_without_schemas_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="INTERFED_SCHEMAS"):
        SchemaStore.load(tmp_path)


def test_load_finds_every_protocol_schema_by_name_and_fingerprint() -> None:
    names = {s.full_name for s in STORE}
    assert {HEARTBEAT, ANNOUNCED, CHUNK, "interfed.mesh.Envelope", "interfed.registry.JoinRequested"} <= names
    for schema in STORE:
        assert STORE.by_fingerprint(schema.fingerprint) is schema
        assert len(schema.fingerprint) == 8


# -- round trips -----------------------------------------------------------------------------


@given(node_id=texts, interval_ms=longs)
def test_heartbeat_round_trips(node_id: str, interval_ms: int) -> None:
    """Any Heartbeat (any text, any Avro long) decodes to exactly what was encoded."""
    record = {"node_id": node_id, "interval_ms": interval_ms}
    schema, data = STORE.encode(HEARTBEAT, record)
    assert STORE.decode(HEARTBEAT, schema.fingerprint, data) == record


@given(
    strings=st.fixed_dictionaries({k: texts for k in ANNOUNCED_RECORD if k != "services"}),
    services=st.lists(texts, max_size=20),
)
def test_node_announced_round_trips(strings: dict[str, str], services: list[str]) -> None:
    """Any NodeAnnounced (any texts, any services array, empty included) decodes to exactly what was encoded."""
    record = {**strings, "services": services}
    schema, data = STORE.encode(ANNOUNCED, record)
    assert STORE.decode(ANNOUNCED, schema.fingerprint, data) == record


@given(
    digest=st.binary(),
    index=st.integers(INT_MIN, INT_MAX),
    count=st.integers(INT_MIN, INT_MAX),
    size=longs,
    data=st.binary(),
)
def test_chunk_round_trips(digest: bytes, index: int, count: int, size: int, data: bytes) -> None:
    """Any Chunk record (bytes, Avro ints and longs at their limits) decodes to exactly what was encoded."""
    record = {"whole_sha256": digest, "index": index, "count": count, "whole_size": size, "data": data}
    schema, encoded = STORE.encode(CHUNK, record)
    assert STORE.decode(CHUNK, schema.fingerprint, encoded) == record


@given(data=st.binary(max_size=64))
def test_decoding_arbitrary_bytes_is_a_record_or_malformed_payload(data: bytes) -> None:
    """Never an exception other than MalformedPayloadError, whatever the bytes."""
    for name in (HEARTBEAT, ANNOUNCED, CHUNK):
        with contextlib.suppress(MalformedPayloadError):
            decode(data, STORE.by_name(name))


# The range of instants Python's datetime can hold (years 1 to 9999), in milliseconds.
DATETIME_MIN_MS, DATETIME_MAX_MS = -62_135_596_800_000, 253_402_300_799_999

envelopes = st.builds(
    Envelope,
    event_id=st.uuids().map(str),
    payload_type=texts.filter(bool),
    payload_fingerprint=st.binary(min_size=8, max_size=8),
    sender=texts.filter(bool),
    sequence=st.integers(1, LONG_MAX),
    issued_at=st.integers(DATETIME_MIN_MS, DATETIME_MAX_MS),
    subject=texts,
    correlation_id=st.none() | texts,
    payload=st.binary(),
    signature=st.binary(),
)


@given(env=envelopes)
def test_envelope_round_trips(env: Envelope) -> None:
    """Any well-shaped Envelope (any texts, bytes, sequence up to the Avro long maximum) decodes to itself."""
    assert Envelope.decode(env.encode()) == env
    assert env.signing_bytes() == SIGNING_TAG + replace(env, signature=b"").encode()


@pytest.mark.parametrize("issued_at", [LONG_MIN, DATETIME_MIN_MS - 1, DATETIME_MAX_MS + 1, LONG_MAX])
def test_envelope_issued_at_round_trips_over_the_whole_avro_long_range(issued_at: int) -> None:
    """issued_at is an Avro long: what Envelope.encode writes (and a Java party may sign), Envelope.decode reads."""
    env = new_envelope(
        payload_type=HEARTBEAT,
        payload_fingerprint=bytes(8),
        payload=b"",
        sender="node-a",
        sequence=1,
        subject="node-a",
        event_id=str(uuid.UUID(int=1)),
        issued_at=issued_at,
    )
    assert Envelope.decode(env.encode()) == env


def test_payload_with_a_non_minimal_varint_is_malformed_not_accepted() -> None:
    """0x8a 0x00 is 5 as a two-byte varint: fastavro reads it, a strict reader must not."""
    store = SchemaStore.load()
    schema, data = store.encode("interfed.registry.Heartbeat", {"node_id": "a", "interval_ms": 5})
    assert data == bytes.fromhex("02610a")
    with pytest.raises(MalformedPayloadError, match="canonical"):
        store.decode("interfed.registry.Heartbeat", schema.fingerprint, bytes.fromhex("02618a00"))


@pytest.mark.parametrize(
    "bad",
    [
        '{"type": "record", "name": "a-b", "fields": []}',
        '{"type": "record", "name": "T", "fields": [{"name": "x", "type": "int"}, {"name": "x", "type": "int"}]}',
        '{"type": "record", "name": "T"}',
        '{"type": "record", "name": "T", "fields": [{"name": "1x", "type": "int"}]}',
    ],
)
def test_a_schema_the_avro_spec_forbids_is_refused(bad: str) -> None:
    """Java's Schema.Parser refuses these; so must we, or the two would learn different schemas."""
    with pytest.raises(ValueError, match=r"name|field"):
        Schema.from_json(bad)


def test_an_int_beyond_32_bits_is_malformed_not_accepted() -> None:
    store = SchemaStore.load()
    schema, data = store.encode(
        "interfed.mesh.Chunk", {"whole_sha256": bytes(32), "index": 0, "count": 1, "whole_size": 1, "data": b"x"}
    )
    # index as a 2**40 varint: 0x80 0x80 0x80 0x80 0x80 0x40 (zig-zag 2**41)
    tampered = data[:33] + bytes.fromhex("808080808040") + data[34:]
    assert data[33] == 0
    with pytest.raises(MalformedPayloadError, match="canonical"):
        store.decode("interfed.mesh.Chunk", schema.fingerprint, tampered)


_LEARNING = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "schema_learning.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("case", _LEARNING["cases"], ids=lambda c: c["name"])
def test_published_schemas_are_learned_as_the_avro_spec_says(case: dict[str, str]) -> None:
    # fastavro alone learns NaN defaults, doubled union branches, negative fixed sizes, ...; Java's Avro refuses them
    store = SchemaStore([])
    fingerprint = bytes.fromhex(case.get("fingerprint_hex", "00" * 8))
    if case["verdict"] == "learn":
        assert store.learn(case["schema_json"], fingerprint, "x.y.A").fingerprint == fingerprint
    else:
        with pytest.raises(MeshError) as refused:
            store.learn(case["schema_json"], fingerprint, "x.y.A")
        assert refused.value.reason == case["verdict"]
