"""A party's installed components: verified copies in its home, loaded only from there."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.errors import MeshError
from services.components.artifact import check_digest, extract, pack, verify_signature
from services.components.errors import ComponentLoadError
from services.components.spec import ComponentSpec, parse_spec
from services.executor.api import Component

MANIFEST = "installed.json"
ARCHIVE = "artifact.zip"
FILES = "files"


@dataclass(frozen=True)
class InstalledComponent:
    """One installation: the spec, the artifact's digest and signature, and whether it may run."""

    spec: ComponentSpec
    artifact_sha256: bytes
    publisher: str
    publisher_key: bytes
    signature: bytes
    enabled: bool
    path: Path

    def verify(self) -> None:
        """Re-check the installed copy offline: the stored archive and the unpacked files both hash to the
        digest, and the publisher's signature over it verifies. Raises a MeshError with its reason."""
        check_digest((self.path / ARCHIVE).read_bytes(), self.artifact_sha256)
        check_digest(pack(self.path / FILES), self.artifact_sha256)
        verify_signature(self.publisher_key, self.artifact_sha256, self.signature)

    def load(self) -> Component:
        """An instance of the entrypoint class, imported from the installed files (never from the source tree),
        after re-verifying them. Each load imports afresh under a module name of its own."""
        if not self.enabled:
            raise ComponentLoadError(f"{self.spec.ref} is disabled on this node ('interfed components enable')")
        self.verify()
        module_name, _, class_name = self.spec.entrypoint.partition(":")
        package = f"interfed_component_{self.spec.code}_{self.artifact_sha256.hex()[:12]}_{uuid.uuid4().hex[:8]}"
        files = self.path / FILES
        init = files / "__init__.py"
        found = importlib.util.spec_from_file_location(package, init, submodule_search_locations=[str(files)])
        if found is None or found.loader is None or not init.exists():
            raise ComponentLoadError(f"{self.spec.ref}: the artifact is not a Python package (no __init__.py)")
        root = importlib.util.module_from_spec(found)
        sys.modules[package] = root
        # No bytecode beside the installed files: they must keep hashing to the digest.
        writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True
        try:
            found.loader.exec_module(root)
            module = importlib.import_module(f"{package}.{module_name}")
        except Exception as exc:
            raise ComponentLoadError(f"{self.spec.ref}: importing {self.spec.entrypoint} failed: {exc}") from exc
        finally:
            sys.dont_write_bytecode = writes
        cls = getattr(module, class_name, None)
        if cls is None:
            raise ComponentLoadError(f"{self.spec.ref}: {module_name} has no {class_name}")
        instance: Component = cls()
        return instance


class ComponentStore:
    """Installations under ``HOME/components/<code>/<version>/`` (archive, unpacked files, manifest)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, code: str, version: str) -> Path:
        return self.root / code / version

    def installed(self, code: str, version: str) -> InstalledComponent | None:
        """The installation of ``code:version`` on this node, or None."""
        manifest = self._dir(code, version) / MANIFEST
        if not manifest.exists():
            return None
        raw: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
        return InstalledComponent(
            spec=parse_spec(raw["spec"]),
            artifact_sha256=bytes.fromhex(raw["artifact_sha256"]),
            publisher=raw["publisher"],
            publisher_key=bytes.fromhex(raw["publisher_key"]),
            signature=bytes.fromhex(raw["signature"]),
            enabled=raw["enabled"],
            path=manifest.parent,
        )

    def all(self) -> list[InstalledComponent]:
        found = [self.installed(m.parent.parent.name, m.parent.name) for m in sorted(self.root.glob(f"*/*/{MANIFEST}"))]
        return [f for f in found if f is not None]

    def install(
        self,
        spec: ComponentSpec,
        archive: bytes,
        *,
        publisher: str,
        publisher_key: bytes,
        signature: bytes,
        enabled: bool = True,
    ) -> InstalledComponent:
        """Verify ``archive`` (digest is the spec's, signature the publisher's) and install it, replacing
        whatever was at that place. Raises the MeshError of the first check that fails; installs nothing then."""
        digest = hashlib.sha256(archive).digest()
        verify_signature(publisher_key, digest, signature)
        target = self._dir(spec.code, spec.version)
        staging = target.with_name(f".{spec.version}.{uuid.uuid4().hex[:8]}")
        staging.mkdir(parents=True)
        try:
            extract(archive, staging / FILES)
            (staging / ARCHIVE).write_bytes(archive)
            manifest = {
                "spec": json.loads(spec.canonical_json()),
                "artifact_sha256": digest.hex(),
                "publisher": publisher,
                "publisher_key": publisher_key.hex(),
                "signature": signature.hex(),
                "enabled": enabled,
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            staging.replace(target)
        except (OSError, MeshError):
            shutil.rmtree(staging, ignore_errors=True)
            raise
        found = self.installed(spec.code, spec.version)
        assert found is not None
        return found

    def set_enabled(self, code: str, version: str, enabled: bool) -> InstalledComponent:
        found = self.installed(code, version)
        if found is None:
            raise ComponentLoadError(f"{code}:{version} is not installed on this node")
        manifest = found.path / MANIFEST
        raw = json.loads(manifest.read_text(encoding="utf-8")) | {"enabled": enabled}
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(manifest)
        return self.installed(code, version)  # type: ignore[return-value]
