"""Avro schemas of the protocol: loading, fingerprints, strict encoding and writer/reader resolution."""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import fastavro
from fastavro.schema import fingerprint as avro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate

from mesh.avro_rules import check_schema, loads
from mesh.errors import (
    ConfigurationError,
    IncompatibleSchemaError,
    MalformedPayloadError,
    UnannouncedCoreSchemaError,
    UnknownSchemaError,
)
from mesh.events import JOIN_REQUESTED, SCHEMA_PUBLISHED

Record = dict[str, Any]


#: Schemas every party must have built in; they change only with the protocol version, so they are
#: never announced, and a payload of theirs under any other fingerprint is refused (docs/protocol.md §2.4).
CORE_TYPES = frozenset({SCHEMA_PUBLISHED, JOIN_REQUESTED})


def strip_logical_types(schema: Any) -> Any:
    """``schema`` without its ``logicalType`` annotations: fingerprints and decoding see the plain types."""
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(v) for v in schema]
    return schema


def schema_dir() -> Path:
    """The folder holding the protocol's .avsc files (``INTERFED_SCHEMAS`` overrides)."""
    override = os.environ.get("INTERFED_SCHEMAS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "schemas"


def fingerprint_of(schema: Any) -> bytes:
    """CRC-64-AVRO of the parsing canonical form, as 8 bytes little-endian (Avro spec order)."""
    return bytes.fromhex(avro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@dataclass(frozen=True)
class Schema:
    """One record schema: its full name, fingerprint, JSON text and fastavro-parsed form."""

    full_name: str
    fingerprint: bytes
    json_text: str
    parsed: Any

    @classmethod
    def from_json(cls, json_text: str) -> Schema:
        """A protocol schema from its .avsc text: one Avro record that passes the spec's rules (``mesh.avro_rules``)."""
        raw = loads(json_text)
        if not isinstance(raw, dict) or raw.get("type") != "record":
            raise ValueError("a protocol schema must be one Avro record")
        check_schema(raw)
        # Logical types document meaning for other languages; here timestamps stay plain
        # longs, so any long a party may write also reads back (fastavro would make them
        # datetimes, which end at year 9999). Canonical form and fingerprint drop them anyway.
        parsed = cast(dict[str, Any], fastavro.parse_schema(strip_logical_types(raw), named_schemas={}))
        return cls(
            full_name=str(parsed["name"]),
            fingerprint=fingerprint_of(strip_logical_types(raw)),
            json_text=json_text,
            parsed=parsed,
        )


def encode(schema: Schema, record: Mapping[str, Any]) -> bytes:
    """Avro binary encoding of ``record`` under ``schema`` (no header, no framing)."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, record, strict=True)
    return buf.getvalue()


def decode(data: bytes, writer: Schema, reader: Schema | None = None) -> Record:
    """Decode exactly ``data``: truncated input and trailing bytes are both errors."""
    buf = io.BytesIO(data)
    try:
        record = fastavro.schemaless_reader(buf, writer.parsed, reader.parsed if reader else None)
    except fastavro.read.SchemaResolutionError as exc:
        raise IncompatibleSchemaError(f"{writer.full_name}: {exc}") from exc
    except Exception as exc:  # fastavro raises EOFError, StopIteration, UnicodeDecodeError, ...
        raise MalformedPayloadError(f"{writer.full_name}: undecodable ({type(exc).__name__})") from exc
    if buf.tell() != len(data):
        raise MalformedPayloadError(f"{writer.full_name}: {len(data) - buf.tell()} trailing bytes")
    if not isinstance(record, dict):
        raise MalformedPayloadError(f"{writer.full_name}: not a record")
    return record


@functools.lru_cache(maxsize=8)
def _schemas_in(folder: Path) -> tuple[Schema, ...]:
    """The schemas of a folder, parsed once per process: every service and publisher starts from them."""
    files = sorted(folder.rglob("*.avsc"))
    if not files:
        raise ConfigurationError(f"no Avro schemas under {folder}; set INTERFED_SCHEMAS to the schemas/ folder")
    return tuple(Schema.from_json(path.read_text(encoding="utf-8")) for path in files)


class SchemaStore:
    """The schemas this party writes with (readers, by name) and every writer schema it knows (by fingerprint)."""

    def __init__(self, schemas: list[Schema]) -> None:
        self._by_name: dict[str, Schema] = {}
        self._by_fingerprint: dict[bytes, Schema] = {}
        for schema in schemas:
            if schema.full_name in self._by_name:
                raise ConfigurationError(f"schema {schema.full_name} defined twice")
            self._by_name[schema.full_name] = schema
            self._by_fingerprint[schema.fingerprint] = schema

    @classmethod
    def load(cls, root: Path | None = None) -> SchemaStore:
        """Load every ``*.avsc`` under ``root`` (default: the protocol's schemas)."""
        return cls(list(_schemas_in(root or schema_dir())))

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_name.values())

    def by_name(self, full_name: str) -> Schema:
        """The local (reader) schema of that full name; ``UnknownSchemaError`` if this party has none."""
        try:
            return self._by_name[full_name]
        except KeyError:
            raise UnknownSchemaError(f"no local schema named {full_name}") from None

    def by_fingerprint(self, fingerprint: bytes) -> Schema | None:
        """The schema with that CRC-64-AVRO fingerprint, if known here (local or learned from ``schemas``)."""
        return self._by_fingerprint.get(fingerprint)

    def knows(self, full_name: str) -> bool:
        """Whether this party has a reader schema (understands events) of that name."""
        return full_name in self._by_name

    def learn(self, json_text: str, fingerprint: bytes, full_name: str) -> Schema:
        """Add a writer schema published by another party, after checking it is what it claims.

        The first schema learned for a fingerprint stays: CRC-64 identifies schemas but
        does not authenticate them, so a different schema under a known fingerprint is
        refused rather than allowed to replace it.
        """
        try:
            schema = Schema.from_json(json_text)
        except Exception as exc:  # fastavro raises many types for a bad schema
            raise MalformedPayloadError(f"published schema does not parse: {exc}") from None
        if schema.fingerprint != fingerprint or schema.full_name != full_name:
            raise IncompatibleSchemaError(
                f"published as {full_name} {fingerprint.hex()}, but the schema is "
                f"{schema.full_name} {schema.fingerprint.hex()}"
            )
        known = self._by_fingerprint.get(fingerprint)
        if known is not None and to_parsing_canonical_form(
            strip_logical_types(loads(known.json_text))
        ) != to_parsing_canonical_form(strip_logical_types(loads(json_text))):
            raise IncompatibleSchemaError(f"fingerprint {fingerprint.hex()} already names another schema")
        return self._by_fingerprint.setdefault(fingerprint, schema)

    def encode(self, full_name: str, record: Mapping[str, Any]) -> tuple[Schema, bytes]:
        """``record`` encoded under the local schema of that name, and the schema."""
        schema = self.by_name(full_name)
        return schema, encode(schema, record)

    def decode(self, full_name: str, fingerprint: bytes, data: bytes) -> Record:
        """Decode a payload written under ``fingerprint`` into this party's view of ``full_name``."""
        writer = self._by_fingerprint.get(fingerprint)
        if full_name in CORE_TYPES and fingerprint != self._by_name[full_name].fingerprint:
            # Never announced, so no other fingerprint can become known: refused now, not waited for.
            raise UnannouncedCoreSchemaError(f"core schema {full_name} is not {fingerprint.hex()}")
        if writer is None:
            raise UnknownSchemaError(f"unknown writer schema {fingerprint.hex()} for {full_name}")
        if writer.full_name != full_name:
            raise MalformedPayloadError(f"fingerprint {fingerprint.hex()} is {writer.full_name}, not {full_name}")
        reader = self._by_name.get(full_name)
        if reader is None:
            raise UnknownSchemaError(f"this party has no reader schema for {full_name}")
        # One payload, one encoding, judged under the writer's own schema whatever the reader:
        # fastavro accepts non-minimal varints, ints beyond 32 bits and negative union indexes
        # that a Java or Go reader refuses; validating and re-encoding tells.
        record = decode(data, writer)
        try:
            canonical = validate(record, writer.parsed, raise_errors=False) and encode(writer, record) == data
        except (ValueError, TypeError, OverflowError):
            canonical = False
        if not canonical:
            raise MalformedPayloadError(f"{full_name}: not the canonical Avro encoding of valid values")
        return record if reader is writer else decode(data, writer, reader)
