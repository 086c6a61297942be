"""mesh/events.py is what the schemas generate, and the generator maps Avro types as mesh.codec decodes them."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import get_type_hints

import pytest

from mesh import events, schemagen
from mesh.codec import SchemaStore, schema_dir


def test_the_events_module_is_what_the_schemas_generate(capsys: pytest.CaptureFixture[str]) -> None:
    assert schemagen.main(["--check"]) == 0
    assert capsys.readouterr().err == ""


def test_check_names_the_record_whose_schema_gained_a_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "schemas"
    shutil.copytree(schema_dir(), copy)
    path = copy / "catalog" / "DatasetRetracted.avsc"
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema["fields"].append({"name": "retracted_by", "type": "string", "default": ""})
    path.write_text(json.dumps(schema), encoding="utf-8")

    assert schemagen.main(["--check", "--schemas", str(copy), "--output", str(schemagen.DEFAULT_OUTPUT)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "interfed.catalog.DatasetRetracted" in lines[0]

    # Written from the changed copy, the module has the field, and then checks clean against that copy.
    out = tmp_path / "events.py"
    assert schemagen.main(["--schemas", str(copy), "--output", str(out)]) == 0
    assert "    retracted_by: str\n" in out.read_text(encoding="utf-8")
    assert schemagen.main(["--check", "--schemas", str(copy), "--output", str(out)]) == 0


def test_check_refuses_a_hand_edited_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "events.py"
    out.write_text(schemagen.render(schema_dir()) + "\nEXTRA = 1\n", encoding="utf-8")
    assert schemagen.main(["--check", "--output", str(out)]) == 1
    assert "more than the schemas generate" in capsys.readouterr().err


def _write(folder: Path, schema: dict[str, object]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{schema['name']}.avsc").write_text(json.dumps(schema), encoding="utf-8")


def test_each_avro_type_maps_to_the_python_type_the_codec_decodes_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(
        tmp_path,
        {
            "type": "record",
            "name": "Sample",
            "namespace": "interfed.test",
            "doc": "Every kind of type.",
            "fields": [
                {"name": "s", "type": "string", "doc": "A string."},
                {"name": "b", "type": "bytes"},
                {"name": "f", "type": {"type": "fixed", "name": "Eight", "size": 8}},
                {"name": "i", "type": "int"},
                {"name": "l", "type": "long"},
                {"name": "x", "type": "float"},
                {"name": "d", "type": "double"},
                {"name": "ok", "type": "boolean"},
                {"name": "n", "type": "null"},
                {"name": "maybe", "type": ["null", "string", "long"], "default": None},
                {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "xs", "type": {"type": "array", "items": "double"}},
                {"name": "m", "type": {"type": "map", "values": ["null", "bytes"]}},
                {"name": "e", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}},
                {
                    "name": "inner",
                    "type": {"type": "record", "name": "Inner", "fields": [{"name": "c", "type": "Colour"}]},
                },
                {"name": "again", "type": ["null", "Inner"], "default": None},
            ],
        },
    )
    text = schemagen.render(tmp_path)
    for line in (
        "    s: str",
        "    b: bytes",
        "    f: bytes",
        "    i: int",
        "    l: int",
        "    x: float",
        "    d: float",
        "    ok: bool",
        "    n: None",
        "    maybe: str | int | None",
        "    at: int",
        "    xs: list[float]",
        "    m: dict[str, bytes | None]",
        "    e: Colour",
        "    inner: Inner",
        "    again: Inner | None",
        "    c: Colour",
        'SAMPLE: Final = "interfed.test.Sample"',
        'INNER: Final = "interfed.test.Inner"',
        '    """Every kind of type."""',
        "    #: A string.",
    ):
        assert line + "\n" in text, line
    assert 'Colour: TypeAlias = Literal[\n    "RED",\n    "GREEN",\n]' in text
    assert "EIGHT" not in text  # a fixed is bytes: no class, no constant

    # The module imports, and its types resolve as written.
    path = tmp_path / "events_sample.py"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("events_sample", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "events_sample", module)
    spec.loader.exec_module(module)
    hints = get_type_hints(module.Sample)
    assert hints["maybe"] == str | int | None
    assert hints["inner"] is module.Inner
    records = module.RECORDS
    assert records == {"interfed.test.Inner": module.Inner, "interfed.test.Sample": module.Sample}


def test_a_timestamp_decodes_to_the_int_events_py_promises() -> None:
    store = SchemaStore.load()
    payload: events.CertificateRevoked = {"node_id": "bank", "serial": "ab", "reason": "lost", "revoked_at": 1_700_000}
    schema, data = store.encode(events.CERTIFICATE_REVOKED, payload)
    decoded = store.decode(events.CERTIFICATE_REVOKED, schema.fingerprint, data)
    assert type(decoded["revoked_at"]) is int
    assert decoded == payload


def test_a_type_defined_twice_differently_is_refused(tmp_path: Path) -> None:
    inner = {"type": "record", "name": "Inner", "fields": [{"name": "a", "type": "int"}]}
    other = {"type": "record", "name": "Inner", "fields": [{"name": "a", "type": "string"}]}
    for name, nested in (("One", inner), ("Two", other)):
        _write(
            tmp_path,
            {"type": "record", "name": name, "namespace": "interfed.test", "fields": [{"name": "x", "type": nested}]},
        )
    with pytest.raises(schemagen.SchemaGenError, match=r"interfed\.test\.Inner is defined differently"):
        schemagen.render(tmp_path)


def test_two_records_of_one_short_name_are_refused(tmp_path: Path) -> None:
    for namespace in ("interfed.a", "interfed.b"):
        _write(tmp_path / namespace, {"type": "record", "name": "Same", "namespace": namespace, "fields": []})
    with pytest.raises(schemagen.SchemaGenError, match=r"interfed\.a\.Same and interfed\.b\.Same"):
        schemagen.render(tmp_path)


def test_every_record_constant_names_its_record() -> None:
    for full_name, cls in events.RECORDS.items():
        short = full_name.rsplit(".", 1)[1]
        assert getattr(events, schemagen.constant_name(short)) == full_name
        assert getattr(cls, "__name__", None) == short
