"""The parameters of an HFL job and the parties' places in it, read once from the task context."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SCHEMES = ("none", "paillier", "masks")


class ConfigError(ValueError):
    """The job's roles or parameters do not make an HFL job (names the problem)."""


@dataclass(frozen=True)
class Config:
    model: str
    classes: int
    hidden: int
    epochs: int
    local_epochs: int
    batch_size: int
    learning_rate: float
    secure_aggregation: str
    quorum: int
    clip: float
    paillier_bits: int
    #: the data parties in index order: every guest, then every host, each in slot order
    parties: tuple[str, ...]
    aggregator: str
    #: who holds the Paillier private key: the arbiter if the job has one, else the first party
    key_holder: str
    seed: int
    job_id: str

    @classmethod
    def of(cls, params: Mapping[str, Any], roles: Mapping[str, Sequence[str]], seed: int, job_id: str) -> Config:
        parties = tuple(roles.get("guest", ())) + tuple(roles.get("host", ()))
        aggregators = list(roles.get("aggregator", ()))
        if len(parties) < 2 or len(aggregators) != 1:
            raise ConfigError("HFL needs at least two data parties (guest/host) and exactly one aggregator")
        if len(set(parties)) != len(parties) or aggregators[0] in parties:
            raise ConfigError("a node may hold only one place in an HFL job")
        scheme = str(params.get("secure_aggregation", "none"))
        if scheme not in SCHEMES:
            raise ConfigError(f"secure_aggregation must be one of {SCHEMES}, got {scheme!r}")
        quorum = int(params.get("quorum", 0)) or len(parties)
        if not 1 <= quorum <= len(parties):
            raise ConfigError(f"quorum must be between 1 and the {len(parties)} parties")
        if scheme != "none" and quorum < 2:
            raise ConfigError("secure aggregation needs a quorum of at least 2: one survivor's sum is its update")
        arbiters = list(roles.get("arbiter", ()))
        return cls(
            model=str(params.get("model", "logreg")),
            classes=int(params.get("classes", 2)),
            hidden=int(params.get("hidden", 16)),
            epochs=int(params.get("epochs", 10)),
            local_epochs=int(params.get("local_epochs", 1)),
            batch_size=int(params.get("batch_size", 0)),
            learning_rate=float(params.get("learning_rate", 0.5)),
            secure_aggregation=scheme,
            quorum=quorum,
            clip=float(params.get("clip", 8.0)),
            paillier_bits=int(params.get("paillier_bits", 2048)),
            parties=parties,
            aggregator=aggregators[0],
            key_holder=arbiters[0] if arbiters else parties[0],
            seed=seed,
            job_id=job_id,
        )

    def index(self, node: str) -> int:
        return self.parties.index(node)


@dataclass
class Setup:
    """What round 0 establishes, kept in every checkpoint so a restarted party needs no replay of it."""

    rows: dict[str, int] = field(default_factory=dict)
    features: int = 0
    #: X25519 public keys of the parties (masks)
    mask_keys: dict[str, str] = field(default_factory=dict)
    #: the key holder's Paillier n (paillier), decimal
    paillier_n: str = ""

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Setup:
        return cls(**json.loads(data))
