"""Files holding secrets: created 0600 in 0700 folders whatever the umask, through fresh temporary files, and
refused on load when others may read them (node keys, Paillier key files and checkpoints share this one rule)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mesh.errors import IdentityError, PrivateFileError
from mesh.private_files import create_private, private_folder, read_private, write_private
from services.executor.checkpoints import FileCheckpoints


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """Umask 0: whatever mode a file gets, it is the one the code asked for."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_files_are_0600_and_every_folder_made_for_them_0700(tmp_path: Path) -> None:
    write_private(tmp_path / "a" / "b" / "secret", b"one")
    create_private(tmp_path / "a" / "c" / "key", b"two")
    assert (_mode(tmp_path / "a" / "b" / "secret"), _mode(tmp_path / "a" / "c" / "key")) == (0o600, 0o600)
    assert {_mode(tmp_path / "a"), _mode(tmp_path / "a" / "b"), _mode(tmp_path / "a" / "c")} == {0o700}
    assert _mode(private_folder(tmp_path / "d")) == 0o700
    assert read_private(tmp_path / "a" / "b" / "secret") == b"one"


def test_replacing_leaves_no_temporary_file_and_create_never_replaces(tmp_path: Path) -> None:
    write_private(tmp_path / "s", b"old")
    write_private(tmp_path / "s", b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
    assert read_private(tmp_path / "s") == b"new"
    with pytest.raises(FileExistsError):
        create_private(tmp_path / "s", b"other")
    assert read_private(tmp_path / "s") == b"new"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601, 0o610])
def test_a_file_others_may_read_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    write_private(tmp_path / "s", b"x")
    (tmp_path / "s").chmod(mode)
    with pytest.raises(PrivateFileError, match=f"mode {mode:o}.*chmod 600") as err:
        read_private(tmp_path / "s")
    assert isinstance(err.value, IdentityError)  # node keys keep their error class
    assert err.value.reason == "PRIVATE_FILE_EXPOSED"


def test_a_link_is_neither_followed_on_read_nor_written_through(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"theirs")
    target.chmod(0o600)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OSError, match=r"link|symbolic"):
        read_private(tmp_path / "link")
    with pytest.raises(FileExistsError):
        create_private(tmp_path / "link", b"mine")
    assert target.read_bytes() == b"theirs"


# -- checkpoints (HFL keeps its X25519 mask keys and Paillier p, q in them) -------------------


def test_checkpoints_are_0600_in_0700_folders(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "executor" / "job" / "checkpoints"
    FileCheckpoints(folder).save(0, {"secret": b"\x01" * 32, "weights": np.arange(3.0)})
    assert _mode(folder / "round-0.ckpt") == 0o600
    assert {_mode(folder), _mode(folder.parent), _mode(folder.parent.parent)} == {0o700}
    round_no, state = FileCheckpoints(folder).latest()  # type: ignore[misc]
    assert (round_no, state["secret"]) == (0, b"\x01" * 32)


def test_a_checkpoint_others_may_read_is_refused_on_load(tmp_path: Path) -> None:
    FileCheckpoints(tmp_path).save(2, {"secret": b"\x02" * 32})
    (tmp_path / "round-2.ckpt").chmod(0o644)
    with pytest.raises(PrivateFileError, match="chmod 600"):
        FileCheckpoints(tmp_path).latest()


def test_a_checkpoint_is_not_written_through_a_file_planted_at_its_temporary_name(tmp_path: Path) -> None:
    planted = tmp_path / ".round-1.tmp"
    planted.write_bytes(b"")
    planted.chmod(0o666)
    FileCheckpoints(tmp_path).save(1, {"secret": b"\x03" * 32})
    assert _mode(tmp_path / "round-1.ckpt") == 0o600
    assert planted.read_bytes() == b""
