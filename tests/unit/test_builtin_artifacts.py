"""The built-in components are published artifacts: their bytes are what a version means. A federation that
already holds hfl 1.0.0 refuses another artifact under that version (COMPONENT_CONFLICT), so changing a built-in's
code needs a new version in its component.json, and its new digest recorded here."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.components.service import read_folder

ALGORITHMS = Path(__file__).resolve().parents[2] / "services" / "executor" / "algorithms"

PUBLISHED = {
    "hfl": ("1.0.0", "2aa091aa7136e412846021d22da268ac2ffdb416eee430f759d285398c631756"),
    "psi": ("1.0.0", "23b5fdbd0e3c4b110bcdda21f4145aa1fa607acc2ffb635a70b81cb511ed6249"),
    "hetero_lr": ("1.1.0", "cd8de9f1a0b7f6b9406f919eafbf89c0bf6615770b6943fb89178dedec7532ac"),
    "stats": ("1.0.0", "9c52cf6ccb43e865737ed9091d6942a9b20157b1b39aed22c628e4df259dbe37"),
}


@pytest.mark.parametrize("code", sorted(PUBLISHED))
def test_a_built_in_artifact_changes_only_with_its_version(code: str) -> None:
    spec, archive = read_folder(ALGORITHMS / code)
    assert (spec.version, hashlib.sha256(archive).hexdigest()) == PUBLISHED[code], (
        f"{code}'s artifact is not the one published as {PUBLISHED[code][0]}: bump its version and record the digest"
    )


def test_every_built_in_is_pinned() -> None:
    assert {p.parent.name for p in ALGORITHMS.glob("*/component.json")} == set(PUBLISHED)
