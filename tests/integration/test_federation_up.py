"""``interfed federation up FILE`` as a team runs it: a process that brings a local federation up on the embedded
broker, answers read commands from its nodes' views, and stops everything on Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mesh.snapshot import node_running, pid_alive

FILE = """
name = "trial"
[operator]
institution = "Trial operator"
[[node]]
node_id = "bank"
institution = "Example Bank"
platform = "fate"
datasets = ["bank.csv"]
[[node]]
node_id = "hospital"
institution = "City Hospital"
platform = "secretflow"
"""


def interfed(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "interfed", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert proc.returncode == 0, f"interfed {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    """The lines ``proc`` printed up to the one holding ``needle`` (read by a thread: a pipe read blocks)."""
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    stream = proc.stdout

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
            if needle in line:
                return
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            proc.wait(30)
            raise AssertionError(f"federation up exited {proc.returncode}:\n" + "\n".join(seen))
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"no {needle!r} within {timeout} s:\n" + "\n".join(seen))


def run_federation(file: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "interfed", "federation", "up", str(file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=90)
    return rest


@pytest.mark.slow
@pytest.mark.tansu
@pytest.mark.timeout(420)
def test_federation_up_runs_a_local_federation_until_ctrl_c_and_again_from_its_homes(tmp_path: Path) -> None:
    (tmp_path / "bank.csv").write_text("id,x\na,1\nb,2\n", encoding="utf-8")
    file = tmp_path / "trial.toml"
    file.write_text(FILE, encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("INTERFED_BOOTSTRAP", "INTERFED_TOPIC_PREFIX")},
        "COLUMNS": "250",
        "INTERFED_HEARTBEAT_INTERVAL": "0.5",
    }
    homes = tmp_path / "trial-homes"
    for run in ("first", "again"):
        proc = run_federation(file, env)
        try:
            printed = "\n".join(wait_for_line(proc, "federation trial ready", 240))
            bootstrap = printed.split("ready: 3 nodes up on ")[1].split(";")[0]
            status = json.loads(interfed("node", "status", "--home", str(homes / "bank"), "--json", env=env).stdout)
            assert status["up"]
            assert status["broker"] == bootstrap
            # each node's Paillier work on its own worker process (one each: the nodes share the machine)
            assert status["accelerator"] == {
                "mode": "workers",
                "runs_on": "the node's 1 accelerator worker process(es)",
                "workers": 1,
                "serves": False,
            }
            pids = [int(line.split("│")[4]) for line in printed.splitlines() if line.count("│") == 6]
            assert len(pids) == 3
            read = interfed("registry", "nodes", "--home", str(homes / "hospital"), "--bootstrap", bootstrap,
                            "--json", env=env)  # fmt: skip
            rows = json.loads(read.stdout)
            assert {r["node_id"]: r["health"] for r in rows} == {"bank": "HEALTHY", "hospital": "HEALTHY"}
            assert "from the running node's view (hospital" in read.stderr
            replayed = interfed("catalog", "list", "--home", str(homes / "hospital"), "--replay", "--json",
                                "--bootstrap", bootstrap, env=env)  # fmt: skip
            assert [d["dataset_id"] for d in json.loads(replayed.stdout)] == ["bank/bank"]
            assert "replayed from the broker" in replayed.stderr
            table = interfed("registry", "nodes", "--home", str(homes / "operator"), env=env).stdout
            assert "bank" in table
            assert "hospital" in table
            # a dataset published a moment ago is shown at once: not in the node's view yet, the broker answers
            name = f"fresh-{run}"
            published = interfed("catalog", "publish", str(tmp_path / "bank.csv"), "--name", name,
                                 "--home", str(homes / "hospital"), "--bootstrap", bootstrap, env=env)  # fmt: skip
            assert published.returncode == 0, published.stderr
            shown = interfed("catalog", "show", f"hospital/{name}", "--home", str(homes / "hospital"), "--json",
                             "--bootstrap", bootstrap, env=env)  # fmt: skip
            assert shown.returncode == 0, shown.stderr
            assert json.loads(shown.stdout)["dataset_id"] == f"hospital/{name}"
        finally:
            rest = stop(proc)
        assert proc.returncode == 0, rest
        assert f"federation trial stopped; homes kept in {homes}" in rest
        for node in ("operator", "bank", "hospital"):
            assert not node_running(homes / node), node
        assert not any(pid_alive(p) for p in pids)
        if run == "first":
            assert "created the homes of operator, bank, hospital" in printed
        else:
            assert "created the homes" not in printed  # the same homes, the same keys
            assert "joined and approved" in printed  # the embedded broker forgot the first run's history
