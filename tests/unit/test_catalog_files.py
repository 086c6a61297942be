"""Metadata extraction from CSV and Parquet: types, roles, distributions, row counts, digests, opt-in statistics."""

from __future__ import annotations

import builtins
import hashlib
from pathlib import Path
from typing import Any

import pytest

from services.catalog.errors import DatasetFileError
from services.catalog.files import DISCRETE_MAX_DISTINCT, PARQUET_HINT, describe

CSV = "id,age,income,plan,active,defaulted\n" + "".join(
    f"{i},{20 + i % 50},{1000.5 + i * 3.25},{'abc'[i % 3]},{'true' if i % 2 else 'false'},{i % 2}\n" for i in range(60)
)


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "loans.csv"
    path.write_text(CSV, encoding="utf-8")
    return path


def by_name(columns: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in columns}


def test_csv_types_roles_and_distributions(csv_file: Path) -> None:
    found = describe(csv_file, label_columns=["defaulted"])
    cols = by_name(found.columns)
    assert (found.format, found.row_count) == ("csv", 60)
    assert found.content_sha256 == hashlib.sha256(csv_file.read_bytes()).digest()
    assert [c["name"] for c in found.columns] == ["id", "age", "income", "plan", "active", "defaulted"]
    assert {n: c["data_type"] for n, c in cols.items()} == {
        "id": "int",
        "age": "int",
        "income": "double",
        "plan": "varchar",
        "active": "boolean",
        "defaulted": "int",
    }
    assert {n: c["role"] for n, c in cols.items()} == {
        "id": "id",
        "age": "feature",
        "income": "feature",
        "plan": "feature",
        "active": "feature",
        "defaulted": "label",
    }
    # 50 ages exceed the discrete limit; 2 labels, 3 plans do not; identifiers are never continuous.
    assert DISCRETE_MAX_DISTINCT < 50
    assert [cols[n]["distribution"] for n in ("id", "age", "income", "plan", "active", "defaulted")] == [
        "DISCRETE",
        "CONTINUOUS",
        "CONTINUOUS",
        "DISCRETE",
        "DISCRETE",
        "DISCRETE",
    ]


def test_no_statistics_unless_asked(csv_file: Path) -> None:
    assert all(c["stats"] is None for c in describe(csv_file).columns)
    stats = by_name(describe(csv_file, with_stats=True).columns)
    ages = [20 + i % 50 for i in range(60)]
    assert stats["age"]["stats"] == {"missing": 0, "distinct": 50, "min": 20.0, "max": 69.0, "mean": sum(ages) / 60}
    assert stats["plan"]["stats"] == {"missing": 0, "distinct": 3, "min": None, "max": None, "mean": None}


def test_missing_cells_are_counted_and_do_not_change_the_type(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("a,b\n1,\n,x\n3,y\n", encoding="utf-8")
    cols = by_name(describe(path, with_stats=True).columns)
    assert (cols["a"]["data_type"], cols["a"]["stats"]["missing"]) == ("int", 1)
    assert (cols["b"]["data_type"], cols["b"]["stats"]["missing"]) == ("varchar", 1)


def test_explicit_id_columns_replace_the_default(csv_file: Path) -> None:
    cols = by_name(describe(csv_file, id_columns=["plan"]).columns)
    assert (cols["plan"]["role"], cols["id"]["role"]) == ("id", "feature")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.xlsx", "a\n1\n", "unknown format"),
        ("x.csv", "", "header row"),
        ("x.csv", "a,b\n1\n", "row 1 has 1 fields"),
        ("x.csv", "a,a\n1,2\n", "unique"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetFileError, match=message):
        describe(path)


def test_unknown_label_column_is_named(csv_file: Path) -> None:
    with pytest.raises(DatasetFileError, match="no column 'target'"):
        describe(csv_file, label_columns=["target"])


def test_parquet_metadata_comes_from_its_schema(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="the parquet extra is part of dev")
    import pyarrow.parquet as pq

    path = tmp_path / "calls.parquet"
    table = pa.table(
        {
            "id": pa.array(range(30), pa.int64()),
            "minutes": pa.array([i * 1.5 for i in range(30)], pa.float64()),
            "region": pa.array(["n", "s", None] * 10, pa.string()),
            "churned": pa.array([i % 2 == 0 for i in range(30)], pa.bool_()),
        }
    )
    pq.write_table(table, path)
    found = describe(path, label_columns=["churned"], with_stats=True)
    cols = by_name(found.columns)
    assert (found.format, found.row_count) == ("parquet", 30)
    assert {n: (c["data_type"], c["role"], c["distribution"]) for n, c in cols.items()} == {
        "id": ("int", "id", "DISCRETE"),
        "minutes": ("double", "feature", "CONTINUOUS"),
        "region": ("varchar", "feature", "DISCRETE"),
        "churned": ("boolean", "label", "DISCRETE"),
    }
    assert cols["region"]["stats"]["missing"] == 10
    assert cols["minutes"]["stats"]["max"] == 43.5


def test_parquet_without_pyarrow_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DatasetFileError) as caught:
        describe(path)
    assert str(caught.value) == PARQUET_HINT
    assert "interfed[parquet]" in PARQUET_HINT
