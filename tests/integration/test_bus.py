"""The bus on a real broker: chunked events, schema resolution from the schemas topic, topic configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import MessageSizeTooLargeError

from mesh.bus import KafkaBus
from mesh.codec import Schema, SchemaStore
from mesh.events import HEARTBEAT, NODE_ANNOUNCED
from mesh.publisher import Publisher
from mesh.testing import eventually, fresh_settings, read_topic
from mesh.topics import TopicNames
from services.testbed import federation

pytestmark = [pytest.mark.broker, pytest.mark.timeout(120)]


async def test_event_larger_than_a_record_travels_in_chunks_and_is_applied_whole(
    bootstrap: str, home_root: Path
) -> None:
    settings = fresh_settings(heartbeat_interval=30.0, unreachable_after=90.0, max_record_bytes=20_000)
    async with federation(home_root, bootstrap, n=1, settings=settings) as fed:
        member = fed.members[0]
        entry = member.registry.my_entry()
        assert entry is not None
        services = [f"service-{i:05d}-" + "x" * 40 for i in range(1500)]  # ~75 kB: four records or more
        await member.registry.ctx.publisher.publish(
            "registry",
            NODE_ANNOUNCED,
            {
                "node_id": member.node_id,
                "contract_id": entry.contract_id,
                "name": "n",
                "institution": "i",
                "platform": "p",
                "platform_version": "v",
                "address": "a",
                "services": services,
            },
            subject=member.node_id,
        )
        viewer = fed.operator.registry
        await eventually(
            lambda: viewer.directory.nodes[member.node_id].services == services, what="chunked announcement applied"
        )
        records = await read_topic(bootstrap, settings, "registry")
        chunks = [p for e, p in records if e.payload_type == "interfed.mesh.Chunk"]
        assert len(chunks) >= 4
        assert all(len(e.encode()) <= settings.max_record_bytes for e, _ in records)
        assert not [k for k in viewer.counts if k.startswith("dead:")]


async def test_reader_resolves_a_newer_writer_schema_from_the_schemas_topic(bootstrap: str, home_root: Path) -> None:
    """A party writing Heartbeat v2 (an extra field with a default) is understood by v1 readers."""
    settings = fresh_settings(heartbeat_interval=30.0, unreachable_after=90.0)
    async with federation(home_root, bootstrap, n=1, settings=settings) as fed:
        member = fed.members[0]
        v1 = json.loads(member.registry.schemas.by_name(HEARTBEAT).json_text)
        v2 = {**v1, "fields": [*v1["fields"], {"name": "load", "type": "double", "default": 0.0}]}
        newer = SchemaStore(
            [Schema.from_json(json.dumps(v2)) if s.full_name == HEARTBEAT else s for s in SchemaStore.load()]
        )
        old_pub = member.registry.ctx.publisher
        pub = Publisher(
            old_pub.bus, newer, sender=old_pub.sender, key=member.home.key(), sequence=member.home.sequence()
        )
        await pub.publish(
            "heartbeats",
            HEARTBEAT,
            {"node_id": member.node_id, "interval_ms": 4321, "load": 0.5},
            subject=member.node_id,
        )
        viewer = fed.operator.registry
        await eventually(
            lambda: viewer.directory.nodes[member.node_id].heartbeat_interval == 4321,
            what="v2 heartbeat applied by a v1 reader",
        )
        assert viewer.schemas.by_fingerprint(newer.by_name(HEARTBEAT).fingerprint) is not None
        assert not [k for k in viewer.counts if k.startswith("dead:")]


async def test_protocol_topics_are_created_with_their_required_configs(bootstrap: str, home_root: Path) -> None:
    async with federation(home_root, bootstrap, n=1, join=False) as fed:
        names = fed.operator.bus.names
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            wanted = {
                t: ConfigResource(ConfigResourceType.TOPIC, names(t)) for t in ("registry", "heartbeats", "schemas")
            }
            responses = await admin.describe_configs(list(wanted.values()))
        finally:
            await admin.close()
        configs: dict[str, dict[str, str]] = {}
        for response in responses:
            for resource in response.resources:
                configs[resource[3]] = {entry[0]: entry[1] for entry in resource[4]}
        assert configs[names("schemas")]["cleanup.policy"] == "compact"
        assert configs[names("heartbeats")]["cleanup.policy"] == "compact"
        assert configs[names("registry")]["retention.ms"] == "-1"
        assert configs[names("registry")]["max.message.bytes"] == str(fed.settings.max_record_bytes + 512)


@pytest.mark.tansu_limitation("topic configs are stored but not applied: no max.message.bytes enforcement")
async def test_broker_refuses_a_record_over_the_topic_limit_as_a_second_line(bootstrap: str) -> None:
    """A producer that skips the mesh's own size check still cannot put an oversized record on a topic."""
    settings = fresh_settings(max_record_bytes=20_000)
    await KafkaBus(bootstrap, TopicNames(settings.topic_prefix), settings.max_record_bytes).ensure_topics(["registry"])
    careless = KafkaBus(bootstrap, TopicNames(settings.topic_prefix), max_record_bytes=1_000_000)
    await careless.start()
    try:
        with pytest.raises(MessageSizeTooLargeError):
            await careless.send(careless.names("registry"), b"k", b"x" * 100_000)
    finally:
        await careless.stop()
