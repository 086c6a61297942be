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

from accel.backend import PaillierBackend
from accel.engine import ACCEL_REPLY, ACCEL_REQUEST, Engine
from accel.errors import AccelError, DeadlineExceededError, MalformedRequestError
from accel.gmp_backend import Encryption
from accel.keys import PrivateKey
from accel.keystore import KeyStore
from accel.pool import PooledBackend, WorkerPool
from accel.wire import PublishedKey
from mesh.bus import MergedReader
from mesh.envelope import Envelope
from mesh.errors import KeyMismatchError
from mesh.service import Context, Event, Service, handles
from mesh.topics import ACCEL_REPLIES, ACCEL_REQUESTS, CHUNK_TYPE, node_topic

#: Replies kept to answer a retry (same sender, same request id) without computing again.
REPLY_CACHE = 1024


class AccelService(Service):
    """One instance of a node's accelerator, with ``workers`` worker processes."""

    name: ClassVar[str] = "accel"

    def __init__(
        self,
        ctx: Context,
        *,
        workers: int = 1,
        keys: KeyStore | None = None,
        max_in_flight: int | None = None,
    ) -> None:
        super().__init__(ctx)
        self.me = ctx.config.node_id
        self.request_topic = node_topic(ACCEL_REQUESTS, self.me)
        self.instance = f"{self.me}/{uuid.uuid4().hex[:8]}"
        self.keys = keys if keys is not None else KeyStore.of_home(ctx.home.path)
        self.pool = WorkerPool(workers)
        self.engine = Engine(self.me, self.keys, self._make_backend)
        self._slots = asyncio.Semaphore(max_in_flight or 2 * workers)
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._replied: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self.log = self.log.bind(instance=self.instance, workers=workers)

    def _make_backend(
        self, published: PublishedKey, private: PrivateKey | None, mode: Encryption, djn_base: int | None
    ) -> PaillierBackend:
        return PooledBackend(
            self.pool,
            published.public_key,
            private,
            encryption=mode,
            djn_base=djn_base,
            djn_exponent_bits=published.djn_exponent_bits,
        )

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
            await asyncio.to_thread(self.pool.close)

    def partitions(self) -> set[tuple[str, int]]:
        """The partitions of its node's request topic this instance holds in its group now."""
        reader = self._reader
        return reader.shared.assigned() if isinstance(reader, MergedReader) else set()

    # -- requests ----------------------------------------------------------------------

    @handles(ACCEL_REQUEST)
    async def on_request(self, ev: Event) -> None:
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
            await self._publish(ev.sender, request, cached)
            return
        if key in self._running:
            return  # a retry of a request still being computed: its reply answers both
        await self._slots.acquire()  # backpressure: the next request waits for a free slot
        self._running[key] = asyncio.create_task(self._serve(ev, key))

    async def _serve(self, ev: Event, key: tuple[str, str]) -> None:
        request = ev.payload
        started = time.monotonic()
        try:
            deadline = (ev.envelope.issued_at + request["timeout_ms"]) / 1000
            remaining = deadline - time.time()
            if remaining <= 0:
                raise DeadlineExceededError(f"the request's deadline passed {-remaining:.3f} s before it was read")
            reply_topic = node_topic(ACCEL_REPLIES, ev.sender)
            if request["reply_topic"] != reply_topic:
                raise MalformedRequestError(
                    f"replies to {ev.sender} travel on its own {reply_topic}, not {request['reply_topic']!r}"
                )
            try:
                result = await asyncio.wait_for(asyncio.to_thread(self.engine.compute, request, ev.sender), remaining)
            except TimeoutError:
                raise DeadlineExceededError(f"not computed within the request's {request['timeout_ms']} ms") from None
            reply = self._reply(request, ev.sender, started, result=result)
        except AccelError as exc:
            self.counts[f"error:{exc.reason}"] += 1
            self.log.info("request_failed", request_id=request["request_id"], sender=ev.sender, reason=exc.reason)
            reply = self._reply(request, ev.sender, started, error=exc)
        except Exception as exc:  # a bug must cost one request an error reply, not the service
            self.log.exception("request_crashed", request_id=request["request_id"])
            reply = self._reply(request, ev.sender, started, error=AccelError(f"{type(exc).__name__}: {exc}"))
        try:
            await self._publish(ev.sender, request, reply)
            if reply["error"] is None or not reply["error"]["retriable"]:
                self._replied[key] = reply
                while len(self._replied) > REPLY_CACHE:
                    self._replied.popitem(last=False)
            self.counts["replied"] += 1
        finally:
            self._running.pop(key, None)
            self._slots.release()

    def _reply(
        self,
        request: dict[str, Any],
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

    async def _publish(self, requester: str, request: dict[str, Any], reply: dict[str, Any]) -> None:
        """On the requester's own reply topic, whatever the request says (it was checked against it)."""
        await self.ctx.publisher.publish(
            node_topic(ACCEL_REPLIES, requester),
            ACCEL_REPLY,
            reply,
            subject=request["reply_key"],
            correlation_id=request["request_id"],
        )

    async def on_refused(self, envelope: Envelope, topic: str, reason: str, detail: str) -> None:
        """A verified request (or a piece of one) that the pipeline refused gets an error reply too."""
        if topic != self.request_topic:
            return
        if envelope.payload_type not in (ACCEL_REQUEST, CHUNK_TYPE) or not envelope.correlation_id:
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
        await self.ctx.publisher.publish(
            node_topic(ACCEL_REPLIES, envelope.sender),
            ACCEL_REPLY,
            reply,
            subject=envelope.subject,
            correlation_id=request_id,
        )
