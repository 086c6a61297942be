"""The federation file ``interfed federation up`` reads: the federation, its operator and its nodes (TOML).

Every path in it is relative to the file. docs/operations.md ("A local federation from one file") documents it;
``examples/federation.toml`` is one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mesh.errors import ConfigurationError
from mesh.home import NODE_ID_PATTERN, NodeConfig
from mesh.settings import load_toml_model

EMBEDDED = "embedded"


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OperatorEntry(_Entry):
    """``[operator]``: who runs the federation (its root and the approvals)."""

    node_id: str = Field("operator", pattern=NODE_ID_PATTERN)
    institution: str = Field("federation operator", min_length=1)


class NodeEntry(_Entry):
    """One ``[[node]]``: a party, what it publishes and how it decides."""

    node_id: str = Field(pattern=NODE_ID_PATTERN)
    institution: str = Field(min_length=1)
    platform: str = Field(min_length=1)
    platform_version: str = "unknown"
    name: str | None = None
    datasets: list[str] = Field(default_factory=list, description="CSV or Parquet files it publishes (metadata)")
    catalog_policy: str | None = Field(None, description="copied to HOME/catalog-policy.toml at each start")
    job_policy: str | None = Field(None, description="copied to HOME/job-policy.toml at each start")
    accel_workers: int = Field(
        default=1,
        ge=0,
        le=256,
        description="its accelerator worker processes (0: one per core; the nodes share a machine)",
    )


class FederationFile(_Entry):
    """The whole file."""

    name: str = Field(min_length=1)
    homes: str | None = Field(None, description="folder of the homes (default: '<file name>-homes' beside it)")
    broker: str = Field(EMBEDDED, description="'embedded' (started by federation up) or HOST:PORT of a running one")
    operator: OperatorEntry = Field(default_factory=OperatorEntry)  # type: ignore[arg-type]
    node: list[NodeEntry] = Field(min_length=1)


@dataclass(frozen=True)
class Member:
    """A node of the plan: its configuration, home and files (absolute paths)."""

    config: NodeConfig
    home: Path
    datasets: tuple[Path, ...]
    catalog_policy: Path | None
    job_policy: Path | None
    accel_workers: int = 1


@dataclass(frozen=True)
class Plan:
    """A federation file, checked: where each home goes and which broker to use (None: the embedded one)."""

    file: Path
    name: str
    homes: Path
    bootstrap: str | None
    operator: NodeConfig
    operator_home: Path
    members: tuple[Member, ...]


def load_plan(file: Path) -> Plan:
    """Read and check a federation file; a problem is one ``ConfigurationError`` line naming the entry."""
    raw = load_toml_model(FederationFile, file, "federation file")
    base = file.parent
    what = f"federation file {file}"

    def existing(entry: str, value: str) -> Path:
        path = (base / value).resolve()
        if not path.is_file():
            raise ConfigurationError(f"{what}: {entry}: no such file {value!r} (paths are relative to the file)")
        return path

    seen = {raw.operator.node_id}
    for i, n in enumerate(raw.node):
        if n.node_id in seen:
            raise ConfigurationError(f"{what}: node.{i}.node_id: {n.node_id!r} is used twice")
        seen.add(n.node_id)
    if raw.broker != EMBEDDED and not re.fullmatch(r"[^\s:]+:\d{1,5}", raw.broker):
        raise ConfigurationError(f"{what}: broker: {raw.broker!r} is neither 'embedded' nor HOST:PORT")
    homes = (base / (raw.homes or f"{file.stem}-homes")).resolve()
    members = tuple(
        Member(
            config=NodeConfig(
                node_id=n.node_id,
                name=n.name or n.node_id,
                institution=n.institution,
                platform=n.platform,
                platform_version=n.platform_version,
            ),
            home=homes / n.node_id,
            datasets=tuple(existing(f"node.{i}.datasets.{j}", d) for j, d in enumerate(n.datasets)),
            catalog_policy=existing(f"node.{i}.catalog_policy", n.catalog_policy) if n.catalog_policy else None,
            job_policy=existing(f"node.{i}.job_policy", n.job_policy) if n.job_policy else None,
            accel_workers=n.accel_workers,
        )
        for i, n in enumerate(raw.node)
    )
    operator = NodeConfig(
        node_id=raw.operator.node_id,
        name=f"{raw.name} operator",
        institution=raw.operator.institution,
        platform="interfed",
        role="operator",
    )
    return Plan(
        file=file.resolve(),
        name=raw.name,
        homes=homes,
        bootstrap=None if raw.broker == EMBEDDED else raw.broker,
        operator=operator,
        operator_home=homes / operator.node_id,
        members=members,
    )
