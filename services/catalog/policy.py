"""A dataset owner's access policy: rules, read from a TOML file, that grant or reject requested permits automatically.

Rules are tried in file order; the first whose every condition matches decides. A request no
rule matches gets the policy's ``default``: ``manual`` (left REQUESTED for a person to decide with
``interfed catalog grant|reject``) or ``reject``. Conditions are judged on the request alone
(its signed fields and issued_at), never on the owner's clock, so a decision can be explained
from the events. The format is documented in docs/operations.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mesh.settings import load_toml_model
from services.catalog.state import Permit

DAY_MS = 86_400_000
ScopeType = Literal["NODE", "PROJECT", "COMPONENT"]


class Rule(BaseModel):
    """One rule. Lists are shell-style patterns (``*``, ``?``, ``[abc]``); a missing condition matches anything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    decision: Literal["grant", "reject"]
    datasets: list[str] = ["*"]
    requesters: list[str] = ["*"]
    purposes: list[str] = ["*"]
    scope_types: list[ScopeType] = ["NODE", "PROJECT", "COMPONENT"]
    scope_ids: list[str] = Field(default=["*"], description="every requested scope id must match one")
    max_uses: int | None = Field(default=None, ge=1, description="the requested use_limit is at most this")
    max_days: float | None = Field(default=None, gt=0, description="the requested permit lasts at most this")
    reason: str = ""

    @field_validator("decision", mode="before")
    @classmethod
    def _former_word(cls, value: object) -> object:
        """``approve``, the first release's word for ``grant``, is read as ``grant`` for one release."""
        return "grant" if value == "approve" else value

    def matches(self, permit: Permit) -> bool:
        def any_of(patterns: list[str], value: str) -> bool:
            return any(fnmatchcase(value, pattern) for pattern in patterns)

        days = (permit.requested_not_after - permit.requested_at) / DAY_MS
        return (
            any_of(self.datasets, permit.dataset_id)
            and any_of(self.requesters, permit.requester)
            and any_of(self.purposes, permit.purpose)
            and permit.scope_type in self.scope_types
            and all(any_of(self.scope_ids, scope_id) for scope_id in permit.scope_ids)
            and (self.max_uses is None or permit.requested_use_limit <= self.max_uses)
            and (self.max_days is None or days <= self.max_days)
        )


@dataclass(frozen=True)
class Decision:
    """``grant``, ``reject`` or ``manual``; ``decided_by`` is what the event records."""

    verdict: Literal["grant", "reject", "manual"]
    decided_by: str
    reason: str


class Policy(BaseModel):
    """The whole file: ``default`` and ``[[rule]]`` tables."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    default: Literal["manual", "reject"] = "manual"
    rules: list[Rule] = Field(default=[], alias="rule")

    def decide(self, permit: Permit) -> Decision:
        for rule in self.rules:
            if rule.matches(permit):
                return Decision(rule.decision, f"policy:{rule.name}", rule.reason)
        if self.default == "reject":
            return Decision("reject", "policy:default", "no rule of the owner's policy allows this request")
        return Decision("manual", "", "")

    @classmethod
    def load(cls, path: Path) -> Policy:
        """Read and check a policy file; any problem is one line naming the file and the bad entry."""
        return load_toml_model(cls, path, "policy")
