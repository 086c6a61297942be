"""make test's lane choice: Apache Kafka where Java 17+ and Maven exist, else one line saying why."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

LANES = Path(__file__).resolve().parents[1] / "lanes.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lanes", LANES)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_java(monkeypatch: pytest.MonkeyPatch, lanes: ModuleType, version: str | None, mvn: bool) -> None:
    monkeypatch.setattr(
        lanes.shutil,
        "which",
        lambda name: (
            None if (name == "mvn" and not mvn) or (name == "java" and version is None) else f"/usr/bin/{name}"
        ),
    )
    monkeypatch.setattr(
        lanes.subprocess,
        "run",
        lambda *a, **k: subprocess.CompletedProcess(
            a, 0, stdout="", stderr=f'openjdk version "{version}" 2025-04-15\n'
        ),
    )


@pytest.mark.parametrize(
    ("version", "mvn", "why"),
    [
        (None, True, "java not found"),
        ("11.0.2", True, "java 11 found, Apache Kafka needs 17+"),
        ("1.8.0_392", True, "java 8 found, Apache Kafka needs 17+"),
        ("17.0.15", False, "mvn (Maven) not found"),
        ("21.0.1", True, None),
    ],
)
def test_kafka_lane_needs_java_17_and_maven(
    monkeypatch: pytest.MonkeyPatch, version: str | None, mvn: bool, why: str | None
) -> None:
    lanes = load()
    fake_java(monkeypatch, lanes, version, mvn)
    assert lanes.kafka_missing() == why
