"""The exact DER shape of certificates and CSRs the protocol accepts (protocol.md §5.6).

``cryptography`` parses X.509 strictly in places and leniently in others (it takes a
public key whose BIT STRING has unused bits, negative serials, NumericStrings with
letters, control characters in VisibleStrings, unique identifiers, any attributes in a
CSR). Each of those is a place where two implementations on other libraries would reach
different verdicts, so the protocol names one narrow profile, and this module checks it
on the bytes, before ``cryptography`` looks at them.
"""

from __future__ import annotations

import datetime as dt
import re

from mesh.errors import InvalidCertificateError

#: AlgorithmIdentifier Ed25519 (RFC 8410), no parameters.
ED25519_ALGORITHM = bytes.fromhex("300506032b6570")
#: SubjectPublicKeyInfo of an Ed25519 key, up to the 32 key bytes.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
V3 = bytes.fromhex("a003020102")
CSR_V1 = bytes.fromhex("020100")

UTF8STRING, PRINTABLESTRING = 0x0C, 0x13
_PRINTABLE = re.compile(rb"[A-Za-z0-9 '()+,\-./:=?]*")
_UTC = re.compile(rb"\d{12}Z")
_GENERALIZED = re.compile(rb"\d{14}Z")

Tlv = tuple[int, bytes, bytes]  # tag, content, whole encoding

#: The field prime of edwards25519.
P = 2**255 - 19


def _bad(why: str) -> InvalidCertificateError:
    return InvalidCertificateError(f"not the protocol's X.509 profile: {why}")


def _read(data: bytes, at: int) -> tuple[Tlv, int]:
    """One DER TLV at ``at``: definite, minimal length; low tag numbers only."""
    if at + 2 > len(data):
        raise _bad("truncated")
    tag, first = data[at], data[at + 1]
    if tag & 0x1F == 0x1F:
        raise _bad("high tag number")
    if first < 0x80:
        length, start = first, at + 2
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or at + 2 + n > len(data) or data[at + 2] == 0:
            raise _bad("indefinite, oversized or non-minimal length")
        length, start = int.from_bytes(data[at + 2 : at + 2 + n], "big"), at + 2 + n
        if length < 0x80:
            raise _bad("non-minimal length")
    end = start + length
    if end > len(data):
        raise _bad("truncated")
    return (tag, data[start:end], data[at:end]), end


def _only(data: bytes, tag: int) -> bytes:
    """The content of the single TLV ``data`` must be, with that tag."""
    (got, content, _), end = _read(data, 0)
    if end != len(data) or got != tag:
        raise _bad(f"expected exactly one element of tag {tag:02x}")
    return content


def _children(content: bytes) -> list[Tlv]:
    out, at = [], 0
    while at < len(content):
        tlv, at = _read(content, at)
        out.append(tlv)
    return out


def _oid(content: bytes) -> None:
    if not content or content[-1] & 0x80:
        raise _bad("malformed OID")
    for i, octet in enumerate(content):
        if octet == 0x80 and (i == 0 or not content[i - 1] & 0x80):
            raise _bad("non-minimal OID")


def _check_name(content: bytes) -> None:
    """Name: RDNs of exactly one attribute, each a UTF8String (valid UTF-8) or a PrintableString."""
    for tag, rdn, _ in _children(content):
        atvs = _children(rdn)
        if tag != 0x31 or len(atvs) != 1 or atvs[0][0] != 0x30:
            raise _bad("an RDN must be a SET of exactly one attribute")
        parts = _children(atvs[0][1])
        if len(parts) != 2 or parts[0][0] != 0x06:
            raise _bad("an attribute must be an OID and a value")
        _oid(parts[0][1])
        kind, value, _ = parts[1]
        if kind == UTF8STRING:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad("invalid UTF-8 in a name") from None
        elif kind != PRINTABLESTRING or not _PRINTABLE.fullmatch(value):
            raise _bad("a name value must be a UTF8String or a valid PrintableString")


def _check_time(tag: int, value: bytes) -> None:
    if tag == 0x17 and _UTC.fullmatch(value):
        year = int(value[:2]) + (1900 if int(value[:2]) >= 50 else 2000)
        rest = value[2:12]
    elif tag == 0x18 and _GENERALIZED.fullmatch(value):
        year, rest = int(value[:4]), value[4:14]
        if year < 2050:
            raise _bad("GeneralizedTime before 2050 (RFC 5280 4.1.2.5)")
    else:
        raise _bad("a time must be UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ")
    try:
        dt.datetime(year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8]), int(rest[8:10]))
    except ValueError:
        raise _bad("not a calendar time") from None


def _check_extensions(content: bytes) -> None:
    """[3] { SEQUENCE SIZE (1..) OF Extension }, each OID once; extension values are not interpreted."""
    extensions = _children(_only(content, 0x30))
    seen: set[bytes] = set()
    if not extensions:
        raise _bad("empty extensions")
    for tag, ext, _ in extensions:
        parts = _children(ext)
        if tag != 0x30 or not 2 <= len(parts) <= 3 or parts[0][0] != 0x06 or parts[-1][0] != 0x04:
            raise _bad("an extension must be SEQUENCE { OID, [BOOLEAN,] OCTET STRING }")
        if len(parts) == 3 and parts[1][2] != b"\x01\x01\xff":
            raise _bad("critical must be omitted or DER TRUE (01 01 ff)")
        _oid(parts[0][1])
        if parts[0][1] in seen:
            raise _bad("an extension appears twice")
        seen.add(parts[0][1])


def _check_serial(content: bytes) -> None:
    """A minimal, positive INTEGER of at most 20 content octets (RFC 5280 4.1.2.2)."""
    if not content or len(content) > 20 or content[0] & 0x80 or not any(content):
        raise _bad("the serial must be a positive INTEGER of at most 20 octets")
    if len(content) > 1 and content[0] == 0 and not content[1] & 0x80:
        raise _bad("the serial must be a minimal INTEGER")


def _check_key(spki: bytes, what: str) -> None:
    """Exactly an Ed25519 SubjectPublicKeyInfo whose key is a canonical encoding (y < p).

    OpenSSL reads y modulo p, so it verifies under a non-canonical encoding of a
    small-order point; the JDK refuses to decode it. Refusing it here gives one verdict.
    """
    if len(spki) != 44 or spki[:12] != ED25519_SPKI_PREFIX:
        raise _bad(f"{what} must be exactly an Ed25519 SubjectPublicKeyInfo")
    if int.from_bytes(spki[12:], "little") & ((1 << 255) - 1) >= P:
        raise _bad(f"{what} is not a canonical Ed25519 encoding (y >= p)")


def check_certificate_der(der: bytes) -> None:
    """Raise InvalidCertificateError unless ``der`` is exactly one certificate of the §5.6 profile."""
    outer = _children(_only(der, 0x30))
    if len(outer) != 3 or outer[0][0] != 0x30:
        raise _bad("a certificate is SEQUENCE { TBSCertificate, algorithm, signature }")
    if outer[1][2] != ED25519_ALGORITHM or outer[2][0] != 0x03 or outer[2][1][:1] != b"\x00" or len(outer[2][1]) != 65:
        raise _bad("not exactly Ed25519-signed")
    tbs = _children(outer[0][1])
    if len(tbs) < 7 or tbs[0][2] != V3 or tbs[1][0] != 0x02 or tbs[2][2] != ED25519_ALGORITHM:
        raise _bad("TBSCertificate must start with version v3, a serial and the Ed25519 algorithm")
    _check_serial(tbs[1][1])
    for index in (3, 5):
        if tbs[index][0] != 0x30:
            raise _bad("issuer and subject must be Names")
        _check_name(tbs[index][1])
    validity = _children(tbs[4][1]) if tbs[4][0] == 0x30 else []
    if len(validity) != 2:
        raise _bad("validity must be SEQUENCE { notBefore, notAfter }")
    for tag, value, _ in validity:
        _check_time(tag, value)
    _check_key(tbs[6][2], "the subject key")
    rest = tbs[7:]
    if len(rest) > 1 or (rest and rest[0][0] != 0xA3):
        raise _bad("only extensions may follow the subject key (no unique identifiers)")
    if rest:
        _check_extensions(rest[0][1])


def check_csr_der(der: bytes) -> None:
    """Raise InvalidCertificateError unless ``der`` is exactly one CSR of the §5.4 profile."""
    outer = _children(_only(der, 0x30))
    if len(outer) != 3 or outer[0][0] != 0x30:
        raise _bad("a CSR is SEQUENCE { CertificationRequestInfo, algorithm, signature }")
    if outer[1][2] != ED25519_ALGORITHM or outer[2][0] != 0x03 or outer[2][1][:1] != b"\x00" or len(outer[2][1]) != 65:
        raise _bad("CSR not exactly Ed25519-signed")
    info = _children(outer[0][1])
    if len(info) != 4 or info[0][2] != CSR_V1 or info[1][0] != 0x30 or info[3][2] != b"\xa0\x00":
        raise _bad("CertificationRequestInfo must be { version 0, subject, key, empty attributes [0] }")
    _check_name(info[1][1])
    _check_key(info[2][2], "the CSR key")
