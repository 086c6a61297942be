"""Writes the golden vectors (fingerprints.json, envelopes.json, tree_heads.json) other languages check against.

Run with the project's venv from anywhere:

    .venv/bin/python tests/vectors/generate.py           # rewrite the files
    .venv/bin/python tests/vectors/generate.py --check   # exit 1 if the files differ from what it would write

Everything here is fixed (keys, event ids, times), so the output is byte-for-byte
deterministic. A change to any vector is a protocol change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastavro.schema import fingerprint as avro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from mesh.codec import SchemaStore, fingerprint_of
from mesh.envelope import ENVELOPE_TYPE, SIGNING_TAG, new_envelope
from mesh.identity import make_csr, raw_public_key

# the case builders live beside this script, which is run as a file, not imported as a package
sys.path.insert(0, str(Path(__file__).resolve().parent))
from identity_cases import identity_vectors
from schema_cases import schema_learning_vectors

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCHEMAS = REPO / "schemas"
FINGERPRINTS = HERE / "fingerprints.json"
ENVELOPES = HERE / "envelopes.json"
IDENTITY = HERE / "identity.json"
SCHEMA_LEARNING = HERE / "schema_learning.json"
TREE_HEADS = HERE / "tree_heads.json"

#: 32 bytes 0x01..0x20: the Ed25519 private key seed (RFC 8032 "secret key") every case signs with.
SEED = bytes(range(1, 33))
#: 2026-01-01T00:00:00Z in milliseconds since the Unix epoch.
ISSUED_AT = 1_767_225_600_000
#: 2027-01-01T00:00:00Z, the contract end requested in the JoinRequested case.
EXPIRES_AT = 1_798_761_600_000

#: The Avro spec's own example: the primitive schema "null".
SPEC_VECTORS = [{"schema": '"null"', "fingerprint_hex": "8a8f25cce724dd63"}]


def _crc64_avro_hex(canonical_form: str) -> str:
    return str(avro_fingerprint(canonical_form, "CRC-64-AVRO"))


def _int64(fingerprint: bytes) -> str:
    # Java's SchemaNormalization.parsingFingerprint64 returns this long; a string so no JSON reader rounds it.
    return str(int.from_bytes(fingerprint, "little", signed=True))


def fingerprint_vectors() -> dict[str, Any]:
    spec = []
    for vector in SPEC_VECTORS:
        canonical = to_parsing_canonical_form(json.loads(vector["schema"]))
        computed = _crc64_avro_hex(canonical)
        if computed != vector["fingerprint_hex"]:
            raise SystemExit(f"fastavro gives {computed} for the Avro spec vector {vector['schema']}")
        spec.append({**vector, "canonical_form": canonical, "fingerprint_int64": _int64(bytes.fromhex(computed))})
    schemas = []
    for path in sorted(SCHEMAS.rglob("*.avsc")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        canonical = to_parsing_canonical_form(raw)
        fingerprint = fingerprint_of(raw)
        if fingerprint.hex() != _crc64_avro_hex(canonical):
            raise SystemExit(f"mesh.codec.fingerprint_of disagrees with fastavro for {path}")
        schemas.append(
            {
                "path": path.relative_to(REPO).as_posix(),
                "full_name": f"{raw['namespace']}.{raw['name']}",
                "canonical_form": canonical,
                "fingerprint_hex": fingerprint.hex(),
                "fingerprint_int64": _int64(fingerprint),
            }
        )
    return {
        "description": (
            "Avro schema fingerprints: CRC-64-AVRO (the Rabin fingerprint of the Avro specification) of the "
            "schema's Parsing Canonical Form (UTF-8). fingerprint_hex is the 8 fingerprint bytes in the order "
            "the spec and the Envelope's payload_fingerprint use (little-endian). fingerprint_int64 is the same "
            "value as a signed 64-bit integer, as Java's SchemaNormalization.parsingFingerprint64 returns it."
        ),
        "algorithm": "CRC-64-AVRO",
        "spec_vectors": spec,
        "schemas": schemas,
    }


def _hex_fields(record: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: (v.hex() if k in names else v) for k, v in record.items()}


def _cases(key: Ed25519PrivateKey) -> list[dict[str, Any]]:
    csr_der = make_csr(key, "node-a", "Example Hospital").public_bytes(serialization.Encoding.DER)
    return [
        {
            "name": "heartbeat",
            "description": "registry Heartbeat, no correlation id (the union's null branch)",
            "payload_type": "interfed.registry.Heartbeat",
            "payload": {"node_id": "node-a", "interval_ms": 10_000},
            "bytes_fields": (),
            "envelope": {
                "event_id": "00000000-0000-4000-8000-000000000001",
                "sender": "node-a",
                "sequence": 1,
                "issued_at": ISSUED_AT,
                "subject": "node-a",
                "correlation_id": None,
            },
        },
        {
            "name": "node_announced",
            "description": "registry NodeAnnounced with a services array and a correlation id (the string branch)",
            "payload_type": "interfed.registry.NodeAnnounced",
            "payload": {
                "node_id": "node-a",
                "contract_id": "7d1e6f2a-4b3c-4d5e-8f90-a1b2c3d4e5f6",
                "name": "Node A",
                "institution": "Example Hospital",
                "platform": "fate",
                "platform_version": "2.1.0",
                "address": "https://node-a.example.org",
                "services": ["registry", "catalog", "accel"],
            },
            "bytes_fields": (),
            "envelope": {
                "event_id": "00000000-0000-4000-8000-000000000002",
                "sender": "node-a",
                "sequence": 2,
                "issued_at": ISSUED_AT + 1_500,
                "subject": "node-a",
                "correlation_id": "task-0001",
            },
        },
        {
            "name": "join_requested",
            "description": (
                "registry JoinRequested: the one event signed by the key in its own CSR (here the same fixed "
                "key); csr is the DER PKCS#10 request, deterministic because Ed25519 signatures are"
            ),
            "payload_type": "interfed.registry.JoinRequested",
            "payload": {
                "contract_id": "7d1e6f2a-4b3c-4d5e-8f90-a1b2c3d4e5f6",
                "node_id": "node-a",
                "name": "Node A",
                "institution": "Example Hospital",
                "platform": "fate",
                "platform_version": "2.1.0",
                "address": "https://node-a.example.org",
                "description": "vector case",
                "csr": csr_der,
                "agreement_sha256": bytes(range(0xA0, 0xC0)),
                "expires_at": EXPIRES_AT,
            },
            "bytes_fields": ("csr", "agreement_sha256"),
            "envelope": {
                "event_id": "00000000-0000-4000-8000-000000000003",
                "sender": "node-a",
                "sequence": 9_007_199_254_740_993,
                "issued_at": ISSUED_AT + 60_000,
                "subject": "node-a",
                "correlation_id": None,
            },
        },
    ]


def envelope_vectors() -> dict[str, Any]:
    store = SchemaStore.load(SCHEMAS)
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    cases = []
    for case in _cases(key):
        schema, payload_bytes = store.encode(case["payload_type"], case["payload"])
        fields = case["envelope"]
        unsigned = new_envelope(
            payload_type=case["payload_type"], payload_fingerprint=schema.fingerprint, payload=payload_bytes, **fields
        )
        env = unsigned.signed(key)
        cases.append(
            {
                "name": case["name"],
                "description": case["description"],
                "payload_type": case["payload_type"],
                "payload_fingerprint_hex": schema.fingerprint.hex(),
                "payload": _hex_fields(case["payload"], case["bytes_fields"]),
                "payload_hex_fields": list(case["bytes_fields"]),
                "payload_avro_hex": payload_bytes.hex(),
                "envelope": {
                    **fields,
                    "payload_type": case["payload_type"],
                    "payload_fingerprint_hex": schema.fingerprint.hex(),
                    "payload_hex": payload_bytes.hex(),
                },
                "signing_bytes_hex": env.signing_bytes().hex(),
                "signature_hex": env.signature.hex(),
                "encoded_hex": env.encode().hex(),
            }
        )
    return {
        "description": (
            "Signed Envelope vectors. signing_bytes = signing tag || Avro binary of the Envelope with an empty "
            "signature; signature = Ed25519(private key, signing_bytes); encoded = Avro binary of the Envelope "
            "with the signature (the Kafka record value). In each case's payload, the fields listed in "
            "payload_hex_fields are Avro bytes written as hex; timestamp-millis fields are integers. issued_at "
            "is milliseconds since the Unix epoch (UTC)."
        ),
        "signing_tag_hex": SIGNING_TAG.hex(),
        "envelope_schema": {
            "full_name": ENVELOPE_TYPE,
            "fingerprint_hex": store.by_name(ENVELOPE_TYPE).fingerprint.hex(),
        },
        "key": {
            "algorithm": "Ed25519",
            "private_seed_hex": SEED.hex(),
            "public_key_hex": raw_public_key(key.public_key()).hex(),
        },
        "cases": cases,
    }


def _u16_name(name: str) -> bytes:
    raw = name.encode()
    return len(raw).to_bytes(2, "big") + raw


def tree_head_vectors() -> dict[str, Any]:
    """Signed tree heads and countersignatures (docs/protocol.md §13.4, §13.5), built from their definition."""
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    head_tag, cosign_tag = b"interfed/tree-head/v1\x00", b"interfed/tree-head-cosignature/v1\x00"
    cases = []
    for name, log_id, size, root in (
        ("empty", "operator", 0, bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")),
        (
            "ct_tree_of_7",
            "node-a",
            7,
            bytes.fromhex("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
        ),
    ):
        body = _u16_name(log_id) + size.to_bytes(8, "big") + ISSUED_AT.to_bytes(8, "big") + root
        witness = "node-b"
        cosign_bytes = cosign_tag + _u16_name(witness) + body
        cases.append(
            {
                "name": name,
                "head": {"log_id": log_id, "tree_size": size, "root_hash_hex": root.hex(), "timestamp": ISSUED_AT},
                "signing_bytes_hex": (head_tag + body).hex(),
                "signature_hex": key.sign(head_tag + body).hex(),
                "witness": witness,
                "cosignature_signing_bytes_hex": cosign_bytes.hex(),
                "cosignature_hex": key.sign(cosign_bytes).hex(),
            }
        )
    return {
        "description": (
            "Signed tree heads of the evidence log and their countersignatures. signing_bytes = head tag || "
            "u16 len(log_id) || log_id || u64 tree_size || u64 timestamp || root_hash (big-endian); "
            "cosignature_signing_bytes = cosignature tag || u16 len(witness) || witness || the same body. "
            "Both are signed with the envelopes.json key (here as head keeper and as witness alike). "
            "The roots are the empty tree's and the RFC 9162 root of merkle.json's 7 leaves."
        ),
        "head_tag_hex": head_tag.hex(),
        "cosignature_tag_hex": cosign_tag.hex(),
        "public_key_hex": raw_public_key(key.public_key()).hex(),
        "cases": cases,
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def outputs() -> dict[Path, str]:
    return {
        FINGERPRINTS: render(fingerprint_vectors()),
        ENVELOPES: render(envelope_vectors()),
        IDENTITY: render(identity_vectors()),
        SCHEMA_LEARNING: render(schema_learning_vectors()),
        TREE_HEADS: render(tree_head_vectors()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file would change")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print(
            f"out of date: {', '.join(stale)}; a vector change is a protocol change. "
            f"If it is intended, run: python tests/vectors/generate.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
