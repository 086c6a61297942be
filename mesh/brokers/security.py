"""A secured Kafka listener for one federation: the broker's certificate, its trust, and the settings that go with them.

The same settings secure the launcher's single-node broker (``interfed broker up --kind kafka --secure``) and an
existing cluster (``interfed broker credentials``, docs/operations.md "Securing the broker"): mutual TLS 1.3
against the federation root, principals mapped from certificates (mesh/tls.py), and KRaft's StandardAuthorizer
with the federation's operators and the broker as its only super users; everyone else gets what the ACLs say
(``interfed broker acls``).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from mesh.errors import ConfigurationError
from mesh.home import NodeHome
from mesh.identity import load_private_key
from mesh.tls import BROKER, PRINCIPAL_MAPPING_RULES, generate_tls_key, issue_tls_certificate, pem_key, principal

STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
LOCAL_HOSTS = ("127.0.0.1", "localhost")

KEYSTORE = "broker.keystore.pem"
TRUSTSTORE = "truststore.pem"


@dataclass(frozen=True)
class BrokerSecurity:
    """Files and principals of one federation's secured listener."""

    keystore: Path  # the broker's key (PKCS#8) then its certificate, PEM: Kafka's PEM key store
    truststore: Path  # the federation root, PEM
    super_users: tuple[str, ...]

    def properties(self) -> dict[str, str]:
        """The broker settings besides the listener itself (which is ``SSL://host:port``)."""
        return {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.truststore),
            "ssl.client.auth": "required",
            "ssl.protocol": "TLSv1.3",
            "ssl.enabled.protocols": "TLSv1.3",
            "ssl.principal.mapping.rules": PRINCIPAL_MAPPING_RULES,
            "authorizer.class.name": STANDARD_AUTHORIZER,
            "super.users": ";".join(self.super_users),
            "allow.everyone.if.no.acl.found": "false",
        }

    def client_context(self) -> ssl.SSLContext:
        """A TLS context holding the broker's own credential: how the launcher asks whether it is ready."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.truststore))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_cert_chain(str(self.keystore))
        return context


def issue_broker_security(operator: NodeHome, folder: Path, hosts: Sequence[str] = LOCAL_HOSTS) -> BrokerSecurity:
    """Issue the broker a certificate for ``hosts`` under the root of ``operator``'s federation, into ``folder``."""
    if not operator.root_key_path.is_file():
        raise ConfigurationError(
            f"{operator.path} holds no root key: a secured broker's certificate is issued by the federation "
            "operator; pass the operator's --home"
        )
    if not hosts:
        raise ConfigurationError("a broker certificate names at least one host (--host)")
    folder = folder.resolve()  # the broker reads these paths from its own working directory
    federation = operator.federation()
    root_key = load_private_key(operator.root_key_path)
    key = generate_tls_key()
    cert = issue_tls_certificate(root_key, federation.root, key, cn=BROKER, ou=BROKER, hosts=hosts)
    folder.mkdir(parents=True, exist_ok=True)
    keystore = folder / KEYSTORE
    keystore.unlink(missing_ok=True)
    fd = os.open(keystore, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem_key(key) + cert.public_bytes(serialization.Encoding.PEM))
    truststore = folder / TRUSTSTORE
    truststore.write_bytes(federation.root.public_bytes(serialization.Encoding.PEM))
    operators = [principal(op.node_id, "operator") for op in federation.operators]
    return BrokerSecurity(keystore, truststore, (*operators, principal(BROKER, BROKER)))
