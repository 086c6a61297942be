"""mesh/tls.py, mesh/brokers/security.py: the credential a home shows a secured broker, and what the broker gets."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID

from mesh.brokers.security import issue_broker_security
from mesh.errors import ConfigurationError
from mesh.home import NodeConfig, NodeHome, create_federation
from mesh.identity import load_cert_pem
from mesh.tls import PRINCIPAL_MAPPING_RULES, client_context, credential_of
from services.registry.acls import auditor_names, issue_auditor


@pytest.fixture
def operator(tmp_path: Path) -> NodeHome:
    config = NodeConfig(node_id="op", name="Operator", institution="Fed", platform="interfed", role="operator")
    return create_federation(tmp_path / "op", "fed", config)


def member(tmp_path: Path, operator: NodeHome, node_id: str = "bank") -> NodeHome:
    config = NodeConfig(node_id=node_id, name=node_id, institution="Bank", platform="fate")
    return NodeHome.create(tmp_path / node_id, config, operator.federation_path)


def test_a_home_shows_its_auditor_credential_else_its_certificate_else_the_applicant_credential(
    tmp_path: Path, operator: NodeHome
) -> None:
    home = member(tmp_path, operator)
    assert credential_of(home).kind == "applicant"
    with pytest.raises(ConfigurationError, match=r"node\.pem is missing: this node has no certificate yet"):
        credential_of(home, applicant=False)
    home.cert_path.write_bytes(operator.cert_path.read_bytes())  # any certificate file: only its presence counts here
    assert credential_of(home).kind == "node"
    assert credential_of(home, applicant=True).kind == "applicant"  # applying again after a termination
    issue_auditor(operator, "audit-1", home)
    assert credential_of(home).kind == "client"
    assert auditor_names(operator) == ["audit-1"]


def test_the_applicant_credential_is_a_tls_client_certificate_of_the_root(operator: NodeHome) -> None:
    cert = load_cert_pem(operator.federation_path / "applicant.pem")
    root = operator.federation().root
    assert cert.issuer == root.subject
    root_key = root.public_key()
    assert isinstance(root_key, Ed25519PublicKey)
    root_key.verify(cert.signature, cert.tbs_certificate_bytes)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.subject.rfc4514_string() == "OU=applicant,CN=applicant"


def test_a_key_others_may_read_is_refused_before_any_connection(tmp_path: Path, operator: NodeHome) -> None:
    home = member(tmp_path, operator)
    credential = credential_of(home)
    credential.key.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        client_context(home.federation_path / "root.pem", credential)
    credential.key.chmod(0o600)
    client_context(home.federation_path / "root.pem", credential)


def test_the_broker_certificate_names_its_hosts_and_its_settings_name_the_operators_super_users(
    tmp_path: Path, operator: NodeHome
) -> None:
    security = issue_broker_security(operator, tmp_path / "tls", ["kafka1.example", "10.0.0.5"])
    assert security.keystore.stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(security.keystore.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["kafka1.example"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    settings = security.properties()
    assert settings["super.users"] == "User:op;User:OU=broker,CN=broker"
    assert settings["ssl.client.auth"] == "required"
    assert settings["ssl.enabled.protocols"] == "TLSv1.3"
    assert settings["ssl.principal.mapping.rules"] == PRINCIPAL_MAPPING_RULES
    assert settings["allow.everyone.if.no.acl.found"] == "false"
    with pytest.raises(ConfigurationError, match="holds no root key"):
        issue_broker_security(member(tmp_path, operator), tmp_path / "other")
