"""``AccelClient``: Paillier on vectors for executors, through a node's accelerator service or in-process.

One API, three places the work runs. ``AccelClient.connect`` sends each call as a signed
``AccelRequest`` and waits for its ``AccelReply`` (verified by the service base's pipeline,
from the accelerator node asked, for this node); ``AccelClient.on_workers`` runs the same
requests through the same ``Engine`` on the node's own worker processes, with no broker between
(what ``interfed node up`` does by default); ``AccelClient.in_process`` in the
caller's process (an explicit choice, and the tests' reference). Remote calls time out per
attempt and are retried under the same request id, so a retry that meets the first attempt's
reply is simply answered by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from concurrent.futures.process import BrokenProcessPool
from typing import Any, ClassVar, Protocol, cast

import numpy as np
import numpy.typing as npt

from accel.backend import PaillierBackend
from accel.encoding import DEFAULT_PRECISION, decode, encode
from accel.engine import Engine
from accel.errors import AccelError, AccelRequestError, AccelTimeoutError
from accel.gmp_backend import Encryption, Gmpy2Backend
from accel.keys import PrivateKey, PublicKey
from accel.keystore import KeyStore
from accel.packing import PackedVector, PackingSpec
from accel.pool import WorkerPool, pooled
from accel.vector import EncryptedVector, default_precision
from accel.wire import (
    PublishedKey,
    int_to_le,
    packed_from_record,
    packed_record,
    plain_from_record,
    plain_record,
    public_key_from_record,
    public_key_record,
    signed_to_le,
    spec_record,
    vector_from_record,
    vector_record,
)
from mesh import events
from mesh.events import ACCEL_REPLY, ACCEL_REQUEST
from mesh.node import running
from mesh.service import Context, Event, Service, handles
from mesh.topics import ACCEL_REPLIES, ACCEL_REQUESTS, node_topic

Record = dict[str, Any]
#: A reply as a transport hands it over: the AccelReply record (its TypedDict from the service, a dict in process).
Reply = Mapping[str, Any]
Key = PublishedKey | PublicKey


class Transport(Protocol):
    """Carries one request to an engine and brings its reply back."""

    #: Where the work runs, for people (``interfed node status``, logs).
    description: str

    async def close(self) -> None:
        """Release what the transport owns (worker processes); it takes no request afterwards."""
        ...

    async def call(self, request: events.AccelRequest) -> Reply:
        """Send ``request`` and return its reply record (a result or an error reply)."""
        ...


class LocalTransport:
    """Runs requests on an ``Engine`` in this process, off the event loop, with no broker between.

    Its backend computes in this process (gmpy2, on its threads) or on the node's worker processes (pooled).
    """

    def __init__(self, engine: Engine, description: str, pool: WorkerPool | None = None) -> None:
        self.engine = engine
        self.node_id = engine.node_id
        self.description = description
        #: the worker processes this transport owns, stopped by ``close``
        self.pool = pool
        #: requests computed, by operation
        self.served: Counter[str] = Counter()
        #: requests computed again after a worker died under them
        self.restarted = 0

    async def close(self) -> None:
        """Stop the worker processes this transport owns, if any."""
        if self.pool is not None:
            await asyncio.to_thread(self.pool.close)

    async def call(self, request: events.AccelRequest) -> Reply:
        """Compute ``request`` in a thread; an AccelError becomes the error reply the service would send."""
        empty: Record = {"vector": None, "packed": None, "plain": None, "public_key": None}
        self.served[request["operation"]] += 1
        try:
            try:
                result = await asyncio.to_thread(self.engine.compute, request, self.node_id)
            except BrokenProcessPool:  # a worker died under this request: the pool starts again, the request too
                self.restarted += 1
                result = await asyncio.to_thread(self.engine.compute, request, self.node_id)
        except AccelError as exc:  # the same error reply the service would send
            failure = {"code": exc.reason, "message": str(exc), "retriable": exc.retriable}
            return {"status": "ERROR", "error": failure, **empty}
        return {"status": "OK", "error": None, **empty, **result}


def _local_backend(
    published: PublishedKey, private: PrivateKey | None, mode: Encryption, djn_base: int | None
) -> PaillierBackend:
    return Gmpy2Backend(
        published.public_key,
        private,
        encryption=mode,
        djn_base=djn_base,
        djn_exponent_bits=published.djn_exponent_bits,
    )


class ReplyListener(Service):
    """Hands each awaited reply over, read from this node's own ``accel.<node>.replies``.

    The replies go through the full verification pipeline of a Service first.
    """

    name: ClassVar[str] = "accel-client"

    def __init__(self, ctx: Context, service_node: str) -> None:
        super().__init__(ctx, readonly=True)
        self.service_node = service_node
        self.reply_topic = node_topic(ACCEL_REPLIES, ctx.config.node_id)
        self.request_topic = node_topic(ACCEL_REQUESTS, service_node)
        self.waiting: dict[str, asyncio.Future[Reply]] = {}

    def read_topics(self) -> tuple[str, ...]:
        """Only this node's reply topic: the listener never reads another node's replies."""
        return (self.reply_topic,)

    async def run(self, stop: asyncio.Event) -> None:
        """Make both node topics where missing (a plaintext broker), then read replies until ``stop``."""
        # On a plaintext broker whoever needs a node topic first makes it (a request sent before the accelerator
        # starts waits there); on a secured one the operator made both (a no-op here).
        await self.ctx.bus.ensure_topics([self.reply_topic, self.request_topic])
        await super().run(stop)

    @handles(ACCEL_REPLY)
    async def on_reply(self, ev: Event[events.AccelReply]) -> None:
        """Hand a verified reply to the request that waits for it; any other reply is ignored."""
        # Only the accelerator asked may answer, and only what this node asked.
        if ev.sender != self.service_node or ev.payload["requester"] != self.ctx.config.node_id:
            return
        future = self.waiting.get(ev.payload["request_id"])
        if future is not None and not future.done():
            future.set_result(ev.payload)


class RemoteTransport:
    """Sends requests to an accelerator service through the broker and waits for its replies.

    Requests go on the accelerator's ``accel.<node>.requests``, replies come on this node's own
    ``accel.<node>.replies``, with a timeout per attempt and retries.
    """

    def __init__(self, listener: ReplyListener, timeout: float, retries: int) -> None:
        self.listener = listener
        self.timeout = timeout
        self.retries = retries
        self.description = f"the accelerator service of {listener.service_node}, through the broker"

    async def close(self) -> None:
        """Nothing to release: the reply listener is a service of its own."""

    async def call(self, request: events.AccelRequest) -> Reply:
        """Publish ``request`` and await its reply; again after a timeout or a retriable error, up to ``retries``."""
        request_id = request["request_id"]
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.listener.waiting[request_id] = future
        publisher = self.listener.ctx.publisher
        last: Reply | None = None  # the last retriable error reply, if any
        try:
            for _ in range(self.retries + 1):
                await publisher.publish(
                    self.listener.request_topic,
                    ACCEL_REQUEST,
                    {**request, "reply_topic": self.listener.reply_topic, "timeout_ms": int(self.timeout * 1000)},
                    subject=request_id,
                    correlation_id=request_id,
                )
                with contextlib.suppress(TimeoutError):
                    reply = await asyncio.wait_for(asyncio.shield(future), self.timeout)
                    error = reply["error"]
                    if error is None or not error["retriable"]:
                        return reply
                    last = reply
                    future = self.listener.waiting[request_id] = asyncio.get_running_loop().create_future()
        finally:
            self.listener.waiting.pop(request_id, None)
        if last is not None:
            return last  # every attempt failed retriably: the caller sees that error, not a timeout
        raise AccelTimeoutError(
            f"no reply from the accelerator of {self.listener.service_node} to {request['operation']} "
            f"{request_id} within {self.timeout:g} s, {self.retries + 1} attempt(s): is an "
            f"'interfed accel up' instance of {self.listener.service_node} running on this broker?"
        )


class AccelClient:
    """Paillier operations on vectors; every method is one request (see ``accel.engine`` for their meaning)."""

    def __init__(self, transport: Transport, service_node: str) -> None:
        self.transport = transport
        self.service_node = service_node

    @property
    def description(self) -> str:
        """Where this client's work runs, for people."""
        return self.transport.description

    @classmethod
    def in_process(cls, node_id: str = "local", keys: KeyStore | None = None) -> AccelClient:
        """No service: the same requests, computed in this process. ``keys``: the keys this node owns."""
        engine = Engine(node_id, keys if keys is not None else KeyStore.empty(), _local_backend)
        return cls(LocalTransport(engine, "in-process, this process's threads"), node_id)

    @classmethod
    def on_workers(cls, node_id: str, keys: KeyStore, pool: WorkerPool, *, owns: bool = False) -> AccelClient:
        """The node's own accelerator workers, reached directly (no broker): every operation spread over ``pool``.

        ``close`` stops the pool if the client ``owns`` it.
        """
        engine = Engine(node_id, keys, pooled(pool))
        description = f"the node's {pool.workers} accelerator worker process(es)"
        return cls(LocalTransport(engine, description, pool if owns else None), node_id)

    async def close(self) -> None:
        """Release what the client's transport owns (the node's worker processes, in workers mode)."""
        await self.transport.close()

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, ctx: Context, service_node: str | None = None, *, timeout: float = 30.0, retries: int = 2
    ) -> AsyncIterator[AccelClient]:
        """A client of ``service_node``'s accelerator (default: this node's), its reply listener running."""
        node = service_node or ctx.config.node_id
        async with running(ReplyListener(ctx, node)) as listener:
            assert isinstance(listener, ReplyListener)
            yield cls(RemoteTransport(listener, timeout, retries), node)

    # -- the generic call ------------------------------------------------------------------

    async def request(self, operation: str, key: Key | None, **operands: Any) -> Reply:
        """Send one request; its reply's result fields, or ``AccelRequestError`` with the reply's reason code.

        ``key`` is the key worked under; None only for ``KEYGEN``, which names no key yet.
        """
        request = request_record(self.service_node, operation, key, **operands)
        reply = await self.transport.call(request)
        if reply["error"] is not None:
            error = reply["error"]
            raise AccelRequestError(error["code"], error["message"], error["retriable"])
        return reply

    # -- typed operations --------------------------------------------------------------------

    async def generate_key(self, bits: int = 2048, *, safe_primes: bool = False) -> PublishedKey:
        """A key pair made and kept by the accelerator (of the caller's own node only): its public form.

        The private key stays in that accelerator's key store; decrypting under the returned key
        through this client reaches it by key id (``decrypt``, ``packed_decrypt``).
        """
        reply = await self.request("KEYGEN", None, keygen={"bits": bits, "safe_primes": safe_primes})
        return public_key_from_record(reply["public_key"])

    async def encrypt(
        self,
        key: Key,
        values: npt.ArrayLike,
        precision: int = DEFAULT_PRECISION,
        *,
        fast: bool = False,
        value_bound: float | None = None,
    ) -> EncryptedVector:
        """[[round(x * 2^precision)]]; ``fast`` allows DJN encryption; ``value_bound`` declares a public bound."""
        bound = None if value_bound is None else encode(np.array([abs(value_bound)], dtype=object), precision)[0]
        reply = await self.request(
            "ENCRYPT",
            key,
            plain=plain_record(encode(values, precision), -precision),
            bound=None if bound is None else int_to_le(bound),
            encryption="FAST" if fast else "TEXTBOOK",
        )
        return _vector(reply, key)

    async def decrypt_mantissas(self, vector: EncryptedVector) -> tuple[list[int], int]:
        """The plaintext mantissas of ``vector`` and their common exponent, decrypted by its key's owner."""
        reply = await self.request("DECRYPT", _key_of(vector.backend), vectors=[vector_record(vector)])
        return plain_from_record(reply["plain"])

    async def decrypt(self, vector: EncryptedVector) -> npt.NDArray[np.float64]:
        """``vector`` decrypted and decoded to floats."""
        mantissas, exponent = await self.decrypt_mantissas(vector)
        return decode(mantissas, exponent)

    async def add(self, a: EncryptedVector, b: EncryptedVector) -> EncryptedVector:
        """[[a + b]] elementwise, under the key both are encrypted with."""
        reply = await self.request("ADD", _key_of(a.backend), vectors=[vector_record(a), vector_record(b)])
        return _vector(reply, a.backend.public_key)

    async def add_plain(self, a: EncryptedVector, values: npt.ArrayLike) -> EncryptedVector:
        """[[a + v]] elementwise for plaintext ``values`` (a scalar is broadcast), at ``a``'s exponent."""
        plain = plain_record(encode(np.broadcast_to(values, (len(a),)), -a.exponent), a.exponent)
        reply = await self.request("ADD_PLAIN", _key_of(a.backend), vectors=[vector_record(a)], plain=plain)
        return _vector(reply, a.backend.public_key)

    async def mul_plain(
        self, a: EncryptedVector, values: npt.ArrayLike, precision: int | None = None
    ) -> EncryptedVector:
        """[[a * v]] elementwise for plaintext ``values`` with ``precision`` fractional bits (default: fitted)."""
        bits = default_precision(values) if precision is None else precision
        plain = plain_record(encode(np.broadcast_to(values, (len(a),)), bits), -bits)
        reply = await self.request("MUL_PLAIN", _key_of(a.backend), vectors=[vector_record(a)], plain=plain)
        return _vector(reply, a.backend.public_key)

    async def dot(self, a: EncryptedVector, values: npt.ArrayLike, precision: int | None = None) -> EncryptedVector:
        """[[sum_i a_i * v_i]] as a vector of one, ``values`` encoded with ``precision`` fractional bits."""
        bits = default_precision(values) if precision is None else precision
        plain = plain_record(encode(values, bits), -bits)
        reply = await self.request("DOT", _key_of(a.backend), vectors=[vector_record(a)], plain=plain)
        return _vector(reply, a.backend.public_key)

    async def sum(self, a: EncryptedVector) -> EncryptedVector:
        """[[sum_i a_i]] as a vector of one."""
        reply = await self.request("SUM", _key_of(a.backend), vectors=[vector_record(a)])
        return _vector(reply, a.backend.public_key)

    async def transpose_dot(
        self, d: EncryptedVector, matrix: npt.ArrayLike, precision: int | None = None
    ) -> EncryptedVector:
        """X^T [[d]] for X of shape (len(d), k): the gradient step of vertical logistic regression."""
        array = np.asarray(matrix)
        bits = default_precision(array) if precision is None else precision
        rows, columns = array.shape
        entries = encode(array.reshape(-1), bits)
        record = {"rows": rows, "columns": columns, "exponent": -bits, "mantissas": [signed_to_le(m) for m in entries]}
        reply = await self.request("MATMUL", _key_of(d.backend), vectors=[vector_record(d)], matrix=record)
        return _vector(reply, d.backend.public_key)

    async def packed_encrypt(
        self, key: Key, values: npt.ArrayLike, spec: PackingSpec | None = None, *, fast: bool = False
    ) -> PackedVector:
        """``values`` packed several to a ciphertext under ``key`` (``spec``: the slots), DJN encryption if ``fast``."""
        floats = [float(x) for x in np.asarray(values, dtype=np.float64).reshape(-1)]
        reply = await self.request(
            "PACKED_ENCRYPT",
            key,
            values=floats,
            packing=spec_record(spec or PackingSpec()),
            encryption="FAST" if fast else "TEXTBOOK",
        )
        return packed_from_record(reply["packed"], _public_backend(_public_of(key)))

    async def packed_add(self, *vectors: PackedVector) -> PackedVector:
        """The slotwise sum of packed vectors of one key and one layout."""
        first = vectors[0]
        reply = await self.request("PACKED_ADD", _key_of(first.backend), packed=[packed_record(v) for v in vectors])
        return packed_from_record(reply["packed"], first.backend)

    async def packed_decrypt(self, vector: PackedVector) -> npt.NDArray[np.int64]:
        """Exact per-value sums of the quantised inputs (``vector.spec.dequantise`` gives floats)."""
        reply = await self.request("PACKED_DECRYPT", _key_of(vector.backend), packed=[packed_record(vector)])
        mantissas, _ = plain_from_record(reply["plain"])
        return np.array(mantissas, dtype=np.int64)


def request_record(
    service_node: str, operation: str, key: Key | None, *, requester: str | None = None, **operands: Any
) -> events.AccelRequest:
    """A whole ``AccelRequest`` to ``service_node``'s accelerator: a fresh request id, ``operands`` over empty ones.

    Its reply travels on ``requester``'s own reply topic (a remote transport sets it to its node's; the default,
    the accelerator's own node, fits a node asking its own accelerator).
    """
    published = key if isinstance(key, PublishedKey) or key is None else PublishedKey(key)
    request: Record = {
        "request_id": uuid.uuid4().hex,
        "service_node": service_node,
        "reply_topic": node_topic(ACCEL_REPLIES, requester or service_node),
        "reply_key": "",
        "operation": operation,
        "key_id": "" if published is None else published.key_id,
        "public_key": None if published is None else public_key_record(published),
        "encryption": "TEXTBOOK",
        "vectors": [],
        "packed": [],
        "plain": None,
        "bound": None,
        "matrix": None,
        "values": [],
        "packing": None,
        "keygen": None,
        "timeout_ms": 0,
        **operands,
    }
    request["reply_key"] = request["request_id"]
    return cast(events.AccelRequest, request)  # operands come as keyword arguments: the encoder checks their names


def _public_of(key: Key) -> PublicKey:
    return key.public_key if isinstance(key, PublishedKey) else key


def _key_of(backend: PaillierBackend) -> PublishedKey:
    return PublishedKey(backend.public_key)


def _public_backend(public: PublicKey) -> PaillierBackend:
    """Results carry a public-only backend: callers may go on computing locally or send them back."""
    return Gmpy2Backend(public)


def _vector(reply: Reply, key: Key) -> EncryptedVector:
    return vector_from_record(reply["vector"], _public_backend(_public_of(key)))
