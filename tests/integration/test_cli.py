"""The command line as an operator uses it: real processes against a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mesh.testing import fresh_settings


def interfed(
    *args: str, env: dict[str, str], check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "interfed", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"interfed {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.mark.broker
@pytest.mark.timeout(240)
def test_operator_and_node_join_through_the_cli(bootstrap: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "INTERFED_BOOTSTRAP": bootstrap,
        "COLUMNS": "200",
        "INTERFED_TOPIC_PREFIX": fresh_settings().topic_prefix,
        "INTERFED_HEARTBEAT_INTERVAL": "0.5",
    }
    op, bank = tmp_path / "op", tmp_path / "bank"
    interfed("federation", "create", "--home", str(op), "--name", "cli-test", env=env)
    interfed(
        "node",
        "create",
        "--home",
        str(bank),
        "--federation",
        str(op / "federation"),
        "--node-id",
        "bank",
        "--institution",
        "Example Bank",
        "--platform",
        "fate",
        env=env,
    )
    applied = interfed("node", "join", "--home", str(bank), env=env).stdout
    contract = applied.split("contract ")[1].split(";")[0].strip()
    pending = json.loads(interfed("registry", "nodes", "--home", str(op), "--json", env=env).stdout)
    assert [(r["node_id"], r["contract"], r["health"]) for r in pending] == [("bank", "REQUESTED", "PENDING")]
    interfed("registry", "approve", contract, "--home", str(op), env=env)
    node = subprocess.Popen(
        [sys.executable, "-m", "interfed", "node", "up", "--home", str(bank)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            rows = json.loads(interfed("registry", "nodes", "--home", str(op), "--json", env=env).stdout)
            if rows and rows[0]["health"] == "HEALTHY":
                break
            time.sleep(0.5)
        assert rows[0]["health"] == "HEALTHY", rows
        assert (bank / "node.pem").exists()
        table = interfed("registry", "nodes", "--home", str(bank), env=env).stdout
        assert "bank" in table
        assert "HEALTHY" in table
    finally:
        node.terminate()
        printed, err = node.communicate(timeout=30)
    assert node.returncode == 0, err
    assert "catalog, components, executor)" in printed  # the executor runs over this node's store and catalog
    # by default its Paillier work runs on the node's own accelerator workers, one per core
    assert f"Paillier work on the node's {os.cpu_count()} accelerator worker process(es)" in printed
    log = (bank / "logs" / "bank.jsonl").read_text()
    assert '"event": "announced"' in log


def test_bad_arguments_get_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ}
    proc = interfed("node", "create", "--home", str(tmp_path), "--no-such-flag", env=env, check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "no such option" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
    proc = interfed("node", "up", "--home", str(tmp_path), "--accel", "gpu", env=env, check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "'gpu' is not one of 'workers', 'service', 'in-process'" in proc.stderr


def test_missing_home_says_what_to_do_and_exits_3(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "INTERFED_BOOTSTRAP"}
    proc = interfed(
        "registry", "nodes", "--home", str(tmp_path / "nowhere"), "--bootstrap", "127.0.0.1:1", env=env, check=False
    )
    assert proc.returncode == 3
    assert "interfed node create" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_environment_variable_is_named(tmp_path: Path) -> None:
    env = {**os.environ, "INTERFED_MAX_RECORD_BYTES": "lots"}
    proc = interfed("registry", "nodes", "--home", str(tmp_path), env=env, check=False)
    assert proc.returncode == 3
    assert "INTERFED_MAX_RECORD_BYTES" in proc.stderr


@pytest.mark.broker
@pytest.mark.timeout(360)
def test_demo_runs_the_main_job_to_completion(bootstrap: str, tmp_path: Path) -> None:
    env = {**os.environ, "INTERFED_TOPIC_PREFIX": fresh_settings().topic_prefix, "COLUMNS": "200"}
    proc = interfed(
        "demo", "--bootstrap", bootstrap, "--workdir", str(tmp_path / "demo"), env=env, check=False, timeout=330
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo complete" in proc.stdout
    for party in ("bank", "hospital", "telecom"):
        assert f"node directory as {party} sees it" in proc.stdout
    assert proc.stdout.count("HEALTHY") >= 12
    assert "audit passed" in proc.stdout
    assert "final signed tree head" in proc.stdout
    assert "every party has hfl 1.0.0 installed and enabled" in proc.stdout  # published by the bank, verified
    assert "SUCCESS released" in proc.stdout  # the job: accepted by all, trained, its model released
    assert "released model" in proc.stdout
    # the vertical stage: PSI, then hetero LR on its output through the accelerators, released, compared
    assert "have psi and hetero_lr installed from the bank's built-ins" in proc.stdout
    assert "the PSI job runs" in proc.stdout
    assert "Paillier via the accelerators" in proc.stdout
    assert "used once per job under its permit" in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if "AUC federated | centralised" in line)
    federated, centralised = (float(v) for v in row.split("│")[2].split("|"))
    assert abs(federated - centralised) <= 0.005
    assert federated > 0.95
    intersection = next(line for line in proc.stdout.splitlines() if "intersection (rows)" in line)
    assert 300 < int(intersection.split("│")[2]) < 420  # about 0.8 x 0.8 of 569 ids on both sides
    for stage in ("join", "datasets and permits", "component migration, HFL job", "vertical", "audit"):
        assert f"time: {stage}" in proc.stdout
    report = json.loads((tmp_path / "demo" / "audit.json").read_text(encoding="utf-8"))
    assert report["passed"]
    assert report["final_head"]["tree_size"] == report["tree_size"] > 0


def test_bad_node_id_says_what_a_node_id_is(tmp_path: Path) -> None:
    env = {**os.environ}
    interfed("federation", "create", "--home", str(tmp_path / "op"), "--name", "f", env=env)
    proc = interfed(
        "node",
        "create",
        "--home",
        str(tmp_path / "n"),
        "--federation",
        str(tmp_path / "op" / "federation"),
        "--node-id",
        "Bad Id",
        "--institution",
        "i",
        "--platform",
        "p",
        env=env,
        check=False,
    )
    assert proc.returncode == 3
    assert proc.stderr.strip() == (
        "interfed: error: bad --node-id 'Bad Id': a node id is 1-63 lower-case letters, "
        "digits, '.', '_' or '-', starting with a letter or digit"
    )
    assert not (tmp_path / "n").exists()
