"""Bad input on the wire, each injected next to good traffic: refused with its own reason, never applied,
and the service goes on with the next good event."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from pathlib import Path

import pytest

from mesh.bus import KafkaBus
from mesh.envelope import Envelope
from mesh.events import HEARTBEAT
from mesh.identity import generate_key
from mesh.node import open_context, running
from mesh.testing import eventually, fresh_settings
from mesh.topics import TopicNames
from services.registry.service import RegistryService
from services.testbed import TestFederation, dead_letters, federation

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

MARK = 999_999  # an interval_ms no good event uses: seeing it in a directory means a bad event was applied


def beat(
    fed: TestFederation, node_id: str, interval_ms: int, sequence: int | None = None, signer: str | None = None
) -> Envelope:
    """A Heartbeat envelope signed by ``signer`` (default: the node itself)."""
    member = fed.member(signer or node_id)
    env = member.registry.ctx.publisher.envelope(
        HEARTBEAT, {"node_id": node_id, "interval_ms": interval_ms}, subject=node_id
    )
    if sequence is not None:
        env = dataclasses.replace(env, sequence=sequence, signature=b"").signed(member.home.key())
    return env


async def send_raw(
    bus: KafkaBus, fed: TestFederation, value: bytes, key: bytes = b"party0", topic: str = "heartbeats"
) -> None:
    await bus.send(bus.names(topic), key, value)


async def expect_refused_then_good(
    fed: TestFederation,
    injector: KafkaBus,
    original: bytes,
    reason: str,
    good_interval: int,
    *,
    key: bytes = b"party0",
    topic: str = "heartbeats",
) -> None:
    """Inject one bad record, then a good heartbeat; the bad one is dead-lettered, the good one applied."""
    viewer = fed.operator.registry
    before = viewer.counts[f"dead:{reason}"]
    await send_raw(injector, fed, original, key=key, topic=topic)
    await fed.member("party0").registry.ctx.publisher.publish(
        "heartbeats", HEARTBEAT, {"node_id": "party0", "interval_ms": good_interval}, subject="party0"
    )
    await eventually(lambda: viewer.counts[f"dead:{reason}"] > before, timeout=30, what=f"{reason} refusal")
    await eventually(
        lambda: viewer.directory.nodes["party0"].heartbeat_interval == good_interval, what="the next good event applied"
    )
    assert all(e.heartbeat_interval != MARK for e in viewer.directory.nodes.values())
    letters = [d for d in await dead_letters(fed, reason) if d["service"] == "registry"]
    assert any(
        d["original"] == original[: len(d["original"])] and d["original_size"] == len(original) for d in letters
    ), f"no {reason} dead letter carries the original bytes"


@pytest.fixture
async def fed(bootstrap: str, home_root: Path):  # type: ignore[no-untyped-def]
    settings = fresh_settings(heartbeat_interval=30.0, unreachable_after=90.0, max_record_bytes=50_000)
    # Topics allow 1 MB, the services only 50 kB: so Apache Kafka lets an oversized record through to them.
    await KafkaBus(bootstrap, TopicNames(settings.topic_prefix), max_record_bytes=1_000_000).ensure_topics()
    async with federation(home_root, bootstrap, n=2, settings=settings) as running_fed:
        yield running_fed


@pytest.fixture
async def injector(fed: TestFederation):  # type: ignore[no-untyped-def]
    """A raw producer that, unlike a party, will send anything, up to 1 MB."""
    bus = KafkaBus(fed.bootstrap, fed.operator.bus.names, max_record_bytes=1_000_000)
    await bus.start()
    yield bus
    await bus.stop()


async def test_random_bytes_are_malformed_envelope(fed: TestFederation, injector: KafkaBus) -> None:
    value = os.urandom(200)

    await expect_refused_then_good(fed, injector, value, "MALFORMED_ENVELOPE", 1001)


async def test_truncated_avro_is_malformed_envelope(fed: TestFederation, injector: KafkaBus) -> None:
    value = beat(fed, "party0", MARK).encode()[:-20]

    await expect_refused_then_good(fed, injector, value, "MALFORMED_ENVELOPE", 1002)


async def test_unknown_fingerprint_is_unknown_schema(fed: TestFederation, injector: KafkaBus) -> None:
    env = dataclasses.replace(beat(fed, "party0", MARK), payload_fingerprint=b"\x01" * 8, signature=b"")
    value = env.signed(fed.member("party0").home.key()).encode()

    await expect_refused_then_good(fed, injector, value, "UNKNOWN_SCHEMA", 1003)


async def test_undecodable_payload_is_malformed_payload(fed: TestFederation, injector: KafkaBus) -> None:
    env = dataclasses.replace(beat(fed, "party0", MARK), payload=b"\x0c", signature=b"")
    value = env.signed(fed.member("party0").home.key()).encode()

    await expect_refused_then_good(fed, injector, value, "MALFORMED_PAYLOAD", 1004)


async def test_wrong_signature_is_bad_signature(fed: TestFederation, injector: KafkaBus) -> None:
    env = beat(fed, "party0", MARK)
    value = dataclasses.replace(env, signature=bytes([env.signature[0] ^ 1]) + env.signature[1:]).encode()

    await expect_refused_then_good(fed, injector, value, "BAD_SIGNATURE", 1005)


async def test_unknown_sender_is_refused(fed: TestFederation, injector: KafkaBus) -> None:
    env = dataclasses.replace(beat(fed, "party0", MARK), sender="stranger", signature=b"")
    value = env.signed(generate_key()).encode()

    await expect_refused_then_good(fed, injector, value, "UNKNOWN_SENDER", 1006)


async def test_node_signing_as_another_node_is_bad_signature(fed: TestFederation, injector: KafkaBus) -> None:
    """party1 puts party0's name in the sender field and signs with its own key."""
    env = dataclasses.replace(beat(fed, "party0", MARK), signature=b"")
    value = env.signed(fed.member("party1").home.key()).encode()

    await expect_refused_then_good(fed, injector, value, "BAD_SIGNATURE", 1007)


async def test_node_speaking_for_another_node_is_unauthorised(fed: TestFederation, injector: KafkaBus) -> None:
    """party1 signs honestly as itself, but sends a heartbeat claiming to be party0."""
    value = beat(fed, "party0", MARK, signer="party1").encode()

    await expect_refused_then_good(fed, injector, value, "UNAUTHORISED", 1008)


async def test_non_operator_approval_is_unauthorised(fed: TestFederation, injector: KafkaBus) -> None:
    pub = fed.member("party1").registry.ctx.publisher
    env = pub.envelope(
        "interfed.registry.JoinRejected",
        {"contract_id": str(uuid.uuid4()), "node_id": "party0", "reason": "x"},
        subject="party0",
    )
    value = env.encode()

    await expect_refused_then_good(fed, injector, value, "UNAUTHORISED", 1009, topic="registry")


async def test_reused_sequence_number_is_replayed_sequence(fed: TestFederation, injector: KafkaBus) -> None:
    first = beat(fed, "party0", 1010)
    await send_raw(injector, fed, first.encode())
    value = beat(fed, "party0", MARK, sequence=first.sequence).encode()

    await expect_refused_then_good(fed, injector, value, "REPLAYED_SEQUENCE", 1011)


async def test_exact_redelivery_is_applied_once_and_not_dead_lettered(fed: TestFederation, injector: KafkaBus) -> None:
    viewer = fed.operator.registry
    env = beat(fed, "party0", 1012)
    dup_before, applied_before = viewer.counts["duplicates"], viewer.counts["applied"]
    await send_raw(injector, fed, env.encode())
    await send_raw(injector, fed, env.encode())
    await eventually(lambda: viewer.counts["duplicates"] == dup_before + 1, what="duplicate noticed")
    assert viewer.counts["applied"] >= applied_before + 1
    assert not [k for k in viewer.counts if k.startswith("dead:")]


async def test_record_key_other_than_subject_is_key_mismatch(fed: TestFederation, injector: KafkaBus) -> None:
    value = beat(fed, "party0", MARK).encode()

    await expect_refused_then_good(fed, injector, value, "KEY_MISMATCH", 1013, key=b"party1")


async def test_payload_on_the_wrong_topic_is_refused(fed: TestFederation, injector: KafkaBus) -> None:
    pub = fed.member("party0").registry.ctx.publisher
    schema = pub.schemas.by_name(HEARTBEAT)
    env = pub.envelope(
        "interfed.mesh.SchemaPublished",
        {"fingerprint": schema.fingerprint, "full_name": HEARTBEAT, "schema_json": schema.json_text},
        subject="party0",
    )
    value = env.encode()

    await expect_refused_then_good(fed, injector, value, "WRONG_TOPIC", 1014)


async def test_oversized_record_is_refused_and_kept_truncated(fed: TestFederation, injector: KafkaBus) -> None:
    """The services' limit is 50 kB; the injector's topic allows 1 MB (as a misconfigured party's might)."""
    value = os.urandom(120_000)

    await expect_refused_then_good(fed, injector, value, "OVERSIZED", 1015)
    letter = next(d for d in await dead_letters(fed, "OVERSIZED"))
    assert letter["original_truncated"] is True
    assert letter["original_size"] == len(value)


async def test_impostor_join_request_cannot_spend_the_real_nodes_sequence(
    fed: TestFederation, injector: KafkaBus
) -> None:
    """Someone with their own key applies as party0 with a huge sequence number: refused (party0 is a
    member already), and party0's own events, signed by its own key, still go through."""
    from cryptography.hazmat.primitives import serialization

    from mesh.envelope import new_envelope
    from mesh.identity import make_csr

    key = generate_key()
    csr = make_csr(key, "party0", "impostor").public_bytes(serialization.Encoding.DER)
    schemas = fed.operator.registry.schemas
    schema, payload = schemas.encode(
        "interfed.registry.JoinRequested",
        {
            "contract_id": str(uuid.uuid4()),
            "node_id": "party0",
            "name": "x",
            "institution": "impostor",
            "platform": "x",
            "platform_version": "x",
            "address": "x",
            "description": "",
            "csr": csr,
            "agreement_sha256": b"\0" * 32,
            "expires_at": 4_000_000_000_000,
        },
    )
    value = (
        new_envelope(
            payload_type=schema.full_name,
            payload_fingerprint=schema.fingerprint,
            payload=payload,
            sender="party0",
            sequence=10**12,
            subject="party0",
        )
        .signed(key)
        .encode()
    )

    await expect_refused_then_good(fed, injector, value, "INVALID_TRANSITION", 1016, topic="registry")
    assert fed.operator.registry.directory.nodes["party0"].institution == "Institution 0"


async def test_event_of_a_type_this_party_does_not_know_is_ignored_not_refused(
    fed: TestFederation, injector: KafkaBus
) -> None:
    """A newer party's event type on a topic: authentic, so neither applied nor dead-lettered."""
    viewer = fed.operator.registry
    env = dataclasses.replace(beat(fed, "party0", MARK), payload_type="interfed.registry.FutureThing", signature=b"")
    await send_raw(injector, fed, env.signed(fed.member("party0").home.key()).encode(), topic="registry")
    await fed.member("party0").registry.ctx.publisher.publish(
        "heartbeats", HEARTBEAT, {"node_id": "party0", "interval_ms": 1017}, subject="party0"
    )
    await eventually(lambda: viewer.directory.nodes["party0"].heartbeat_interval == 1017, what="next event applied")
    assert viewer.counts["ignored_unknown_type"] == 1
    assert not [k for k in viewer.counts if k.startswith("dead:")]


async def test_revoked_certificate_is_refused_and_the_next_good_event_applied(
    fed: TestFederation, injector: KafkaBus
) -> None:
    await fed.operator.registry.revoke("party1", "key compromised")
    await eventually(lambda: fed.operator.registry.directory.nodes["party1"].revoked is not None, what="revocation")
    value = beat(fed, "party1", MARK).encode()
    await expect_refused_then_good(fed, injector, value, "REVOKED_SENDER", 1018, key=b"party1")


async def test_a_replay_meets_a_flood_of_junk_without_waiting_on_each_record(
    fed: TestFederation, injector: KafkaBus
) -> None:
    """Join requests under made-up fingerprints and heartbeats of unknown senders: a party replaying the topics
    refuses every one, each with its reason, and holds a partition back once per fetch, not once per record
    (core schemas are refused at once; unknown senders after one fence over ``registry``)."""
    junk = 200
    for i in range(junk):
        forged = dataclasses.replace(
            beat(fed, "party0", MARK),
            payload_type="interfed.registry.JoinRequested",
            payload_fingerprint=os.urandom(8),
            sender=f"stranger{i}",
            subject=f"stranger{i}",
            signature=b"\0" * 64,
        )
        await send_raw(injector, fed, forged.encode(), key=f"stranger{i}".encode(), topic="registry")
        stranger = dataclasses.replace(beat(fed, "party0", MARK), sender=f"stranger{i}", signature=b"")
        await send_raw(injector, fed, stranger.signed(generate_key()).encode())
    await fed.member("party0").registry.ctx.publisher.publish(
        "heartbeats", HEARTBEAT, {"node_id": "party0", "interval_ms": 1019}, subject="party0"
    )
    observer = RegistryService(open_context(fed.operator.home, fed.operator.bus, fed.settings), readonly=True)
    async with running(observer, timeout=120):
        assert observer.counts["dead:UNKNOWN_SCHEMA"] == junk
        assert observer.counts["dead:UNKNOWN_SENDER"] == junk
        assert observer.directory.nodes["party0"].heartbeat_interval == 1019
        assert observer.counts["held"] <= junk // 10, observer.counts


def stranger_on_registry(fed: TestFederation, key: str) -> bytes:
    """A well-formed NodeAnnounced about ``key`` from a sender nobody knows (its own key): UNKNOWN_SENDER."""
    env = fed.member("party0").registry.ctx.publisher.envelope(
        "interfed.registry.NodeAnnounced",
        {
            "node_id": key,
            "contract_id": "c",
            "name": "n",
            "institution": "i",
            "platform": "p",
            "platform_version": "1",
            "address": "",
            "services": [],
        },
        subject=key,
    )
    return (
        dataclasses.replace(env, sender=f"stranger-{uuid.uuid4().hex[:6]}", signature=b"")
        .signed(generate_key())
        .encode()
    )


async def test_junk_on_a_nodes_registry_partition_before_its_approval_never_gets_its_events_refused(
    bootstrap: str, home_root: Path
) -> None:
    """Records of unknown senders sit on party0's registry partition just before its approval. A party replaying
    refuses each at once (a registry record never waits for registry: what it needs is earlier on its partition)
    and never refuses one of party0's own heartbeats, which wait for the approval behind the junk."""
    settings = fresh_settings(heartbeat_interval=0.05, unreachable_after=60.0)
    async with federation(home_root, bootstrap, n=1, settings=settings, join=False) as fed:
        party0 = fed.member("party0")
        contract = await party0.registry.request_join()
        await eventually(lambda: contract in fed.operator.registry.directory.contracts, what="the join request")
        injector = KafkaBus(bootstrap, fed.operator.bus.names)
        await injector.start()
        try:
            for _ in range(20):
                await injector.send(injector.names("registry"), b"party0", stranger_on_registry(fed, "party0"))
        finally:
            await injector.stop()
        await fed.operator.registry.approve(contract)
        await eventually(lambda: fed.operator.registry.directory.nodes["party0"].last_heartbeat is not None)
        await asyncio.sleep(0.5)  # more heartbeats, read after the approval on replay or before it
        for _ in range(5):
            observer = RegistryService(open_context(fed.operator.home, fed.operator.bus, fed.settings), readonly=True)
            async with running(observer, timeout=60):
                assert observer.counts["dead:UNKNOWN_SENDER"] == 20, observer.counts
                assert observer.directory.nodes["party0"].last_heartbeat is not None
