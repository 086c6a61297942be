"""A party's home directory: its configuration, keys, certificates and sequence counter."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mesh.errors import ConfigurationError, IdentityError
from mesh.identity import (
    NodeCertificate,
    Role,
    cert_pem,
    check_certificate,
    generate_key,
    issue_certificate,
    load_cert_pem,
    load_private_key,
    make_csr,
    make_root,
    raw_public_key,
    save_private_key,
)
from mesh.tls import issue_applicant_credential

NODE_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
NODE_ID_HINT = "a node id is 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"

DEFAULT_AGREEMENT = (
    "Federation agreement\n\n"
    "By applying to join, a party agrees that raw data never leaves its owner, that it signs every\n"
    "event it publishes, and that the federation's evidence log is the record of what happened.\n"
)


class NodeConfig(BaseModel):
    """What a party says about itself; kept in ``node.json`` in its home."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node_id: str = Field(pattern=NODE_ID_PATTERN)
    name: str = Field(min_length=1)
    institution: str = Field(min_length=1)
    platform: str = Field(min_length=1, description="the FL platform this node runs, e.g. fate")
    platform_version: str = "unknown"
    address: str = ""
    description: str = ""
    role: Role = "node"


@dataclass(frozen=True)
class Federation:
    """What every member holds about the federation: its root, its operators, and the agreement text."""

    root: x509.Certificate
    operators: tuple[NodeCertificate, ...]
    agreement: bytes

    @property
    def operator_ids(self) -> frozenset[str]:
        """The node ids of the federation's operators."""
        return frozenset(c.node_id for c in self.operators)

    @property
    def agreement_sha256(self) -> bytes:
        """The SHA-256 of the agreement text, which a member's join request carries."""
        return hashlib.sha256(self.agreement).digest()

    @classmethod
    def load(cls, folder: Path) -> Federation:
        """The federation a folder holds: its root certificate, operators and agreement."""
        if not (folder / "root.pem").is_file():
            raise ConfigurationError(f"{folder} holds no federation (root.pem missing)")
        root = load_cert_pem(folder / "root.pem")
        operators = tuple(check_certificate(load_cert_pem(p), root) for p in sorted(folder.glob("operator-*.pem")))
        return cls(root=root, operators=operators, agreement=(folder / "agreement.txt").read_bytes())


class SequenceCounter:
    """The per-sender sequence, shared by every process of one node through a locked file.

    Every ``next()`` is a locked read-increment-write, so processes of one node never
    reuse a number. Only every ``SYNC_EVERY``-th value is fsynced; on open the counter
    skips ahead by that much, so numbers lost to a power cut are never issued again.
    """

    SYNC_EVERY = 256

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._locked_update(self.SYNC_EVERY, sync=True)

    def _locked_update(self, step: int, sync: bool) -> int:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(self._fd, 32, 0)
            value = int(raw) if raw.strip() else 0
            value += step
            os.pwrite(self._fd, f"{value:020d}\n".encode(), 0)
            if sync or value % self.SYNC_EVERY == 0:
                os.fsync(self._fd)
            return value
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def next(self) -> int:
        """The next sequence number for this node's events, counted on disk."""
        return self._locked_update(1, sync=False)

    def close(self) -> None:
        """Release the counter file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class NodeHome:
    """Paths and loaders for one party's home directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

        self.config_path = path / "node.json"
        self.key_path = path / "node.key"
        self.cert_path = path / "node.pem"
        self.federation_path = path / "federation"
        self.root_key_path = path / "root.key"  # the operator's home only
        self.state_path = path / "state"
        self.log_path = path / "logs"

    def exists(self) -> bool:
        """Whether the folder is a node home (it has a node.json)."""
        return self.config_path.is_file()

    def config(self) -> NodeConfig:
        """The node's config (node.json); ``ConfigurationError`` if the folder is not a node home."""
        if not self.exists():
            raise ConfigurationError(
                f"{self.path} is not a node home (no node.json); create one with 'interfed node create'"
            )
        try:
            return NodeConfig.model_validate_json(self.config_path.read_text(encoding="utf-8"))
        except ValidationError as exc:
            raise ConfigurationError(
                f"{self.config_path}: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
            ) from None

    def key(self) -> Ed25519PrivateKey:
        """The node's Ed25519 private key."""
        return load_private_key(self.key_path)

    def federation(self) -> Federation:
        """The federation this node belongs to, from its copy in the home."""
        return Federation.load(self.federation_path)

    def certificate(self) -> NodeCertificate | None:
        """This node's own certificate, once issued, checked against the root and its own key."""
        if not self.cert_path.is_file():
            return None
        cert = check_certificate(load_cert_pem(self.cert_path), self.federation().root)
        if cert.public_key != raw_public_key(self.key().public_key()):
            raise IdentityError(f"{self.cert_path} does not certify this node's key")
        return cert

    def store_certificate(self, cert: x509.Certificate) -> None:
        """Keep the node's issued certificate, replacing the file at once."""
        tmp = self.cert_path.with_suffix(".tmp")
        tmp.write_bytes(cert_pem(cert))
        tmp.replace(self.cert_path)

    def sequence(self) -> SequenceCounter:
        """The counter of this node's sequence numbers."""
        return SequenceCounter(self.state_path / "sequence")

    @classmethod
    def create(cls, path: Path, config: NodeConfig, federation: Path) -> NodeHome:
        """Make a new home holding a fresh key and a copy of the federation's public material."""
        home = cls(path)
        if home.exists():
            raise ConfigurationError(f"{path} is already a node home")
        Federation.load(federation)  # refuse to copy something that is not a federation
        path.mkdir(parents=True, exist_ok=True)
        shutil.copytree(federation, home.federation_path, dirs_exist_ok=True)
        save_private_key(generate_key(), home.key_path)
        home.config_path.write_text(config.model_dump_json(indent=2), encoding="utf-8")
        return home

    def csr_der(self) -> bytes:
        """The node's certificate signing request (DER), for its join request."""
        cfg = self.config()
        return make_csr(self.key(), cfg.node_id, cfg.institution).public_bytes(serialization.Encoding.DER)


def create_federation(path: Path, name: str, operator: NodeConfig, agreement: str = DEFAULT_AGREEMENT) -> NodeHome:
    """Create a federation: its root key and certificate, and the operator's own home at ``path``.

    The operator's certificate is issued at once (the root trusts itself); members
    receive ``<path>/federation/`` out of band: public material, and the applicant credential
    with which an applicant reaches a secured broker (mesh/tls.py).
    """
    if operator.role != "operator":
        raise ConfigurationError("the federation's first node must have role 'operator'")
    home = NodeHome(path)
    if home.exists():
        raise ConfigurationError(f"{path} is already a node home")
    fed = home.federation_path
    fed.mkdir(parents=True, exist_ok=True)
    root_key = generate_key()
    save_private_key(root_key, home.root_key_path)
    root = make_root(name, root_key)
    (fed / "root.pem").write_bytes(cert_pem(root))
    (fed / "agreement.txt").write_text(agreement, encoding="utf-8")
    save_private_key(generate_key(), home.key_path)
    home.config_path.write_text(operator.model_dump_json(indent=2), encoding="utf-8")
    csr = x509.load_der_x509_csr(home.csr_der())
    cert = issue_certificate(root_key, root, csr, "operator", root.not_valid_after_utc)
    home.store_certificate(cert)
    (fed / f"operator-{operator.node_id}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # For a secured broker only (mesh/tls.py); it lets its holder apply, nothing more.
    issue_applicant_credential(root_key, root, fed)
    return home
