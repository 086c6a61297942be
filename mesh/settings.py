"""Runtime settings from the environment (prefix ``INTERFED_``), each with its documented default."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from mesh.errors import ConfigurationError

M = TypeVar("M", bound=BaseModel)


class MeshSettings(BaseSettings):
    """Settings every node process reads. docs/operations.md lists them."""

    model_config = SettingsConfigDict(env_prefix="INTERFED_", extra="ignore", frozen=True)

    bootstrap: str | None = Field(None, description="Kafka bootstrap address; unset starts the embedded broker")
    topic_prefix: str = Field("interfed.", description="prefix of every protocol topic name")
    max_record_bytes: int = Field(1_000_000, ge=16_384, description="largest record value+key the mesh produces")
    max_event_bytes: int = Field(64 * 1024 * 1024, ge=16_384, description="largest event after reassembly")
    heartbeat_interval: float = Field(10.0, gt=0, description="seconds between a node's heartbeats")
    unreachable_after: float = Field(30.0, gt=0, description="silence after which a node shows UNREACHABLE")
    head_interval: float = Field(5.0, gt=0, description="seconds between checks for a grown evidence log to sign")
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$")
    tls: bool = Field(
        False,
        description="reach the broker over mutual TLS: the node's certificate (HOME/node.pem with node.key), "
        "before approval the federation's applicant credential (HOME/federation/applicant.pem)",
    )
    apply_acls: bool | None = Field(
        None,
        description="the operator's registry service sets the broker's ACLs from its directory as it changes "
        "(unset: on when tls is)",
    )

    @property
    def applies_acls(self) -> bool:
        """Whether an operator's registry service keeps the broker's ACLs in step with its directory."""
        return self.tls if self.apply_acls is None else self.apply_acls


def load_settings(**overrides: object) -> MeshSettings:
    """Read settings, naming the bad variable in one line if one is wrong."""
    try:
        return MeshSettings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        raise ConfigurationError(f"INTERFED_{field.upper()}: {err['msg']}") from None


def load_toml_model(model: type[M], path: Path, what: str) -> M:
    """Read TOML file ``path`` as ``model``; any problem is one line naming ``what``, the file and the bad entry."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"{what} {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{what} {path}: not TOML: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        raise ConfigurationError(f"{what} {path}: {where}: {err['msg']}") from None
