"""The accelerator service on a real broker: round trips, load shared by a group, refusals and error replies.

party0 owns the key and runs the accelerator; party1 is another member that may ask for
public-key work but never for decryption. A small record limit makes the vectors travel
in chunks, so reassembly is exercised on every request and reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from accel import KeyPair, PackingSpec, generate_keypair
from accel.client import AccelClient, RemoteTransport
from accel.errors import AccelRequestError, AccelTimeoutError
from accel.gmp_backend import make_djn_base
from accel.keystore import KeyStore
from accel.wire import PublishedKey, plain_record, public_key_record, vector_record
from mesh.events import ACCEL_REQUEST, CHUNK
from mesh.node import open_context, running
from mesh.testing import eventually, fresh_settings
from mesh.topics import ACCEL_REPLIES, ACCEL_REQUESTS, node_topic
from services.accel.service import AccelService
from services.testbed import Member, TestFederation, federation

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]

KEY_BITS = 512


@pytest.fixture(scope="module")
def keypair() -> KeyPair:
    return generate_keypair(KEY_BITS)


@contextlib.asynccontextmanager
async def accel_federation(root: Path, bootstrap: str) -> AsyncIterator[TestFederation]:
    # 16 KiB records: a 200-value vector of 512-bit-key ciphertexts (~26 KB) travels in chunks.
    settings = fresh_settings(heartbeat_interval=0.3, unreachable_after=3.0, max_record_bytes=16_384)
    async with federation(root, bootstrap, 2, settings=settings) as fed:
        yield fed


def accelerator(member: Member, fed: TestFederation, keypair: KeyPair, workers: int = 1) -> AccelService:
    keys = KeyStore.of_home(member.home.path)
    if keypair.public_key.n not in {k.published.public_key.n for k in map(keys.get, keys.ids()) if k}:
        keys.add(keypair, djn_base=make_djn_base(keypair.public_key))
    return AccelService(open_context(member.home, member.bus, fed.settings), workers=workers, keys=keys)


def client(member: Member, fed: TestFederation, **options: Any) -> contextlib.AbstractAsyncContextManager[AccelClient]:
    return AccelClient.connect(open_context(member.home, member.bus, fed.settings), "party0", **options)


async def test_a_round_trip_through_the_service_matches_plaintext_arithmetic(
    bootstrap: str, home_root: Path, keypair: KeyPair
) -> None:
    """The owner encrypts, another member computes on the ciphertexts, the owner decrypts: exact results."""
    async with accel_federation(home_root, bootstrap) as fed:
        owner, other = fed.member("party0"), fed.member("party1")
        async with (
            running(accelerator(owner, fed, keypair)) as service,
            client(owner, fed) as mine,
            client(other, fed) as theirs,
        ):
            x = np.rint(np.linspace(-3, 3, 200) * 2**10) / 2**10  # exact at 20 fractional bits
            features = np.arange(600, dtype=np.int64).reshape(200, 3) % 7 - 3
            encrypted = await mine.encrypt(keypair.public_key, x, precision=20)
            assert len(encrypted) == 200
            scaled = await theirs.mul_plain(encrypted, np.full(200, 3))
            shifted = await theirs.add_plain(scaled, np.ones(200))
            total = await theirs.add(shifted, encrypted)
            gradient = await theirs.transpose_dot(encrypted, features)
            np.testing.assert_array_equal(await mine.decrypt(total), 4 * x + 1)
            np.testing.assert_array_equal(await mine.decrypt(gradient), features.T @ x)
            np.testing.assert_array_equal(await mine.decrypt(await theirs.sum(encrypted)), [x.sum()])

            spec = PackingSpec(16, 8, clip=4.0)
            packed = await theirs.packed_encrypt(keypair.public_key, x, spec, fast=True)
            doubled = await theirs.packed_add(packed, packed)
            np.testing.assert_array_equal(await mine.packed_decrypt(doubled), 2 * spec.quantise(x))

            # A retry (same request id, a new envelope) is answered from the first reply, not computed again.
            transport = theirs.transport
            assert isinstance(transport, RemoteTransport)
            request = await full_request(theirs, keypair, timeout_ms=30_000)
            first = await answer_to(transport, lambda rid: send_request(other, {**request, "request_id": rid}))
            again = await answer_to(
                transport,
                lambda _: send_request(other, {**request, "request_id": first["request_id"]}),
                first["request_id"],
            )
            assert again["vector"] == first["vector"]
            assert service.counts["answered_again"] == 1


async def test_decryption_for_another_node_is_refused_with_a_reason(
    bootstrap: str, home_root: Path, keypair: KeyPair
) -> None:
    async with accel_federation(home_root, bootstrap) as fed:
        owner, other = fed.member("party0"), fed.member("party1")
        async with running(accelerator(owner, fed, keypair)), client(other, fed) as theirs:
            encrypted = await theirs.encrypt(keypair.public_key, np.array([1.0, 2.0]))
            with pytest.raises(AccelRequestError, match="party1 asked") as refused:
                await theirs.decrypt(encrypted)
            assert refused.value.code == "DECRYPT_REFUSED"
            packed = await theirs.packed_encrypt(keypair.public_key, np.array([0.5]))
            with pytest.raises(AccelRequestError) as refused:
                await theirs.packed_decrypt(packed)
            assert refused.value.code == "DECRYPT_REFUSED"


async def test_every_failing_request_gets_an_error_reply(bootstrap: str, home_root: Path, keypair: KeyPair) -> None:
    """Unknown key, overflow, malformed operands, a malformed chunk and a passed deadline: each its own code."""
    async with accel_federation(home_root, bootstrap) as fed:
        owner, other = fed.member("party0"), fed.member("party1")
        async with running(accelerator(owner, fed, keypair)) as service, client(other, fed) as theirs:
            stranger = generate_keypair(KEY_BITS).public_key
            with pytest.raises(AccelRequestError) as refused:
                await theirs.request("ENCRYPT", stranger, public_key=None, plain=plain_record([1], 0))
            assert refused.value.code == "UNKNOWN_KEY"

            encrypted = await theirs.encrypt(keypair.public_key, np.array([1.0, 2.0]))
            with pytest.raises(AccelRequestError) as refused:
                await theirs.mul_plain(encrypted, np.array([2**600, 1]))
            assert refused.value.code == "PAILLIER_OVERFLOW"

            with pytest.raises(AccelRequestError) as refused:
                await theirs.request("ADD", keypair.public_key)
            assert refused.value.code == "MALFORMED_REQUEST"

            transport = theirs.transport
            assert isinstance(transport, RemoteTransport)
            reply = await answer_to(transport, lambda rid: send_bad_chunk(other, rid))
            assert reply["error"]["code"] == "MALFORMED_CHUNK"

            # signed 6 minutes ago with a 1 s timeout: older than its timeout and the 5 minute clock tolerance
            request = await full_request(theirs, keypair, timeout_ms=1_000)
            reply = await answer_to(
                transport, lambda rid: send_request(other, {**request, "request_id": rid}, skew_ms=-6 * 60_000)
            )
            assert (reply["error"]["code"], reply["error"]["retriable"]) == ("DEADLINE_EXCEEDED", True)
            assert service.counts["error:DEADLINE_EXCEEDED"] == 1

            # A reply asked for on the owner's own topic still goes to party1's, as a refusal.
            request = await full_request(
                theirs, keypair, timeout_ms=30_000, reply_topic=node_topic(ACCEL_REPLIES, "party0")
            )
            reply = await answer_to(transport, lambda rid: send_request(other, {**request, "request_id": rid}))
            assert reply["error"]["code"] == "MALFORMED_REQUEST"
            assert "party1" in reply["error"]["message"]


async def test_a_client_times_out_when_no_accelerator_answers(
    bootstrap: str, home_root: Path, keypair: KeyPair
) -> None:
    async with (
        accel_federation(home_root, bootstrap) as fed,
        client(fed.member("party1"), fed, timeout=1.0, retries=1) as theirs,
    ):
        started = time.monotonic()
        with pytest.raises(AccelTimeoutError, match="2 attempt"):
            await theirs.encrypt(keypair.public_key, np.array([1.0]))
        assert time.monotonic() - started >= 2.0


async def test_two_instances_in_one_group_share_the_requests(bootstrap: str, home_root: Path, keypair: KeyPair) -> None:
    """Two instances of party0's accelerator split the partitions of accel.party0.requests and both serve requests.

    On tansu the group join and the rebalance for the second member take ~5 s each; it passes there too.
    """
    async with accel_federation(home_root, bootstrap) as fed:
        owner, other = fed.member("party0"), fed.member("party1")
        first, second = accelerator(owner, fed, keypair), accelerator(owner, fed, keypair)
        async with running(first), running(second), client(other, fed) as theirs:
            await eventually(
                lambda: (
                    first.partitions() and second.partitions() and len(first.partitions() | second.partitions()) == 6
                ),
                timeout=60,
                what="both instances holding partitions of accel.party0.requests",
            )
            assert not first.partitions() & second.partitions()
            encrypted = await theirs.encrypt(keypair.public_key, np.array([1.0, -1.0]))
            replies = await asyncio.gather(
                *(theirs.request("SUM", keypair.public_key, vectors=[vector_record(encrypted)]) for _ in range(24))
            )
            served = {r["served_by"] for r in replies}
            assert served == {first.instance, second.instance}


async def full_request(accel: AccelClient, keypair: KeyPair, **fields: Any) -> dict[str, Any]:
    """An ENCRYPT request of [1, 2, 3] to party0's accelerator, every field given, as party1 would write it."""
    published = PublishedKey(keypair.public_key)
    return {
        "request_id": "",
        "service_node": accel.service_node,
        "reply_topic": node_topic(ACCEL_REPLIES, "party1"),
        "reply_key": "deadline",
        "operation": "ENCRYPT",
        "key_id": published.key_id,
        "public_key": public_key_record(published),
        "encryption": "TEXTBOOK",
        "vectors": [],
        "packed": [],
        "plain": plain_record([1, 2, 3], 0),
        "bound": None,
        "matrix": None,
        "values": [],
        "packing": None,
        "keygen": None,
        "timeout_ms": 0,
        **fields,
    }


async def answer_to(transport: RemoteTransport, send: Any, request_id: str | None = None) -> dict[str, Any]:
    """Send something under a request id (default: a fresh one) by hand and wait for the service's reply to it."""
    request_id = request_id or uuid.uuid4().hex
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    transport.listener.waiting[request_id] = future
    await send(request_id)
    return await asyncio.wait_for(future, 30)


async def send_request(member: Member, request: dict[str, Any], *, skew_ms: int = 0) -> None:
    """Publish ``request`` from ``member`` to party0's accelerator, signed as by a clock ``skew_ms`` off."""
    publisher = member.registry.ctx.publisher
    rid = request["request_id"]
    topic = node_topic(ACCEL_REQUESTS, "party0")
    if not skew_ms:
        await publisher.publish(topic, ACCEL_REQUEST, request, subject=rid, correlation_id=rid)
        return
    env = publisher.envelope(ACCEL_REQUEST, request, subject=rid, correlation_id=rid)
    skewed = dataclasses.replace(env, issued_at=env.issued_at + skew_ms, signature=b"").signed(publisher.signer)
    await publisher.send_envelope(topic, skewed)


async def send_bad_chunk(member: Member, request_id: str) -> None:
    """A signed chunk that cannot start a reassembly (piece 1 of 2, no piece 0)."""
    chunk = {"whole_sha256": b"\x07" * 32, "index": 1, "count": 2, "whole_size": 10, "data": b"12345"}
    await member.registry.ctx.publisher.publish(
        node_topic(ACCEL_REQUESTS, "party0"), CHUNK, chunk, subject=request_id, correlation_id=request_id
    )


async def test_keygen_for_its_own_node_served_by_every_instance_refused_to_others(
    bootstrap: str, home_root: Path
) -> None:
    """party0 asks its accelerator for a key and decrypts under it; party1's KEYGEN is refused; a second
    instance on the same home, whose key store was read before the key existed, serves the key too."""
    async with accel_federation(home_root, bootstrap) as fed:
        owner, other = fed.member("party0"), fed.member("party1")
        folder = owner.home.path / "accel" / "keys"

        def instance() -> AccelService:
            return AccelService(
                open_context(owner.home, owner.bus, fed.settings), keys=KeyStore.of_home(owner.home.path)
            )

        first, second = instance(), instance()  # both stores read now: no key yet
        values = np.array([0.5, -3.0, 1e3])
        async with client(owner, fed, timeout=60) as mine, client(other, fed, timeout=60) as theirs:
            async with running(first):
                key = await mine.generate_key(KEY_BITS)
                assert (folder / f"{key.key_id}.json").is_file()
                assert key.djn_base is not None
                encrypted = await theirs.encrypt(key, values, precision=16, fast=True)
                np.testing.assert_array_equal(await mine.decrypt(encrypted), values)
                with pytest.raises(AccelRequestError, match="party1 asked") as refused:
                    await theirs.generate_key(KEY_BITS)
                assert refused.value.code == "KEYGEN_REFUSED"
                assert [p.stem for p in folder.glob("*.json")] == [key.key_id]
            assert key.key_id not in second.keys
            async with running(second):
                await eventually(
                    lambda: len(second.partitions()) == 6,
                    timeout=60,
                    what="the second instance holding accel.party0.requests",
                )
                reply = await mine.request("DECRYPT", key, vectors=[vector_record(encrypted)])
                assert reply["served_by"] == second.instance
                np.testing.assert_array_equal(await mine.decrypt(encrypted), values)
