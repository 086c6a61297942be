"""Shared machinery of the broker launchers: errors, the Broker seam, process control, readiness probe."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self

from mesh.errors import MeshError

LOOPBACK = "127.0.0.1"


class BrokerError(MeshError):
    """A local broker could not be provided; fatal for whoever asked for it."""

    reason = "BROKER"


class BrokerUnavailableError(BrokerError):
    """A prerequisite (a binary, a tool, the deploy files) is missing; the message says what to install."""

    reason = "BROKER_UNAVAILABLE"


class BrokerStartError(BrokerError):
    """The broker was launched but never answered a Kafka request; the message carries its log tail."""

    reason = "BROKER_START"


class Broker(Protocol):
    """A Kafka-compatible broker on loopback, owned by this process."""

    name: str

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients; only valid once started."""
        ...

    @property
    def pid(self) -> int | None:
        """Process id of the broker while it runs, else None."""
        ...

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        ...

    def start(self) -> None:
        """Launch and block until the broker answers Kafka requests; no-op when already running."""
        ...

    def stop(self) -> None:
        """Terminate the broker and reap it; safe to call twice."""
        ...

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the broker's log file."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def free_ports(count: int = 1) -> list[int]:
    """Distinct loopback ports free right now (another process may still take them before use)."""
    socks: list[socket.socket] = []
    try:
        # Holding every socket open until all are bound is what keeps the ports distinct.
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail_file(path: Path, lines: int) -> str:
    """Last ``lines`` lines of a text file, or a note saying it is missing."""
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, maxlen=lines)).rstrip("\n")
    except FileNotFoundError:
        return f"(no log: {path} does not exist)"


#: Lines worth lifting out of a long log: the cause is often far above the tail.
_ERROR_LINE = re.compile(r"\b(ERROR|FATAL)\b|panicked|^Caused by:|Exception\b")
RUN_HEADER = "=== "


def first_errors(path: Path, limit: int = 5) -> list[str]:
    """The first error-looking lines after the last run header this module wrote into ``path``."""
    found: list[str] = []
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(RUN_HEADER):
                    found = []
                elif len(found) < limit and _ERROR_LINE.search(line):
                    found.append(line.rstrip("\n"))
    except FileNotFoundError:
        return []
    return found


class ProcessBroker:
    """One broker subprocess with its log file; subclasses say how to prepare and launch it."""

    name = "broker"
    log_name = "broker.log"
    start_timeout = 30.0
    stop_timeout = 10.0

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / self.log_name

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError(f"{self.name} has no port yet; call start() first")
        return self._port

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return tail_file(self.log_path, lines)

    def _prepare(self) -> None:
        """Check prerequisites and write config before launch; may choose the port itself."""

    def _command(self) -> Sequence[str]:
        raise NotImplementedError

    def _probe_context(self) -> ssl.SSLContext | None:
        """The TLS context the readiness probe connects with; None for a plaintext listener."""
        return None

    def start(self) -> None:
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._prepare()
        if self._port is None:
            # Chosen after _prepare, which may take a minute (a Maven fetch), to keep
            # the window in which another process can grab the port short.
            self._port = free_ports(1)[0]
        self._launch()
        try:
            self._wait_ready()
        except BaseException:
            # Also on KeyboardInterrupt: a half-started broker must not outlive us.
            self.stop()
            raise

    def _launch(self) -> None:
        cmd = list(self._command())
        self._log = self.log_path.open("ab")
        self._log.write(f"\n{RUN_HEADER}{time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        self._log.flush()
        try:
            # A new session keeps the terminal's Ctrl-C away from the broker, so that
            # our stop() (SIGTERM, then a clean shutdown) decides when it ends.
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as err:
            self._close_log()
            raise BrokerUnavailableError(f"cannot run {cmd[0]}: {err.strerror}") from err
        # Covers a test run or CLI that exits without stopping us; not SIGKILL of Python.
        atexit.register(self.stop)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            proc = self._proc
            assert proc is not None
            code = proc.poll()
            if code is not None:
                raise BrokerStartError(self._start_failure(f"exited with code {code} before answering"))
            if kafka_answers(LOOPBACK, self.port, timeout=2.0, context=self._probe_context()):
                return
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    self._start_failure(f"did not answer on {self.bootstrap} within {self.start_timeout:.0f} s")
                )
            time.sleep(0.2)

    def _start_failure(self, what: str) -> str:
        if self._log is not None:
            self._log.flush()
        message = f"{self.name} {what} (log: {self.log_path})"
        errors = first_errors(self.log_path)
        if errors:
            message += "\n--- first errors ---\n" + "\n".join(errors)
        return f"{message}\n--- log tail ---\n{self.log_tail()}"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            if proc.poll() is None:
                self._signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(proc.pid, signal.SIGKILL)
                    proc.wait()
            else:
                proc.wait()
        self._close_log()

    @staticmethod
    def _signal_group(pid: int, sig: signal.Signals) -> None:
        # The broker leads its own session (start_new_session), so its process group
        # holds any helpers it forked too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.bootstrap if self._port is not None else "no port"
        return f"<{type(self).__name__} {where} pid={self.pid}>"


# --- readiness probe -------------------------------------------------------
# A raw ApiVersions + Metadata exchange rather than an aiokafka client: it runs
# synchronously from fixtures, CLIs and even inside a running event loop, and an
# open port alone proves nothing (Kafka listens well before it can serve).

_API_METADATA = 3
_API_VERSIONS = 18


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)


def _exchange(sock: socket.socket, api_key: int, version: int, correlation: int, body: bytes) -> _Reader:
    client_id = b"interfed-probe"
    header = struct.pack(">hhih", api_key, version, correlation, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    reader = _Reader(_recv_exact(sock, size))
    if reader.take(">i") != correlation:
        raise ConnectionError("correlation id mismatch")
    return reader


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return bytes(buf)


def _metadata_body(version: int) -> bytes:
    # An empty topic list (not null) asks for brokers only; null would mean "all topics".
    body = struct.pack(">i", 0)
    if version >= 4:
        body += struct.pack(">b", 0)  # allow_auto_topic_creation
    if version >= 8:
        body += struct.pack(">bb", 0, 0)  # include cluster/topic authorized operations
    return body


def _broker_count(r: _Reader, version: int) -> int:
    if version >= 3:
        r.take(">i")  # throttle_time_ms
    return r.take(">i")


def kafka_answers(host: str, port: int, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> bool:
    """True when ``host:port`` serves ApiVersions and a Metadata response listing at least one broker.

    Kafka in KRaft mode lists a broker only once it is registered and unfenced,
    which is the moment topics can be created on it. With ``context``, over TLS.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if context is None:
                return _answers(raw, timeout)
            with context.wrap_socket(raw, server_hostname=host) as tls:
                return _answers(tls, timeout)
    except (OSError, struct.error):  # ssl.SSLError is an OSError
        return False


def _answers(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    r = _exchange(sock, _API_VERSIONS, 0, 1, b"")
    if r.take(">h") != 0:
        return False
    ranges: dict[int, tuple[int, int]] = {}
    for _ in range(r.take(">i")):
        key, low, high = r.take(">h"), r.take(">h"), r.take(">h")
        ranges[key] = (low, high)
    if _API_METADATA not in ranges:
        return False
    low, high = ranges[_API_METADATA]
    # v1..v8 share one non-flexible layout that this probe knows how to read.
    version = min(high, 8)
    if version < max(low, 1):
        return False
    r = _exchange(sock, _API_METADATA, version, 2, _metadata_body(version))
    return _broker_count(r, version) > 0
