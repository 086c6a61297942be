"""The participant services; ``SERVICES`` names those a node runs."""

from __future__ import annotations

from mesh.service import Service
from services.registry.service import RegistryService

SERVICES: dict[str, type[Service]] = {RegistryService.name: RegistryService}
