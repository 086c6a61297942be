"""What the Avro specification requires of a schema and fastavro does not check (protocol.md §2.5).

A schema another party publishes is learned only if it is a valid Avro schema. fastavro
accepts several that the Avro specification, and so Apache Avro's Java parser, refuse: a
failure to agree here means one party learns a writer schema that another refuses, and
their verdicts on every event written with it differ.
"""

from __future__ import annotations

import json
import re
from typing import Any

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
ORDERS = frozenset({"ascending", "descending", "ignore"})
_RANGES = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def loads(json_text: str) -> Any:
    """RFC 8259 JSON: Python's json module would also take NaN and Infinity."""
    return json.loads(json_text, parse_constant=_no_constant)


def check_schema(schema: Any) -> None:
    """Raise ValueError unless ``schema`` (parsed JSON) keeps the spec's rules fastavro leaves out."""
    if isinstance(schema, list):
        _check_union(schema)
        for branch in schema:
            check_schema(branch)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind in NAMED:
        full = f"{schema.get('namespace') or ''}.{schema.get('name', '')}".strip(".")
        if not all(_NAME.fullmatch(part) for part in full.split(".")) or full.split(".")[-1] in PRIMITIVES:
            raise ValueError(f"illegal Avro name {schema.get('name')!r}")
    if kind == "fixed" and not (isinstance(schema.get("size"), int) and schema["size"] >= 0):
        raise ValueError(f"fixed {schema.get('name')!r} needs a size >= 0")
    if kind in ("record", "error"):
        fields = schema.get("fields")
        names = [f.get("name") for f in fields if isinstance(f, dict)] if isinstance(fields, list) else []
        legal = all(isinstance(n, str) and _NAME.fullmatch(n) for n in names)
        if not isinstance(fields, list) or len(names) != len(fields) or len(set(names)) != len(names) or not legal:
            raise ValueError(f"record {schema.get('name')!r} needs a fields list of uniquely, legally named fields")
        for field in fields:
            _check_field(field)
        children = [f.get("type") for f in fields]
    else:
        children = [schema.get("items"), schema.get("values"), kind if isinstance(kind, (dict, list)) else None]
    for child in children:
        check_schema(child)


def _check_field(field: dict[str, Any]) -> None:
    if "order" in field and field["order"] not in ORDERS:
        raise ValueError(f"field {field['name']!r}: order must be one of {sorted(ORDERS)}")
    kind = field.get("type")
    bounds = _RANGES.get(kind) if isinstance(kind, str) else None
    default = field.get("default")
    if (
        bounds
        and "default" in field
        and not (isinstance(default, int) and not isinstance(default, bool) and bounds[0] <= default <= bounds[1])
    ):
        raise ValueError(f"field {field['name']!r}: default {default!r} is not a {field['type']}")


def _branch_kind(branch: Any) -> str:
    """What a union may hold once: a primitive, array or map by type; a named type by its name."""
    if isinstance(branch, str):
        return branch if branch in PRIMITIVES else f"named:{branch}"
    if isinstance(branch, dict):
        kind = branch.get("type")
        if kind in NAMED:
            return f"named:{branch.get('namespace') or ''}.{branch.get('name')}"
        return str(kind)
    return "union"


def _check_union(branches: list[Any]) -> None:
    kinds = [_branch_kind(b) for b in branches]
    if "union" in kinds:
        raise ValueError("a union may not immediately contain a union")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"a union holds the same type twice: {kinds}")
