"""Errors of the component store, each carrying its reason code (docs/protocol.md §15.6)."""

from __future__ import annotations

from mesh.errors import MeshError, RejectedEventError


class InvalidSpecError(RejectedEventError):
    """A component spec that does not follow the component self-description (§15.1)."""

    reason = "INVALID_SPEC"


class UnsignedArtifactError(RejectedEventError):
    """A component published without its publisher's artifact signature."""

    reason = "UNSIGNED_ARTIFACT"


class BadArtifactSignatureError(RejectedEventError):
    """The artifact signature does not verify under the named publisher's certificate."""

    reason = "BAD_ARTIFACT_SIGNATURE"


class UnknownSignerError(RejectedEventError):
    """The named publisher holds no certificate this party knows."""

    reason = "UNKNOWN_SIGNER"
    retriable = True
    waits_for = ("registry",)  # its certificate may still be on its way there


class RevokedSignerError(RejectedEventError):
    """The publisher's certificate is revoked (or no longer valid): its artifacts are trusted no more."""

    reason = "REVOKED_SIGNER"


class DigestMismatchError(RejectedEventError):
    """Artifact bytes whose sha256 is not the digest they travel (or were installed) under."""

    reason = "ARTIFACT_DIGEST_MISMATCH"


class MalformedArtifactError(RejectedEventError):
    """Artifact bytes that are not an archive of the protocol's form (§15.2)."""

    reason = "MALFORMED_ARTIFACT"


class ComponentConflictError(RejectedEventError):
    """A code and version already published with another artifact: (code, version) names one artifact forever."""

    reason = "COMPONENT_CONFLICT"


class ParamsError(MeshError):
    """Job parameters that do not fit a component's parameter schema; ``problems`` names each bad one."""

    reason = "INVALID_PARAMS"
    dead_letter = True

    def __init__(self, code: str, problems: dict[str, str]) -> None:
        listed = "; ".join(f"{name}: {why}" for name, why in sorted(problems.items()))
        super().__init__(f"parameters of {code}: {listed}")
        self.problems = problems


class ComponentLoadError(MeshError):
    """An installed component that cannot be loaded (missing, disabled, altered on disk, bad entrypoint)."""

    reason = "COMPONENT_LOAD"
