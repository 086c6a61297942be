"""Published schemas at the edges of the Avro specification (protocol.md §2.5 item 1), for schema_learning.json.

Each case is a ``schema_json`` another party might publish. The verdict is the
reference's (mesh.codec.SchemaStore.learn): ``learn`` with the fingerprint it is learned
under, or the reason code of the refusal. Apache Avro's Java parser reaches the same
verdicts; fastavro alone would learn several of the refused ones.
"""

from __future__ import annotations

import json
from typing import Any

from mesh.codec import Schema, SchemaStore
from mesh.errors import MeshError


def _record(*fields: dict[str, Any], **top: Any) -> str:
    return json.dumps({"type": "record", "name": "A", "namespace": "x.y", "fields": list(fields), **top})


CASES: list[tuple[str, str, str]] = [
    ("plain", "a record with one long", _record({"name": "f", "type": "long"})),
    ("empty_fields", "a record without fields is a record", _record()),
    (
        "valid_decimal",
        "logical types are kept in the JSON, dropped from the canonical form",
        _record({"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}}),
    ),
    (
        "invalid_logical_type",
        "an invalid logical type is ignored, as the spec says, not refused",
        _record({"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": -2}}),
    ),
    (
        "union_default_first_branch",
        "a union default of its first branch",
        _record({"name": "u", "type": ["null", "int"], "default": None}),
    ),
    (
        "recursive",
        "a record may refer to itself by name",
        _record({"name": "next", "type": ["null", "x.y.A"], "default": None}),
    ),
    ("nan", "JSON has no NaN (RFC 8259)", _record({"name": "f", "type": "double", "default": 0}).replace("0}", "NaN}")),
    ("trailing_text", "one JSON value and nothing after it", _record() + " x"),
    ("not_a_record", "the top level is a record", json.dumps({"type": "enum", "name": "E", "symbols": ["a"]})),
    ("error_type", "an Avro error is not a record here", json.dumps({"type": "error", "name": "A", "fields": []})),
    ("no_fields", "a record needs a fields list", json.dumps({"type": "record", "name": "A"})),
    ("field_twice", "field names are unique", _record({"name": "f", "type": "int"}, {"name": "f", "type": "int"})),
    ("bad_name", "names are [A-Za-z_][A-Za-z0-9_]*", json.dumps({"type": "record", "name": "A-B", "fields": []})),
    ("empty_namespace_part", "no empty namespace part", _record(namespace="x..y")),
    (
        "primitive_name",
        "a named type may not take a primitive type's name",
        json.dumps({"type": "record", "name": "int", "fields": []}),
    ),
    ("union_twice_null", "a union holds each type once", _record({"name": "u", "type": ["null", "null"]})),
    ("union_in_union", "a union may not immediately hold a union", _record({"name": "u", "type": ["null", ["int"]]})),
    (
        "negative_fixed",
        "a fixed size is >= 0",
        _record({"name": "x", "type": {"type": "fixed", "name": "F", "size": -1}}),
    ),
    ("bad_order", "order is ascending, descending or ignore", _record({"name": "x", "type": "string", "order": "up"})),
    (
        "int_default_out_of_range",
        "a default is a value of its type",
        _record({"name": "x", "type": "int", "default": 2**31}),
    ),
    (
        "long_default_wrong_type",
        "a default is a value of its type",
        _record({"name": "x", "type": "long", "default": "1"}),
    ),
    ("undefined_name", "every name used is defined", _record({"name": "x", "type": "x.y.Missing"})),
]


def schema_learning_vectors() -> dict[str, Any]:
    cases = []
    for name, description, text in CASES:
        store = SchemaStore([])
        try:
            fingerprint = Schema.from_json(text).fingerprint
        except Exception:  # refused before any fingerprint: learn() names the reason
            fingerprint = bytes(8)
        try:
            store.learn(text, fingerprint, "x.y.A" if '"A"' in text else "E")
            verdict = {"verdict": "learn", "fingerprint_hex": fingerprint.hex()}
        except MeshError as exc:
            verdict = {"verdict": exc.reason}
        cases.append({"name": name, "description": description, "schema_json": text, **verdict})
    return {
        "description": (
            "schema_json values a party may publish (protocol.md §2.5 item 1) with the reference's verdict: "
            "'learn' (and the fingerprint, CRC-64-AVRO of the Parsing Canonical Form, little-endian) or the "
            "reason code a receiver refuses the SchemaPublished with."
        ),
        "cases": cases,
    }
