"""Describing a local data file as catalog metadata: row count, columns (type, role, distribution), digest.

Only metadata leaves this module; the rows stay in the file on the owner's disk. Per-column
statistics are computed only when the owner opts in for the dataset.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh import events
from services.catalog.errors import DatasetFileError

#: An int column with at most this many distinct values is DISCRETE (codes, counts, flags);
#: beyond it, CONTINUOUS. Doubles are always CONTINUOUS, strings, booleans and id columns DISCRETE.
DISCRETE_MAX_DISTINCT = 20

PARQUET_HINT = "reading Parquet needs pyarrow: install interfed with its extra, pip install 'interfed[parquet]'"


@dataclass(frozen=True)
class Description:
    """What the catalog publishes about one file."""

    format: str
    row_count: int
    columns: list[events.ColumnMeta]
    content_sha256: bytes


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise DatasetFileError(f"{path.name}: unknown format; the catalog reads .csv and .parquet files")


def describe(
    path: Path,
    *,
    id_columns: Sequence[str] = (),
    label_columns: Sequence[str] = (),
    with_stats: bool = False,
) -> Description:
    """Describe ``path``. Columns named in ``id_columns`` / ``label_columns`` get those roles (a column
    named ``id`` is an id column unless ids are given); every other column is a feature."""
    if not path.is_file():
        raise DatasetFileError(f"{path}: no such file")
    fmt = format_of(path)
    names, profiles, rows = _read_csv(path) if fmt == "csv" else _read_parquet(path)
    for wanted in (*id_columns, *label_columns):
        if wanted not in names:
            raise DatasetFileError(f"{path.name} has no column {wanted!r}; it has {', '.join(names)}")
    ids = set(id_columns) if id_columns else {"id"} & set(names)
    columns: list[events.ColumnMeta] = []
    for name, prof in zip(names, profiles, strict=True):
        role = "id" if name in ids else "label" if name in label_columns else "feature"
        columns.append(
            {
                "name": name,
                "data_type": prof.data_type,
                "role": role,
                "distribution": "DISCRETE" if role == "id" else prof.distribution,  # an identifier is a label
                "description": "",
                "stats": prof.stats() if with_stats else None,
            }
        )
    return Description(format=fmt, row_count=rows, columns=columns, content_sha256=file_sha256(path))


class _Profile:
    """One column's values as far as metadata needs them: the narrowest type that fits, and a summary."""

    def __init__(self, data_type: str | None = None) -> None:
        self.fixed_type = data_type  # known from the file's own schema (Parquet)
        self.is_int = self.is_float = self.is_bool = True
        self.missing = 0
        self.distinct: set[Any] = set()
        self.numbers: list[float] = []

    def add(self, value: Any) -> None:
        if value is None or value == "":
            self.missing += 1
            return
        self.distinct.add(value)
        if self.fixed_type is not None:
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.numbers.append(float(value))
            return
        text = str(value).strip()
        self.is_bool = self.is_bool and text.lower() in ("true", "false")
        try:
            number = float(text)
        except ValueError:
            self.is_int = self.is_float = False
            return
        self.is_float = self.is_float and math.isfinite(number)
        self.is_int = self.is_int and number.is_integer() and "." not in text and "e" not in text.lower()
        self.numbers.append(number)

    @property
    def data_type(self) -> str:
        if self.fixed_type is not None:
            return self.fixed_type
        if not self.distinct:
            return "varchar"
        if self.is_int:
            return "int"
        if self.is_float:
            return "double"
        return "boolean" if self.is_bool else "varchar"

    @property
    def distribution(self) -> str:
        kind = self.data_type
        if kind == "double" or (kind == "int" and len(self.distinct) > DISCRETE_MAX_DISTINCT):
            return "CONTINUOUS"
        return "DISCRETE"

    def stats(self) -> events.ColumnStats:
        numeric = self.data_type in ("int", "double") and self.numbers
        return {
            "missing": self.missing,
            "distinct": len(self.distinct),
            "min": min(self.numbers) if numeric else None,
            "max": max(self.numbers) if numeric else None,
            "mean": math.fsum(self.numbers) / len(self.numbers) if numeric else None,
        }


def _read_csv(path: Path) -> tuple[list[str], list[_Profile], int]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise DatasetFileError(f"{path.name}: empty file; a CSV dataset needs a header row")
            profiles = [_Profile() for _ in header]
            rows = _fill(profiles, reader, len(header), path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetFileError(f"{path.name}: not a UTF-8 CSV file ({exc})") from None
    _unique_names(header, path)
    return header, profiles, rows


def _fill(profiles: list[_Profile], rows: Iterable[list[str]], width: int, path: Path) -> int:
    count = 0
    for count, row in enumerate(rows, 1):  # the last count is the row count
        if len(row) != width:
            raise DatasetFileError(f"{path.name}: row {count} has {len(row)} fields, the header {width}")
        for prof, value in zip(profiles, row, strict=True):
            prof.add(value)
    return count


def _unique_names(names: list[str], path: Path) -> None:
    if "" in names or len(set(names)) != len(names):
        raise DatasetFileError(f"{path.name}: column names must be unique and non-empty")


def _read_parquet(path: Path) -> tuple[list[str], list[_Profile], int]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetFileError(PARQUET_HINT) from None
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetFileError(f"{path.name}: not a readable Parquet file ({exc})") from None
    names = list(table.column_names)
    _unique_names(names, path)
    profiles = []
    for name in names:
        column = table.column(name)
        prof = _Profile(_arrow_type(pa, column.type))
        for value in column.to_pylist():
            prof.add(value)
        profiles.append(prof)
    return names, profiles, table.num_rows


def _arrow_type(pa: Any, kind: Any) -> str:
    types = pa.types
    if types.is_boolean(kind):
        return "boolean"
    if types.is_integer(kind):
        return "int"
    if types.is_floating(kind) or types.is_decimal(kind):
        return "double"
    if types.is_string(kind) or types.is_large_string(kind):
        return "varchar"
    return str(kind)
