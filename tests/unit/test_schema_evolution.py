"""Schema changes must be backward and forward compatible with the last release's schemas.

``tests/vectors/released/<version>/`` holds the schemas as released. For every record in both
the release and the working tree, data written by either must be readable by the other under
Avro's resolution rules. A change that breaks this is a new protocol version, not an edit.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest
from fastavro.utils import generate_many

from mesh.codec import schema_dir, strip_logical_types

RELEASED = Path(__file__).resolve().parents[1] / "vectors" / "released"


def _schemas(root: Path) -> dict[str, dict[str, object]]:
    found = {}
    for path in sorted(root.rglob("*.avsc")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        found[f"{raw['namespace']}.{raw['name']}"] = raw
    return found


CURRENT = _schemas(schema_dir())
RELEASES = sorted(p for p in RELEASED.iterdir() if p.is_dir())
PAIRS = [
    (release.name, name, schema, CURRENT[name])
    for release in RELEASES
    for name, schema in _schemas(release).items()
    if name in CURRENT
]


def _roundtrip(writer: dict[str, object], reader: dict[str, object], count: int = 25) -> None:
    w = fastavro.parse_schema(strip_logical_types(writer), named_schemas={})
    r = fastavro.parse_schema(strip_logical_types(reader), named_schemas={})
    for record in generate_many(w, count):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, w, record)
        buf.seek(0)
        fastavro.schemaless_reader(buf, w, r)


def test_there_is_a_released_set_and_it_covers_every_current_record() -> None:
    assert RELEASES, "tests/vectors/released/ holds no release"
    released = _schemas(RELEASES[-1])
    assert set(released) <= set(CURRENT), f"records removed since {RELEASES[-1].name}: {set(released) - set(CURRENT)}"


@pytest.mark.parametrize(("release", "name", "old", "new"), PAIRS, ids=[f"{p[0]}:{p[1]}" for p in PAIRS])
def test_current_readers_read_what_released_writers_wrote(
    release: str, name: str, old: dict[str, object], new: dict[str, object]
) -> None:
    _roundtrip(old, new)


@pytest.mark.parametrize(("release", "name", "old", "new"), PAIRS, ids=[f"{p[0]}:{p[1]}" for p in PAIRS])
def test_released_readers_read_what_current_writers_write(
    release: str, name: str, old: dict[str, object], new: dict[str, object]
) -> None:
    _roundtrip(new, old)


def test_an_incompatible_change_is_caught() -> None:
    """The check can fail: a new field without a default cannot be read from old data."""
    old = CURRENT["interfed.registry.Heartbeat"]
    new = {**old, "fields": [*old["fields"], {"name": "load", "type": "double"}]}  # type: ignore[list-item]
    with pytest.raises(fastavro.read.SchemaResolutionError):
        _roundtrip(old, new)
