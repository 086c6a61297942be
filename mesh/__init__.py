"""interfed's mesh runtime: what a service author needs, in a few names.

Everything else (codec, chunking, topic configs, brokers) stays behind these.
"""

from mesh.bus import Bus, KafkaBus
from mesh.envelope import Envelope
from mesh.errors import InvalidTransitionError, MeshError, RejectedEventError, UnauthorisedError
from mesh.home import NodeConfig, NodeHome
from mesh.node import connect, open_context, run_services
from mesh.publisher import Publisher
from mesh.service import Context, Event, Service, handles
from mesh.settings import MeshSettings, load_settings

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
