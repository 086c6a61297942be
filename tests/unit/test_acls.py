"""The broker grants a directory calls for (services/registry/acls.py) and the principals certificates map to."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mesh.brokers.acls import AclBinding, Operation, ResourceType
from mesh.membership import Membership
from mesh.tls import PRINCIPAL_MAPPING_RULES, principal
from mesh.topics import TOPICS, TopicNames, node_topic
from services.registry.acls import APPLICANT_PRINCIPAL, federation_acls, is_managed, members

T0 = 1_767_225_600_000
EXPIRES = T0 + 30 * 24 * 3600 * 1000
NAMES = TopicNames("fed.")


def joined(directory: Membership, node: str, contract: str, *, approve: bool = True) -> None:
    fields: dict[str, Any] = {"name": node, "institution": "I", "platform": "fate", "platform_version": "1"}
    directory.join_requested(
        {"contract_id": contract, "node_id": node, "address": "", "description": "", "csr": b"", "expires_at": EXPIRES}
        | fields,
        T0,
    )
    if approve:
        directory.join_approved({"contract_id": contract, "node_id": node, "expires_at": EXPIRES}, f"serial-{node}")


def grants(acls: set[AclBinding], who: str) -> set[tuple[str, str, str]]:
    return {(b.resource_type.name, b.resource, b.operation.name) for b in acls if b.principal == who}


def test_members_are_approved_unrevoked_unexpired_contracts_and_the_operators_decisions_in_flight() -> None:
    directory = Membership()
    for node in ("a", "b", "c", "d"):
        joined(directory, node, f"c-{node}", approve=node != "d")
    directory.revoked({"node_id": "b", "serial": "serial-b", "reason": "leak"})
    directory.terminated({"node_id": "c", "contract_id": "c-c", "reason": "left"})
    assert members(directory, T0) == ["a"]
    assert members(directory, EXPIRES + 1) == []  # expired
    # An approval sent but not read back yet counts; for that contract only.
    assert members(directory, T0, admitted={"d": "c-d"}) == ["a", "d"]
    assert members(directory, T0, admitted={"d": "another contract"}) == ["a"]
    # A termination or revocation sent but not read back yet: no grant, whatever the directory still says.
    assert members(directory, T0, dropped={"a": "c-a"}) == []
    assert members(directory, T0, dropped={"a": "an older contract"}) == ["a"]


def test_each_member_alone_reads_its_node_topics_and_every_member_writes_them() -> None:
    acls = federation_acls(NAMES, ["bank", "bank.eu"])
    for me, other in (("bank", "bank.eu"), ("bank.eu", "bank")):
        mine = grants(acls, principal(me, "node"))
        for family in ("accel.requests", "accel.replies"):
            assert ("TOPIC", NAMES(node_topic(family, me)), "READ") in mine
            assert ("TOPIC", NAMES(node_topic(family, other)), "READ") not in mine
            assert ("TOPIC", NAMES(node_topic(family, other)), "WRITE") in mine
        assert ("GROUP", f"fed.accel.{me}", "READ") in mine
        assert ("GROUP", f"fed.accel.{other}", "READ") not in mine
        for topic in TOPICS:
            assert ("TOPIC", NAMES(topic), "WRITE") in mine
            assert (("TOPIC", NAMES(topic), "READ") in mine) == (topic != "deadletter")
    assert {b.principal for b in acls} == {APPLICANT_PRINCIPAL, "User:bank", "User:bank.eu"}


def test_an_applicant_reads_what_a_registry_reads_and_writes_the_registry_only() -> None:
    assert grants(federation_acls(NAMES, []), APPLICANT_PRINCIPAL) == {
        ("TOPIC", "fed.registry", "READ"),
        ("TOPIC", "fed.heartbeats", "READ"),
        ("TOPIC", "fed.schemas", "READ"),
        ("TOPIC", "fed.registry", "WRITE"),
    }


def test_an_auditor_reads_every_shared_topic_and_nothing_else() -> None:
    auditor = grants(federation_acls(NAMES, ["bank"], auditors=["audit-1"]), principal("audit-1", "auditor"))
    assert auditor == {("TOPIC", NAMES(t), "READ") for t in TOPICS}


@pytest.mark.parametrize(
    ("resource_type", "name", "managed"),
    [
        (ResourceType.TOPIC, "fed.registry", True),
        (ResourceType.TOPIC, "fed.accel.bank.replies", True),
        (ResourceType.GROUP, "fed.accel.bank", True),
        (ResourceType.TOPIC, "fed.other", False),  # not a protocol topic: someone else's
        (ResourceType.TOPIC, "fed.x.registry", False),  # a federation whose prefix extends ours
        (ResourceType.TOPIC, "other.registry", False),
        (ResourceType.GROUP, "fed.catalog.bank", False),
        (ResourceType.GROUP, "fed.accel.Bank", False),
    ],
)
def test_an_apply_owns_the_grants_on_its_federations_topics_and_groups_only(
    resource_type: ResourceType, name: str, managed: bool
) -> None:
    assert is_managed(NAMES, AclBinding("User:x", resource_type, name, Operation.READ)) is managed


#: Kafka's own parser of ssl.principal.mapping.rules (SslPrincipalMapper.RULE_PARSER), in Python's syntax.
RULE_PARSER = re.compile(r"((DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?))\s*([,\n]\s*|$)")


def _map(rules: str, dn: str) -> str:
    """What Kafka makes of an RFC 2253 name: the first rule whose pattern matches it whole, else (DEFAULT) the name."""
    for rule in RULE_PARSER.finditer(rules):
        if rule.group(2):
            return dn
        if rule.group(3) is None:
            continue
        found = re.fullmatch(rule.group(3), dn)
        if found:
            return found.expand(re.sub(r"\$(\d)", r"\\\1", rule.group(5)))
    return dn


@pytest.mark.parametrize(
    ("dn", "name"),
    [
        ("O=Bank of Example,OU=node,CN=bank", "bank"),
        ("OU=node,CN=bank.eu", "bank.eu"),
        ("O=Secured\\, Ltd.,OU=operator,CN=operator", "operator"),
        ("O=x\\,OU=operator\\,CN=operator,OU=node,CN=mallory", "mallory"),  # an institution cannot forge a role
        ("OU=applicant,CN=applicant", "OU=applicant,CN=applicant"),
        ("OU=node,CN=Bank", "OU=node,CN=Bank"),  # no node id: its whole name, which gets no grant
    ],
)
def test_principals_are_the_node_id_of_node_and_operator_certificates_and_the_whole_name_otherwise(
    dn: str, name: str
) -> None:
    assert _map(PRINCIPAL_MAPPING_RULES, dn) == name
    cn = dn.rsplit("CN=", 1)[1]
    ou = dn.rsplit(",CN=", 1)[0].rsplit("OU=", 1)[1]
    if name == cn:
        assert principal(cn, ou) == f"User:{name}"
