"""The node's worker processes: Ctrl-C is the parent's to handle, a dead worker is replaced, a dead parent's workers
end (they hold the private keys they decrypt with)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from accel.pool import PARENT_CHECK_SECONDS, WorkerPool


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a process that ended but was not reaped yet, a zombie, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_ignores_ctrl_c_and_a_dead_worker_is_replaced() -> None:
    pool = WorkerPool(1)
    try:
        (pid,) = pool.warm()
        os.kill(pid, signal.SIGINT)  # what a terminal sends to the whole process group
        time.sleep(0.3)
        assert pool.warm() == [pid]
        os.kill(pid, signal.SIGKILL)  # killed (out of memory, by hand)
        deadline = time.monotonic() + 10
        while True:  # the request that meets the death may fail; the pool starts again for the next
            try:
                pids = pool.warm()
                break
            except Exception:
                assert time.monotonic() < deadline
        assert pids != [pid]
        assert pool.restarts == 1
    finally:
        pool.close()


def test_the_workers_of_a_killed_parent_end() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import time
                from accel.pool import WorkerPool
                if __name__ == "__main__":
                    print(*WorkerPool(2).warm(), flush=True)
                    time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert workers
    assert all(_alive(w) for w in workers)
    parent.kill()  # no clean-up runs
    parent.wait()
    deadline = time.monotonic() + 5 * PARENT_CHECK_SECONDS + 5
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)
