"""Federation and node identities: Ed25519 keys, X.509 certificates, CSRs and their checks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from mesh.errors import IdentityError, InvalidCertificateError
from mesh.private_files import create_private, read_private
from mesh.x509_profile import check_certificate_der, check_csr_der

Role = Literal["node", "operator"]
ROLES: tuple[Role, ...] = ("node", "operator")


def now() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(dt.UTC)


def generate_key() -> Ed25519PrivateKey:
    """A new Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def save_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write a PKCS#8 PEM key readable by its owner only (created 0600, never widened, never replaced)."""
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    create_private(path, data)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``; refused (PrivateFileError) if others than its owner may read the file."""
    key = serialization.load_pem_private_key(read_private(path), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{path} is not an Ed25519 key")
    return key


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key, as envelopes and certificates compare them."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def make_root(federation: str, key: Ed25519PrivateKey, years: int = 10) -> x509.Certificate:
    """The federation's self-signed root: the one certificate every party trusts."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{federation} root"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation),
        ]
    )
    start = now() - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, None)
    )


def make_csr(key: Ed25519PrivateKey, node_id: str, institution: str) -> x509.CertificateSigningRequest:
    """A certificate signing request for ``node_id`` of ``institution``, signed by ``key``."""
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, node_id), x509.NameAttribute(NameOID.ORGANIZATION_NAME, institution)]
    )
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, None)


def load_csr(der: bytes) -> x509.CertificateSigningRequest:
    """Parse a DER CSR and check it is an Ed25519 request signed by its own key."""
    # cryptography parses lazily and raises several types for damaged input; all mean one thing here.
    check_csr_der(der)
    try:
        csr = x509.load_der_x509_csr(der)
        key_ok = isinstance(csr.public_key(), Ed25519PublicKey)
        signed = key_ok and csr.is_signature_valid
        csr.subject  # noqa: B018 - parse the subject now, not in a caller
    except Exception as exc:
        raise InvalidCertificateError(f"CSR does not parse: {type(exc).__name__}: {exc}") from None
    if not key_ok:
        raise InvalidCertificateError("CSR key is not Ed25519")
    if not signed:
        raise InvalidCertificateError("CSR is not signed by its own key")
    return csr


def issue_certificate(
    root_key: Ed25519PrivateKey,
    root: x509.Certificate,
    csr: x509.CertificateSigningRequest,
    role: Role,
    not_after: dt.datetime,
) -> x509.Certificate:
    """Issue a node (or operator) certificate for a checked CSR; the role goes in the subject's OU."""
    cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    org = csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if not cn:
        raise InvalidCertificateError("CSR has no common name (node id)")
    attrs = [
        x509.NameAttribute(NameOID.COMMON_NAME, str(cn[0].value)),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
    ]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(org[0].value)))
    start = now() - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(root.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(not_after, root.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(root_key, None)
    )


@dataclass(frozen=True)
class NodeCertificate:
    """A certificate that verified against the federation root: who it names and with what key."""

    node_id: str
    role: Role
    institution: str
    serial: str
    public_key: bytes
    not_before: int
    not_after: int
    der: bytes

    def valid_at(self, millis: int) -> bool:
        """Whether ``millis`` (ms since the epoch) falls within the certificate's validity."""
        return self.not_before <= millis <= self.not_after


def _millis(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def check_certificate(cert: x509.Certificate, root: x509.Certificate) -> NodeCertificate:
    """Verify ``cert`` was issued by ``root`` and names a node; return what it says."""
    try:
        return _check_certificate(cert, root)
    except InvalidCertificateError:
        raise
    except Exception as exc:
        raise InvalidCertificateError(f"certificate does not parse: {type(exc).__name__}: {exc}") from None


def _check_certificate(cert: x509.Certificate, root: x509.Certificate) -> NodeCertificate:
    # One narrow profile, checked on the bytes: what cryptography lets through (unused key bits,
    # negative serials, unique identifiers, ...) another library would refuse, or the reverse.
    check_certificate_der(cert.public_bytes(serialization.Encoding.DER))
    if cert.issuer != root.subject:
        raise InvalidCertificateError("certificate is not issued by this federation's root")
    root_key = root.public_key()
    if not isinstance(root_key, Ed25519PublicKey):
        raise InvalidCertificateError("federation root key is not Ed25519")
    try:
        root_key.verify(cert.signature, cert.tbs_certificate_bytes)
    except InvalidSignature:
        raise InvalidCertificateError("certificate signature does not verify under the federation root") from None
    key = cert.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidCertificateError("certificate key is not Ed25519")
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    role = str(ou[0].value) if ou else ""
    if not cn or role not in ROLES:
        raise InvalidCertificateError("certificate names no node id or no role")
    return NodeCertificate(
        node_id=str(cn[0].value),
        role=role,
        institution=str(org[0].value) if org else "",
        serial=format(cert.serial_number, "x"),
        public_key=raw_public_key(key),
        not_before=_millis(cert.not_valid_before_utc),
        not_after=_millis(cert.not_valid_after_utc),
        der=cert.public_bytes(serialization.Encoding.DER),
    )


def load_certificate_der(der: bytes) -> x509.Certificate:
    """A certificate from DER bytes; ``InvalidCertificateError`` if they do not parse."""
    try:
        return x509.load_der_x509_certificate(der)
    except Exception as exc:
        raise InvalidCertificateError(f"certificate does not parse: {exc}") from None


def cert_pem(cert: x509.Certificate) -> bytes:
    """A certificate in PEM form."""
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert_pem(path: Path) -> x509.Certificate:
    """A certificate from a PEM file; ``IdentityError`` if it cannot be read."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise IdentityError(f"cannot read certificate {path}: {exc}") from None
