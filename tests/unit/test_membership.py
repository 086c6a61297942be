"""mesh.membership (formerly services/registry/state.py): the node-contract state machine and node health."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import InvalidTransitionError, UnauthorisedError
from mesh.membership import ContractStatus, Health, Membership, NodeEntry

T0 = 1_767_225_600_000
EXPIRES = T0 + 30 * 24 * 3600 * 1000
WINDOW = 30_000


def request(node: str = "node-a", contract: str = "c1", expires_at: object = EXPIRES) -> dict[str, Any]:
    return {
        "contract_id": contract,
        "node_id": node,
        "name": node.upper(),
        "institution": "Hospital",
        "platform": "fate",
        "platform_version": "2.1",
        "address": "",
        "description": "d",
        "csr": b"csr",
        "expires_at": expires_at,
    }


def approval(node: str = "node-a", contract: str = "c1", expires_at: object = EXPIRES) -> dict[str, Any]:
    return {"contract_id": contract, "node_id": node, "certificate": b"der", "expires_at": expires_at}


def rejection(node: str = "node-a", contract: str = "c1") -> dict[str, Any]:
    return {"contract_id": contract, "node_id": node, "reason": "incomplete"}


def termination(node: str = "node-a", contract: str = "c1") -> dict[str, Any]:
    return {"contract_id": contract, "node_id": node, "reason": "leaving"}


def announcement(node: str = "node-a", contract: str = "c1") -> dict[str, Any]:
    return {
        "node_id": node,
        "contract_id": contract,
        "name": "Node A v2",
        "institution": "Hospital",
        "platform": "fate",
        "platform_version": "2.2",
        "address": "https://a.example",
        "services": ["registry", "catalog"],
    }


def heartbeat(node: str = "node-a") -> dict[str, Any]:
    return {"node_id": node, "interval_ms": 5000}


def revocation(node: str = "node-a", serial: str = "abc1") -> dict[str, Any]:
    return {"node_id": node, "serial": serial, "reason": "key lost", "revoked_at": T0}


def in_state(status: ContractStatus, node: str = "node-a", contract: str = "c1") -> Membership:
    """A membership where ``node``'s contract ``contract`` is ``status``."""
    m = Membership()
    m.join_requested(request(node, contract), T0)
    if status is ContractStatus.APPROVED:
        m.join_approved(approval(node, contract), "abc1")
    elif status is ContractStatus.REJECTED:
        m.join_rejected(rejection(node, contract))
    elif status is ContractStatus.TERMINATED:
        m.terminated(termination(node, contract))
    assert m.nodes[node].contract is status
    return m


def refused(
    m: Membership, apply: Callable[[Membership], object], error: type[Exception] = InvalidTransitionError
) -> None:
    """``apply`` raises ``error`` and leaves the membership exactly as it was."""
    before = copy.deepcopy(m.__dict__)
    with pytest.raises(error):
        apply(m)
    assert m.__dict__ == before


# -- allowed transitions ---------------------------------------------------------------------


def test_join_requested_opens_an_applied_contract() -> None:
    m = Membership()
    entry = m.join_requested(request(), T0)
    assert entry is m.nodes["node-a"]
    assert m.contracts == {"c1": "node-a"}
    assert (entry.contract, entry.contract_id, entry.applied_at, entry.expires_at) == (
        ContractStatus.REQUESTED,
        "c1",
        T0,
        EXPIRES,
    )
    assert (entry.name, entry.institution, entry.platform, entry.csr) == ("NODE-A", "Hospital", "fate", b"csr")


def test_applied_contract_is_approved_with_its_certificate_serial_and_end() -> None:
    m = in_state(ContractStatus.REQUESTED)
    entry = m.join_approved(approval(expires_at=EXPIRES - 1000), "abc1")
    assert (entry.contract, entry.certificate_serial, entry.expires_at) == (
        ContractStatus.APPROVED,
        "abc1",
        EXPIRES - 1000,
    )


def test_applied_contract_is_rejected_with_its_reason() -> None:
    entry = in_state(ContractStatus.REQUESTED).join_rejected(rejection())
    assert (entry.contract, entry.reason) == (ContractStatus.REJECTED, "incomplete")


@pytest.mark.parametrize("status", [ContractStatus.REQUESTED, ContractStatus.APPROVED])
def test_applied_or_approved_contract_is_terminated(status: ContractStatus) -> None:
    entry = in_state(status).terminated(termination())
    assert (entry.contract, entry.reason) == (ContractStatus.TERMINATED, "leaving")


@pytest.mark.parametrize("status", [ContractStatus.REJECTED, ContractStatus.TERMINATED])
def test_a_node_whose_contract_ended_may_apply_again(status: ContractStatus) -> None:
    m = in_state(status)
    entry = m.join_requested(request(contract="c2"), T0 + 1)
    assert (entry.contract, entry.contract_id, entry.reason) == (ContractStatus.REQUESTED, "c2", "")
    assert m.contracts == {"c1": "node-a", "c2": "node-a"}


def test_approved_node_announces_itself() -> None:
    m = in_state(ContractStatus.APPROVED)
    entry = m.announced(announcement(), "node-a", T0 + 5)
    assert entry.announced_at == T0 + 5
    assert entry.services == ["registry", "catalog"]
    assert (entry.name, entry.platform_version, entry.address) == ("Node A v2", "2.2", "https://a.example")


def test_approved_node_heartbeat_keeps_the_latest_time() -> None:
    m = in_state(ContractStatus.APPROVED)
    m.heartbeat(heartbeat(), "node-a", T0 + 10)
    entry = m.heartbeat(heartbeat(), "node-a", T0 + 5)  # late delivery of an older beat
    assert (entry.last_heartbeat, entry.heartbeat_interval) == (T0 + 10, 5000)


def test_certificate_revoked_marks_the_approved_node() -> None:
    entry = in_state(ContractStatus.APPROVED).revoked(revocation())
    assert entry.revoked == "key lost"


# -- refused transitions ---------------------------------------------------------------------

ENDED = [ContractStatus.REJECTED, ContractStatus.TERMINATED]
NOT_REQUESTED = [ContractStatus.APPROVED, *ENDED]
NOT_APPROVED = [ContractStatus.REQUESTED, *ENDED]


@pytest.mark.parametrize("status", [ContractStatus.REQUESTED, ContractStatus.APPROVED])
def test_join_requested_while_a_contract_is_open_is_refused(status: ContractStatus) -> None:
    refused(in_state(status), lambda m: m.join_requested(request(contract="c2"), T0))


@pytest.mark.parametrize("status", list(ContractStatus))
def test_join_requested_reusing_a_contract_id_is_refused(status: ContractStatus) -> None:
    refused(in_state(status), lambda m: m.join_requested(request(node="node-b", contract="c1"), T0))


@pytest.mark.parametrize("status", NOT_REQUESTED)
def test_join_approved_unless_applied_is_refused(status: ContractStatus) -> None:
    refused(in_state(status), lambda m: m.join_approved(approval(), "abc2"))


@pytest.mark.parametrize("status", NOT_REQUESTED)
def test_join_rejected_unless_applied_is_refused(status: ContractStatus) -> None:
    refused(in_state(status), lambda m: m.join_rejected(rejection()))


@pytest.mark.parametrize("status", ENDED)
def test_terminating_an_ended_contract_is_refused(status: ContractStatus) -> None:
    refused(in_state(status), lambda m: m.terminated(termination()))


@pytest.mark.parametrize("status", NOT_APPROVED)
def test_announce_unless_approved_is_refused(status: ContractStatus) -> None:
    refused(in_state(status), lambda m: m.announced(announcement(), "node-a", T0))


@pytest.mark.parametrize("status", NOT_APPROVED)
def test_heartbeat_unless_approved_is_refused(status: ContractStatus) -> None:
    refused(in_state(status), lambda m: m.heartbeat(heartbeat(), "node-a", T0))


@pytest.mark.parametrize(
    "apply",
    [
        lambda m: m.join_approved(approval(node="node-b"), "s"),
        lambda m: m.join_rejected(rejection(node="node-b")),
        lambda m: m.terminated(termination(node="node-b")),
        lambda m: m.announced(announcement(node="node-b"), "node-b", T0),
        lambda m: m.heartbeat(heartbeat(node="node-b"), "node-b", T0),
        lambda m: m.revoked(revocation(node="node-b")),
    ],
    ids=["approve", "reject", "terminate", "announce", "heartbeat", "revoke"],
)
def test_events_about_an_unknown_node_are_refused(apply: Callable[[Membership], object]) -> None:
    refused(in_state(ContractStatus.APPROVED), apply)


@pytest.mark.parametrize(
    "apply",
    [
        lambda m: m.join_approved(approval(contract="c9"), "s"),
        lambda m: m.join_rejected(rejection(contract="c9")),
        lambda m: m.terminated(termination(contract="c9")),
        lambda m: m.announced(announcement(contract="c9"), "node-a", T0),
    ],
    ids=["approve", "reject", "terminate", "announce"],
)
def test_events_naming_another_contract_than_the_nodes_are_refused(apply: Callable[[Membership], object]) -> None:
    m = in_state(ContractStatus.REQUESTED)
    m.join_requested(request(node="node-b", contract="c9"), T0)  # c9 exists, but is node-b's
    refused(m, apply)


def test_events_naming_a_superseded_contract_are_refused() -> None:
    """After re-applying under c2, the ended c1 can no longer be approved, announced or terminated."""
    m = in_state(ContractStatus.TERMINATED)
    m.join_requested(request(contract="c2"), T0)
    refused(m, lambda m: m.join_approved(approval(contract="c1"), "s"))
    refused(m, lambda m: m.terminated(termination(contract="c1")))
    m.join_approved(approval(contract="c2"), "s2")
    refused(m, lambda m: m.announced(announcement(contract="c1"), "node-a", T0))


def test_revoking_a_serial_the_node_does_not_hold_is_refused() -> None:
    refused(in_state(ContractStatus.APPROVED), lambda m: m.revoked(revocation(serial="ffff")))
    refused(in_state(ContractStatus.REQUESTED), lambda m: m.revoked(revocation(serial="abc1")))


def test_announcing_for_another_node_is_unauthorised() -> None:
    m = in_state(ContractStatus.APPROVED)
    m.join_requested(request(node="node-b", contract="c2"), T0)
    m.join_approved(approval(node="node-b", contract="c2"), "abc2")
    refused(m, lambda m: m.announced(announcement(), "node-b", T0), UnauthorisedError)


def test_heartbeat_for_another_node_is_unauthorised() -> None:
    m = in_state(ContractStatus.APPROVED)
    m.join_requested(request(node="node-b", contract="c2"), T0)
    m.join_approved(approval(node="node-b", contract="c2"), "abc2")
    refused(m, lambda m: m.heartbeat(heartbeat(), "node-b", T0), UnauthorisedError)


def test_speaking_for_an_unknown_node_is_unauthorised_before_anything_else() -> None:
    refused(Membership(), lambda m: m.heartbeat(heartbeat("ghost"), "node-a", T0), UnauthorisedError)
    refused(Membership(), lambda m: m.announced(announcement("ghost"), "node-a", T0), UnauthorisedError)


# -- health ----------------------------------------------------------------------------------


def _health(entry: NodeEntry, at: int) -> Health:
    return entry.health(at, WINDOW)


def test_health_pending_while_applied() -> None:
    assert _health(in_state(ContractStatus.REQUESTED).nodes["node-a"], T0) is Health.PENDING


def test_health_approved_until_first_announce_or_heartbeat() -> None:
    assert _health(in_state(ContractStatus.APPROVED).nodes["node-a"], T0 + 10 * WINDOW) is Health.APPROVED


@pytest.mark.parametrize("signal", ["announce", "heartbeat"])
def test_health_healthy_within_the_window_then_unreachable(signal: str) -> None:
    m = in_state(ContractStatus.APPROVED)
    if signal == "announce":
        m.announced(announcement(), "node-a", T0)
    else:
        m.heartbeat(heartbeat(), "node-a", T0)
    entry = m.nodes["node-a"]
    assert _health(entry, T0) is Health.HEALTHY
    assert _health(entry, T0 + WINDOW) is Health.HEALTHY
    assert _health(entry, T0 + WINDOW + 1) is Health.UNREACHABLE


def test_health_counts_from_the_latest_of_announce_and_heartbeat() -> None:
    m = in_state(ContractStatus.APPROVED)
    m.announced(announcement(), "node-a", T0)
    m.heartbeat(heartbeat(), "node-a", T0 + WINDOW)
    assert _health(m.nodes["node-a"], T0 + 2 * WINDOW) is Health.HEALTHY
    m.announced(announcement(), "node-a", T0 + 3 * WINDOW)
    assert _health(m.nodes["node-a"], T0 + 4 * WINDOW) is Health.HEALTHY


def test_health_expired_after_the_contract_end_even_when_beating() -> None:
    m = in_state(ContractStatus.APPROVED)
    m.heartbeat(heartbeat(), "node-a", EXPIRES)
    assert _health(m.nodes["node-a"], EXPIRES) is Health.HEALTHY
    assert _health(m.nodes["node-a"], EXPIRES + 1) is Health.EXPIRED


def test_health_revoked_once_the_certificate_is_revoked() -> None:
    m = in_state(ContractStatus.APPROVED)
    m.heartbeat(heartbeat(), "node-a", T0)
    m.revoked(revocation())
    assert _health(m.nodes["node-a"], T0) is Health.REVOKED
    assert _health(m.nodes["node-a"], EXPIRES + 1) is Health.REVOKED


@pytest.mark.parametrize(
    ("status", "health"), [(ContractStatus.REJECTED, Health.REJECTED), (ContractStatus.TERMINATED, Health.TERMINATED)]
)
def test_health_of_an_ended_contract_is_its_end(status: ContractStatus, health: Health) -> None:
    assert _health(in_state(status).nodes["node-a"], T0) is health
    assert _health(in_state(status).nodes["node-a"], EXPIRES + 1) is health


def test_health_terminated_wins_over_revoked() -> None:
    m = in_state(ContractStatus.APPROVED)
    m.revoked(revocation())
    m.terminated(termination())
    assert _health(m.nodes["node-a"], T0) is Health.TERMINATED


# -- any sequence of events ------------------------------------------------------------------

NODES, CONTRACTS = ("node-a", "node-b"), ("c1", "c2", "c3")
events = st.lists(
    st.tuples(
        st.sampled_from(["request", "approve", "reject", "terminate", "announce", "heartbeat", "revoke"]),
        st.sampled_from(NODES),
        st.sampled_from(CONTRACTS),
        st.sampled_from(NODES),
    ),
    max_size=30,
)


def _apply(m: Membership, event: tuple[str, str, str, str], at: int) -> None:
    kind, node, contract, sender = event
    match kind:
        case "request":
            m.join_requested(request(node, contract), at)
        case "approve":
            m.join_approved(approval(node, contract), f"serial-{contract}")
        case "reject":
            m.join_rejected(rejection(node, contract))
        case "terminate":
            m.terminated(termination(node, contract))
        case "announce":
            m.announced(announcement(node, contract), sender, at)
        case "heartbeat":
            m.heartbeat(heartbeat(node), sender, at)
        case "revoke":
            m.revoked(revocation(node, f"serial-{contract}"))


@given(events)
def test_any_event_sequence_keeps_membership_consistent_and_refusals_change_nothing(
    sequence: list[tuple[str, str, str, str]],
) -> None:
    m = Membership()
    for at, event in enumerate(sequence, start=T0):
        before = copy.deepcopy(m.__dict__)
        try:
            _apply(m, event, at)
        except (InvalidTransitionError, UnauthorisedError):
            assert m.__dict__ == before
        for node_id, entry in m.nodes.items():
            assert entry.node_id == node_id
            assert m.contracts[entry.contract_id] == node_id
            if entry.contract in (ContractStatus.REQUESTED, ContractStatus.REJECTED):
                assert entry.certificate_serial is None
            if entry.contract is ContractStatus.APPROVED:
                assert entry.certificate_serial is not None
            if entry.revoked is not None:
                assert entry.certificate_serial is not None
