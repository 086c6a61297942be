"""interfed's mesh runtime: what a service author needs, in a few names.

Everything else (codec, chunking, topic configs, brokers) stays behind these. The names load on first use
(PEP 562), so importing one light module of the mesh (``mesh.cli``, ``mesh.settings``) does not load the
Kafka client and the cryptography behind the others: that keeps the command line's start quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mesh.lazy import lazy_exports

if TYPE_CHECKING:
    from mesh.bus import Bus, KafkaBus
    from mesh.envelope import Envelope
    from mesh.errors import InvalidTransitionError, MeshError, RejectedEventError, UnauthorisedError
    from mesh.home import NodeConfig, NodeHome
    from mesh.node import connect, open_context, run_services
    from mesh.publisher import Publisher
    from mesh.service import Context, Event, Service, handles
    from mesh.settings import MeshSettings, load_settings

_WHERE = {
    "Bus": "mesh.bus",
    "KafkaBus": "mesh.bus",
    "Envelope": "mesh.envelope",
    "InvalidTransitionError": "mesh.errors",
    "MeshError": "mesh.errors",
    "RejectedEventError": "mesh.errors",
    "UnauthorisedError": "mesh.errors",
    "NodeConfig": "mesh.home",
    "NodeHome": "mesh.home",
    "connect": "mesh.node",
    "open_context": "mesh.node",
    "run_services": "mesh.node",
    "Publisher": "mesh.publisher",
    "Context": "mesh.service",
    "Event": "mesh.service",
    "Service": "mesh.service",
    "handles": "mesh.service",
    "MeshSettings": "mesh.settings",
    "load_settings": "mesh.settings",
}

__all__ = [
    "Bus",
    "Context",
    "Envelope",
    "Event",
    "InvalidTransitionError",
    "KafkaBus",
    "MeshError",
    "MeshSettings",
    "NodeConfig",
    "NodeHome",
    "Publisher",
    "RejectedEventError",
    "Service",
    "UnauthorisedError",
    "connect",
    "handles",
    "load_settings",
    "open_context",
    "run_services",
]


__getattr__ = lazy_exports("mesh", _WHERE, globals())
