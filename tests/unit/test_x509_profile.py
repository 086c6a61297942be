"""mesh.x509_profile: the one X.509 shape every party accepts (protocol.md §5.4, §5.6), and identity.json."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from mesh.errors import InvalidCertificateError
from mesh.identity import (
    check_certificate,
    generate_key,
    issue_certificate,
    load_certificate_der,
    load_csr,
    make_csr,
    make_root,
    now,
)
from mesh.x509_profile import check_certificate_der, check_csr_der

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "identity.json").read_text(encoding="utf-8"))
ROOT = load_certificate_der(bytes.fromhex(VECTORS["root_der_hex"]))
CASES = {(c["kind"], c["name"]): c for c in VECTORS["cases"]}
DER = serialization.Encoding.DER


def _judge(kind: str, der: bytes) -> None:
    if kind == "certificate":
        check_certificate(load_certificate_der(der), ROOT)
    else:
        load_csr(der)


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: f"{c['kind']}-{c['name']}")
def test_every_identity_vector_gets_its_verdict(case: dict[str, object]) -> None:
    der = bytes.fromhex(str(case["der_hex"]))
    if case["verdict"] == "reject":
        with pytest.raises(InvalidCertificateError):
            _judge(str(case["kind"]), der)
    elif case["kind"] == "certificate":
        cert = check_certificate(load_certificate_der(der), ROOT)
        assert (cert.node_id, cert.role, cert.serial) == (case["node_id"], case["role"], case["serial"])
        assert (cert.not_before, cert.not_after) == (case["not_before_ms"], case["not_after_ms"])
    else:
        load_csr(der)


@pytest.mark.parametrize("name", ["serial_negative", "serial_zero", "key_unused_bits", "issuer_unique_id"])
def test_what_cryptography_lets_through_is_refused(name: str) -> None:
    # cryptography 48 parses each of these; a JDK or Go party would not, so the profile refuses them
    der = bytes.fromhex(CASES["certificate", name]["der_hex"])
    load_certificate_der(der)
    with pytest.raises(InvalidCertificateError, match="profile"):
        check_certificate_der(der)


def test_csr_with_unused_key_bits_or_attributes_is_refused() -> None:
    for name in ("key_unused_bits", "attributes_not_empty"):
        with pytest.raises(InvalidCertificateError, match="profile"):
            check_csr_der(bytes.fromhex(CASES["csr", name]["der_hex"]))


@pytest.mark.parametrize("years", [10, 40])
def test_what_the_reference_issues_fits_the_profile(years: int) -> None:
    # 40 years reach past 2049, where notAfter becomes a GeneralizedTime
    root_key, node_key = generate_key(), generate_key()
    root = make_root("fed", root_key, years=years)
    csr = make_csr(node_key, "node-a", "Example Hospital")
    check_csr_der(csr.public_bytes(DER))
    cert = issue_certificate(root_key, root, csr, "node", now() + dt.timedelta(days=365 * years))
    check_certificate_der(root.public_bytes(DER))
    check_certificate_der(cert.public_bytes(DER))
    assert check_certificate(cert, root).node_id == "node-a"
