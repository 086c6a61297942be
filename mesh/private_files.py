"""Files only their owner may read (node keys, Paillier keys, checkpoints with secrets): one way to write and read.

Written: folders made here are created 0700, files 0600 through a temporary file created fresh
(``O_CREAT | O_EXCL``, a new random name, never a file or link someone left there) and renamed
over the target, so a crash leaves the old file or the new one. Read: a file with any group or
other permission bit is refused, with the ``chmod`` that fixes it (docs/protocol.md §5.5); the
mode is checked on the open file, so the file read is the one checked.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from mesh.errors import PrivateFileError

FILE_MODE = 0o600
FOLDER_MODE = 0o700
#: Permission bits that let anyone but the owner in.
OTHERS = 0o077


def private_folder(path: Path) -> Path:
    """``path`` as a folder, each missing level created 0700 (existing ones are left as they are)."""
    missing = []
    at = path
    while not at.exists():
        missing.append(at)
        at = at.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            folder.mkdir(mode=FOLDER_MODE)
    return path


def create_private(path: Path, data: bytes) -> None:
    """Write a new private file; never replaces one (FileExistsError): a key made once stays that key."""
    private_folder(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def write_private(path: Path, data: bytes) -> None:
    """Write or replace a private file atomically, through a fresh temporary file beside it."""
    private_folder(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # O_EXCL, 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_private(path: Path, mode: int) -> None:
    """Refuse a private file whose permission bits let others in."""
    if mode & OTHERS:
        raise PrivateFileError(f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}")


def read_private(path: Path) -> bytes:
    """The bytes of a private file, refused (PrivateFileError) if any group or other bit is set."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        check_private(path, os.fstat(f.fileno()).st_mode)
        return f.read()
