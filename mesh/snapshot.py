"""The running node's views on disk: a snapshot ``interfed node up`` keeps in its home for quick local reads.

``interfed node up`` holds ``HOME/run/node.lock`` (an exclusive ``flock``: one ``node up`` per home) for as long as
it runs, and keeps ``HOME/run/views.json`` (mode 0600 in a 0700 folder): the rows its services' views give the read
commands (the node directory, datasets, permits, components, jobs), its pid, when it started, its broker, its
services and its accelerator. It checks its views once a second and replaces the file (write, then rename) only when
a row changed; otherwise it touches the file, so the file's modification time says when the node last checked.

A read command uses the snapshot only when the node that wrote it still runs (the lock is held and its pid is
alive), it checked its views less than ``FRESH_SECONDS`` ago, and it reads the same broker and topic prefix as the
command would. Otherwise the command replays the topics, as it always did. "Fresh" says the node's loop ran, not
that its readers are at the broker's end: a view can lag the topics by what the node has not read yet (a
paused broker), as any running node's view does. Only light modules here, so that a read answered from the
snapshot starts quickly.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.errors import ConfigurationError
from mesh.private_files import private_folder, write_private

RUN_DIR = "run"
VIEWS_FILE = "views.json"
LOCK_FILE = "node.lock"
#: The node checks its views every second; a snapshot not checked for this long is not used (the node hangs).
FRESH_SECONDS = 5.0
#: MeshSettings.topic_prefix's default (a unit test keeps them equal): read here without loading pydantic.
DEFAULT_TOPIC_PREFIX = "interfed."
FORMAT = 1


def run_dir(home: Path) -> Path:
    """The folder of what a running node keeps for the command line: ``HOME/run``."""
    return home / RUN_DIR


@dataclass(frozen=True)
class Snapshot:
    """A node's views as ``node up`` wrote them, and what it said about itself."""

    node_id: str
    pid: int
    started_at: float
    written_at: float
    checked_at: float
    bootstrap: str
    topic_prefix: str
    services: list[str]
    accelerator: dict[str, Any] | None
    views: dict[str, Any]

    def age(self, now: float | None = None) -> float:
        """Seconds since the node last checked its views."""
        return max(0.0, (time.time() if now is None else now) - self.checked_at)


def read_snapshot(home: Path) -> Snapshot | None:
    """The snapshot in ``home``, or None if there is none (or not one this version reads)."""
    path = run_dir(home) / VIEWS_FILE
    try:
        with path.open("rb") as f:
            checked_at = os.fstat(f.fileno()).st_mtime
            raw = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return None
    try:
        return Snapshot(
            node_id=str(raw["node_id"]),
            pid=int(raw["pid"]),
            started_at=float(raw["started_at"]),
            written_at=float(raw["written_at"]),
            checked_at=checked_at,
            bootstrap=str(raw["bootstrap"]),
            topic_prefix=str(raw["topic_prefix"]),
            services=[str(s) for s in raw["services"]],
            accelerator=raw.get("accelerator"),
            views=dict(raw["views"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def node_running(home: Path) -> bool:
    """Whether a ``node up`` of this home runs: it holds the home's lock (however it ended, the lock is gone)."""
    try:
        fd = os.open(run_dir(home) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:  # a shared probe: readers probing at the same moment never take each other for a running node
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def live_snapshot(home: Path, bootstrap: str | None, topic_prefix: str | None = None) -> tuple[Snapshot | None, str]:
    """The snapshot a read command may answer from, or None and why not.

    ``bootstrap``: the broker the command was given (None: none given, the node's own is fine);
    ``topic_prefix``: the command's (default: ``INTERFED_TOPIC_PREFIX`` or its default).
    """
    prefix = topic_prefix if topic_prefix is not None else os.environ.get("INTERFED_TOPIC_PREFIX", DEFAULT_TOPIC_PREFIX)
    snapshot = read_snapshot(home)
    if snapshot is None:
        return None, "no running node's view in this home"
    if not node_running(home) or not pid_alive(snapshot.pid):
        return None, f"the node that wrote {run_dir(home) / VIEWS_FILE} (pid {snapshot.pid}) is not running"
    if snapshot.age() > FRESH_SECONDS:
        return None, f"the running node's view is {snapshot.age():.0f} s old (its node seems stuck)"
    if bootstrap is not None and bootstrap != snapshot.bootstrap:
        return None, f"the running node reads another broker ({snapshot.bootstrap})"
    if prefix != snapshot.topic_prefix:
        return None, f"the running node reads another topic prefix ({snapshot.topic_prefix!r})"
    return snapshot, ""


class SnapshotWriter:
    """The running node's side: holds the home's lock and keeps its views file.

    ``accelerator`` describes the node's accelerator for ``interfed node status`` (e.g. ``{"mode": "workers",
    "workers": 2}``); None shows as "not reported".
    """

    def __init__(
        self,
        home: Path,
        *,
        node_id: str,
        bootstrap: str,
        topic_prefix: str,
        services: list[str],
        accelerator: dict[str, Any] | None = None,
    ) -> None:
        self.folder = run_dir(home)
        self.path = self.folder / VIEWS_FILE
        self.about = {
            "format": FORMAT,
            "node_id": node_id,
            "pid": os.getpid(),
            "started_at": time.time(),
            "bootstrap": bootstrap,
            "topic_prefix": topic_prefix,
            "services": services,
            "accelerator": accelerator,
        }
        self._lock: int | None = None
        self._last: str | None = None

    def open(self) -> None:
        """Take the home's lock, exclusively: one ``node up`` per home (ConfigurationError if another holds it).

        A views file left by a node that died is removed: nothing is read from it again.
        """
        private_folder(self.folder)  # the views name datasets, permits and jobs: the node's user only
        lock = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise ConfigurationError(
                f"another 'interfed node up' runs with the home {self.folder.parent} "
                f"({self.folder / LOCK_FILE} is held): one node, one process; stop it first"
            ) from None
        self._lock = lock
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def write(self, views: dict[str, Any]) -> bool:
        """Replace the file if ``views`` changed since the last write (True), else only touch it (False)."""
        body = json.dumps(views, separators=(",", ":"))
        if body == self._last and self.path.exists():
            os.utime(self.path)
            return False
        whole = json.dumps({**self.about, "written_at": time.time()}, separators=(",", ":"))
        # The views are one JSON object already: spliced in, not parsed and dumped again. Mode 0600, replaced
        # atomically through a fresh temporary file.
        write_private(self.path, (whole[:-1] + ',"views":' + body + "}").encode())
        self._last = body
        return True

    def close(self) -> None:
        """Remove the views file and release the lock: a read from now on replays."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None
