"""A participant's job policy: rules, read from a TOML file, that accept or reject proposed jobs automatically.

Rules are tried in file order; the first whose every condition matches decides. A job no rule
matches gets ``default``: ``manual`` (left for ``interfed job accept|reject``) or ``reject``.
A policy's accept never skips the checks of permits and installation: those come first.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mesh.settings import load_toml_model
from services.executor.state import Job


class JobRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    decision: Literal["accept", "reject"]
    initiators: list[str] = ["*"]
    components: list[str] = Field(default=["*"], description="patterns of <code>:<version>")
    projects: list[str] = ["*"]
    max_participants: int | None = Field(default=None, ge=1)
    reason: str = ""

    def matches(self, job: Job) -> bool:
        def any_of(patterns: list[str], value: str) -> bool:
            return any(fnmatchcase(value, p) for p in patterns)

        return (
            any_of(self.initiators, job.initiator)
            and any_of(self.components, f"{job.component_code}:{job.component_version}")
            and any_of(self.projects, job.project)
            and (self.max_participants is None or len(job.nodes) <= self.max_participants)
        )


class JobPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    default: Literal["manual", "reject"] = "manual"
    rules: list[JobRule] = Field(default=[], alias="rule")

    def decide(self, job: Job) -> tuple[Literal["accept", "reject", "manual"], str, str]:
        """(verdict, decided_by, reason)."""
        for rule in self.rules:
            if rule.matches(job):
                return rule.decision, f"policy:{rule.name}", rule.reason or f"policy rule {rule.name}"
        if self.default == "reject":
            return "reject", "policy:default", "no rule of this party's job policy allows this job"
        return "manual", "", ""

    @classmethod
    def load(cls, path: Path) -> JobPolicy:
        return load_toml_model(cls, path, "job policy")
