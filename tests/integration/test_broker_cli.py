"""``interfed broker up`` as an operator runs it: a real broker in the foreground, stopped by a signal, and its
mistakes answered with one line and the exit code of docs/operations.md."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mesh.cli import EXIT_CONFIG, EXIT_USAGE


def interfed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interfed", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.timeout(120)
def test_the_embedded_broker_runs_until_a_signal_and_answers_meanwhile(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "interfed", "broker", "up", "--workdir", str(tmp_path / "tansu")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("bootstrap=127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # it listens
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--port", "70000"], EXIT_USAGE, "--port"),
        (["--kind", "zookeeper"], EXIT_USAGE, "zookeeper"),
        (["--secure"], EXIT_CONFIG, "--secure needs the operator's --home"),
        (["--secure", "--home", "op"], EXIT_CONFIG, "--secure is for Apache Kafka"),
    ],
)
def test_a_bad_broker_command_gets_one_line_and_its_exit_code(args: list[str], code: int, says: str) -> None:
    proc = interfed("broker", "up", *args)
    assert proc.returncode == code, proc.stderr
    assert says in proc.stderr
    assert proc.stderr.startswith("interfed: error:")
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
