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
        ("11.0.2", True, "java 11 found, 17+ needed"),
        ("1.8.0_392", True, "java 8 found, 17+ needed"),
        ("17.0.15", False, "mvn (Maven) not found"),
        ("21.0.1", True, None),
    ],
)
def test_kafka_and_the_java_client_need_java_17_and_maven(
    monkeypatch: pytest.MonkeyPatch, version: str | None, mvn: bool, why: str | None
) -> None:
    lanes = load()
    fake_java(monkeypatch, lanes, version, mvn)
    assert lanes.java_missing() == why


@pytest.mark.parametrize(("version", "mvn"), [(None, True), ("17.0.15", False), ("21.0.1", True)])
def test_the_java_client_is_built_first_or_its_tests_deselected_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], version: str | None, mvn: bool
) -> None:
    lanes = load()
    fake_java(monkeypatch, lanes, version, mvn)
    calls: list[list[str]] = []

    def record(args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        if args[0] == "java":
            return subprocess.CompletedProcess(args, 0, stdout="", stderr=f'openjdk version "{version}"\n')
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(lanes.subprocess, "run", record)
    assert lanes.main(["kafka"]) == 0
    runs = [c for c in calls if c[0] != "java"]
    if version and mvn:
        assert runs[0][:2] == ["mvn", "-B"]
        assert runs[0][-1] == "package"
        assert "not java" not in runs[1]
    else:
        assert not any(c[0] == "mvn" for c in runs)
        assert runs[-1][-2:] == ["-m", "not java"]
        assert capsys.readouterr().out.startswith("Java client skipped: ")


def test_a_failed_java_client_build_fails_the_run_before_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    lanes = load()
    fake_java(monkeypatch, lanes, "17.0.15", mvn=True)
    calls: list[list[str]] = []

    def record(args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        if args[0] == "java":
            return subprocess.CompletedProcess(args, 0, stdout="", stderr='openjdk version "17.0.15"\n')
        return subprocess.CompletedProcess(args, 1 if args[0] == "mvn" else 0)

    monkeypatch.setattr(lanes.subprocess, "run", record)
    assert lanes.main([]) == 1
    assert calls[-1][0] == "mvn"
