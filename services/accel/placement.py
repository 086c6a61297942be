"""Where a node's Paillier work runs: its own worker processes, running ``interfed accel up`` instances, or in-process.

``interfed node up`` reads ``HOME/accelerator.toml`` (every entry optional; command-line options override it)
and opens the node's accelerator with ``node_accelerator``: the client its executor sends every Paillier
operation through, the services that go with it, and a description for ``interfed node status``.

- ``workers`` (the default): the node starts ``workers`` worker processes (0: one per core). Its executor
  reaches them directly, with no broker between, and stops them when it stops. With ``serve``, the node's
  accelerator service also answers its ``accel.<node>.requests`` on the same workers (for the node's
  other processes); off by default, as nothing else asks a node's accelerator and its readers poll the
  broker.
- ``service``: the node starts no workers; its executor sends each operation through the broker to the
  node's accelerator instances started with ``interfed accel up`` (anywhere; they share the load). With
  none running, an operation times out after ``timeout`` seconds and ``retries`` more attempts, and the
  job fails with that reason: never a silent fallback to in-process.
- ``in-process``: the node's own process (its threads, one core's worth: big integers hold the GIL), no
  workers (small keys, tests, a machine of one core).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from accel.client import AccelClient, RemoteTransport, ReplyListener
from accel.keystore import KeyStore
from accel.pool import WorkerPool
from mesh.errors import ConfigurationError
from mesh.service import Context, Service
from mesh.settings import load_toml_model
from services.accel.service import AccelService

#: The node's accelerator settings, in its home.
ACCELERATOR_FILE = "accelerator.toml"

Mode = Literal["workers", "service", "in-process"]


class AcceleratorSettings(BaseModel):
    """``HOME/accelerator.toml``: where the node's Paillier work runs (docs/operations.md, "The accelerator")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = Field(default="workers", description="workers | service | in-process")
    workers: int = Field(default=0, ge=0, le=256, description="worker processes in workers mode; 0: one per core")
    timeout: float = Field(default=60.0, gt=0, description="service mode: seconds an operation's attempt may take")
    retries: int = Field(default=2, ge=0, le=10, description="service mode: attempts after the first that timed out")
    serve: bool = Field(default=False, description="workers mode: also serve accel.<node>.requests on the workers")

    @classmethod
    def of_home(cls, home: Path, **overrides: Any) -> AcceleratorSettings:
        """The home's settings (the defaults without the file), then ``overrides`` that are not None."""
        path = home / ACCELERATOR_FILE
        read = load_toml_model(cls, path, "accelerator settings") if path.exists() else cls()
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return read.model_validate(read.model_dump() | given) if given else read
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigurationError(f"accelerator setting {'.'.join(map(str, err['loc']))}: {err['msg']}") from None

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


@dataclass
class NodeAccelerator:
    """A node's accelerator as opened: the client its executor uses, the services to run beside it, for people."""

    client: AccelClient
    mode: Mode
    services: list[Service] = field(default_factory=list)
    workers: int = 0  # the node's own worker processes (workers mode)

    def describe(self) -> dict[str, Any]:
        """What ``interfed node status`` shows: the mode, where the work runs, the node's own workers, whether
        the node serves its accelerator's request topic."""
        serving = any(isinstance(s, AccelService) for s in self.services)
        return {"mode": self.mode, "runs_on": self.client.description, "workers": self.workers, "serves": serving}


def in_process(ctx: Context) -> AccelClient:
    """The node's accelerator in this process, with the keys its home owns (the explicit choice)."""
    return AccelClient.in_process(ctx.config.node_id, KeyStore.of_home(ctx.home.path))


def node_accelerator(ctx: Context, settings: AcceleratorSettings) -> NodeAccelerator:
    """The node's accelerator for ``settings``: its client and the services to run beside the executor.

    In workers mode the executor's client owns the worker processes (the executor stops them when it stops);
    with ``serve`` the node's accelerator service answers requests over the broker on the same workers.
    """
    me = ctx.config.node_id
    if settings.mode == "in-process":
        return NodeAccelerator(in_process(ctx), "in-process")
    if settings.mode == "service":
        listener = ReplyListener(ctx, me)
        client = AccelClient(RemoteTransport(listener, settings.timeout, settings.retries), me)
        return NodeAccelerator(client, "service", [listener])
    keys = KeyStore.of_home(ctx.home.path)
    pool = WorkerPool(settings.worker_count)
    client = AccelClient.on_workers(me, keys, pool, owns=True)
    services: list[Service] = [AccelService(ctx, keys=keys, pool=pool)] if settings.serve else []
    return NodeAccelerator(client, "workers", services, pool.workers)
