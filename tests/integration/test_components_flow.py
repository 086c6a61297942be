"""The component store on a real broker: a component published by one party is verified and installed by every
other, with evidence; tampered, unsigned, wrongly signed and revoked-signer artifacts are refused by every party
with their reason; the installed copy is what loads."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from mesh.events import EVIDENCE_RECORDED
from mesh.service import Context, Service
from mesh.testing import eventually, read_topic
from services.components.artifact import pack, sha256, sign
from services.components.service import BUILTIN_ROOT, ComponentsService, read_folder
from services.testbed import TestFederation, federation

pytestmark = [pytest.mark.broker, pytest.mark.timeout(150)]


def components(member: object) -> ComponentsService:
    svc = member.service("components")  # type: ignore[attr-defined]
    assert isinstance(svc, ComponentsService)
    return svc


def make_services(ctx: Context) -> Sequence[Service]:
    return [ComponentsService(ctx)]


def variant(root: Path, version: str, payload_bytes: int = 0) -> Path:
    """A copy of the built-in stats folder under another version (and with a data file, to be chunked)."""
    folder = shutil.copytree(
        BUILTIN_ROOT / "stats", root / f"stats-{version}", ignore=shutil.ignore_patterns("__pycache__")
    )
    spec = json.loads((folder / "component.json").read_text())
    (folder / "component.json").write_text(json.dumps(spec | {"version": version}))
    if payload_bytes:
        (folder / "weights.bin").write_bytes(os.urandom(payload_bytes))
    return folder


@pytest.fixture
async def fed(bootstrap: str, home_root: Path):  # type: ignore[no-untyped-def]
    async with federation(home_root, bootstrap, n=3, services=make_services) as running_fed:
        yield running_fed


async def refused_by(fed: TestFederation, reason: str, nodes: set[str], timeout: float = 30.0) -> None:
    """Wait until each of ``nodes`` has dead-lettered something of the components service for ``reason``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        letters = await read_topic(fed.bootstrap, fed.settings, "deadletter")
        seen = {env.sender for env, p in letters if p["reason"] == reason and p["service"] == "components"}
        if nodes <= seen:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{sorted(nodes - seen)} did not refuse with {reason} (saw {sorted(seen)})")
        await asyncio.sleep(0.3)


def member(fed: TestFederation, node_id: str) -> ComponentsService:
    return components(fed.operator if node_id == "operator" else fed.member(node_id))


async def test_a_published_component_is_installed_by_every_other_party_and_loads_from_its_copy(
    fed: TestFederation,
) -> None:
    publisher = components(fed.member("party0"))
    published = await publisher.publish_folder(BUILTIN_ROOT / "stats")
    ref = published.spec.ref
    for m in fed.everyone:
        await eventually(lambda m=m: components(m).installed("stats", "1.0.0") is not None, what=f"{m.node_id} install")
    everyone = {m.node_id for m in fed.everyone}
    await eventually(
        lambda: set(components(fed.member("party1")).components.published[ref].installations) == everyone,
        what="every installation seen",
    )
    installed = components(fed.member("party2")).installed("stats", "1.0.0")
    assert installed is not None
    assert installed.artifact_sha256 == sha256(pack(BUILTIN_ROOT / "stats")) == published.artifact_sha256
    assert installed.publisher == "party0"
    assert installed.path.is_relative_to(fed.member("party2").home.path)
    component = installed.load()
    module_file = Path(str(sys.modules[type(component).__module__].__file__))
    assert module_file.is_relative_to(installed.path / "files")

    evidence = await read_topic(fed.bootstrap, fed.settings, "evidence")
    actions = {(env.sender, p["action"]) for env, p in evidence if env.payload_type == EVIDENCE_RECORDED}
    assert ("party0", "components.publish") in actions
    assert all((node, "components.install") in actions for node in everyone)

    await components(fed.member("party1")).disable(ref, reason="not reviewed")
    await eventually(
        lambda: components(fed.member("party0")).components.published[ref].installations["party1"] is False,
        what="disable seen",
    )
    loaded = components(fed.member("party1")).installed("stats", "1.0.0")
    assert loaded is not None
    assert not loaded.enabled


async def test_an_artifact_tampered_in_transit_is_refused_by_every_party(fed: TestFederation, tmp_path: Path) -> None:
    """A member re-sends a (chunked) artifact with one byte flipped, under the genuine digest and re-signed by
    itself: every other party refuses it; the genuine one, published after, installs everywhere."""
    folder = variant(tmp_path, "1.1.0", payload_bytes=1_500_000)
    spec, archive = read_folder(folder)
    assert len(archive) > fed.settings.max_record_bytes  # so it travels in chunks
    digest = sha256(archive)
    flipped = bytearray(archive)
    flipped[len(archive) // 2] ^= 0x01
    malicious = components(fed.member("party1"))
    await malicious.publish_artifact(digest, bytes(flipped))
    others = {m.node_id for m in fed.everyone} - {"party1"}
    await refused_by(fed, "ARTIFACT_DIGEST_MISMATCH", others)
    assert all(digest not in member(fed, n).components.artifacts for n in others)

    await components(fed.member("party0")).publish(spec, archive)
    for m in fed.everyone:
        await eventually(lambda m=m: components(m).installed("stats", "1.1.0") is not None, what=f"{m.node_id} install")
        found = components(m).installed("stats", "1.1.0")
        assert found is not None
        assert found.artifact_sha256 == digest


@pytest.mark.parametrize("case", ["unsigned", "wrong_signer"])
async def test_an_unsigned_or_wrongly_signed_component_is_refused_by_every_party(
    fed: TestFederation, tmp_path: Path, case: str
) -> None:
    spec, archive = read_folder(variant(tmp_path, "2.0.0"))
    sender = components(fed.member("party1"))
    if case == "unsigned":
        await sender.publish(spec, archive, signature=b"")
        reason = "UNSIGNED_ARTIFACT"
    else:  # signed by party0's key, claimed as party1's
        await sender.publish(
            spec, archive, signature=sign(components(fed.member("party0")).ctx.publisher.signer, sha256(archive))
        )
        reason = "BAD_ARTIFACT_SIGNATURE"
    others = {m.node_id for m in fed.everyone} - {"party1"}
    await refused_by(fed, reason, others)
    for node in others:
        assert member(fed, node).installed("stats", "2.0.0") is None
        assert "stats:2.0.0" not in member(fed, node).components.published


async def test_an_artifact_of_a_revoked_signer_is_refused_by_every_party(fed: TestFederation, tmp_path: Path) -> None:
    """party2 signs an artifact, is revoked, and party1 relays party2's signed component: refused everywhere."""
    spec, archive = read_folder(variant(tmp_path, "3.0.0"))
    signature = sign(components(fed.member("party2")).ctx.publisher.signer, sha256(archive))
    await fed.operator.registry.revoke("party2", "key compromised")
    for m in fed.everyone:
        await eventually(
            lambda m=m: not components(m).trust.can_sign("party2"), what=f"{m.node_id} seeing the revocation"
        )
    await components(fed.member("party1")).publish(spec, archive, signature=signature, publisher="party2")
    others = {"operator", "party0"}
    await refused_by(fed, "REVOKED_SIGNER", others)
    for node in others:
        assert member(fed, node).installed("stats", "3.0.0") is None
