"""The accelerator service: Paillier requests from its node's ``accel.<node>.requests``, run on worker processes,
answered on each requester's own ``accel.<requester>.replies``.

Instances of one node's accelerator form one consumer group on the node's request topic, so
each request goes to one instance and more instances give more throughput; every
instance still reads ``registry`` and ``schemas`` whole, and verifies
every envelope through the service base's pipeline. A request addressed to another
node's accelerator is ignored. Every request this service accepts gets exactly one
reply: its result, or an error with a reason code (protocol.md §14.7), never silence.
Only the requester reads its replies on a secured broker, decryptions included (§14.10).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from typing import Any, ClassVar

from aiokafka.errors import KafkaError

from accel.engine import Engine
from accel.errors import AccelError, ClockSkewError, DeadlineExceededError, MalformedRequestError
from accel.keystore import KeyStore
from accel.pool import WorkerPool, pooled
from mesh import events
from mesh.bus import MergedReader
from mesh.clock import now_ms
from mesh.envelope import Envelope
from mesh.errors import KeyMismatchError
from mesh.events import ACCEL_REPLY, ACCEL_REQUEST, CHUNK
from mesh.service import Context, Event, Service, handles
from mesh.topics import ACCEL_REPLIES, ACCEL_REQUESTS, node_topic
from mesh.trust import SKEW_MS

#: Replies kept to answer a retry (same sender, same request id) without computing again.
REPLY_CACHE = 1024
#: Errors of publishing a reply that a later attempt may not meet (the broker unreachable, a timeout).
TRANSIENT = (KafkaError, TimeoutError, OSError)


def time_allowed(issued_at_ms: int, timeout_ms: int, received_ms: int) -> float:
    """Seconds a request may take from its receipt, on the accelerator's own monotonic clock (protocol.md §14.8).

    The deadline is the request's own: ``timeout_ms`` after its ``issued_at``, on the sender's clock.
    Its age at receipt (``received_ms - issued_at_ms``, the accelerator's wall clock against the
    sender's) mixes transit with clock skew, so up to ``SKEW_MS`` of it is taken as skew and not
    charged: a sender whose clock is within the tolerance gets its whole timeout. Beyond the
    tolerance the request is refused: signed ahead of this clock (``CLOCK_SKEW``), or older than
    its timeout plus the tolerance (``DEADLINE_EXCEEDED``).
    """
    age = received_ms - issued_at_ms
    if age < -SKEW_MS:
        raise ClockSkewError(
            f"the request was signed {-age / 1000:.0f} s ahead of this accelerator's clock, "
            f"beyond the {SKEW_MS // 1000} s tolerance: check the sender's clock"
        )
    if age > timeout_ms + SKEW_MS:
        raise DeadlineExceededError(
            f"the request was read {age / 1000:.1f} s after it was signed: beyond its {timeout_ms} ms "
            f"and the {SKEW_MS // 1000} s clock tolerance"
        )
    return (timeout_ms - max(0, age - SKEW_MS)) / 1000


class AccelService(Service):
    """One instance of a node's accelerator, with ``workers`` worker processes."""

    name: ClassVar[str] = "accel"
    #: How long a reply's publishing is retried (seconds) before it is given up as lost, and the
    #: first and the longest pause between attempts (doubling).
    reply_retry_window: float = 30.0
    reply_backoff: tuple[float, float] = (0.1, 5.0)

    def __init__(
        self,
        ctx: Context,
        *,
        workers: int = 1,
        keys: KeyStore | None = None,
        max_in_flight: int | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        """``workers`` processes of its own (started when it runs, stopped when it stops), or the node's ``pool``,
        which its owner (the executor's client, in ``node up``'s workers mode) stops."""
        super().__init__(ctx)
        self.me = ctx.config.node_id
        self.request_topic = node_topic(ACCEL_REQUESTS, self.me)
        self.instance = f"{self.me}/{uuid.uuid4().hex[:8]}"
        self.keys = keys if keys is not None else KeyStore.of_home(ctx.home.path)
        self._owns_pool = pool is None
        self.pool = WorkerPool(workers) if pool is None else pool
        self.engine = Engine(self.me, self.keys, pooled(self.pool))
        self.slots = max_in_flight or 2 * self.pool.workers
        self._slots = asyncio.Semaphore(self.slots)
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        # Computations whose request was answered DEADLINE_EXCEEDED but that still run: each keeps
        # its slot until it really ends, so timed-out work never lets more in than the pool can do.
        self._overdue: set[asyncio.Future[dict[str, Any]]] = set()
        self._replied: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self.log = self.log.bind(instance=self.instance, workers=self.pool.workers)

    def read_topics(self) -> tuple[str, ...]:
        return (self.request_topic,)

    def group_topics(self) -> tuple[str, ...]:
        return (self.request_topic,)

    async def run(self, stop: asyncio.Event) -> None:
        # On a plaintext broker the node makes its own topic; on a secured one the operator has (a no-op here).
        await self.ctx.bus.ensure_topics([self.request_topic])
        await asyncio.to_thread(self.pool.warm)
        try:
            await super().run(stop)
        finally:
            for task in list(self._running.values()):
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)
            if self._owns_pool:
                await asyncio.to_thread(self.pool.close)

    @property
    def busy(self) -> int:
        """Slots taken now: requests being computed or answered, and overdue work still running."""
        return len(self._running) + len(self._overdue)

    def partitions(self) -> set[tuple[str, int]]:
        """The partitions of its node's request topic this instance holds in its group now."""
        reader = self._reader
        return reader.shared.assigned() if isinstance(reader, MergedReader) else set()

    # -- requests ----------------------------------------------------------------------

    @handles(ACCEL_REQUEST)
    async def on_request(self, ev: Event[events.AccelRequest]) -> None:
        request = ev.payload
        if request["service_node"] != self.me:
            self.counts["for_another_node"] += 1
            return
        if ev.envelope.subject != request["request_id"]:
            raise KeyMismatchError(f"a request travels under its request id, not {ev.envelope.subject!r}")
        key = (ev.sender, request["request_id"])
        cached = self._replied.get(key)
        if cached is not None:
            self.counts["answered_again"] += 1
            await self._publish(ev.sender, request["reply_key"], request["request_id"], cached)
            return
        if key in self._running:
            return  # a retry of a request still being computed: its reply answers both
        received, received_ms = time.monotonic(), now_ms()
        await self._slots.acquire()  # backpressure: the next request waits for a free slot
        self._running[key] = asyncio.create_task(self._serve(ev, key, received, received_ms))

    async def _serve(
        self, ev: Event[events.AccelRequest], key: tuple[str, str], received: float, received_ms: int
    ) -> None:
        request = ev.payload
        started = time.monotonic()
        work: asyncio.Future[dict[str, Any]] | None = None
        try:
            allowed = time_allowed(ev.envelope.issued_at, request["timeout_ms"], received_ms)
            remaining = received + allowed - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceededError(f"the request's deadline passed {-remaining:.3f} s before a slot was free")
            reply_topic = node_topic(ACCEL_REPLIES, ev.sender)
            if request["reply_topic"] != reply_topic:
                raise MalformedRequestError(
                    f"replies to {ev.sender} travel on its own {reply_topic}, not {request['reply_topic']!r}"
                )
            work = asyncio.ensure_future(asyncio.to_thread(self.engine.compute, request, ev.sender))
            # Not wait_for: a thread cannot be cancelled, so the work goes on after the deadline and
            # keeps its slot (released in finally, once it really ends).
            done, _ = await asyncio.wait({work}, timeout=remaining)
            if not done:
                raise DeadlineExceededError(f"not computed within the request's {request['timeout_ms']} ms")
            reply = self._reply(request, ev.sender, started, result=work.result())
        except AccelError as exc:
            self.counts[f"error:{exc.reason}"] += 1
            self.log.info("request_failed", request_id=request["request_id"], sender=ev.sender, reason=exc.reason)
            reply = self._reply(request, ev.sender, started, error=exc)
        except Exception as exc:  # a bug must cost one request an error reply, not the service
            self.log.exception("request_crashed", request_id=request["request_id"])
            reply = self._reply(request, ev.sender, started, error=AccelError(f"{type(exc).__name__}: {exc}"))
        try:
            if reply["error"] is None or not reply["error"]["retriable"]:
                # kept before publishing: if the reply is lost on the way, the requester's retry gets it
                self._replied[key] = reply
                while len(self._replied) > REPLY_CACHE:
                    self._replied.popitem(last=False)
            if await self._publish(ev.sender, request["reply_key"], request["request_id"], reply):
                self.counts["replied"] += 1
        finally:
            self._running.pop(key, None)
            if work is None or work.done():
                self._slots.release()
            else:
                self.counts["overdue"] += 1
                self._overdue.add(work)
                work.add_done_callback(self._overdue_ended)

    def _overdue_ended(self, work: asyncio.Future[dict[str, Any]]) -> None:
        """Work answered DEADLINE_EXCEEDED has really ended: its slot is free now."""
        self._overdue.discard(work)
        self._slots.release()
        self.counts["overdue_ended"] += 1
        failed = None if work.cancelled() else work.exception()
        self.log.info("overdue_work_ended", error=None if failed is None else f"{type(failed).__name__}: {failed}")

    def _reply(
        self,
        request: events.AccelRequest,
        requester: str,
        started: float,
        *,
        result: dict[str, Any] | None = None,
        error: AccelError | None = None,
    ) -> dict[str, Any]:
        return {
            "request_id": request["request_id"],
            "requester": requester,
            "status": "OK" if error is None else "ERROR",
            "error": None
            if error is None
            else {"code": error.reason, "message": str(error)[:2000], "retriable": error.retriable},
            "vector": None,
            "packed": None,
            "plain": None,
            "public_key": None,
            **(result or {}),
            "served_by": self.instance,
            "compute_ms": int((time.monotonic() - started) * 1000),
        }

    async def _publish(self, requester: str, subject: str, request_id: str, reply: dict[str, Any]) -> bool:
        """Publish one reply on the requester's own reply topic (whatever the request says: it was checked
        against it), retrying transient failures with backoff for ``reply_retry_window``.

        Every failed attempt is logged and counted (``reply_publish_failed``); a reply given up is
        logged as an error and counted (``reply_lost``), and the service goes on: the requester
        retries after its timeout and, for a final reply, is answered from the reply cache.
        Returns whether the reply went out.
        """
        pause, longest = self.reply_backoff
        give_up = time.monotonic() + self.reply_retry_window
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.ctx.publisher.publish(
                    node_topic(ACCEL_REPLIES, requester), ACCEL_REPLY, reply, subject=subject, correlation_id=request_id
                )
                return True
            except TRANSIENT as exc:
                self.counts["reply_publish_failed"] += 1
                error = f"{type(exc).__name__}: {exc}"
                if time.monotonic() + pause > give_up:
                    self.counts["reply_lost"] += 1
                    self.log.error("reply_lost", request_id=request_id, attempts=attempt, error=error)
                    return False
                self.log.warning("reply_publish_failed", request_id=request_id, attempt=attempt, error=error)
            await asyncio.sleep(pause)
            pause = min(2 * pause, longest)

    async def on_refused(self, envelope: Envelope, topic: str, reason: str, detail: str) -> None:
        """A verified request (or a piece of one) that the pipeline refused gets an error reply too."""
        if topic != self.request_topic:
            return
        if envelope.payload_type not in (ACCEL_REQUEST, CHUNK) or not envelope.correlation_id:
            return
        request_id = envelope.correlation_id
        reply = {
            "request_id": request_id,
            "requester": envelope.sender,
            "status": "ERROR",
            "error": {"code": reason, "message": detail[:2000], "retriable": False},
            "vector": None,
            "packed": None,
            "plain": None,
            "public_key": None,
            "served_by": self.instance,
            "compute_ms": 0,
        }
        self.counts[f"error:{reason}"] += 1
        await self._publish(envelope.sender, envelope.subject, request_id, reply)
