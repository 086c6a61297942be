"""Writes the golden vectors (fingerprints, envelopes, evidence, identity, schemas, tree heads, Paillier) others check.

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
from mesh.envelope import SIGNING_TAG, Envelope, new_envelope
from mesh.events import ENVELOPE, EVIDENCE_RECORDED
from mesh.evidence import GOVERNED, evidence_of
from mesh.identity import make_csr, raw_public_key
from mesh.topics import topic_for

# the case builders live beside this script, which is run as a file, not imported as a package
sys.path.insert(0, str(Path(__file__).resolve().parent))
from identity_cases import identity_vectors
from schema_cases import schema_learning_vectors

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCHEMAS = REPO / "schemas"
FINGERPRINTS = HERE / "fingerprints.json"
ENVELOPES = HERE / "envelopes.json"
EVIDENCE = HERE / "evidence.json"
IDENTITY = HERE / "identity.json"
SCHEMA_LEARNING = HERE / "schema_learning.json"
TREE_HEADS = HERE / "tree_heads.json"
PAILLIER = HERE / "paillier.json"

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
            "full_name": ENVELOPE,
            "fingerprint_hex": store.by_name(ENVELOPE).fingerprint.hex(),
        },
        "key": {
            "algorithm": "Ed25519",
            "private_seed_hex": SEED.hex(),
            "public_key_hex": raw_public_key(key.public_key()).hex(),
        },
        "cases": cases,
    }


def evidence_vectors() -> dict[str, Any]:
    """The EvidenceRecorded of each governed case of envelopes.json (protocol.md §13.1, §13.2), and its envelope."""
    store = SchemaStore.load(SCHEMAS)
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    schema = store.by_name(EVIDENCE_RECORDED)
    cases = []
    for n, case in enumerate(envelope_vectors()["cases"], start=1):
        if case["payload_type"] not in GOVERNED:
            continue
        evidenced = Envelope.decode(bytes.fromhex(case["encoded_hex"]))
        topic = topic_for(evidenced.payload_type)
        assert topic is not None
        record = evidence_of(GOVERNED[evidenced.payload_type], topic, evidenced)
        _, payload_bytes = store.encode(EVIDENCE_RECORDED, record)
        # The record follows its event from the same sender: the next sequence number, the same
        # subject and correlation id (protocol.md §13.1).
        fields = {
            "event_id": f"00000000-0000-4000-8000-0000000001{n:02d}",
            "sender": evidenced.sender,
            "sequence": evidenced.sequence + 1,
            "issued_at": evidenced.issued_at + 1,
            "subject": evidenced.subject,
            "correlation_id": evidenced.correlation_id,
        }
        env = new_envelope(
            payload_type=EVIDENCE_RECORDED, payload_fingerprint=schema.fingerprint, payload=payload_bytes, **fields
        ).signed(key)
        cases.append(
            {
                "evidenced_case": case["name"],
                "record": _record_json(record),
                "payload_avro_hex": payload_bytes.hex(),
                "envelope": {**fields, "payload_type": EVIDENCE_RECORDED},
                "encoded_hex": env.encode().hex(),
            }
        )
    return {
        "description": (
            "Evidence of the governed cases of envelopes.json. governed maps each governed payload type to its "
            "action. In each case, record is the EvidenceRecorded of the envelopes.json case evidenced_case "
            "(event_sha256 in hex: SHA-256 of that case's encoded_hex bytes; event_topic its topic's protocol "
            "name; occurred_at its issued_at); payload_avro_hex its Avro binary; encoded_hex the signed "
            "Envelope carrying it (the envelopes.json key, the fields of envelope, the payload's fingerprint)."
        ),
        "governed": dict(sorted(GOVERNED.items())),
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


def _seeded(label: str, bits: int) -> int:
    """A fixed integer of exactly ``bits`` bits (top two set, odd) from SHA-512 of a label: no randomness."""
    import hashlib

    stream = b"".join(hashlib.sha512(f"{label}/{i}".encode()).digest() for i in range(bits // 512 + 1))
    return (int.from_bytes(stream, "big") >> (len(stream) * 8 - bits)) | (3 << (bits - 2)) | 1


def _hex(x: int) -> str:
    """An unsigned integer as big-endian hex (what Java's new BigInteger(s, 16) and Go's SetString(s, 16) read)."""
    return format(x, "x")


def paillier_vectors() -> dict[str, Any]:
    import gmpy2

    from accel.encoding import encode, to_residues
    from accel.keys import PublicKey
    from accel.packing import PackingSpec
    from accel.wire import (
        PublishedKey,
        int_to_le,
        key_id,
        plain_record,
        public_key_record,
        signed_to_le,
        spec_record,
    )
    from mesh.events import CIPHERTEXT_VECTOR, PACKED_VECTOR, PAILLIER_PUBLIC_KEY, PLAIN_VECTOR

    store = SchemaStore.load(SCHEMAS)
    p, q = (int(gmpy2.next_prime(_seeded(f"interfed paillier vector {name}", 512))) for name in ("p", "q"))
    p, q = min(p, q), max(p, q)
    n, n2 = p * q, p * p * q * q
    public = PublicKey(n)
    x = _seeded("interfed paillier vector djn x", 1000) % n
    djn_base = pow(n - x * x % n, n, n2)
    djn_bits = 160  # twice the 80-bit security level of a 1024-bit modulus

    def nonce(i: int) -> int:
        return _seeded(f"interfed paillier vector nonce {i}", 1020) % n

    def encrypt(m: int, r_n: int) -> int:
        return (1 + n * (m % n)) * r_n % n2

    scalars = []
    for i, m in enumerate((42, -7, 0)):
        r = nonce(i)
        scalars.append(
            {
                "plaintext": m,
                "residue_hex": _hex(m % n),
                "nonce_hex": _hex(r),
                "ciphertext_hex": _hex(encrypt(m, pow(r, n, n2))),
            }
        )
    a = _seeded("interfed paillier vector djn exponent", djn_bits)
    djn = {"plaintext": 5, "exponent_hex": _hex(a), "ciphertext_hex": _hex(encrypt(5, pow(djn_base, a, n2)))}
    c42, c7 = (int(s["ciphertext_hex"], 16) for s in scalars[:2])
    arithmetic = {
        "add_hex": _hex(c42 * c7 % n2),
        "add_plaintext": 35,
        "add_plain": {"operand": 8, "ciphertext_hex": _hex(c42 * (1 + n * 8) % n2), "plaintext": 50},
        "mul_plain": {"scalar": -3, "ciphertext_hex": _hex(pow(c42, -3, n2)), "plaintext": -126},
    }

    values = [1.5, -0.25, 3.0]
    precision = 16
    mantissas = encode(values, precision)
    bound = (1 << max(map(abs, mantissas)).bit_length()) - 1
    vec_ciphertexts = [encrypt(m, pow(nonce(10 + i), n, n2)) for i, m in enumerate(mantissas)]
    vec_record = {
        "exponent": -precision,
        "bound": int_to_le(bound),
        "ciphertexts": [int_to_le(c) for c in vec_ciphertexts],
    }

    spec = PackingSpec(16, 8, clip=1.0)
    packed_values = [0.5, -1.0, 0.25, 0.0, 1.0]
    quantised = spec.quantise(packed_values).tolist()
    slots = spec.slots(public.bits)
    packed_plain = sum((qv + spec.q_max) << (j * spec.slot_bits) for j, qv in enumerate(quantised))
    packed_plain += sum(spec.q_max << (j * spec.slot_bits) for j in range(len(quantised), slots))  # padding: q = 0
    packed_c = encrypt(packed_plain, pow(nonce(20), n, n2))
    packed = {
        "spec": spec_record(spec),
        "slots": slots,
        "length": len(quantised),
        "terms": 1,
        "ciphertexts": [int_to_le(packed_c)],
    }

    plain_mantissas = [0, 1, -1, 300, -(2**70)]
    published = PublishedKey(public, djn_base, djn_bits)
    records = {
        "public_key": (PAILLIER_PUBLIC_KEY, public_key_record(published), ("n", "djn_base")),
        "ciphertext_vector": (CIPHERTEXT_VECTOR, vec_record, ("bound",)),
        "packed_vector": (PACKED_VECTOR, packed, ()),
        "plain_vector": (PLAIN_VECTOR, plain_record(plain_mantissas, -8), ()),
    }
    return {
        "description": (
            "Paillier with g = n + 1 under a fixed 1024-bit key: c = (1 + n*(m mod n)) * r^n mod n^2. Integers in "
            "*_hex fields are big-endian hex; on the wire (Avro records, avro_hex) big integers are minimal "
            "little-endian unsigned bytes and signed plaintexts are zigzag-mapped first (protocol.md §14.2)."
        ),
        "key": {
            "n_hex": _hex(n),
            "p_hex": _hex(p),
            "q_hex": _hex(q),
            "key_id": key_id(public),
            "n_le_hex": int_to_le(n).hex(),
            "djn_base_hex": _hex(djn_base),
            "djn_exponent_bits": djn_bits,
        },
        "textbook": scalars,
        "djn": djn,
        "arithmetic_on_textbook_0_and_1": arithmetic,
        "fixed_point_vector": {
            "values": values,
            "precision": precision,
            "mantissas": mantissas,
            "residues_hex": [_hex(r) for r in to_residues(mantissas, n)],
            "nonces_hex": [_hex(nonce(10 + i)) for i in range(len(values))],
            "bound": bound,
            "ciphertexts_hex": [_hex(c) for c in vec_ciphertexts],
        },
        "packed_vector": {
            "values": packed_values,
            "quantised": quantised,
            "plaintext_hex": _hex(packed_plain),
            "nonce_hex": _hex(nonce(20)),
            "ciphertext_hex": _hex(packed_c),
        },
        "plain_vector": {
            "mantissas": [str(m) for m in plain_mantissas],
            "zigzag_le_hex": [signed_to_le(m).hex() for m in plain_mantissas],
        },
        "records": {
            name: {
                "full_name": full_name,
                "fingerprint_hex": store.by_name(full_name).fingerprint.hex(),
                "record": _record_json(record),
                "avro_hex": store.encode(full_name, record)[1].hex(),
            }
            for name, (full_name, record, _) in records.items()
        },
    }


def _record_json(value: Any) -> Any:
    """A record as JSON: bytes as lower-case hex (little-endian big integers stay as their bytes)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _record_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_record_json(v) for v in value]
    return value


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def outputs() -> dict[Path, str]:
    return {
        FINGERPRINTS: render(fingerprint_vectors()),
        ENVELOPES: render(envelope_vectors()),
        EVIDENCE: render(evidence_vectors()),
        IDENTITY: render(identity_vectors()),
        SCHEMA_LEARNING: render(schema_learning_vectors()),
        TREE_HEADS: render(tree_head_vectors()),
        PAILLIER: render(paillier_vectors()),
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
