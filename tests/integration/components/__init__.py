"""Test components of the executor broker tests, published and installed through the real component store.

``fedmean`` is a component folder like any other: a party publishes it with its ComponentsService
(artifact on ``artifacts``, signed spec on ``components``) and every party's components service
verifies and installs it; the executor then runs the installed copy. There is no other way in.
"""

from __future__ import annotations

from pathlib import Path

from mesh.testing import eventually
from services.components.service import ComponentsService
from services.testbed import TestFederation

#: The federated-mean test component folder (component.json + a Python package).
FEDMEAN = Path(__file__).resolve().parent / "fedmean"


def components(fed: TestFederation, node: str) -> ComponentsService:
    member = fed.operator if node == "operator" else fed.member(node)
    svc = member.service("components")
    assert isinstance(svc, ComponentsService)
    return svc


async def publish_fedmean(fed: TestFederation, by: str = "party0", nodes: list[str] | None = None) -> bytes:
    """``by`` publishes fedmean; returns its digest once each of ``nodes`` (default: every party) installed it."""
    published = await components(fed, by).publish_folder(FEDMEAN)
    code, version = published.spec.code, published.spec.version
    for node in nodes or [m.node_id for m in fed.everyone]:
        await eventually(
            lambda n=node: components(fed, n).installed(code, version) is not None, 30, f"{node} installing fedmean"
        )
    return published.artifact_sha256
