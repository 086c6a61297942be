"""mesh.identity and mesh.home: keys, root, CSRs, certificates and their checks; node homes; the sequence counter."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from mesh.errors import ConfigurationError, IdentityError, InvalidCertificateError
from mesh.home import Federation, NodeConfig, NodeHome, SequenceCounter, create_federation
from mesh.identity import (
    check_certificate,
    generate_key,
    issue_certificate,
    load_certificate_der,
    load_csr,
    load_private_key,
    make_csr,
    make_root,
    now,
    raw_public_key,
    save_private_key,
)

ROOT_KEY = generate_key()
ROOT = make_root("example-fed", ROOT_KEY)
NODE_KEY = generate_key()
CSR = make_csr(NODE_KEY, "node-a", "Example Hospital")
IN_30_DAYS = now() + dt.timedelta(days=30)
CERT = issue_certificate(ROOT_KEY, ROOT, CSR, "node", IN_30_DAYS)
CERT_DER = CERT.public_bytes(serialization.Encoding.DER)
CSR_DER = CSR.public_bytes(serialization.Encoding.DER)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _flips(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    for position in range(len(data)):
        tampered = bytearray(data)
        tampered[position] ^= 0x01
        out.append((position, bytes(tampered)))
    return out


# -- root, CSR, certificate ------------------------------------------------------------------


def test_root_is_a_self_signed_ca_named_after_the_federation() -> None:
    assert ROOT.subject == ROOT.issuer
    assert ROOT.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "example-fed"
    assert ROOT.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ROOT_KEY.public_key().verify(ROOT.signature, ROOT.tbs_certificate_bytes)
    assert ROOT.not_valid_before_utc <= now() < ROOT.not_valid_after_utc


def test_csr_issue_and_check_round_trip() -> None:
    """A CSR from a node key becomes a certificate that check_certificate reads back: id, role, org, key."""
    csr = load_csr(CSR_DER)
    assert raw_public_key(csr.public_key()) == raw_public_key(NODE_KEY.public_key())  # type: ignore[arg-type]
    node = check_certificate(load_certificate_der(CERT_DER), ROOT)
    assert node.node_id == "node-a"
    assert node.role == "node"
    assert node.institution == "Example Hospital"
    assert node.public_key == raw_public_key(NODE_KEY.public_key())
    assert node.serial == format(CERT.serial_number, "x")
    assert node.der == CERT_DER
    assert node.not_before <= now().timestamp() * 1000 <= node.not_after
    assert node.valid_at(node.not_before)
    assert node.valid_at(node.not_after)
    assert not node.valid_at(node.not_after + 1)
    assert not node.valid_at(node.not_before - 1)


def test_operator_role_is_carried_in_the_certificate() -> None:
    cert = issue_certificate(ROOT_KEY, ROOT, CSR, "operator", IN_30_DAYS)
    assert check_certificate(cert, ROOT).role == "operator"


def test_issued_certificate_never_outlives_the_root() -> None:
    cert = issue_certificate(ROOT_KEY, ROOT, CSR, "node", ROOT.not_valid_after_utc + dt.timedelta(days=3650))
    assert cert.not_valid_after_utc == ROOT.not_valid_after_utc


def test_certificate_from_another_root_with_the_same_name_is_refused() -> None:
    """Same federation name, so same issuer name: only the signature tells them apart."""
    impostor_key = generate_key()
    impostor = make_root("example-fed", impostor_key)
    assert impostor.subject == ROOT.subject
    cert = issue_certificate(impostor_key, impostor, CSR, "node", IN_30_DAYS)
    with pytest.raises(InvalidCertificateError, match="does not verify"):
        check_certificate(cert, ROOT)


def test_certificate_from_another_federation_is_refused() -> None:
    other_key = generate_key()
    cert = issue_certificate(other_key, make_root("other-fed", other_key), CSR, "node", IN_30_DAYS)
    with pytest.raises(InvalidCertificateError, match="not issued by"):
        check_certificate(cert, ROOT)


def test_certificate_with_a_tampered_signature_is_refused() -> None:
    tampered = CERT_DER[:-1] + bytes([CERT_DER[-1] ^ 0x01])
    with pytest.raises(InvalidCertificateError):
        check_certificate(load_certificate_der(tampered), ROOT)


def test_no_single_byte_change_of_a_certificate_passes_the_check() -> None:
    """Every position: a certificate one byte off is not accepted (the outer signatureAlgorithm included).

    RFC 5280 4.1.1.2: the outer signatureAlgorithm must equal the signed one, or one certificate
    has several encodings (and DER digests) that all check.
    """
    accepted = []
    for position, tampered in _flips(CERT_DER):
        try:
            check_certificate(load_certificate_der(tampered), ROOT)
        except Exception:  # which error is raised is the next test's business
            continue
        accepted.append(position)
    assert accepted == [], f"byte positions whose change still checks: {accepted}"


def test_a_corrupt_certificate_is_refused_with_invalid_certificate_error_only() -> None:
    """Whatever the corruption, loading and checking raise InvalidCertificateError, never a library error."""
    others = []
    for position, tampered in _flips(CERT_DER):
        try:
            check_certificate(load_certificate_der(tampered), ROOT)
        except InvalidCertificateError:
            pass
        except Exception as exc:  # collected, reported below
            others.append((position, type(exc).__name__))
    assert others == [], f"(byte position, exception) pairs: {others}"


@pytest.mark.parametrize("der", [b"", b"\x30\x00", b"not a certificate", CERT_DER[:-10]])
def test_garbage_certificate_bytes_are_invalid_certificate(der: bytes) -> None:
    with pytest.raises(InvalidCertificateError):
        load_certificate_der(der)


def test_certificate_without_a_role_is_refused() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node-a")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ROOT.subject)
        .public_key(NODE_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now())
        .not_valid_after(IN_30_DAYS)
        .sign(ROOT_KEY, None)
    )
    with pytest.raises(InvalidCertificateError, match="role"):
        check_certificate(cert, ROOT)


def test_csr_signed_by_another_key_is_refused() -> None:
    """The CSR's signature is replaced by another key's over the same request: is_signature_valid is false."""
    forged_signature = generate_key().sign(CSR.tbs_certrequest_bytes)
    assert CSR_DER.endswith(CSR.signature)
    forged = CSR_DER[: -len(CSR.signature)] + forged_signature
    assert not x509.load_der_x509_csr(forged).is_signature_valid
    with pytest.raises(InvalidCertificateError, match="not signed by its own key"):
        load_csr(forged)


def test_csr_with_a_non_ed25519_key_is_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node-a")]))
        .sign(ec_key, hashes.SHA256())
    )
    with pytest.raises(InvalidCertificateError, match="Ed25519"):
        load_csr(csr.public_bytes(serialization.Encoding.DER))


@pytest.mark.parametrize("der", [b"", b"\x30\x00", b"garbage", CSR_DER[:-1]])
def test_garbage_csr_bytes_are_invalid_certificate(der: bytes) -> None:
    with pytest.raises(InvalidCertificateError):
        load_csr(der)


def test_a_corrupt_csr_is_refused_with_invalid_certificate_error_only() -> None:
    """Whatever byte of a CSR is changed, load_csr raises InvalidCertificateError, never a library error."""
    others = []
    for position, tampered in _flips(CSR_DER):
        try:
            load_csr(tampered)
        except InvalidCertificateError:
            pass
        except Exception as exc:  # collected, reported below
            others.append((position, type(exc).__name__))
    assert others == [], f"(byte position, exception) pairs: {others}"


def test_csr_without_a_common_name_cannot_be_issued() -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Hospital")]))
        .sign(NODE_KEY, None)
    )
    with pytest.raises(InvalidCertificateError, match="common name"):
        issue_certificate(ROOT_KEY, ROOT, csr, "node", IN_30_DAYS)


# -- private key files -----------------------------------------------------------------------


def test_private_key_file_is_created_0600_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "node.key"
    save_private_key(NODE_KEY, path)
    assert _mode(path) == 0o600
    assert raw_public_key(load_private_key(path).public_key()) == raw_public_key(NODE_KEY.public_key())


def test_private_key_file_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        save_private_key(NODE_KEY, tmp_path / "node.key")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "node.key") == 0o600


def test_save_private_key_never_overwrites_an_existing_file(tmp_path: Path) -> None:
    save_private_key(NODE_KEY, tmp_path / "node.key")
    with pytest.raises(FileExistsError):
        save_private_key(generate_key(), tmp_path / "node.key")
    assert raw_public_key(load_private_key(tmp_path / "node.key").public_key()) == raw_public_key(NODE_KEY.public_key())


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_load_private_key_refuses_a_file_others_can_read(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    save_private_key(NODE_KEY, path)
    path.chmod(mode)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_private_key(path)


def test_load_private_key_refuses_a_non_ed25519_key(tmp_path: Path) -> None:
    path = tmp_path / "ec.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(IdentityError, match="Ed25519"):
        load_private_key(path)


# -- node homes ------------------------------------------------------------------------------


def _operator(node_id: str = "op") -> NodeConfig:
    return NodeConfig(node_id=node_id, name="Operator", institution="Consortium", platform="interfed", role="operator")


def _member(node_id: str = "node-a") -> NodeConfig:
    return NodeConfig(node_id=node_id, name="Node A", institution="Example Hospital", platform="fate")


def test_create_federation_lays_out_the_operator_home(tmp_path: Path) -> None:
    home = create_federation(tmp_path / "op", "example-fed", _operator(), agreement="We agree.\n")
    assert {p.relative_to(home.path).as_posix() for p in home.path.rglob("*")} == {
        "node.json",
        "node.key",
        "node.pem",
        "root.key",
        "federation",
        "federation/root.pem",
        "federation/agreement.txt",
        "federation/operator-op.pem",
        "federation/applicant.pem",
        "federation/applicant.key",
    }
    assert _mode(home.key_path) == 0o600
    assert _mode(home.root_key_path) == 0o600
    assert _mode(home.federation_path / "applicant.key") == 0o600
    assert home.config() == _operator()
    cert = home.certificate()
    assert cert is not None
    assert (cert.node_id, cert.role) == ("op", "operator")
    fed = home.federation()
    assert [o.node_id for o in fed.operators] == ["op"]
    assert fed.agreement == b"We agree.\n"
    root_key = load_private_key(home.root_key_path)
    root_key.public_key().verify(fed.root.signature, fed.root.tbs_certificate_bytes)


def test_create_federation_needs_an_operator_and_a_fresh_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="operator"):
        create_federation(tmp_path / "a", "example-fed", _member())
    create_federation(tmp_path / "b", "example-fed", _operator())
    with pytest.raises(ConfigurationError, match="already"):
        create_federation(tmp_path / "b", "example-fed", _operator())


def test_member_home_holds_its_own_key_and_the_federation_folder(tmp_path: Path) -> None:
    op = create_federation(tmp_path / "op", "example-fed", _operator())
    home = NodeHome.create(tmp_path / "node-a", _member(), op.federation_path)
    files = {p.relative_to(home.path).as_posix() for p in home.path.rglob("*")}
    assert files == {
        "node.json",
        "node.key",
        "federation",
        "federation/root.pem",
        "federation/agreement.txt",
        "federation/operator-op.pem",
        "federation/applicant.pem",
        "federation/applicant.key",
    }
    assert _mode(home.key_path) == 0o600
    assert _mode(home.federation_path / "applicant.key") == 0o600  # the copy is as closed as the original
    for name in ("root.pem", "agreement.txt", "operator-op.pem", "applicant.pem", "applicant.key"):
        assert (home.federation_path / name).read_bytes() == (op.federation_path / name).read_bytes()
    assert home.certificate() is None
    assert raw_public_key(home.key().public_key()) != raw_public_key(op.key().public_key())
    csr = load_csr(home.csr_der())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node-a"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example Hospital"
    assert raw_public_key(csr.public_key()) == raw_public_key(home.key().public_key())  # type: ignore[arg-type]


def test_member_home_takes_its_issued_certificate(tmp_path: Path) -> None:
    op = create_federation(tmp_path / "op", "example-fed", _operator())
    home = NodeHome.create(tmp_path / "node-a", _member(), op.federation_path)
    fed = op.federation()
    cert = issue_certificate(load_private_key(op.root_key_path), fed.root, load_csr(home.csr_der()), "node", IN_30_DAYS)
    home.store_certificate(cert)
    mine = home.certificate()
    assert mine is not None
    assert (mine.node_id, mine.role) == ("node-a", "node")


def test_member_home_refuses_a_certificate_for_another_key(tmp_path: Path) -> None:
    op = create_federation(tmp_path / "op", "example-fed", _operator())
    home = NodeHome.create(tmp_path / "node-a", _member(), op.federation_path)
    other_csr = make_csr(generate_key(), "node-a", "Example Hospital")
    cert = issue_certificate(load_private_key(op.root_key_path), op.federation().root, other_csr, "node", IN_30_DAYS)
    home.store_certificate(cert)
    with pytest.raises(IdentityError):
        home.certificate()


def test_node_home_create_refuses_an_existing_home_or_a_non_federation(tmp_path: Path) -> None:
    op = create_federation(tmp_path / "op", "example-fed", _operator())
    NodeHome.create(tmp_path / "node-a", _member(), op.federation_path)
    with pytest.raises(ConfigurationError, match="already"):
        NodeHome.create(tmp_path / "node-a", _member(), op.federation_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigurationError, match="no federation"):
        NodeHome.create(tmp_path / "node-b", _member("node-b"), tmp_path / "empty")
    assert not (tmp_path / "node-b").exists()


def test_node_home_config_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a node home"):
        NodeHome(tmp_path).config()
    (tmp_path / "node.json").write_text(
        json.dumps({"node_id": "Bad Id!", "name": "x", "institution": "y", "platform": "z"}), encoding="utf-8"
    )
    with pytest.raises(ConfigurationError, match="node_id"):
        NodeHome(tmp_path).config()


@pytest.mark.parametrize("node_id", ["", "Node-A", "-a", "a" * 64, "a b", "a/b"])
def test_node_ids_outside_the_pattern_are_refused(node_id: str) -> None:
    with pytest.raises(ValidationError):
        _member(node_id)


def test_federation_load_refuses_a_folder_without_a_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"root\.pem"):
        Federation.load(tmp_path)


# -- sequence counter ------------------------------------------------------------------------


def test_sequence_counter_is_strictly_increasing_across_two_processes_sharing_the_file(tmp_path: Path) -> None:
    """Two counters on one file (two processes of one node) never hand out the same or a smaller number."""
    path = tmp_path / "state" / "sequence"
    first, second = SequenceCounter(path), SequenceCounter(path)
    try:
        issued = [counter.next() for _ in range(50) for counter in (first, second, second, first, first)]
    finally:
        first.close()
        second.close()
    assert issued == sorted(set(issued))
    assert _mode(path) == 0o600


def test_sequence_counter_never_repeats_under_concurrent_use(tmp_path: Path) -> None:
    path = tmp_path / "sequence"
    counters = [SequenceCounter(path) for _ in range(4)]
    results: list[list[int]] = [[] for _ in counters]

    def run(i: int) -> None:
        results[i].extend(counters[i].next() for _ in range(300))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(counters))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for counter in counters:
        counter.close()
    everything = [n for r in results for n in r]
    assert len(set(everything)) == len(everything)
    for r in results:
        assert r == sorted(r)
        assert len(set(r)) == len(r)


def test_sequence_counter_skips_ahead_by_sync_every_on_reopen(tmp_path: Path) -> None:
    """Numbers possibly lost to a power cut (not yet fsynced) are never issued again after a restart."""
    path = tmp_path / "sequence"
    counter = SequenceCounter(path)
    first = counter.next()
    last = [counter.next() for _ in range(10)][-1]
    counter.close()
    assert first >= 1
    reopened = SequenceCounter(path)
    try:
        after = reopened.next()
    finally:
        reopened.close()
    assert after == last + SequenceCounter.SYNC_EVERY + 1


def test_node_home_sequence_lives_in_its_state_folder(tmp_path: Path) -> None:
    op = create_federation(tmp_path / "op", "example-fed", _operator())
    counter = op.sequence()
    try:
        n = counter.next()
    finally:
        counter.close()
    assert int((op.state_path / "sequence").read_text(encoding="ascii")) == n
