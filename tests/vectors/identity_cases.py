"""Certificates and CSRs at the edges of the protocol's X.509 profile (protocol.md §5.4, §5.6), for identity.json.

Every case is built by hand in DER from fixed keys and times, and signed (Ed25519 is
deterministic), so each varies exactly one thing from a certificate or CSR the profile
accepts. The verdict recorded for each is the reference's (mesh.identity); another
implementation must reach the same one on every case.
"""

from __future__ import annotations

import warnings
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh.errors import InvalidCertificateError
from mesh.identity import check_certificate, load_certificate_der, load_csr, make_csr, raw_public_key

ROOT_SEED = bytes(range(0x41, 0x61))
NODE_SEED = bytes(range(1, 33))


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, *parts: bytes) -> bytes:
    content = b"".join(parts)
    return bytes([tag]) + _length(len(content)) + content


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, *parts)


def integer(value: int) -> bytes:
    return tlv(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        septets, rest = [arc & 0x7F], arc >> 7
        while rest:
            septets.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out += bytes(reversed(septets))
    return tlv(0x06, bytes(out))


CN, ORG, OU = "2.5.4.3", "2.5.4.10", "2.5.4.11"
ALG = bytes.fromhex("300506032b6570")


def rdn(attr: str, value: bytes | str, tag: int = 0x0C) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return tlv(0x31, seq(oid(attr), tlv(tag, raw)))


def name(*rdns: bytes) -> bytes:
    return seq(*rdns)


def utc(text: str) -> bytes:
    return tlv(0x17, text.encode())


def generalized(text: str) -> bytes:
    return tlv(0x18, text.encode())


ROOT_KEY = Ed25519PrivateKey.from_private_bytes(ROOT_SEED)
NODE_KEY = Ed25519PrivateKey.from_private_bytes(NODE_SEED)
NODE_PK = raw_public_key(NODE_KEY.public_key())
ROOT_NAME = name(rdn(CN, "example root"), rdn(ORG, "example"))
SPKI = seq(ALG, tlv(0x03, b"\x00" + NODE_PK))
BASIC_CONSTRAINTS = seq(oid("2.5.29.19"), tlv(0x01, b"\xff"), tlv(0x04, seq()))
EXTENSIONS = tlv(0xA3, seq(BASIC_CONSTRAINTS))
VALIDITY = seq(utc("260101000000Z"), utc("361231000000Z"))
SUBJECT = name(rdn(CN, "node-a"), rdn(OU, "node"), rdn(ORG, "Example Hospital"))


def _root() -> bytes:
    key_usage = seq(oid("2.5.29.15"), tlv(0x01, b"\xff"), tlv(0x04, tlv(0x03, b"\x01\x06")))
    ca = seq(oid("2.5.29.19"), tlv(0x01, b"\xff"), tlv(0x04, seq(tlv(0x01, b"\xff"), integer(0))))
    root_spki = seq(ALG, tlv(0x03, b"\x00" + raw_public_key(ROOT_KEY.public_key())))
    tbs = seq(
        tlv(0xA0, integer(2)), integer(1), ALG, ROOT_NAME, VALIDITY, ROOT_NAME, root_spki, tlv(0xA3, seq(ca, key_usage))
    )
    return seq(tbs, ALG, tlv(0x03, b"\x00" + ROOT_KEY.sign(tbs)))


def tbs(**change: bytes | None) -> bytes:
    """A node certificate's TBSCertificate, with some fields replaced (None leaves one out)."""
    fields: dict[str, bytes | None] = {
        "version": tlv(0xA0, integer(2)),
        "serial": integer(0x1F2E3D4C5B6A7988),
        "algorithm": ALG,
        "issuer": ROOT_NAME,
        "validity": VALIDITY,
        "subject": SUBJECT,
        "key": SPKI,
        "tail": EXTENSIONS,
    }
    fields.update(change)
    return seq(*(v for v in fields.values() if v is not None))


#: The order of the Ed25519 group (RFC 8032).
L = 2**252 + 27742317777372353535851937790883648493


def certificate(
    body: bytes | None = None, algorithm: bytes = ALG, after: bytes = b"", *, s_plus_l: bool = False
) -> bytes:
    body = body if body is not None else tbs()
    signature = ROOT_KEY.sign(body)
    if s_plus_l:  # the same signature with S + L: valid for a lax verifier, not for RFC 8032 or OpenSSL
        signature = signature[:32] + (int.from_bytes(signature[32:], "little") + L).to_bytes(32, "little")
    return seq(body, algorithm, tlv(0x03, b"\x00" + signature)) + after


def csr(
    *,
    version: bytes = integer(0),
    subject: bytes | None = None,
    key: bytes = SPKI,
    attributes: bytes | None = b"\xa0\x00",
    algorithm: bytes = ALG,
) -> bytes:
    subject = subject if subject is not None else name(rdn(CN, "node-a"), rdn(ORG, "Example Hospital"))
    info = seq(*(p for p in (version, subject, key, attributes) if p is not None))
    return seq(info, algorithm, tlv(0x03, b"\x00" + NODE_KEY.sign(info)))


def _certificates() -> list[tuple[str, str, bytes]]:
    ext = tlv(0xA3, seq(seq(oid("2.5.29.19"), tlv(0x01, b"\x01"), tlv(0x04, seq()))))
    return [
        ("accepted", "a node certificate as the reference issues it", certificate()),
        ("no_extensions", "extensions are optional", certificate(tbs(tail=None))),
        (
            "extension_values_not_read",
            "an extension's value is not interpreted",
            certificate(tbs(tail=tlv(0xA3, seq(seq(oid("1.2.3.4"), tlv(0x04, b"\x99")))))),
        ),
        (
            "printable_issuer",
            "issuer compared by value, not by string type",
            certificate(tbs(issuer=name(rdn(CN, "example root", 0x13), rdn(ORG, "example", 0x13)))),
        ),
        (
            "first_ou_is_role",
            "the first OU is the role",
            certificate(tbs(subject=name(rdn(OU, "operator"), rdn(CN, "node-a"), rdn(OU, "node")))),
        ),
        (
            "generalized_time_2050",
            "GeneralizedTime from 2050 on",
            certificate(tbs(validity=seq(utc("260101000000Z"), generalized("20600101000000Z")))),
        ),
        (
            "utc_time_1950",
            "UTCTime YY >= 50 is 19YY",
            certificate(tbs(validity=seq(utc("500101000000Z"), utc("361231000000Z")))),
        ),
        (
            "not_before_after_not_after",
            "the validity order is not checked here",
            certificate(tbs(validity=seq(utc("361231000000Z"), utc("260101000000Z")))),
        ),
        ("version_v1_explicit", "version must be exactly v3", certificate(tbs(version=tlv(0xA0, integer(0))))),
        ("version_v2", "version must be exactly v3", certificate(tbs(version=tlv(0xA0, integer(1))))),
        ("version_absent", "version must be present", certificate(tbs(version=None))),
        ("serial_zero", "the serial must be positive", certificate(tbs(serial=integer(0)))),
        ("serial_negative", "the serial must be positive", certificate(tbs(serial=integer(-5)))),
        ("serial_21_octets", "the serial has at most 20 octets", certificate(tbs(serial=integer(1 << 160)))),
        ("serial_not_minimal", "INTEGER must be minimal", certificate(tbs(serial=tlv(0x02, b"\x00\x12\x34")))),
        (
            "outer_algorithm_params",
            "signatureAlgorithm exactly 30 05 06 03 2b 65 70",
            certificate(algorithm=seq(oid("1.3.101.112"), tlv(0x05, b""))),
        ),
        ("trailing_byte", "nothing after the certificate", certificate(after=b"\x00")),
        (
            "key_unused_bits",
            "the key BIT STRING has 0 unused bits",
            certificate(tbs(key=seq(ALG, tlv(0x03, b"\x01" + NODE_PK)))),
        ),
        (
            "key_params",
            "the key algorithm has no parameters",
            certificate(tbs(key=seq(seq(oid("1.3.101.112"), tlv(0x05, b"")), tlv(0x03, b"\x00" + NODE_PK)))),
        ),
        (
            "key_x25519",
            "the key is Ed25519",
            certificate(tbs(key=seq(seq(oid("1.3.101.110")), tlv(0x03, b"\x00" + NODE_PK)))),
        ),
        ("issuer_unique_id", "no unique identifiers", certificate(tbs(tail=tlv(0x81, b"\x00\x01") + EXTENSIONS))),
        ("junk_after_key", "only [3] extensions after the key", certificate(tbs(tail=EXTENSIONS + tlv(0x04, b"x")))),
        ("extensions_empty", "extensions, when present, hold at least one", certificate(tbs(tail=tlv(0xA3, seq())))),
        (
            "extension_twice",
            "each extension at most once",
            certificate(tbs(tail=tlv(0xA3, seq(BASIC_CONSTRAINTS, BASIC_CONSTRAINTS)))),
        ),
        ("critical_not_der_true", "BOOLEAN TRUE is 01 01 ff", certificate(tbs(tail=ext))),
        (
            "critical_false_encoded",
            "critical FALSE is left out, not encoded",
            certificate(tbs(tail=tlv(0xA3, seq(seq(oid("2.5.29.19"), tlv(0x01, b"\x00"), tlv(0x04, seq())))))),
        ),
        (
            "generalized_time_2026",
            "GeneralizedTime only from 2050",
            certificate(tbs(validity=seq(generalized("20260101000000Z"), utc("361231000000Z")))),
        ),
        (
            "utc_time_no_seconds",
            "times carry seconds and Z",
            certificate(tbs(validity=seq(utc("2601010000Z"), utc("361231000000Z")))),
        ),
        (
            "utc_time_offset",
            "times are in Z",
            certificate(tbs(validity=seq(utc("260101000000+0100"), utc("361231000000Z")))),
        ),
        (
            "utc_time_feb_30",
            "times are calendar times",
            certificate(tbs(validity=seq(utc("260230000000Z"), utc("361231000000Z")))),
        ),
        (
            "cn_invalid_utf8",
            "UTF8String must be valid UTF-8",
            certificate(tbs(subject=name(rdn(CN, b"node-\xff"), rdn(OU, "node")))),
        ),
        (
            "o_printable_bad_character",
            "PrintableString has its own character set",
            certificate(tbs(subject=name(rdn(CN, "node-a"), rdn(OU, "node"), rdn(ORG, "B@nk", 0x13)))),
        ),
        (
            "cn_bmp_string",
            "only UTF8String and PrintableString",
            certificate(tbs(subject=name(rdn(CN, "node-a".encode("utf-16-be"), 0x1E), rdn(OU, "node")))),
        ),
        (
            "cn_ia5_string",
            "only UTF8String and PrintableString",
            certificate(tbs(subject=name(rdn(CN, "node-a", 0x16), rdn(OU, "node")))),
        ),
        (
            "multi_valued_rdn",
            "one attribute per RDN",
            certificate(
                tbs(subject=seq(tlv(0x31, seq(oid(OU), tlv(0x0C, b"node")), seq(oid(CN), tlv(0x0C, b"node-a")))))
            ),
        ),
        (
            "oid_not_minimal",
            "OID subidentifiers are minimal",
            certificate(
                tbs(subject=name(tlv(0x31, seq(tlv(0x06, b"\x55\x80\x04\x03"), tlv(0x0C, b"node-a"))), rdn(OU, "node")))
            ),
        ),
        ("no_cn", "a certificate names a node id", certificate(tbs(subject=name(rdn(OU, "node"))))),
        (
            "role_not_node_or_operator",
            "the first OU is node or operator",
            certificate(tbs(subject=name(rdn(CN, "node-a"), rdn(OU, "admin")))),
        ),
        ("signature_s_plus_l", "the root's signature with S + L (S must be < L)", certificate(s_plus_l=True)),
        ("signed_by_other_key", "signed by the root key", seq(tbs(), ALG, tlv(0x03, b"\x00" + NODE_KEY.sign(tbs())))),
        (
            "other_issuer",
            "issued by the federation root",
            certificate(tbs(issuer=name(rdn(CN, "other root"), rdn(ORG, "example")))),
        ),
    ]


IDENTITY = bytes([1]) + bytes(31)
IDENTITY_P_PLUS_1 = bytes.fromhex("ee" + "ff" * 30 + "7f")


def _identity_csr(key: bytes) -> bytes:
    """A CSR for the neutral point: R = the neutral point, S = 0 satisfies [S]B - [k]A = R for any k."""
    info = seq(integer(0), name(rdn(CN, "node-a")), seq(ALG, tlv(0x03, b"\x00" + key)), b"\xa0\x00")
    return seq(info, ALG, tlv(0x03, b"\x00" + IDENTITY + bytes(32)))


def _csrs() -> list[tuple[str, str, bytes]]:
    reference = make_csr(NODE_KEY, "node-a", "Example Hospital").public_bytes(serialization.Encoding.DER)
    return [
        ("reference", "a CSR as mesh.identity.make_csr writes it", reference),
        ("no_o", "the O is optional", csr(subject=name(rdn(CN, "node-a")))),
        (
            "two_cn",
            "parses; step 3 of the JoinRequested check then refuses it (UNAUTHORISED)",
            csr(subject=name(rdn(CN, "node-a"), rdn(CN, "node-b"))),
        ),
        ("version_1", "version must be 0", csr(version=integer(1))),
        ("attributes_absent", "the attributes [0] must be present", csr(attributes=None)),
        (
            "attributes_not_empty",
            "the attributes [0] must be empty",
            csr(attributes=tlv(0xA0, seq(oid("1.2.840.113549.1.9.7"), tlv(0x31, tlv(0x0C, b"pw"))))),
        ),
        (
            "algorithm_params",
            "signatureAlgorithm exactly 30 05 06 03 2b 65 70",
            csr(algorithm=seq(oid("1.3.101.112"), tlv(0x05, b""))),
        ),
        ("key_unused_bits", "the key BIT STRING has 0 unused bits", csr(key=seq(ALG, tlv(0x03, b"\x01" + NODE_PK)))),
        (
            "cn_bmp_string",
            "only UTF8String and PrintableString",
            csr(subject=name(rdn(CN, "node-a".encode("utf-16-be"), 0x1E))),
        ),
        ("cn_invalid_utf8", "UTF8String must be valid UTF-8", csr(subject=name(rdn(CN, b"node-\xff")))),
        (
            "key_small_order",
            "a canonical small-order key passes items 1-2 (the envelope is then BAD_SIGNATURE)",
            _identity_csr(IDENTITY),
        ),
        ("key_not_canonical", "the same point encoded with y = p + 1: refused", _identity_csr(IDENTITY_P_PLUS_1)),
    ]


def _verdict_certificate(der: bytes, root: x509.Certificate) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():  # cryptography warns of the non-positive serials these cases hold on purpose
            warnings.simplefilter("ignore")
            cert = check_certificate(load_certificate_der(der), root)
    except InvalidCertificateError:
        return {"verdict": "reject"}
    return {
        "verdict": "accept",
        "node_id": cert.node_id,
        "role": cert.role,
        "serial": cert.serial,
        "not_before_ms": cert.not_before,
        "not_after_ms": cert.not_after,
        "public_key_hex": cert.public_key.hex(),
    }


def _verdict_csr(der: bytes) -> dict[str, Any]:
    try:
        request = load_csr(der)
    except InvalidCertificateError:
        return {"verdict": "reject"}
    names = [str(a.value) for a in request.subject if a.oid.dotted_string == CN]
    key = raw_public_key(request.public_key())  # type: ignore[arg-type]
    return {"verdict": "accept", "common_names": names, "public_key_hex": key.hex()}


def identity_vectors() -> dict[str, Any]:
    root_der = _root()
    root = load_certificate_der(root_der)
    cases = [
        {"kind": "certificate", "name": n, "description": d, "der_hex": der.hex(), **_verdict_certificate(der, root)}
        for n, d, der in _certificates()
    ] + [
        {"kind": "csr", "name": n, "description": d, "der_hex": der.hex(), **_verdict_csr(der)} for n, d, der in _csrs()
    ]
    return {
        "description": (
            "Certificates (checked against root_der_hex, protocol.md §5.2 and §5.6) and CSRs (§5.4 items 1-2) "
            "at the edges of the protocol's X.509 profile, each with the reference's verdict. A refusal is "
            "INVALID_CERTIFICATE wherever it happens; an accepted case lists what the receiver reads from it."
        ),
        "root_der_hex": root_der.hex(),
        "cases": cases,
    }
