"""The accelerator service on a real broker when work outlives its deadline, replies cannot be published,
or the sender's clock is off.

A request answered DEADLINE_EXCEEDED keeps its slot until its computation really ends, so the
next request waits for it instead of running beside it; a reply whose publishing fails is
retried with backoff, each failure logged and counted, and one given up is counted as lost and
still answers the requester's retry from the reply cache.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka.errors import KafkaConnectionError

from accel import KeyPair, generate_keypair
from accel.client import RemoteTransport
from accel.engine import Engine
from accel.keystore import KeyStore
from mesh.envelope import Envelope
from mesh.node import open_context, running
from services.accel.service import AccelService
from services.testbed import TestFederation
from tests.integration.test_accel_service import (
    KEY_BITS,
    accel_federation,
    answer_to,
    client,
    full_request,
    send_request,
)

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def keypair() -> KeyPair:
    return generate_keypair(KEY_BITS)


class GatedEngine(Engine):
    """The service's engine, recording when each computation starts and ends; ``gated`` waits for ``gate``."""

    def __init__(self, service: AccelService, gated: str) -> None:
        super().__init__(service.me, service.keys, service.engine._make_backend)  # the service's own backends
        self.gated, self.gate = gated, threading.Event()
        self.events: list[str] = []
        self.started: dict[str, threading.Event] = {}
        self.running = self.most_running = 0
        self._lock = threading.Lock()

    def compute(self, request: dict[str, Any], requester: str) -> dict[str, Any]:
        rid = request["request_id"]
        with self._lock:
            self.events.append(f"start {rid}")
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.started.setdefault(rid, threading.Event()).set()
        try:
            if rid == self.gated:
                self.gate.wait(120)
            return super().compute(request, requester)
        finally:
            with self._lock:
                self.events.append(f"end {rid}")
                self.running -= 1


def service_of(fed: TestFederation, keypair: KeyPair, **options: Any) -> AccelService:
    owner = fed.member("party0")
    keys = KeyStore.of_home(owner.home.path)
    keys.add(keypair)
    return AccelService(open_context(owner.home, owner.bus, fed.settings), keys=keys, **options)


A, B = "a" * 32, "b" * 32


async def test_a_timed_out_request_keeps_its_slot_until_its_work_really_ends(
    bootstrap: str, home_root: Path, keypair: KeyPair
) -> None:
    """One slot: request a's computation outlives its 2 s deadline (held by a gate). a is answered
    DEADLINE_EXCEEDED at its deadline, yet b, sent after that answer, starts only once a's work ended."""
    async with accel_federation(home_root, bootstrap) as fed:
        other = fed.member("party1")
        service = service_of(fed, keypair, workers=1, max_in_flight=1)
        engine = service.engine = GatedEngine(service, gated=A)
        async with running(service), client(other, fed) as theirs:
            await theirs.encrypt(keypair.public_key, np.array([1.0]))  # the service is up and in its group
            engine.events.clear()
            transport = theirs.transport
            assert isinstance(transport, RemoteTransport)
            a = await full_request(theirs, keypair, timeout_ms=2_000)
            reply = await answer_to(transport, lambda rid: send_request(other, {**a, "request_id": rid}), A)
            assert reply["error"]["code"] == "DEADLINE_EXCEEDED"
            assert engine.events == [f"start {A}"]  # still computing after its answer
            assert service.busy == 1  # and still holding the one slot
            b = await full_request(theirs, keypair, timeout_ms=60_000)
            b_reply = asyncio.ensure_future(
                answer_to(transport, lambda rid: send_request(other, {**b, "request_id": rid}), B)
            )
            # give b every chance to start beside a (it would, at once, if a's slot had been freed)
            started = engine.started.setdefault(B, threading.Event())
            assert not await asyncio.to_thread(started.wait, 3.0)
            engine.gate.set()
            assert (await b_reply)["status"] == "OK"
            assert engine.events == [f"start {A}", f"end {A}", f"start {B}", f"end {B}"]
            assert engine.most_running == 1
            assert (service.counts["overdue"], service.counts["overdue_ended"]) == (1, 1)


def failing_replies(service: AccelService, failing: Callable[[], bool]) -> list[str]:
    """Make the service's reply publishing fail (as with the broker unreachable) while ``failing()``;
    returns the request ids of the replies that failed."""
    publisher = service.ctx.publisher
    send = publisher.send_envelope
    failed: list[str] = []

    async def flaky(topic: str, env: Envelope) -> None:
        if topic.startswith("accel.") and topic.endswith(".replies") and failing():
            failed.append(env.correlation_id or "")
            raise KafkaConnectionError("broker unreachable (injected)")
        await send(topic, env)

    publisher.send_envelope = flaky  # type: ignore[method-assign]
    return failed


async def test_a_reply_that_fails_to_publish_is_retried_with_backoff_and_each_failure_counted(
    bootstrap: str, home_root: Path, keypair: KeyPair
) -> None:
    async with accel_federation(home_root, bootstrap) as fed:
        service = service_of(fed, keypair)
        service.reply_backoff = (0.05, 0.2)
        attempts = iter(range(100))
        failed = failing_replies(service, lambda: next(attempts) < 3)  # the first three attempts fail
        async with running(service), client(fed.member("party1"), fed, timeout=60, retries=0) as theirs:
            encrypted = await theirs.encrypt(keypair.public_key, np.array([1.0, 2.0]))
            assert len(encrypted) == 2
            assert len(failed) == 3
            assert len(set(failed)) == 1  # all three were that one reply
            assert (service.counts["reply_publish_failed"], service.counts["reply_lost"]) == (3, 0)
            assert service.counts["replied"] == 1


async def test_a_reply_given_up_is_counted_lost_and_the_requesters_retry_is_answered_from_the_cache(
    bootstrap: str, home_root: Path, keypair: KeyPair
) -> None:
    """Publishing fails until the service gives the reply up (a short retry window here); the service
    goes on, and the requester's retry of the same request id is answered from the reply cache."""
    async with accel_federation(home_root, bootstrap) as fed:
        service = service_of(fed, keypair)
        service.reply_retry_window, service.reply_backoff = 1.0, (0.1, 0.2)
        failed = failing_replies(service, lambda: service.counts["reply_lost"] == 0)
        async with running(service), client(fed.member("party1"), fed, timeout=5, retries=2) as theirs:
            encrypted = await theirs.encrypt(keypair.public_key, np.array([3.0]))
            assert len(encrypted) == 1
            assert service.counts["reply_lost"] == 1
            assert service.counts["reply_publish_failed"] == len(failed) >= 2
            assert service.counts["answered_again"] == 1
            # and it serves the next request as usual
            assert len(await theirs.encrypt(keypair.public_key, np.array([4.0, 5.0]))) == 2


async def test_clock_skew_sweep_no_false_refusal_within_the_tolerance_and_a_refusal_beyond_it(
    bootstrap: str, home_root: Path, keypair: KeyPair
) -> None:
    """Requests with a 30 s timeout from a sender whose clock is -10 to +10 minutes off, minute by minute:
    within the 5 minute tolerance each is computed; further behind, DEADLINE_EXCEEDED (older than its
    timeout plus the tolerance); further ahead, CLOCK_SKEW."""
    async with accel_federation(home_root, bootstrap) as fed:
        other = fed.member("party1")
        async with running(service_of(fed, keypair)) as service, client(other, fed) as theirs:
            await theirs.encrypt(keypair.public_key, np.array([1.0]))  # up, in its group; the schema announced
            transport = theirs.transport
            assert isinstance(transport, RemoteTransport)
            verdicts = {}
            for minutes in range(-10, 11):
                request = await full_request(theirs, keypair, timeout_ms=30_000)
                reply = await answer_to(
                    transport,
                    lambda rid, m=minutes, r=request: send_request(other, {**r, "request_id": rid}, skew_ms=m * 60_000),
                )
                verdicts[minutes] = reply["status"] if reply["error"] is None else reply["error"]["code"]
            assert verdicts == {
                m: "OK" if abs(m) <= 5 else ("DEADLINE_EXCEEDED" if m < 0 else "CLOCK_SKEW") for m in range(-10, 11)
            }
            assert service.counts["error:CLOCK_SKEW"] == 5
