"""Test helpers of the executor, as mesh.testing is of the mesh: a ComponentSource over component folders.

``FolderSource`` stands in for the component store (services.components) in broker tests and, until
the store is in the build, in the demo: it reads a component folder (component.json + code) as
if installed. It is not a way to install anything: nothing in a node uses it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.executor.api import Component

#: The test component of the broker tests (a federated mean), in the repository's tests folder.
FEDMEAN = Path(__file__).resolve().parents[2] / "tests" / "integration" / "components" / "fedmean"


@dataclass
class FolderComponent:
    """A component folder (component.json + code) as if installed: digest over its files, enabled by flag."""

    folder: Path
    enabled: bool = True

    @property
    def spec(self) -> dict[str, Any]:
        return dict(json.loads((self.folder / "component.json").read_text(encoding="utf-8")))

    @property
    def digest(self) -> bytes:
        h = hashlib.sha256()
        for path in sorted(p for p in self.folder.iterdir() if p.suffix in (".json", ".py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
        return h.digest()

    def load(self) -> Component:
        module_name, cls_name = self.spec["entrypoint"].split(":")
        spec = importlib.util.spec_from_file_location(f"_component_{module_name}", self.folder / f"{module_name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        component: Component = getattr(module, cls_name)()
        return component


class FolderSource:
    """A ComponentSource over component folders: the test stand-in for services.components.ComponentStore."""

    def __init__(self, *folders: Path) -> None:
        self.found = {}
        for folder in folders:
            c = FolderComponent(folder)
            self.found[(c.spec["code"], c.spec["version"])] = c

    def installed(self, code: str, version: str) -> FolderComponent | None:
        return self.found.get((code, version))
