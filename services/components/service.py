"""The components service: publish specs and artifacts, verify and install what others publish, enable and disable.

Specs travel on ``components`` keyed ``code:version``; artifact bytes on ``artifacts`` keyed by their digest
(chunked by the publisher when large). A party installs a component once it holds both, and only after the
checks of docs/protocol.md §15.5; each installation, enabling and disabling is published with its evidence.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar, cast

from mesh import events
from mesh.envelope import Envelope
from mesh.errors import InvalidTransitionError, UnauthorisedError
from mesh.events import (
    ARTIFACT_PUBLISHED,
    COMPONENT_DISABLED,
    COMPONENT_ENABLED,
    COMPONENT_INSTALLED,
    COMPONENT_PUBLISHED,
    COMPONENT_RETRACTED,
)
from mesh.evidence import GOVERNED
from mesh.service import Context, Event, Service, handles
from services.components.artifact import check_digest, pack, sha256, sign, unpack, verify_signature
from services.components.errors import (
    ComponentConflictError,
    ComponentLoadError,
    InvalidSpecError,
    MalformedArtifactError,
    RevokedSignerError,
    UnknownSignerError,
    UnsignedArtifactError,
)
from services.components.spec import ComponentSpec, parse_spec
from services.components.state import Components, Published
from services.components.store import ComponentStore, InstalledComponent

SPEC_FILE = "component.json"
#: Where the built-in algorithms live, each in a folder with a component.json.
BUILTIN_ROOT = Path(__file__).resolve().parents[1] / "executor" / "algorithms"


def read_folder(folder: Path) -> tuple[ComponentSpec, bytes]:
    """The spec and artifact of a component folder (its component.json is inside the archive too)."""
    spec_file = folder / SPEC_FILE
    if not spec_file.is_file():
        raise InvalidSpecError(f"{folder} has no {SPEC_FILE}")
    return parse_spec(spec_file.read_bytes()), pack(folder)


def check_spec_matches(spec: ComponentSpec, archive: bytes) -> None:
    """The archive is a component folder whose own component.json is ``spec``: spec and code cannot disagree."""
    inside = dict(unpack(archive)).get(SPEC_FILE)
    if inside is None:
        raise MalformedArtifactError(f"the artifact of {spec.ref} holds no {SPEC_FILE}")
    if parse_spec(inside) != spec:
        raise MalformedArtifactError(f"the artifact's {SPEC_FILE} is not the published spec of {spec.ref}")


def builtin_folders(root: Path = BUILTIN_ROOT) -> list[Path]:
    return sorted(p.parent for p in root.glob(f"*/{SPEC_FILE}"))


class ComponentsService(Service):
    """Keeps the directory of components; installs (when ``auto_install``) every one that passes the checks."""

    name: ClassVar[str] = "components"
    topics: ClassVar[tuple[str, ...]] = ("components", "artifacts")

    def __init__(self, ctx: Context, *, readonly: bool = False, auto_install: bool = True) -> None:
        super().__init__(ctx, readonly=readonly)
        self.me = ctx.config.node_id
        self.components = Components()
        self.store = ComponentStore(ctx.home.path / "components")
        self.auto_install = auto_install and not readonly

    # -- handlers ---------------------------------------------------------------------------

    @handles(COMPONENT_PUBLISHED)
    async def on_published(self, ev: Event[events.ComponentPublished]) -> None:
        p = ev.payload
        spec = parse_spec(p["spec_json"])
        if (spec.code, spec.version) != (p["code"], p["version"]) or ev.envelope.subject != spec.ref:
            raise InvalidSpecError(
                f"event names {p['code']}:{p['version']} under {ev.envelope.subject}, spec {spec.ref}"
            )
        if spec.canonical_json() != p["spec_json"]:
            raise InvalidSpecError(f"{spec.ref}: spec_json is not in canonical form (§15.1)")
        self._check_signature(p["publisher"], p["artifact_sha256"], p["signature"])
        known = self.components.get(spec.ref)
        if known is not None:
            if known.artifact_sha256 != p["artifact_sha256"]:
                raise ComponentConflictError(f"{spec.ref} is already published with another artifact")
            return  # the same component relayed again
        self.components.published[spec.ref] = Published(
            spec,
            p["artifact_sha256"],
            p["artifact_size"],
            p["publisher"],
            p["signature"],
            ev.sender,
            ev.envelope.issued_at,
        )
        self.log.info("component_published", ref=spec.ref, by=ev.sender, digest=p["artifact_sha256"].hex()[:16])
        await self._maybe_install(spec.ref)

    @handles(ARTIFACT_PUBLISHED)
    async def on_artifact(self, ev: Event[events.ArtifactPublished]) -> None:
        p = ev.payload
        if ev.envelope.subject != p["artifact_sha256"].hex() or p["size"] != len(p["archive"]):
            raise InvalidTransitionError("an artifact is keyed by its digest's hex and declares its own size")
        check_digest(p["archive"], p["artifact_sha256"])
        unpack(p["archive"])
        self.components.artifacts[p["artifact_sha256"]] = p["archive"]
        for published in self.components.by_digest(p["artifact_sha256"]):
            await self._maybe_install(published.spec.ref)

    @handles(COMPONENT_RETRACTED)
    async def on_retracted(self, ev: Event[events.ComponentRetracted]) -> None:
        ref = f"{ev.payload['code']}:{ev.payload['version']}"
        known = self._known(ref)
        if ev.sender not in (known.publisher, known.published_by):
            raise UnauthorisedError(f"only the publisher of {ref} retracts it")
        known.retracted = ev.payload["reason"] or "retracted"
        installed = self.store.installed(known.spec.code, known.spec.version)
        if not self.readonly and self.caught_up.is_set() and installed is not None and installed.enabled:
            await self.disable(ref, reason=f"retracted by {ev.sender}")

    @handles(COMPONENT_INSTALLED, COMPONENT_ENABLED, COMPONENT_DISABLED)
    async def on_installation(
        self, ev: Event[events.ComponentInstalled | events.ComponentEnabled | events.ComponentDisabled]
    ) -> None:
        ref = f"{ev.payload['code']}:{ev.payload['version']}"
        known = self._known(ref)
        if ev.payload["artifact_sha256"] != known.artifact_sha256:
            raise InvalidTransitionError(f"{ev.sender} names another artifact for {ref}")
        if ev.envelope.payload_type == COMPONENT_INSTALLED:
            known.installations[ev.sender] = cast(events.ComponentInstalled, ev.payload)["enabled"]
        elif ev.sender not in known.installations:
            raise InvalidTransitionError(f"{ev.sender} has not installed {ref}")
        else:
            known.installations[ev.sender] = ev.envelope.payload_type == COMPONENT_ENABLED

    # -- checks -------------------------------------------------------------------------------

    def _check_signature(self, publisher: str, digest: bytes, signature: bytes) -> bytes:
        """The publisher's key, once its detached signature over ``digest`` verifies and its certificate
        is good now: a revoked publisher's artifacts are trusted no more, whenever they were signed."""
        if not signature:
            raise UnsignedArtifactError(f"artifact {digest.hex()[:16]} carries no publisher signature")
        cert = self.trust.certificate(publisher)
        if cert is None:
            raise UnknownSignerError(f"no certificate known for publisher {publisher}")
        if not self.trust.can_sign(publisher):
            raise RevokedSignerError(f"publisher {publisher}'s certificate is revoked or expired")
        verify_signature(cert.public_key, digest, signature)
        return cert.public_key

    def _known(self, ref: str) -> Published:
        found = self.components.get(ref)
        if found is None:
            raise InvalidTransitionError(f"no component {ref}; list them with 'interfed components list'")
        return found

    async def _maybe_install(self, ref: str) -> None:
        known = self.components.published[ref]
        if not self.auto_install or known.retracted or known.artifact_sha256 not in self.components.artifacts:
            return
        current = self.store.installed(known.spec.code, known.spec.version)
        if current is not None and current.artifact_sha256 == known.artifact_sha256:
            return  # installed before (a replay after a restart)
        await self.install(ref)

    # -- commands ----------------------------------------------------------------------------

    async def publish_folder(self, folder: Path) -> Published:
        """Pack, sign and publish a component folder: the artifact on ``artifacts``, then its spec."""
        spec, archive = await asyncio.to_thread(read_folder, folder)
        return await self.publish(spec, archive)

    async def publish(
        self, spec: ComponentSpec, archive: bytes, *, signature: bytes | None = None, publisher: str | None = None
    ) -> Published:
        """Publish ``archive`` as ``spec``'s artifact, signed with this node's key; or relay the ``signature``
        that ``publisher`` (default: this node) made, which receivers check against that node's certificate."""
        check_spec_matches(spec, archive)
        digest = sha256(archive)
        known = self.components.get(spec.ref)
        if known is not None and known.artifact_sha256 != digest:
            raise ComponentConflictError(f"{spec.ref} is already published with another artifact; bump the version")
        sig = sign(self.ctx.publisher.signer, digest) if signature is None else signature
        await self.publish_artifact(digest, archive)
        publisher = publisher or self.me
        payload = self.published_payload(spec, digest, len(archive), publisher, sig)
        env = await self.ctx.publisher.publish(
            "components", COMPONENT_PUBLISHED, payload, subject=spec.ref, evidence=GOVERNED[COMPONENT_PUBLISHED]
        )
        return Published(spec, digest, len(archive), publisher, sig, self.me, env.issued_at)

    async def publish_artifact(self, digest: bytes, archive: bytes) -> Envelope:
        record: events.ArtifactPublished = {"artifact_sha256": digest, "size": len(archive), "archive": archive}
        return await self.ctx.publisher.publish("artifacts", ARTIFACT_PUBLISHED, record, subject=digest.hex())

    @staticmethod
    def published_payload(
        spec: ComponentSpec, digest: bytes, size: int, publisher: str, signature: bytes
    ) -> events.ComponentPublished:
        return {
            "code": spec.code,
            "version": spec.version,
            "spec_json": spec.canonical_json(),
            "artifact_sha256": digest,
            "artifact_size": size,
            "publisher": publisher,
            "signature": signature,
        }

    async def publish_builtin(self, root: Path = BUILTIN_ROOT) -> list[Published]:
        """Publish every built-in algorithm folder not yet published with the same artifact."""
        done = []
        for folder in builtin_folders(root):
            spec, archive = await asyncio.to_thread(read_folder, folder)
            known = self.components.get(spec.ref)
            if known is not None and known.artifact_sha256 == sha256(archive):
                continue
            done.append(await self.publish(spec, archive))
        return done

    async def retract(self, ref: str, reason: str) -> Published:
        """Publisher: withdraw a component version (parties disable their installations of it)."""
        known = self._known(ref)
        payload: events.ComponentRetracted = {"code": known.spec.code, "version": known.spec.version, "reason": reason}
        await self.ctx.publisher.publish(
            "components", COMPONENT_RETRACTED, payload, subject=ref, evidence=GOVERNED[COMPONENT_RETRACTED]
        )
        return known

    async def install(self, ref: str, *, enabled: bool = True) -> InstalledComponent:
        """Verify (spec, digest, signature, publisher not revoked) and install ``ref`` in this node's home."""
        known = self._known(ref)
        if known.retracted:
            raise InvalidTransitionError(f"{ref} was retracted ({known.retracted})")
        archive = self.components.artifacts.get(known.artifact_sha256)
        if archive is None:
            raise InvalidTransitionError(f"the artifact of {ref} has not arrived (yet)")
        check_digest(archive, known.artifact_sha256)
        check_spec_matches(known.spec, archive)
        key = self._check_signature(known.publisher, known.artifact_sha256, known.signature)
        installed = await asyncio.to_thread(
            self.store.install,
            known.spec,
            archive,
            publisher=known.publisher,
            publisher_key=key,
            signature=known.signature,
            enabled=enabled,
        )
        payload: events.ComponentInstalled = {
            "code": known.spec.code,
            "version": known.spec.version,
            "artifact_sha256": known.artifact_sha256,
            "publisher": known.publisher,
            "enabled": enabled,
        }
        await self.ctx.publisher.publish(
            "components", COMPONENT_INSTALLED, payload, subject=ref, evidence=GOVERNED[COMPONENT_INSTALLED]
        )
        self.log.info(
            "component_installed", ref=ref, digest=known.artifact_sha256.hex()[:16], publisher=known.publisher
        )
        return installed

    async def enable(self, ref: str, reason: str = "") -> InstalledComponent:
        return await self._set_enabled(ref, True, reason)

    async def disable(self, ref: str, reason: str = "") -> InstalledComponent:
        return await self._set_enabled(ref, False, reason)

    async def _set_enabled(self, ref: str, enabled: bool, reason: str) -> InstalledComponent:
        known = self._known(ref)
        if enabled:
            self._check_signature(known.publisher, known.artifact_sha256, known.signature)
        installed = self.store.installed(known.spec.code, known.spec.version)
        if installed is None:
            raise ComponentLoadError(f"{ref} is not installed on this node ('interfed components install {ref}')")
        if enabled:
            installed.verify()
        changed = self.store.set_enabled(known.spec.code, known.spec.version, enabled)
        kind = COMPONENT_ENABLED if enabled else COMPONENT_DISABLED
        payload: events.ComponentEnabled | events.ComponentDisabled = {
            "code": known.spec.code,
            "version": known.spec.version,
            "artifact_sha256": known.artifact_sha256,
            "reason": reason,
        }
        await self.ctx.publisher.publish("components", kind, payload, subject=ref, evidence=GOVERNED[kind])
        return changed

    def installed(self, code: str, version: str) -> InstalledComponent | None:
        return self.store.installed(code, version)

    def runnable(self, code: str, version: str) -> InstalledComponent:
        """The installation of ``code:version`` if this node may run it now: installed with the published
        artifact, enabled, not retracted, and its publisher not revoked since. For the executor's acceptance."""
        ref = f"{code}:{version}"
        known = self._known(ref)
        installed = self.store.installed(code, version)
        if installed is None or installed.artifact_sha256 != known.artifact_sha256:
            raise ComponentLoadError(f"{ref} is not installed on {self.me}")
        if not installed.enabled:
            raise ComponentLoadError(f"{ref} is disabled on {self.me}")
        if known.retracted:
            raise ComponentLoadError(f"{ref} was retracted ({known.retracted})")
        self._check_signature(known.publisher, known.artifact_sha256, known.signature)
        return installed
