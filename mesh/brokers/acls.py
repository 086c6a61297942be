"""Kafka ACLs as data, and setting one federation's ACLs on a broker.

aiokafka 0.14's admin client has no ACL calls, but its protocol module has the CreateAcls, DescribeAcls and
DeleteAcls requests (v1, which Kafka 4 still serves); ``AclAdmin`` sends them through the admin client's
connection. Only LITERAL ALLOW bindings on any host are made: what a party may do is listed one topic and
one group at a time, so a node id that extends another (``bank`` and ``bank.eu``) never shares its grants.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DeleteAclsRequest_v1,
    DescribeAclsRequest_v1,
)
from aiokafka.protocol.api import Request

from mesh.errors import BrokerAccessError


class ResourceType(IntEnum):
    """The kinds of Kafka resource an ACL binding names (Kafka's wire codes)."""

    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class Operation(IntEnum):
    """The operations an ACL binding allows (Kafka's wire codes)."""

    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8


_ANY = 1
_LITERAL = 3
_ALLOW = 3


@dataclass(frozen=True, order=True)
class AclBinding:
    """One grant: ``principal`` may do ``operation`` on the topic or group named ``resource`` (LITERAL, any host)."""

    principal: str
    resource_type: ResourceType
    resource: str
    operation: Operation

    def __str__(self) -> str:
        return f"ALLOW {self.principal} {self.operation.name} {self.resource_type.name}:{self.resource}"

    def to_json(self) -> dict[str, str]:
        """The binding as a JSON object, for a person or a file to read."""
        return {
            "principal": self.principal,
            "operation": self.operation.name,
            "resource_type": self.resource_type.name,
            "resource": self.resource,
            "pattern": "LITERAL",
            "permission": "ALLOW",
            "host": "*",
        }

    def _wire(self) -> tuple[int, str, int, str, str, int, int]:
        return (int(self.resource_type), self.resource, _LITERAL, self.principal, "*", int(self.operation), _ALLOW)


@dataclass(frozen=True)
class AclChange:
    """What an apply did."""

    created: tuple[AclBinding, ...]
    deleted: tuple[AclBinding, ...]
    kept: int


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]  # aiokafka ships no types
    API_KEY = 30

    def __init__(self, bindings: Iterable[AclBinding]) -> None:
        self._bindings = list(bindings)

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class([b._wire() for b in self._bindings])  # noqa: SLF001 - one module


class _DeleteAcls(Request[DeleteAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 31

    def __init__(self, bindings: Iterable[AclBinding]) -> None:
        self._bindings = list(bindings)

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        # A filter with every field exact matches exactly one binding.
        return request_struct_class([b._wire() for b in self._bindings])  # noqa: SLF001 - one module


class _DescribeAllAcls(Request[DescribeAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 29

    def build(self, request_struct_class: type[DescribeAclsRequest_v1]) -> DescribeAclsRequest_v1:
        return request_struct_class(_ANY, None, _ANY, None, None, _ANY, _ANY)


def _raise_for(code: int, message: str | None, what: str) -> None:
    if code:
        error = for_code(code)
        raise BrokerAccessError(f"{what}: {error.__name__}: {message or error.description}")


class AclAdmin:
    """ACL requests to one cluster, as one principal (the operator: a super user, or one allowed ALTER on CLUSTER)."""

    def __init__(self, bootstrap: str, security: Mapping[str, Any] | None = None) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000, **(security or {}))

    async def __aenter__(self) -> AclAdmin:
        await self._admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._admin.close()

    async def _send(self, request: Request[Any]) -> Any:
        client = self._admin._client  # noqa: SLF001 - aiokafka's admin client has no ACL calls
        node = client.get_random_node()
        for _ in range(100):
            if await client.ready(node):
                break
            await asyncio.sleep(0.1)
        return await client.send(node, request)

    async def describe(self) -> set[AclBinding]:
        """Every LITERAL ALLOW binding on a topic or group, on any host; other kinds are not ours and not listed."""
        response = await self._send(_DescribeAllAcls())
        _raise_for(response.error_code, response.error_message, "the broker would not list its ACLs")
        found: set[AclBinding] = set()
        for resource_type, name, pattern, acls in response.resources:
            if pattern != _LITERAL or resource_type not in (ResourceType.TOPIC, ResourceType.GROUP):
                continue
            for principal, host, operation, permission in acls:
                if host == "*" and permission == _ALLOW and operation in Operation._value2member_map_:
                    found.add(AclBinding(principal, ResourceType(resource_type), name, Operation(operation)))
        return found

    async def create(self, bindings: Iterable[AclBinding]) -> None:
        """Create ``bindings`` on the cluster (none: nothing is sent); a binding the broker refuses raises."""
        wanted = sorted(bindings)
        if not wanted:
            return
        response = await self._send(_CreateAcls(wanted))
        for binding, (code, message) in zip(wanted, response.creation_responses, strict=True):
            _raise_for(code, message, f"the broker would not create {binding}")

    async def delete(self, bindings: Iterable[AclBinding]) -> None:
        """Delete ``bindings`` from the cluster (none: nothing is sent); a failure the broker reports raises."""
        gone = sorted(bindings)
        if not gone:
            return
        response = await self._send(_DeleteAcls(gone))
        for binding, (code, message, _) in zip(gone, response.filter_responses, strict=True):
            _raise_for(code, message, f"the broker would not delete {binding}")

    async def apply(
        self, wanted: set[AclBinding], managed: Callable[[AclBinding], bool], settle: float = 30.0
    ) -> AclChange:
        """Make the managed bindings exactly ``wanted``: create what is missing, delete what is not wanted.

        Returns once the broker lists the result (a KRaft broker applies ACLs from its metadata log a
        moment after the controller accepts them), so a client connecting next finds its grants.
        """
        outside = [b for b in wanted if not managed(b)]
        if outside:
            raise ValueError(f"not a binding this apply manages: {outside[0]}")
        current = {b for b in await self.describe() if managed(b)}
        create, delete = wanted - current, current - wanted
        await self.delete(delete)
        await self.create(create)
        deadline = asyncio.get_running_loop().time() + settle
        while True:
            now = {b for b in await self.describe() if managed(b)}
            if now == wanted:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise BrokerAccessError(
                    f"the broker lists {len(now ^ wanted)} ACL(s) other than those set, {settle:.0f} s after setting "
                    "them (another apply at the same time?)"
                )
            await asyncio.sleep(0.05)
        return AclChange(tuple(sorted(create)), tuple(sorted(delete)), len(current & wanted))
