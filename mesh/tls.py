"""Reaching a secured broker: TLS certificates the federation root issues for it, and clients' TLS contexts.

A secured Apache Kafka listener (docs/operations.md, "Securing the broker") asks every client for a
certificate issued by the federation root, and names the client (its Kafka principal) by it:

| certificate | held by | principal |
|---|---|---|
| ``node.pem``, ``node.key`` (the node's certificate, §5.2) | a member, an operator | ``User:<node id>`` |
| ``federation/applicant.pem``, ``applicant.key`` | every applicant (one for all) | ``User:OU=applicant,CN=applicant`` |
| ``tls/client.pem``, ``client.key`` | an auditor the operator issued it to | ``User:OU=auditor,CN=<name>`` |
| the broker's own | the broker (server, and client of itself) | ``User:OU=broker,CN=broker`` |

The node's certificate is its broker credential: the operator issues it at approval for the key of the
join request's CSR, so it learns nothing new and nothing new travels (docs/protocol.md §5.7). The
others are ECDSA P-256 certificates the operator issues itself, for TLS only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh.errors import BrokerAccessError, ConfigurationError

if TYPE_CHECKING:
    from mesh.home import NodeHome

#: Kafka's ``ssl.principal.mapping.rules``: a node's or operator's certificate (``OU`` node or operator, after
#: an optional ``O``; RFC 2253 lists the RDNs last first) is ``User:<CN>``; any other certificate keeps its whole
#: name, which no node id can equal (node ids have no ``=`` or ``,``). Anchored at both ends, so an ``O`` the
#: applicant chose cannot forge the ``OU`` or ``CN`` after it (RFC 2253 escapes the commas inside a value).
PRINCIPAL_MAPPING_RULES = "RULE:^(O=.*,)?OU=(node|operator),CN=([a-z0-9][a-z0-9._-]*)$/$3/,DEFAULT"

APPLICANT = "applicant"
AUDITOR = "auditor"
BROKER = "broker"
#: The applicant credential, in the federation folder (every applicant receives it with the folder).
APPLICANT_CERT, APPLICANT_KEY = "applicant.pem", "applicant.key"
#: A TLS-only credential in a home (an auditor's), which takes precedence over node.pem.
CLIENT_DIR, CLIENT_CERT, CLIENT_KEY = "tls", "client.pem", "client.key"

TlsKey = ec.EllipticCurvePrivateKey


def principal(cn: str, ou: str) -> str:
    """The Kafka principal the mapping rules give a certificate of subject ``CN=cn, OU=ou`` (and any O)."""
    return f"User:{cn}" if ou in ("node", "operator") else f"User:OU={ou},CN={cn}"


def generate_tls_key() -> TlsKey:
    """ECDSA P-256: what every TLS stack takes, Kafka's PEM key stores included (they refuse Ed25519 keys)."""
    return ec.generate_private_key(ec.SECP256R1())


def issue_tls_certificate(
    root_key: Ed25519PrivateKey,
    root: x509.Certificate,
    key: TlsKey,
    *,
    cn: str,
    ou: str,
    hosts: Sequence[str] = (),
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """A TLS certificate under the federation root for ``key``; it lasts as long as the root unless told.

    It allows client authentication, and server authentication for ``hosts`` (IP addresses or DNS
    names) when there are any.
    """
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if hosts else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou)]
            )
        )
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(not_after or root.not_valid_after_utc, root.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False)
    return builder.sign(root_key, None)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def write_credential(key: TlsKey, cert: x509.Certificate, key_path: Path, cert_path: Path) -> None:
    """Write a TLS key (PKCS#8 PEM, created 0600) and its certificate (PEM), replacing any earlier pair."""
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.unlink(missing_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def pem_key(key: TlsKey) -> bytes:
    """A TLS key as unencrypted PKCS#8 PEM (what Kafka's PEM key store and Python's ssl read)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def issue_applicant_credential(root_key: Ed25519PrivateKey, root: x509.Certificate, federation: Path) -> None:
    """The one credential every applicant uses until approved, written into the federation folder."""
    key = generate_tls_key()
    cert = issue_tls_certificate(root_key, root, key, cn=APPLICANT, ou=APPLICANT)
    write_credential(key, cert, federation / APPLICANT_KEY, federation / APPLICANT_CERT)


@dataclass(frozen=True)
class Credential:
    """The certificate and key a party shows the broker, and what kind they are."""

    kind: Literal["node", "client", "applicant"]
    cert: Path
    key: Path

    def __str__(self) -> str:
        return f"{self.cert} ({self.kind} certificate)"


def credential_of(home: NodeHome, applicant: bool | None = None) -> Credential:
    """Which credential ``home`` reaches a secured broker with.

    ``applicant`` None: a TLS-only credential (``tls/client.pem``) if the home has one, else the node's
    certificate once approved, else the federation's applicant credential. True: the applicant credential
    (applying again after a termination). False: a certificate is required; its absence is one line.
    """
    client = home.path / CLIENT_DIR
    if not applicant:
        if (client / CLIENT_CERT).is_file():
            return Credential("client", client / CLIENT_CERT, client / CLIENT_KEY)
        if home.cert_path.is_file():
            return Credential("node", home.cert_path, home.key_path)
        if applicant is False:
            raise ConfigurationError(
                f"INTERFED_TLS is set and {home.cert_path} is missing: this node has no certificate yet, and only "
                "a member reaches the federation's topics; request to join ('interfed node join') and run "
                "'interfed node up' until the operator approves it"
            )
    cert = home.federation_path / APPLICANT_CERT
    if not cert.is_file():
        raise ConfigurationError(
            f"INTERFED_TLS is set and {home.path} has no certificate: neither {home.cert_path} nor the federation's "
            f"applicant credential ({cert}); ask the operator for the federation folder of the secured federation"
        )
    return Credential("applicant", cert, home.federation_path / APPLICANT_KEY)


def client_context(root_pem: Path, credential: Credential) -> ssl.SSLContext:
    """TLS 1.3, the broker's certificate checked against the federation root and its name, ``credential`` shown."""
    mode = credential.key.stat().st_mode & 0o777 if credential.key.exists() else 0
    if mode & 0o077:
        raise ConfigurationError(
            f"{credential.key} is readable by others (mode {mode:o}); run: chmod 600 {credential.key}"
        )
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(root_pem))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        context.load_cert_chain(str(credential.cert), str(credential.key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the TLS credential {credential}: {exc}") from None
    return context


def client_options(home: NodeHome, applicant: bool | None = None) -> tuple[dict[str, Any], Credential]:
    """aiokafka's options for ``home`` on a secured broker, and the credential they show."""
    credential = credential_of(home, applicant)
    context = client_context(home.federation_path / "root.pem", credential)
    return {"security_protocol": "SSL", "ssl_context": context}, credential


def _api_versions_request() -> bytes:
    client_id = b"interfed-tls-check"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def refusal(bootstrap: str, context: ssl.SSLContext, credential: Credential, timeout: float = 5.0) -> BrokerAccessError:
    """Why a TLS connection to ``bootstrap`` fails, as one line: the broker's certificate, or the broker refusing ours.

    In TLS 1.3 the server judges the client's certificate after the client has finished its handshake, so
    its verdict (an alert) arrives with the first answer; a Kafka ApiVersions request asks for one.
    """
    host, _, port = bootstrap.split(",", maxsplit=1)[0].strip().rpartition(":")
    where = f"the broker at {host}:{port}"
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.sendall(_api_versions_request())
            if tls.recv(4):
                return BrokerAccessError(f"{where} accepts {credential}, yet a client could not connect")
            why = "it closed the connection"
    except ssl.SSLCertVerificationError as exc:
        return BrokerAccessError(
            f"{where} is not the federation's: its certificate does not verify against the federation root "
            f"({exc.verify_message})"
        )
    except ssl.SSLError as exc:
        why = f"TLS alert {exc.reason or exc}"
    except (ConnectionError, TimeoutError) as exc:
        why = f"{type(exc).__name__}"
    except OSError as exc:
        return BrokerAccessError(f"cannot reach {where}: {exc.strerror or exc}")
    return BrokerAccessError(f"{where} refused {credential}: {why}")
