"""Signing and sending events as one node: sequence numbers, schema announcements, chunking."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from aiokafka.errors import KafkaError, KafkaTimeoutError

from mesh import events
from mesh.bus import Bus
from mesh.codec import CORE_TYPES, SchemaStore
from mesh.envelope import Envelope, new_envelope
from mesh.errors import PayloadTooLargeError
from mesh.events import CHUNK, EVIDENCE_RECORDED, SCHEMA_PUBLISHED
from mesh.evidence import evidence_of
from mesh.home import SequenceCounter
from mesh.signing import Signer
from mesh.topics import check_payload_topic

#: Bytes by which a chunk's framing may exceed that of the empty chunk it was measured on.
CHUNK_SLACK = 32

#: Pauses (seconds) between the attempts of ``Publisher.send_persistently``: about a minute in all.
SEND_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)

log = structlog.get_logger("interfed.publisher")


def transient(exc: BaseException) -> bool:
    """Whether a failed send may succeed if tried again: the broker's retriable errors and timeouts."""
    return isinstance(exc, (TimeoutError, KafkaTimeoutError)) or bool(getattr(exc, "retriable", False))


class Publisher:
    """Publishes payloads as signed envelopes from one sender.

    The first time this process writes with a schema it publishes that schema on
    the ``schemas`` topic, so readers that do not know it can resolve it. Encoded
    envelopes larger than ``max_record_bytes`` are cut into signed Chunk events on
    the same topic and key; receivers reassemble and check the whole digest.
    """

    def __init__(
        self,
        bus: Bus,
        schemas: SchemaStore,
        *,
        sender: str,
        key: Signer,
        sequence: SequenceCounter,
        max_event_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.bus = bus
        self.schemas = schemas
        self.sender = sender
        self._key = key
        self._sequence = sequence
        self._announced: set[bytes] = set()
        self._announcing: dict[bytes, asyncio.Future[None]] = {}
        self._steps: set[asyncio.Future[None]] = set()  # governed steps under way (kept from collection)
        self.max_event_bytes = max_event_bytes

    @property
    def signer(self) -> Signer:
        """The sender's key, for the few things signed outside an envelope (evidence tree heads)."""
        return self._key

    def envelope(
        self, payload_type: str, record: Mapping[str, Any], subject: str, correlation_id: str | None = None
    ) -> Envelope:
        """A signed envelope for ``record``, taking the next sequence number."""
        schema, payload = self.schemas.encode(payload_type, record)
        return new_envelope(
            payload_type=payload_type,
            payload_fingerprint=schema.fingerprint,
            payload=payload,
            sender=self.sender,
            sequence=self._sequence.next(),
            subject=subject,
            correlation_id=correlation_id,
        ).signed(self._key)

    async def publish(
        self,
        topic: str,
        payload_type: str,
        record: Mapping[str, Any],
        subject: str,
        correlation_id: str | None = None,
        *,
        evidence: str | None = None,
    ) -> Envelope:
        """Sign and send one event on protocol topic ``topic``, keyed by ``subject``.

        With ``evidence`` (an action such as ``catalog.grant``), the event is a governance or
        computation step: once it is on the broker, its EvidenceRecorded follows on ``evidence``.
        """
        check_payload_topic(payload_type, topic)
        env = self.envelope(payload_type, record, subject, correlation_id)
        if evidence is None:
            await self.send(topic, env)
            return env
        # A governed step: neither a broker that fails a send for a while nor a caller cancelled half-way
        # (a job's run ended by the very event it sent) may leave the event without its evidence (the
        # auditor's MISSING_EVIDENCE). Each is sent again as the same envelope, which receivers skip as a
        # duplicate if it had landed, and the pair goes on to the end whatever happens to the caller.
        proof = self.envelope(EVIDENCE_RECORDED, evidence_of(evidence, topic, env), subject, correlation_id)
        step = asyncio.ensure_future(self._send_step(topic, env, proof))
        self._steps.add(step)
        step.add_done_callback(self._step_done)
        await asyncio.shield(step)
        return env

    async def _send_step(self, topic: str, env: Envelope, proof: Envelope) -> None:
        await self.send_persistently(topic, env)
        await self.send_persistently("evidence", proof)

    def _step_done(self, step: asyncio.Future[None]) -> None:
        self._steps.discard(step)
        if not step.cancelled() and step.exception() is not None:  # also when its caller is gone
            log.error("governed_step_unsent", sender=self.sender, error=repr(step.exception()))

    async def send_persistently(self, topic: str, env: Envelope) -> None:
        """``send``, and again while the broker's failure may pass; the last failure is raised.

        After a timeout, a lost leader or a lost connection the same envelope is sent again after a
        growing pause, up to ``SEND_BACKOFF``.
        """
        for pause in (*SEND_BACKOFF, None):
            try:
                await self.send(topic, env)
                return
            except (KafkaError, TimeoutError) as exc:
                if pause is None or not transient(exc):
                    raise
                log.warning(
                    "send_retried",
                    sender=self.sender,
                    topic=topic,
                    payload_type=env.payload_type,
                    error=repr(exc),
                    retry_in=pause,
                )
                await asyncio.sleep(pause)

    async def send(self, topic: str, env: Envelope) -> None:
        """Send an envelope made by ``envelope`` on protocol topic ``topic``, announcing its schema first.

        Sending the same envelope again is a duplicate every receiver skips (docs/protocol.md §6.3), so a
        send whose outcome is unknown (a timeout) is retried with the same envelope, never a new one.
        """
        check_payload_topic(env.payload_type, topic)
        await self._announce_schema(env.payload_type)
        await self.send_envelope(topic, env)

    async def send_envelope(self, topic: str, env: Envelope) -> None:
        """Send a signed envelope on ``topic``: as one record, or chunked (pipelined) when it is over the size limit."""
        records = self._records(env)
        if len(records) == 1:
            await self.bus.send(self.bus.names(topic), *records[0])
            return
        await self._announce_schema(CHUNK)
        await self.bus.send_all(self.bus.names(topic), records)

    async def publish_all(
        self, topic: str, payload_type: str, records: Sequence[Mapping[str, Any]], subject: str
    ) -> list[Envelope]:
        """Sign and send several events on ``topic`` under one ``subject``, pipelined.

        They land in order; this returns once the broker has all of them (one wait for the
        acknowledgements, not one per event).
        """
        check_payload_topic(payload_type, topic)
        await self._announce_schema(payload_type)
        envelopes = [self.envelope(payload_type, record, subject) for record in records]
        parts = [part for env in envelopes for part in self._records(env)]
        if len(parts) > len(envelopes):
            await self._announce_schema(CHUNK)
        await self.bus.send_all(self.bus.names(topic), parts)
        return envelopes

    def _records(self, env: Envelope) -> list[tuple[bytes, bytes]]:
        """The (key, value) records of one envelope: itself, or its chunks when it is over the size limit."""
        value = env.encode()
        key = env.subject.encode()
        limit = self.bus.max_record_bytes - len(key)
        if len(value) <= limit:
            return [(key, value)]
        if len(value) > self.max_event_bytes:
            raise PayloadTooLargeError(f"{env.payload_type} event of {len(value)} bytes exceeds {self.max_event_bytes}")
        digest = hashlib.sha256(value).digest()
        # What a chunk's own envelope costs with this subject and correlation id, measured on an
        # empty piece; the slack covers the varints that grow with the numbers.
        empty: events.Chunk = {"whole_sha256": digest, "index": 0, "count": 1, "whole_size": len(value), "data": b""}
        framing = len(self.envelope(CHUNK, empty, env.subject, env.correlation_id).encode()) + CHUNK_SLACK
        piece = limit - framing
        count = -(-len(value) // piece)
        chunks: list[events.Chunk] = [
            {
                "whole_sha256": digest,
                "index": index,
                "count": count,
                "whole_size": len(value),
                "data": value[index * piece : (index + 1) * piece],
            }
            for index in range(count)
        ]
        return [(key, self.envelope(CHUNK, chunk, env.subject, env.correlation_id).encode()) for chunk in chunks]

    async def _announce_schema(self, payload_type: str) -> None:
        """Announce a schema the first time this process writes with it.

        Concurrent first writers share one announcement (each waits for it): a burst of sends must not
        put a copy per send on ``schemas``.
        """
        schema = self.schemas.by_name(payload_type)
        if payload_type in CORE_TYPES or schema.fingerprint in self._announced:
            return
        pending = self._announcing.get(schema.fingerprint)
        if pending is not None:
            await asyncio.shield(pending)  # the first writer's announcement; its failure is ours too
            return
        pending = self._announcing[schema.fingerprint] = asyncio.get_running_loop().create_future()
        try:
            record: events.SchemaPublished = {
                "fingerprint": schema.fingerprint,
                "full_name": schema.full_name,
                "schema_json": schema.json_text,
            }
            env = self.envelope(SCHEMA_PUBLISHED, record, subject=schema.fingerprint.hex())
            await self.bus.send(self.bus.names("schemas"), env.subject.encode(), env.encode())
        except BaseException as exc:
            pending.set_exception(exc)
            pending.exception()  # retrieved here, so a failure nobody else waited for is not reported as lost
            raise
        else:
            self._announced.add(schema.fingerprint)
            pending.set_result(None)
        finally:
            del self._announcing[schema.fingerprint]
