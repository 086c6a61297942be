"""What a party knows of the federation's components: published specs, held artifacts, who installed what."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.components.spec import ComponentSpec


@dataclass
class Published:
    """One published component version, as every party sees it."""

    spec: ComponentSpec
    artifact_sha256: bytes
    artifact_size: int
    publisher: str
    signature: bytes
    published_by: str
    published_at: int
    retracted: str | None = None
    #: node id -> enabled, from their ComponentInstalled / Enabled / Disabled events
    installations: dict[str, bool] = field(default_factory=dict)


class Components:
    """The directory of components, keyed by ``code:version``; artifacts held by digest until installed."""

    def __init__(self) -> None:
        self.published: dict[str, Published] = {}
        self.artifacts: dict[bytes, bytes] = {}

    def get(self, ref: str) -> Published | None:
        return self.published.get(ref)

    def by_digest(self, digest: bytes) -> list[Published]:
        return [p for p in self.published.values() if p.artifact_sha256 == digest]

    def latest(self, code: str) -> Published | None:
        """The newest version of ``code`` (by numeric version), or None."""
        versions = [p for p in self.published.values() if p.spec.code == code]

        def key(p: Published) -> tuple[int, ...]:
            return tuple(int(x) for x in p.spec.version.split("-")[0].split("+")[0].split("."))

        return max(versions, key=key) if versions else None
