"""Owner policies: the first matching rule decides, conditions on the request alone, bad files named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.errors import ConfigurationError
from services.catalog.policy import DAY_MS, Policy
from services.catalog.state import Permit

T0 = 1_800_000_000_000

POLICY = """
default = "reject"

[[rule]]
name = "no-marketing"
decision = "reject"
purposes = ["*marketing*"]
reason = "our data is not for marketing"

[[rule]]
name = "partners-research"
decision = "grant"
datasets = ["bank/*"]
requesters = ["telecom", "hosp*"]
scope_types = ["PROJECT"]
scope_ids = ["credit-*"]
max_uses = 10
max_days = 30
"""


def permit(**over: object) -> Permit:
    fields: dict[str, object] = {
        "request_id": "r",
        "dataset_id": "bank/loans",
        "owner": "bank",
        "requester": "telecom",
        "purpose": "credit risk",
        "scope_type": "PROJECT",
        "scope_ids": ["credit-2027"],
        "requested_not_after": T0 + 7 * DAY_MS,
        "requested_use_limit": 5,
        "requested_at": T0,
    } | over
    return Permit(**fields)  # type: ignore[arg-type]


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    path = tmp_path / "catalog-policy.toml"
    path.write_text(POLICY, encoding="utf-8")
    return Policy.load(path)


def test_a_request_within_a_rule_is_approved_by_that_rule(policy: Policy) -> None:
    decision = policy.decide(permit())
    assert (decision.verdict, decision.decided_by) == ("grant", "policy:partners-research")


def test_rules_are_tried_in_order(policy: Policy) -> None:
    decision = policy.decide(permit(purpose="credit marketing"))
    assert (decision.verdict, decision.decided_by, decision.reason) == (
        "reject",
        "policy:no-marketing",
        "our data is not for marketing",
    )


@pytest.mark.parametrize(
    "over",
    [
        {"requester": "insurer"},
        {"dataset_id": "telecom/calls"},
        {"scope_type": "NODE"},
        {"scope_ids": ["credit-2027", "ads"]},  # every scope id must match
        {"requested_use_limit": 11},
        {"requested_not_after": T0 + 31 * DAY_MS},
    ],
)
def test_a_request_outside_every_rule_gets_the_default(policy: Policy, over: dict[str, object]) -> None:
    decision = policy.decide(permit(**over))
    assert (decision.verdict, decision.decided_by) == ("reject", "policy:default")


def test_default_manual_leaves_the_request_for_a_person() -> None:
    assert Policy().decide(permit()).verdict == "manual"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("default = 'maybe'", "default"),
        ("[[rule]]\nname = 'x'\ndecision = 'allow'", "rule.0.decision"),
        ("[[rule]]\nname = 'x'\ndecision = 'approve'\nmax_uses = 0", "rule.0.max_uses"),
        ("[[rule]]\nname = 'x'\ndecision = 'approve'\nrequester = ['a']", "rule.0.requester"),  # a typo
        ("[[rule]]\nname = 'x'\ndecision = 'approve'\nscope_types = ['TEAM']", "rule.0.scope_types.0"),
        ("default = ", "not TOML"),
    ],
)
def test_a_bad_policy_file_is_one_line_naming_the_entry(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=named.replace(".", r"\.")) as caught:
        Policy.load(path)
    assert "\n" not in str(caught.value)


def test_approve_the_first_releases_word_still_reads_as_grant() -> None:
    policy = Policy.model_validate({"rule": [{"name": "old", "decision": "approve"}]})
    assert policy.rules[0].decision == "grant"
