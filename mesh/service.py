"""The service base: lifecycle, envelope verification pipeline, handler dispatch and dead-lettering."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import types
import typing
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import structlog
from aiokafka.errors import KafkaError

from mesh import events
from mesh.bus import Bus, MergedReader, Reader, Record
from mesh.chunks import ChunkAssembler
from mesh.codec import SchemaStore
from mesh.envelope import Envelope
from mesh.errors import (
    HandlerFailedError,
    KeyMismatchError,
    MalformedChunkError,
    MeshError,
    OversizedRecordError,
)
from mesh.events import CHUNK, DEAD_LETTER, JOIN_REQUESTED, SCHEMA_PUBLISHED
from mesh.home import Federation, NodeConfig, NodeHome
from mesh.publisher import Publisher
from mesh.topics import MEMBERSHIP_TOPICS, check_payload_topic
from mesh.trust import ReplayGuard, Speaker, TrustStore

#: First and longest wait (s) between attempts to publish a dead letter while the broker refuses it.
DEAD_LETTER_BACKOFF = (0.5, 10.0)
#: Dead letters a service queues for the broker before its pipeline waits for room (a flood of junk
#: must not hold up the good events behind it, nor grow memory without bound).
DEAD_LETTER_QUEUE = 1000
#: Topics whose waiting records are parked, not held: handling them in any order reaches the same state.
PARKED_TOPICS = frozenset({"schemas"})
#: A dead letter waiting to be sent: its reason and its signed envelope (sent again as it is after a
#: failure whose outcome is unknown, so a letter that did arrive is a duplicate receivers skip).
Letter = tuple[str, Envelope]
#: Dead letters sent at once (the producer batches them into few requests).
DEAD_LETTER_BATCH = 100
#: Seconds a stopping service gives its queued dead letters to reach the broker (a restart reports again
#: every refusal it meets, docs/protocol.md §11, so a letter not sent by then is not lost for good).
DEAD_LETTER_DRAIN = 10.0

#: Records processed between yields to the event loop: verification is CPU work, and a
#: whole fetched batch at once would hold up everything else in the process.
YIELD_EVERY = 32


#: The payload of an event: a TypedDict of mesh.events, or any record where a handler takes every type.
P = TypeVar("P", bound=Mapping[str, Any])


@dataclass(frozen=True, slots=True)
class Event(Generic[P]):
    """A verified event, as handlers receive it.

    A handler declares what its payload is by the records of mesh.events it handles, e.g.
    ``async def on_join_approved(self, ev: Event[events.JoinApproved])``, and mypy then checks each field
    it reads. The declaration sits where the untyped dict arrives and costs nothing per event; the
    Service checks once, when it is made, that it names exactly the records of the handler's ``@handles``
    (``check_handler``), so it cannot drift from the dispatch as an unchecked cast could.
    """

    envelope: Envelope
    payload: P
    speaker: Speaker
    topic: str
    partition: int
    offset: int

    @property
    def sender(self) -> str:
        """The node that signed the event."""
        return self.envelope.sender


Handler = Callable[[Event[Any]], Awaitable[None]]
H = TypeVar("H", bound=Callable[..., Awaitable[None]])


def handles(*payload_types: str) -> Callable[[H], H]:
    """Mark a service method as the handler of some payload types (their full names: mesh.events' constants)."""

    def mark(fn: H) -> H:
        fn.__interfed_handles__ = payload_types  # type: ignore[attr-defined]
        return fn

    return mark


@functools.cache
def check_handler(fn: Callable[..., Any], payload_types: tuple[str, ...]) -> None:
    """Raise TypeError unless a handler's declared payload is exactly the records it handles.

    ``fn``'s event parameter, if it declares its payload (``Event[X | Y]``), must declare exactly the
    TypedDicts of ``payload_types``. A bare ``Event`` or ``Event[Any]`` declares nothing.
    """
    params = [name for name in inspect.signature(fn).parameters if name != "self"]
    try:
        declared = typing.get_type_hints(fn).get(params[0]) if params else None
    except NameError as exc:  # a name its signature uses is imported for type checking only
        raise TypeError(f"{fn.__qualname__}'s annotations cannot be evaluated at run time: {exc}") from exc
    if typing.get_origin(declared) is not Event:
        return
    (payload,) = typing.get_args(declared)
    if payload is Any:
        return
    union = typing.get_origin(payload) in (typing.Union, types.UnionType)
    got = set(typing.get_args(payload) if union else (payload,))
    unknown = [t for t in payload_types if t not in events.RECORDS]
    if unknown:
        raise TypeError(f"{fn.__qualname__} handles {', '.join(unknown)}, which no schema defines")
    wanted = {events.RECORDS[t] for t in payload_types}
    if got != wanted:
        said = ", ".join(sorted(getattr(t, "__name__", str(t)) for t in got))
        raise TypeError(f"{fn.__qualname__} takes Event[{said}] but handles {', '.join(payload_types)}")


@dataclass
class Context:
    """What a service needs of its node: identity, transport, and its own views of schemas and trust."""

    home: NodeHome
    config: NodeConfig
    federation: Federation
    bus: Bus
    publisher: Publisher

    def fresh_views(self) -> tuple[SchemaStore, TrustStore]:
        """A schema store and a trust store of this node's own, for a service that builds its views from the topics."""
        return SchemaStore.load(), TrustStore(self.federation)


class Service:
    """Base of every participant service.

    A service reads its topics (plus ``registry`` for trust and ``schemas`` for resolution; the
    registry service also ``heartbeats``, for health) from the beginning, verifies every record and hands verified
    events to the handlers registered with ``@handles``. Anything refused goes to
    the dead-letter topic with its reason; the service then goes on.
    """

    name: ClassVar[str] = "service"
    topics: ClassVar[tuple[str, ...]] = ()
    #: Topics of ``topics`` that the instances of this service share as one consumer group
    #: (``consumer_group()``): each record goes to one instance. Every other topic is read whole.
    shared_topics: ClassVar[tuple[str, ...]] = ()
    #: Topics besides ``topics`` whose refused records this service reports on ``deadletter``. Every
    #: service verifies ``registry`` and ``schemas``, but a party reports a refused record once: from the
    #: service whose topic it is (the registry service's for ``registry``, ``heartbeats``, ``schemas``).
    also_reports: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: Context, *, readonly: bool = False) -> None:
        self.ctx = ctx
        self.readonly = readonly
        self.schemas, self.trust = ctx.fresh_views()
        self.replay = ReplayGuard()
        self.chunks = ChunkAssembler(max_event_bytes=ctx.publisher.max_event_bytes)
        self.log = structlog.get_logger(f"interfed.{self.name}").bind(node=ctx.config.node_id, service=self.name)
        self.counts: Counter[str] = Counter()
        self.caught_up = asyncio.Event()
        self._completed: list[tuple[str, bytes]] = []  # wholes the record being processed assembled
        self._letters: asyncio.Queue[Letter] = asyncio.Queue(DEAD_LETTER_QUEUE)
        self._letter_task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        #: Whether refusals are reported on ``deadletter`` at all: a one-off command session, which replays
        #: the topics only to act once, leaves that to the node's running services (it only logs).
        self.reports_refusals = not readonly
        self._handlers: dict[str, Handler] = {}
        for _, method in inspect.getmembers(self, inspect.ismethod):
            payload_types = getattr(method, "__interfed_handles__", ())
            if payload_types:
                check_handler(method.__func__, payload_types)
            for payload_type in payload_types:
                self._handlers[payload_type] = method
        self._reader: Reader | MergedReader | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def on_start(self) -> None:
        """Hook: runs once the service has caught up with its topics."""

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; returns after a clean shutdown."""
        names = self.ctx.bus.names
        # Certificates and revocations come from registry, schemas from schemas: every service needs both.
        # Heartbeats carry health only, which the registry service keeps (it reads them as one of its topics).
        wanted = dict.fromkeys(("schemas", "registry", *self.read_topics()))
        grouped = self.group_topics()
        self._reader = self.ctx.bus.reader(names(t) for t in wanted if t not in grouped)
        if grouped:
            shared = self.ctx.bus.group_reader((names(t) for t in grouped), self.consumer_group())
            self._reader = MergedReader(self._reader, shared)
        await self._reader.start()
        started = False
        letters = self._letter_task = asyncio.create_task(self._send_letters(), name=f"{self.name}-dead-letters")
        self._stop = stop
        tasks: list[asyncio.Task[None]] = []
        try:
            async for batch in self._reader.batches():
                for i, record in enumerate(batch, 1):
                    await self.process(record)
                    if i % YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # let the node's other tasks (its producer too) run
                # Caught up: every record the topics held when the reader started has been handled
                # (never "an empty fetch": a paused broker answers nothing but).
                if not started and await self._reader.caught_up():
                    started = True
                    self.caught_up.set()
                    self.log.info("caught_up", counts=dict(self.counts))
                    await self.on_start()
                    tasks = [asyncio.create_task(t) for t in self.background()]
                for task in (letters, *tasks):
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]  # a dead background task fails the service
                if stop.is_set():
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not letters.done():
                try:
                    await asyncio.wait_for(self._letters.join(), DEAD_LETTER_DRAIN)
                except TimeoutError:
                    self.log.warning("dead_letters_unsent", queued=self._letters.qsize())
            letters.cancel()
            await asyncio.gather(letters, return_exceptions=True)
            await self._reader.stop()
            self.log.info("stopped", counts=dict(self.counts))

    def read_topics(self) -> tuple[str, ...]:
        """The protocol topics this service reads besides ``schemas`` and ``registry``.

        These are ``topics``, unless they depend on the node (its own node topics, e.g.
        ``accel.<node>.requests``).
        """
        return self.topics

    def group_topics(self) -> tuple[str, ...]:
        """Which of ``read_topics()`` this node's instances of the service share as one group: ``shared_topics``."""
        return self.shared_topics

    def background(self) -> list[Coroutine[Any, Any, None]]:
        """Hook: coroutines to run alongside consumption once caught up (e.g. heartbeats)."""
        return []

    def consumer_group(self) -> str:
        """The group the instances of this service on this node share ``shared_topics`` in."""
        return f"{self.ctx.bus.names.prefix}{self.name}.{self.ctx.config.node_id}"

    async def on_refused(self, envelope: Envelope, topic: str, reason: str, detail: str) -> None:
        """Hook: a record of protocol topic ``topic`` whose envelope was verified was refused.

        ``envelope`` is the last one verified (the chunk's, or the reassembled event's).

        It lets a service answer the verified sender (e.g. an error reply to a request whose chunks
        did not reassemble); it runs after the dead letter. Unverified records never get here.
        """

    # -- the pipeline ----------------------------------------------------------------

    async def process(self, record: Record) -> None:
        """Verify and apply one record, or refuse it with a reason. Never raises for a bad record."""
        assert self._reader is not None
        if self._reader.is_paused(record.topic, record.partition):
            return  # an earlier record of this partition waits for a fence
        # Sequence numbers are recorded only once a record's fate is settled, so a record
        # that is read again later is not mistaken for a duplicate of itself.
        verified: list[tuple[Envelope, bytes]] = []
        try:
            await self._apply_value(record, record.value, verified)
        except MeshError as exc:
            if exc.retriable and self._wait(record, exc):
                self.counts["held"] += 1
                self._completed.clear()  # keep what this record assembled: its last chunk comes again
                return
            if not exc.dead_letter:
                raise
            await self.dead_letter(record, exc.reason, str(exc))
            if verified:
                await self.on_refused(verified[-1][0], self._protocol_topic(record), exc.reason, str(exc))
        except Exception as exc:  # a bug in a handler must not take the service down
            self.log.exception("handler_failed", topic=record.topic, offset=record.offset)
            await self.dead_letter(record, HandlerFailedError.reason, f"{type(exc).__name__}: {exc}")
            if verified:
                failure = f"{type(exc).__name__}: {exc}"
                await self.on_refused(verified[-1][0], self._protocol_topic(record), HandlerFailedError.reason, failure)
        for env, key in verified:
            self.replay.record(env, key, record.topic, record.partition)
        for sender, digest in self._completed:
            self.chunks.release(sender, digest)
        self._completed.clear()

    def _wait(self, record: Record, exc: MeshError) -> bool:
        """Let a record whose failure may yet go away wait for a fence (docs/protocol.md §6.5); False: final.

        Its own topic is never awaited: what a record there may need from it (a node's approval before
        its other registry events, a job's proposal before its other task events) comes earlier on the
        same partition, handled already. On ``schemas`` the record is parked and the partition goes on:
        learning a schema does not depend on order, and a held ``schemas`` could wait on a ``registry``
        partition held for a schema behind it.
        """
        assert self._reader is not None
        topic, names = self._protocol_topic(record), self.ctx.bus.names
        awaited = [names(t) for t in exc.waits_for if t != topic]
        return self._reader.wait_for(record, awaited, park=topic in PARKED_TOPICS)

    def _protocol_topic(self, record: Record) -> str:
        return self.ctx.bus.names.protocol_name(record.topic)

    def _open(self, record: Record, value: bytes, chunked_by: str | None) -> Envelope:
        """Parse a record value into an envelope that may travel where it did, or say why not."""
        if chunked_by is None and len(value) + len(record.key or b"") > self.ctx.bus.max_record_bytes:
            raise OversizedRecordError(f"record of {len(value)} bytes exceeds {self.ctx.bus.max_record_bytes}")
        env = Envelope.decode(value)
        if record.key is None or record.key != env.subject.encode():
            raise KeyMismatchError(f"record key {record.key!r} is not the envelope subject {env.subject!r}")
        if chunked_by is not None and (env.sender != chunked_by or env.payload_type == CHUNK):
            raise MalformedChunkError("a chunked event must be another type of event, from its chunks' sender")
        check_payload_topic(env.payload_type, self.ctx.bus.names.protocol_name(record.topic))
        return env

    def judges_revocation(self, topic: str) -> bool:
        """Whether a revoked sender's record on protocol topic ``topic`` is refused (REVOKED_SENDER, §6.2).

        Not on ``evidence``: a revocation is read on ``registry``, in each receiver's own order, and the
        evidence log's leaves must not depend on that order (docs/protocol.md §13.3); the auditor
        judges revocation there instead (§13.8).
        """
        return topic != "evidence"

    def _verify(self, env: Envelope, topic: str) -> tuple[Speaker, dict[str, Any] | None]:
        """Who signed ``env``.

        Verifying before decoding means garbage under an unknown fingerprint is refused for its
        signature, not retried as a missing schema.
        """
        if env.payload_type == JOIN_REQUESTED:
            payload = self.schemas.decode(env.payload_type, env.payload_fingerprint, env.payload)
            return self.trust.verify_applicant(env, payload), payload
        return self.trust.verify(env, revocation=self.judges_revocation(topic)), None

    async def _apply_value(
        self, record: Record, value: bytes, verified: list[tuple[Envelope, bytes]], chunked_by: str | None = None
    ) -> None:
        env = self._open(record, value, chunked_by)
        speaker, payload = self._verify(env, self._protocol_topic(record))
        if not self.replay.check(env, speaker.public_key, record.topic, record.partition):
            self.counts["duplicates"] += 1
            return
        verified.append((env, speaker.public_key))
        if not self.schemas.knows(env.payload_type):
            # A newer party's event type: authentic, but nothing here understands it.
            self.counts["ignored_unknown_type"] += 1
            self.log.info("unknown_type_ignored", payload_type=env.payload_type, sender=env.sender)
            return
        if payload is None:
            payload = self.schemas.decode(env.payload_type, env.payload_fingerprint, env.payload)
        if env.payload_type == CHUNK:
            whole = self.chunks.add(env.sender, payload)
            if whole is not None:
                self._completed.append((env.sender, payload["whole_sha256"]))
                await self._apply_value(record, whole, verified, chunked_by=env.sender)
            return
        await self._dispatch(record, env, payload, speaker)

    async def _dispatch(self, record: Record, env: Envelope, payload: dict[str, Any], speaker: Speaker) -> None:
        """Apply a verified event: schemas and membership first (every service keeps them), then the handler."""
        topic = self.ctx.bus.names.protocol_name(record.topic)
        if env.payload_type == SCHEMA_PUBLISHED:
            if env.subject != payload["fingerprint"].hex():
                raise KeyMismatchError(f"schema {payload['fingerprint'].hex()} announced under {env.subject!r}")
            self.schemas.learn(payload["schema_json"], payload["fingerprint"], payload["full_name"])
        if topic in MEMBERSHIP_TOPICS:
            self.trust.apply(env, payload, speaker)
        handler = self._handlers.get(env.payload_type)
        if handler is not None:
            await handler(Event(env, payload, speaker, topic, record.partition, record.offset))
        self.counts["applied"] += 1

    async def dead_letter(self, record: Record, reason: str, detail: str) -> None:
        """Publish a refused record with its reason, and log it.

        Read-only services only log, and so does a service refusing a record of a topic another
        service of the party reports (``also_reports``).

        The ``dead:<reason>`` count moves only once the letter is on the broker (or, for a
        service that only logs, once it is logged), so a count seen is a letter readable.
        """
        self.log.warning(
            "event_refused",
            reason=reason,
            detail=detail,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        topic = self.ctx.bus.names.protocol_name(record.topic)
        if (
            not self.reports_refusals
            or topic == "deadletter"
            or topic not in (*self.read_topics(), *self.also_reports)  # another service of this party reports it
            or not self.trust.can_sign(self.ctx.config.node_id)  # nobody could verify our letter
        ):
            self.counts[f"dead:{reason}"] += 1
            return
        keep = self.ctx.bus.max_record_bytes // 2
        letter: events.DeadLetter = {
            "reason": reason,
            "detail": detail[:2000],
            "service": self.name,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key[:256] if record.key is not None else None,
            "original": record.value[:keep],
            "original_size": len(record.value),
            "original_sha256": hashlib.sha256(record.value).digest(),
            "original_truncated": len(record.value) > keep,
        }
        subject = (record.key or b"").decode("utf-8", "replace")[:256] or "unkeyed"
        await self._queue_letter((reason, self.ctx.publisher.envelope(DEAD_LETTER, letter, subject)))

    async def _queue_letter(self, letter: Letter) -> None:
        """Queue a letter; when the queue is full (the broker is not taking them), wait for room.

        It waits not past the service's stop (a letter not sent then is reported again at the next
        start, §11) nor past the sender's end (its error then stops the service).
        """
        if not self._letters.full():
            self._letters.put_nowait(letter)
            return
        assert self._stop is not None
        assert self._letter_task is not None
        put = asyncio.ensure_future(self._letters.put(letter))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({put, stopping, self._letter_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (put, stopping):
                waiter.cancel()
            await asyncio.gather(put, stopping, return_exceptions=True)
        if put.cancelled():
            if self._letter_task.done() and not self._letter_task.cancelled():
                self._letter_task.result()  # raises the sender's error
            self.counts["dead_letters_unsent"] += 1
            self.log.warning("dead_letter_unsent", reason=letter[0], why="stopping with the broker not taking letters")

    async def _send_letters(self) -> None:
        """Publish queued dead letters; while the broker refuses them, try again with backoff.

        Backoff rather than lose them or stop the node: the queue fills meanwhile, then the pipeline waits.

        Up to ``DEAD_LETTER_BATCH`` letters go out at once, so the producer batches them into a few
        requests: one request and one acknowledgement per letter made a flood of junk cost more in
        dead letters than in refusing it. The first of a batch goes alone, so the DeadLetter schema is
        announced once, not by every letter of the first batch.
        """
        while True:
            batch: list[Letter] = [await self._letters.get()]
            while len(batch) < DEAD_LETTER_BATCH and not self._letters.empty():
                batch.append(self._letters.get_nowait())
            pending, delay = batch, DEAD_LETTER_BACKOFF[0]
            while pending:
                outcomes = [await self._send_letter(pending[0][1])]
                outcomes += await asyncio.gather(*(self._send_letter(env) for _, env in pending[1:]))
                failed = [letter for letter, error in zip(pending, outcomes, strict=True) if error is not None]
                for (reason, _), error in zip(pending, outcomes, strict=True):
                    if error is None:
                        self.counts[f"dead:{reason}"] += 1
                        self.counts["dead_letters_sent"] += 1
                if failed:
                    self.counts["dead_letter_publish_failed"] += len(failed)
                    error = next(e for e in outcomes if e is not None)
                    failure = f"{type(error).__name__}: {error}"
                    self.log.warning("dead_letter_publish_failed", letters=len(failed), error=failure, retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, DEAD_LETTER_BACKOFF[1])
                pending = failed
            for _ in batch:
                self._letters.task_done()

    async def _send_letter(self, env: Envelope) -> KafkaError | TimeoutError | None:
        """Send one letter; the broker's refusal is returned, anything else (a bug) raised."""
        try:
            await self.ctx.publisher.send("deadletter", env)
        except (KafkaError, TimeoutError) as exc:
            return exc
        return None
