"""The golden vectors in tests/vectors/, recomputed independently of the code that wrote them.

The CRC-64-AVRO, the Parsing Canonical Form and the Avro encoding of the Envelope are
re-implemented here from the Avro specification, and signatures are checked with
``cryptography`` directly, so a bug shared by the generator and mesh/ cannot hide.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mesh.codec import SchemaStore
from mesh.envelope import SIGNING_TAG, Envelope, new_envelope

REPO = Path(__file__).resolve().parent.parent.parent
VECTORS = REPO / "tests" / "vectors"
FINGERPRINTS = json.loads((VECTORS / "fingerprints.json").read_text(encoding="utf-8"))
ENVELOPES = json.loads((VECTORS / "envelopes.json").read_text(encoding="utf-8"))
CASES = ENVELOPES["cases"]
STORE = SchemaStore.load(REPO / "schemas")

# -- CRC-64-AVRO and the Parsing Canonical Form, straight from the Avro specification ----------

_EMPTY = 0xC15D213AA4D7A795
_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_EMPTY & -(_fp & 1))
    _TABLE.append(_fp)


def crc64_avro(data: bytes) -> bytes:
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _full_name(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def canonical_form(schema: Any, namespace: str | None = None) -> str:
    """The spec's [STRIP] [PRIMITIVES] [FULLNAMES] [ORDER] [STRINGS] transformations, for what schemas/ uses."""
    if isinstance(schema, str):
        return json.dumps(schema if schema in _PRIMITIVES else _full_name(schema, namespace))
    if isinstance(schema, list):
        return "[" + ",".join(canonical_form(s, namespace) for s in schema) + "]"
    kind = schema["type"]
    if kind in _PRIMITIVES:
        return json.dumps(kind)  # logicalType and everything else is stripped
    if kind == "array":
        return '{"type":"array","items":' + canonical_form(schema["items"], namespace) + "}"
    if kind == "map":
        return '{"type":"map","values":' + canonical_form(schema["values"], namespace) + "}"
    name = _full_name(schema["name"], schema.get("namespace", namespace))
    inner = name.rpartition(".")[0] or None
    if kind == "record":
        fields = ",".join(
            '{"name":' + json.dumps(f["name"]) + ',"type":' + canonical_form(f["type"], inner) + "}"
            for f in schema["fields"]
        )
        return '{"name":' + json.dumps(name) + ',"type":"record","fields":[' + fields + "]}"
    if kind == "fixed":
        return '{"name":' + json.dumps(name) + ',"type":"fixed","size":' + str(schema["size"]) + "}"
    if kind == "enum":
        symbols = json.dumps(schema["symbols"], separators=(",", ":"))
        return '{"name":' + json.dumps(name) + ',"type":"enum","symbols":' + symbols + "}"
    raise AssertionError(f"canonical_form: unhandled type {kind}")


# -- the Avro binary encoding of an Envelope, by hand ----------------------------------------


def _long(n: int) -> bytes:
    z = ((n << 1) ^ (n >> 63)) & 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _bytes(b: bytes) -> bytes:
    return _long(len(b)) + b


def _string(s: str) -> bytes:
    return _bytes(s.encode("utf-8"))


def envelope_avro(fields: dict[str, Any], signature: bytes) -> bytes:
    correlation = b"\x00" if fields["correlation_id"] is None else b"\x02" + _string(fields["correlation_id"])
    return b"".join(
        [
            _string(fields["event_id"]),
            _string(fields["payload_type"]),
            bytes.fromhex(fields["payload_fingerprint_hex"]),
            _string(fields["sender"]),
            _long(fields["sequence"]),
            _long(fields["issued_at"]),
            _string(fields["subject"]),
            correlation,
            _bytes(bytes.fromhex(fields["payload_hex"])),
            _bytes(signature),
        ]
    )


def payload_record(case: dict[str, Any]) -> dict[str, Any]:
    """The case's payload as mesh.codec takes it: hex fields back to bytes."""
    return {k: bytes.fromhex(v) if k in case["payload_hex_fields"] else v for k, v in case["payload"].items()}


def _as_json(record: dict[str, Any]) -> dict[str, Any]:
    # fastavro reads timestamp-millis as an aware datetime; the vectors hold milliseconds.
    return {k: round(v.timestamp() * 1000) if isinstance(v, dt.datetime) else v for k, v in record.items()}


def _case_ids(case: dict[str, Any]) -> str:
    return str(case["name"])


# -- fingerprints.json -----------------------------------------------------------------------


def test_own_crc64_avro_reproduces_the_spec_null_vector() -> None:
    """CRC-64-AVRO of the Avro spec's example, the schema "null", is 8a8f25cce724dd63 (here and in the file)."""
    assert crc64_avro(b'"null"').hex() == "8a8f25cce724dd63"
    (vector,) = FINGERPRINTS["spec_vectors"]
    assert vector["schema"] == '"null"'
    assert vector["canonical_form"] == canonical_form(json.loads(vector["schema"]))
    assert vector["fingerprint_hex"] == "8a8f25cce724dd63"
    assert int(vector["fingerprint_int64"]) == int.from_bytes(bytes.fromhex("8a8f25cce724dd63"), "little", signed=True)


def test_fingerprints_file_lists_every_schema_file_once_in_path_order() -> None:
    on_disk = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "schemas").rglob("*.avsc"))
    listed = [entry["path"] for entry in FINGERPRINTS["schemas"]]
    assert listed == on_disk


@pytest.mark.parametrize("entry", FINGERPRINTS["schemas"], ids=lambda e: e["full_name"])
def test_schema_fingerprint_recomputed_from_its_file(entry: dict[str, Any]) -> None:
    """Full name, canonical form and fingerprint of each .avsc agree with an independent computation and mesh.codec."""
    raw = json.loads((REPO / entry["path"]).read_text(encoding="utf-8"))
    assert entry["full_name"] == _full_name(raw["name"], raw.get("namespace"))
    assert entry["canonical_form"] == canonical_form(raw)
    assert entry["fingerprint_hex"] == crc64_avro(entry["canonical_form"].encode("utf-8")).hex()
    assert int(entry["fingerprint_int64"]) == int.from_bytes(
        bytes.fromhex(entry["fingerprint_hex"]), "little", signed=True
    )
    assert STORE.by_name(entry["full_name"]).fingerprint.hex() == entry["fingerprint_hex"]


# -- envelopes.json --------------------------------------------------------------------------


def test_vector_key_public_half_derives_from_the_seed() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(ENVELOPES["key"]["private_seed_hex"]))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw.hex() == ENVELOPES["key"]["public_key_hex"]


def test_vector_signing_tag_is_the_protocol_tag() -> None:
    assert bytes.fromhex(ENVELOPES["signing_tag_hex"]) == SIGNING_TAG == b"interfed/envelope/v1\x00"


def test_vector_envelope_schema_fingerprint_matches_fingerprints_file() -> None:
    by_name = {e["full_name"]: e["fingerprint_hex"] for e in FINGERPRINTS["schemas"]}
    assert ENVELOPES["envelope_schema"]["fingerprint_hex"] == by_name[ENVELOPES["envelope_schema"]["full_name"]]


def test_vectors_cover_null_and_set_correlation_ids() -> None:
    kinds = {c["payload_type"]: c["envelope"]["correlation_id"] for c in CASES}
    assert kinds["interfed.registry.Heartbeat"] is None
    assert kinds["interfed.registry.NodeAnnounced"] is not None


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_vector_payload_fingerprint_is_its_schema_fingerprint(case: dict[str, Any]) -> None:
    by_name = {e["full_name"]: e["fingerprint_hex"] for e in FINGERPRINTS["schemas"]}
    assert case["payload_fingerprint_hex"] == by_name[case["payload_type"]]
    assert case["envelope"]["payload_fingerprint_hex"] == case["payload_fingerprint_hex"]
    assert case["envelope"]["payload_type"] == case["payload_type"]


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_vector_payload_avro_encodes_and_decodes_to_the_json_record(case: dict[str, Any]) -> None:
    record = payload_record(case)
    _, data = STORE.encode(case["payload_type"], record)
    assert data.hex() == case["payload_avro_hex"] == case["envelope"]["payload_hex"]
    decoded = STORE.decode(case["payload_type"], bytes.fromhex(case["payload_fingerprint_hex"]), data)
    assert _as_json(decoded) == record


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_vector_signing_bytes_are_tag_and_hand_encoded_unsigned_envelope(case: dict[str, Any]) -> None:
    expected = bytes.fromhex(ENVELOPES["signing_tag_hex"]) + envelope_avro(case["envelope"], b"")
    assert case["signing_bytes_hex"] == expected.hex()


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_vector_signature_verifies_with_cryptography_over_the_signing_bytes(case: dict[str, Any]) -> None:
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(ENVELOPES["key"]["public_key_hex"]))
    public.verify(bytes.fromhex(case["signature_hex"]), bytes.fromhex(case["signing_bytes_hex"]))
    # Ed25519 is deterministic: the seed reproduces the very same signature.
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(ENVELOPES["key"]["private_seed_hex"]))
    assert key.sign(bytes.fromhex(case["signing_bytes_hex"])).hex() == case["signature_hex"]


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_vector_encoded_is_hand_encoded_signed_envelope(case: dict[str, Any]) -> None:
    """encoded = signing bytes without the tag and the empty signature, then the 64-byte signature."""
    signature = bytes.fromhex(case["signature_hex"])
    assert case["encoded_hex"] == envelope_avro(case["envelope"], signature).hex()
    unsigned = bytes.fromhex(case["signing_bytes_hex"])[len(SIGNING_TAG) :]
    assert unsigned.endswith(b"\x00")
    assert case["encoded_hex"] == (unsigned[:-1] + b"\x80\x01" + signature).hex()


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_vector_envelope_decode_gives_the_file_fields_and_re_encodes_identically(case: dict[str, Any]) -> None:
    encoded = bytes.fromhex(case["encoded_hex"])
    env = Envelope.decode(encoded)
    fields = case["envelope"]
    assert env.event_id == fields["event_id"]
    assert env.payload_type == fields["payload_type"]
    assert env.payload_fingerprint.hex() == fields["payload_fingerprint_hex"]
    assert env.sender == fields["sender"]
    assert env.sequence == fields["sequence"]
    assert env.issued_at == fields["issued_at"]
    assert env.subject == fields["subject"]
    assert env.correlation_id == fields["correlation_id"]
    assert env.payload.hex() == fields["payload_hex"]
    assert env.signature.hex() == case["signature_hex"]
    assert env.signing_bytes().hex() == case["signing_bytes_hex"]
    assert env.encode() == encoded
    env.verify(Ed25519PublicKey.from_public_bytes(bytes.fromhex(ENVELOPES["key"]["public_key_hex"])))


@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_vector_project_code_builds_the_same_signed_envelope(case: dict[str, Any]) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(ENVELOPES["key"]["private_seed_hex"]))
    fields = case["envelope"]
    env = new_envelope(
        payload_type=fields["payload_type"],
        payload_fingerprint=bytes.fromhex(fields["payload_fingerprint_hex"]),
        payload=bytes.fromhex(fields["payload_hex"]),
        sender=fields["sender"],
        sequence=fields["sequence"],
        subject=fields["subject"],
        correlation_id=fields["correlation_id"],
        event_id=fields["event_id"],
        issued_at=fields["issued_at"],
    ).signed(key)
    assert env.encode().hex() == case["encoded_hex"]


def test_generate_check_finds_the_vector_files_up_to_date(tmp_path: Path) -> None:
    """generate.py --check (run from another directory) writes nothing and exits 0."""
    result = subprocess.run(
        [sys.executable, str(VECTORS / "generate.py"), "--check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []


def test_generate_check_fails_and_writes_nothing_when_a_vector_file_is_stale(tmp_path: Path) -> None:
    """generate.py --check exits non-zero, naming the stale file, and leaves it as it was."""
    shutil.copytree(REPO / "schemas", tmp_path / "schemas")
    vectors = tmp_path / "tests" / "vectors"
    vectors.mkdir(parents=True)
    shutil.copy(VECTORS / "generate.py", vectors / "generate.py")
    shutil.copy(VECTORS / "identity_cases.py", vectors / "identity_cases.py")
    shutil.copy(VECTORS / "schema_cases.py", vectors / "schema_cases.py")
    shutil.copy(VECTORS / "envelopes.json", vectors / "envelopes.json")
    shutil.copy(VECTORS / "tree_heads.json", vectors / "tree_heads.json")
    stale = (VECTORS / "fingerprints.json").read_text(encoding="utf-8").replace("8a8f25cce724dd63", "8a8f25cce724dd64")
    (vectors / "fingerprints.json").write_text(stale, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(vectors / "generate.py"), "--check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "fingerprints.json" in result.stderr
    assert "envelopes.json" not in result.stderr
    assert (vectors / "fingerprints.json").read_text(encoding="utf-8") == stale
