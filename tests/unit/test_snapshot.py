"""The running node's views file (mesh/snapshot.py): a read answers from it only while the node that wrote it runs,
checked its views lately and reads the same broker and prefix; otherwise the command replays."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mesh.errors import ConfigurationError
from mesh.settings import MeshSettings
from mesh.snapshot import (
    DEFAULT_TOPIC_PREFIX,
    FRESH_SECONDS,
    LOCK_FILE,
    VIEWS_FILE,
    SnapshotWriter,
    live_snapshot,
    node_running,
    read_snapshot,
    run_dir,
)
from services.catalog import service as catalog_service
from services.catalog.cli import POLICY_FILE

ROWS = {"jobs": [{"job_id": "j1", "status": "RUNNING"}], "nodes": [{"node_id": "bank", "health": "HEALTHY"}]}


def writer(home: Path, **about: object) -> SnapshotWriter:
    w = SnapshotWriter(
        home,
        node_id="bank",
        bootstrap=str(about.get("bootstrap", "127.0.0.1:9092")),
        topic_prefix=str(about.get("topic_prefix", DEFAULT_TOPIC_PREFIX)),
        services=["registry", "executor"],
        accelerator={"mode": "workers", "workers": 2},
    )
    w.open()
    return w


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_written_views_read_back_with_what_the_node_said_about_itself(tmp_path: Path) -> None:
    w = writer(tmp_path)
    try:
        assert w.write(ROWS)
        snap, why = live_snapshot(tmp_path, "127.0.0.1:9092", DEFAULT_TOPIC_PREFIX)
        assert why == ""
        assert snap is not None
        assert snap.views == ROWS
        assert snap.pid == os.getpid()
        assert snap.node_id == "bank"
        assert snap.services == ["registry", "executor"]
        assert snap.accelerator == {"mode": "workers", "workers": 2}
        assert snap.age() < FRESH_SECONDS
    finally:
        w.close()


def test_unchanged_views_only_touch_the_file_and_changed_ones_replace_it(tmp_path: Path) -> None:
    w = writer(tmp_path)
    try:
        w.write(ROWS)
        path = run_dir(tmp_path) / VIEWS_FILE
        before = path.stat()
        os.utime(path, (before.st_atime - 30, before.st_mtime - 30))
        assert not w.write(ROWS)  # nothing changed: the check time moves on, the content stays
        assert path.stat().st_mtime > before.st_mtime - 1
        assert path.stat().st_ino == before.st_ino
        assert w.write({**ROWS, "jobs": []})
        assert path.stat().st_ino != before.st_ino  # replaced, never rewritten in place
        snap = read_snapshot(tmp_path)
        assert snap is not None
        assert snap.views["jobs"] == []
    finally:
        w.close()


def test_a_view_the_node_stopped_checking_is_not_used(tmp_path: Path) -> None:
    w = writer(tmp_path)
    try:
        w.write(ROWS)
        path = run_dir(tmp_path) / VIEWS_FILE
        old = time.time() - FRESH_SECONDS - 1
        os.utime(path, (old, old))
        snap, why = live_snapshot(tmp_path, None)
        assert snap is None
        assert "old" in why
    finally:
        w.close()


def test_a_dead_pid_means_replay(tmp_path: Path) -> None:
    w = writer(tmp_path)
    try:
        w.about["pid"] = dead_pid()
        w.write(ROWS)
        assert node_running(tmp_path)  # the lock is held (by this process), but the writer's pid is gone
        snap, why = live_snapshot(tmp_path, None)
        assert snap is None
        assert "not running" in why
    finally:
        w.close()


def test_a_node_that_died_leaves_its_file_but_not_its_lock(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.write(ROWS)
    assert w._lock is not None
    os.close(w._lock)  # a crash, as the kernel ends it: the lock goes, the file stays
    assert (run_dir(tmp_path) / VIEWS_FILE).exists()
    assert not node_running(tmp_path)
    assert live_snapshot(tmp_path, None)[0] is None


def test_a_clean_stop_removes_the_file_and_releases_the_lock(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.write(ROWS)
    w.close()
    assert not (run_dir(tmp_path) / VIEWS_FILE).exists()
    assert (run_dir(tmp_path) / LOCK_FILE).exists()
    assert not node_running(tmp_path)
    assert live_snapshot(tmp_path, None) == (None, "no running node's view in this home")


def test_another_broker_or_prefix_means_replay(tmp_path: Path) -> None:
    w = writer(tmp_path, bootstrap="127.0.0.1:1111", topic_prefix="fed-a.")
    try:
        w.write(ROWS)
        assert live_snapshot(tmp_path, "127.0.0.1:2222", "fed-a.")[0] is None
        assert live_snapshot(tmp_path, None, "fed-b.")[0] is None
        assert live_snapshot(tmp_path, None, "fed-a.")[0] is not None  # no broker given: the node's own
        assert live_snapshot(tmp_path, "127.0.0.1:1111", "fed-a.")[0] is not None
    finally:
        w.close()


def test_a_torn_or_foreign_file_is_no_snapshot(tmp_path: Path) -> None:
    run_dir(tmp_path).mkdir()
    (run_dir(tmp_path) / VIEWS_FILE).write_text('{"format": 1, "node_id": "bank"', encoding="utf-8")
    assert read_snapshot(tmp_path) is None
    (run_dir(tmp_path) / VIEWS_FILE).write_text('{"format": 99}', encoding="utf-8")
    assert read_snapshot(tmp_path) is None


def test_names_kept_light_equal_the_ones_they_stand_for() -> None:
    assert MeshSettings.model_fields["topic_prefix"].default == DEFAULT_TOPIC_PREFIX
    assert catalog_service.POLICY_FILE == POLICY_FILE


def test_one_node_up_per_home_and_the_views_are_private(tmp_path: Path) -> None:
    """A second node up on the same home is refused in one line (two executors would run as one node); the views
    (datasets, permits, jobs) are readable by the node's user only; a file left by a dead node is not reused."""
    run_dir(tmp_path).mkdir(mode=0o700)
    (run_dir(tmp_path) / VIEWS_FILE).write_text("left by a node that died", encoding="utf-8")
    first = writer(tmp_path)
    try:
        assert not (run_dir(tmp_path) / VIEWS_FILE).exists()
        with pytest.raises(ConfigurationError, match="another 'interfed node up' runs with the home"):
            writer(tmp_path)
        first.write(ROWS)
        assert stat.S_IMODE((run_dir(tmp_path) / VIEWS_FILE).stat().st_mode) == 0o600
        assert stat.S_IMODE(run_dir(tmp_path).stat().st_mode) == 0o700
        assert node_running(tmp_path)
        assert node_running(tmp_path)  # a probe does not take the node's place
    finally:
        first.close()
    assert not node_running(tmp_path)
