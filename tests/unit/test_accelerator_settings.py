"""Where a node's Paillier work runs: HOME/accelerator.toml, overridden by node up's options; errors in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.errors import ConfigurationError
from services.accel.placement import ACCELERATOR_FILE, AcceleratorSettings


def test_without_a_file_the_node_runs_one_worker_per_core(tmp_path: Path) -> None:
    settings = AcceleratorSettings.of_home(tmp_path)
    assert settings.mode == "workers"
    assert settings.workers == 0
    assert settings.worker_count >= 1


def test_the_file_is_read_and_the_command_line_overrides_it(tmp_path: Path) -> None:
    (tmp_path / ACCELERATOR_FILE).write_text('mode = "service"\ntimeout = 5\n', encoding="utf-8")
    read = AcceleratorSettings.of_home(tmp_path)
    assert (read.mode, read.timeout, read.retries) == ("service", 5.0, 2)
    overridden = AcceleratorSettings.of_home(tmp_path, mode="workers", workers=3)
    assert (overridden.mode, overridden.worker_count, overridden.timeout) == ("workers", 3, 5.0)


@pytest.mark.parametrize(
    ("text", "overrides", "named"),
    [
        ('mode = "gpu"\n', {}, "mode"),
        ("workers = -1\n", {}, "workers"),
        ("threads = 4\n", {}, "threads"),
        ("mode = \n", {}, "not TOML"),
        ("", {"mode": "fast"}, "mode"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path, text: str, overrides: dict[str, str], named: str) -> None:
    (tmp_path / ACCELERATOR_FILE).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as raised:
        AcceleratorSettings.of_home(tmp_path, **overrides)
    assert named in str(raised.value)
    assert "\n" not in str(raised.value)
