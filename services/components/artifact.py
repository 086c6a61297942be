"""Artifacts: the deterministic archive of a component folder, its digest, and the publisher's detached signature."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path, PurePosixPath

from mesh.errors import BadSignatureError
from mesh.signing import Signer, Verifier
from services.components.errors import BadArtifactSignatureError, DigestMismatchError, MalformedArtifactError

#: Domain separation: an artifact signature can never be mistaken for any other signature a node makes.
SIGNATURE_TAG = b"interfed.artifact.v1\x00"
#: Every entry's timestamp (the earliest a zip can hold), so the same files give the same bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644 << 16
MAX_ENTRIES = 1000
MAX_ARCHIVE_BYTES = 32 * 1024 * 1024
#: Never packed: interpreter caches are made where the code runs, and differ between machines.
SKIPPED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _files(folder: Path) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part in SKIPPED_DIRS or part.startswith(".") for part in rel.parts) or path.suffix in SKIPPED_SUFFIXES:
            continue
        if path.is_symlink():
            raise MalformedArtifactError(f"{rel}: a component folder holds no symbolic links")
        if path.is_file():
            found.append((rel.as_posix(), path))
    return sorted(found, key=lambda item: item[0].encode("utf-8"))


def pack(folder: Path) -> bytes:
    """The archive of ``folder``: a zip of its files, stored uncompressed, sorted by UTF-8 path, with fixed
    timestamps and modes, no directory entries and no extra fields. The same files give the same bytes."""
    files = _files(folder)
    if not files:
        raise MalformedArtifactError(f"{folder} holds no files")
    return pack_entries([(name, path.read_bytes()) for name, path in files])


def pack_entries(entries: list[tuple[str, bytes]]) -> bytes:
    """The archive of (posix path, content) entries, in the protocol's form (§15.2)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, content in sorted(entries, key=lambda item: item[0].encode("utf-8")):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.create_system = 3
            info.external_attr = FILE_MODE
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, content)
    return buffer.getvalue()


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return (
        bool(name)
        and "\\" not in name
        and not path.is_absolute()
        and all(part not in ("", ".", "..") for part in name.split("/"))
    )


def unpack(archive: bytes) -> list[tuple[str, bytes]]:
    """The entries of an archive, or MalformedArtifactError: only the protocol's form is accepted, so an
    archive that unpacks is one that packs back to the same bytes."""
    if len(archive) > MAX_ARCHIVE_BYTES:
        raise MalformedArtifactError(f"artifact of {len(archive)} bytes exceeds {MAX_ARCHIVE_BYTES}")
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ENTRIES:
                raise MalformedArtifactError(f"artifact of {len(infos)} entries exceeds {MAX_ENTRIES}")
            entries = []
            for info in infos:
                if not _safe_name(info.filename) or info.is_dir():
                    raise MalformedArtifactError(f"artifact entry {info.filename!r} is not a safe relative file path")
                entries.append((info.filename, zf.read(info)))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise MalformedArtifactError(f"artifact is not a readable zip: {exc}") from None
    if pack_entries(entries) != archive:
        raise MalformedArtifactError("artifact is not in the protocol's deterministic form (§15.2)")
    return entries


def extract(archive: bytes, dest: Path) -> None:
    """Unpack a checked archive into the empty folder ``dest``."""
    for name, content in unpack(archive):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def signing_bytes(digest: bytes) -> bytes:
    """What the publisher signs: the tag, then the 32-byte sha256 of the archive."""
    if len(digest) != 32:
        raise DigestMismatchError(f"an artifact digest is 32 bytes, not {len(digest)}")
    return SIGNATURE_TAG + digest


def sign(signer: Signer, digest: bytes) -> bytes:
    return signer.sign(signing_bytes(digest))


def verify_signature(public_key: bytes, digest: bytes, signature: bytes) -> None:
    """Raise BadArtifactSignatureError unless ``signature`` is the key holder's over ``digest``."""
    try:
        Verifier(public_key).verify(signature, signing_bytes(digest))
    except BadSignatureError:
        raise BadArtifactSignatureError("artifact signature does not verify under the publisher's key") from None


def check_digest(archive: bytes, digest: bytes) -> None:
    actual = sha256(archive)
    if actual != digest:
        raise DigestMismatchError(f"artifact bytes hash to {actual.hex()[:16]}…, not {digest.hex()[:16]}…")
