"""Kafka transport over aiokafka: topic creation, keyed acks=all produce, manually assigned and group reading."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, TopicAuthorizationFailedError

from mesh.topics import TOPICS, TopicNames, spec_of

log = structlog.get_logger("interfed.bus")

#: Longest a fetch waits for records when there are none (ms).
FETCH_WAIT_MS = 20

#: Room the Kafka record batch framing needs on top of key and value.
RECORD_OVERHEAD = 512


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record, as the service pipeline sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class Bus(Protocol):
    """The seam services talk through; KafkaBus is the implementation, a real broker always behind it."""

    names: TopicNames
    max_record_bytes: int

    async def send(self, topic: str, key: bytes, value: bytes) -> None: ...
    async def ensure_topics(self, names: Iterable[str] | None = None) -> None: ...
    def reader(self, topics: Iterable[str]) -> Reader: ...
    def group_reader(self, topics: Iterable[str], group_id: str) -> GroupReader: ...


class KafkaBus:
    """Producer and readers against one Kafka cluster (Apache Kafka or the embedded broker).

    ``security`` holds the aiokafka options of every client (``security_protocol`` and ``ssl_context``
    on a secured broker, mesh/tls.py). With ``creates_topics`` false, ``ensure_topics`` creates nothing:
    on a secured broker the operator creates the topics and members may not.
    """

    def __init__(
        self,
        bootstrap: str,
        names: TopicNames | None = None,
        max_record_bytes: int = 1_000_000,
        *,
        security: Mapping[str, Any] | None = None,
        creates_topics: bool = True,
    ) -> None:
        self.bootstrap = bootstrap
        self.names = names or TopicNames()
        self.max_record_bytes = max_record_bytes
        self.security = dict(security or {})
        self.creates_topics = creates_topics
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # Idempotence stays off: the embedded broker lacks it and the mesh removes
        # duplicates by event id anyway; acks=all is what durability needs.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=2,
            max_request_size=self.max_record_bytes + RECORD_OVERHEAD,
            request_timeout_ms=30_000,
            **self.security,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> KafkaBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def ensure_topics(self, names: Iterable[str] | None = None) -> None:
        """Create protocol topics (shared or node topics) with their required configs; existing ones are left as
        they are."""
        if not self.creates_topics:
            return
        wanted = {name: spec_of(name) for name in (names or TOPICS)}
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=30_000, **self.security)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            new = [
                NewTopic(
                    name=self.names(name),
                    num_partitions=spec.partitions,
                    replication_factor=1,
                    topic_configs={**spec.configs, "max.message.bytes": str(self.max_record_bytes + RECORD_OVERHEAD)},
                )
                for name, spec in wanted.items()
                if self.names(name) not in existing
            ]
            if new:
                with contextlib.suppress(TopicAlreadyExistsError):  # another party won the race
                    await admin.create_topics(new)
                log.info("topics_created", topics=[t.name for t in new])
        finally:
            await admin.close()

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        """Produce one record with acks=all and wait until the broker has it."""
        if self._producer is None:
            raise RuntimeError("bus not started")
        await self._producer.send_and_wait(topic, value=value, key=key)

    def reader(self, topics: Iterable[str]) -> Reader:
        return Reader(self.bootstrap, list(topics), self.max_record_bytes, security=self.security)

    def group_reader(self, topics: Iterable[str], group_id: str) -> GroupReader:
        return GroupReader(self.bootstrap, list(topics), self.max_record_bytes, group_id, security=self.security)


class Reader:
    """Reads every partition of some topics from the beginning, without consumer-group membership.

    Services must see every event of their topics, so they assign partitions
    themselves and keep their own positions; the embedded broker's group joins
    are slow and fragile, and the mesh needs none of what they offer here.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        max_record_bytes: int,
        group_id: str | None = None,
        *,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        self._topics = topics
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            # A group commits what its members have fetched, so a restarted member goes on from there.
            enable_auto_commit=group_id is not None,
            auto_offset_reset="earliest",
            # Room for 16 records per partition fetch: a chunked event (a ciphertext vector) arrives in few fetches.
            max_partition_fetch_bytes=max(1_048_576, 16 * (max_record_bytes + RECORD_OVERHEAD)),
            # The embedded broker answers a fetch only when this wait ends, even if records
            # arrived sooner, so the wait bounds event latency there (docs/benchmarks.md);
            # Apache Kafka answers as soon as there is a record.
            fetch_max_wait_ms=FETCH_WAIT_MS,
            **(security or {}),
        )
        self._paused_until: dict[TopicPartition, float] = {}

    async def start(self) -> None:
        await self._consumer.start()
        partitions: list[TopicPartition] = []
        for topic in self._topics:
            parts = await self._partitions(topic)
            partitions += [TopicPartition(topic, p) for p in sorted(parts)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)

    async def _partitions(self, topic: str) -> set[int]:
        """The topic's partitions, once each has a leader (a new topic on Kafka needs a moment)."""
        client = self._consumer._client  # noqa: SLF001 - aiokafka has no public metadata refresh
        # Asked for by name, a topic it may not describe comes back as an authorisation error; in a
        # request for every topic, the broker would only leave it out.
        await client.add_topic(topic)
        for _ in range(100):
            await client.force_metadata_update()
            if topic in client.cluster.unauthorized_topics:
                raise TopicAuthorizationFailedError(topic)  # a secured broker's ACLs: say so, not "does not exist"
            parts = self._consumer.partitions_for_topic(topic)
            if parts and all((client.cluster.leader_for_partition(TopicPartition(topic, p)) or -1) >= 0 for p in parts):
                return set(parts)
            await asyncio.sleep(0.1)
        raise KafkaError(f"topic {topic} does not exist; create the protocol topics first")

    async def stop(self) -> None:
        await self._consumer.stop()

    async def held(self) -> int:
        """How many records the assigned partitions hold now (for the progress of a replay)."""
        parts = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(parts)
        starts = await self._consumer.beginning_offsets(parts)
        return sum(ends[p] - starts[p] for p in parts)

    async def drained(self) -> bool:
        """Whether every assigned partition has been read up to the high watermark of its last fetch.

        "Nothing more to read right now" without waiting for an empty fetch, which a busy topic
        (heartbeats of many nodes) may never give. False for a partition not fetched yet, or held back.
        """
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None or tp in self._paused_until or await self._consumer.position(tp) < high:
                return False
        return True

    def retry_later(self, record: Record, delay: float) -> None:
        """Rewind a partition to ``record`` and pause it for ``delay`` seconds (keeps order)."""
        tp = TopicPartition(record.topic, record.partition)
        self._consumer.seek(tp, record.offset)
        self._consumer.pause(tp)
        self._paused_until[tp] = asyncio.get_running_loop().time() + delay

    def is_paused(self, topic: str, partition: int) -> bool:
        return TopicPartition(topic, partition) in self._paused_until

    def _resume_due(self) -> None:
        now = asyncio.get_running_loop().time()
        for tp, until in list(self._paused_until.items()):
            if until <= now:
                del self._paused_until[tp]
                self._consumer.resume(tp)

    async def batches(self, timeout_ms: int = 200) -> AsyncIterator[list[Record]]:
        """Yield batches forever (empty ones when idle), in partition order within each partition."""
        while True:
            self._resume_due()
            fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=500)
            batch: list[Record] = []
            for tp, records in fetched.items():
                batch += [Record(tp.topic, tp.partition, r.offset, r.key, r.value or b"") for r in records]
            yield batch


class GroupReader(Reader):
    """Reads topics as one member of a consumer group: the members share the partitions between them.

    For load-balanced pools (accelerator instances), where each record is for whichever
    member has its partition. A new group starts at the beginning; positions are committed
    every few seconds as they are fetched, so a member that dies may leave records of its
    last seconds unprocessed (requesters retry) and a new member of the group goes on from
    the committed positions. Joining takes ~5 s on the embedded broker (DESIGN.md).
    """

    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        max_record_bytes: int,
        group_id: str,
        *,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(bootstrap, topics, max_record_bytes, group_id, security=security)

    async def start(self) -> None:
        await self._consumer.start()
        for topic in self._topics:
            await self._partitions(topic)  # fail early, naming the topic, if it does not exist
        self._consumer.subscribe(self._topics)

    def assigned(self) -> set[tuple[str, int]]:
        """The partitions this member holds now (empty until the group has assigned them)."""
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}


class MergedReader:
    """A reader of whole topics and a group reader of shared ones, read side by side as one.

    A batch is empty only when both readers last came back empty, so "caught up" keeps its
    meaning: nothing more to read anywhere right now.
    """

    def __init__(self, whole: Reader, shared: GroupReader) -> None:
        self.whole = whole
        self.shared = shared
        self._shared_topics = set(shared._topics)  # noqa: SLF001 - one module
        self._pending: dict[asyncio.Future[list[Record]], AsyncIterator[list[Record]]] = {}

    def _of(self, topic: str) -> Reader:
        return self.shared if topic in self._shared_topics else self.whole

    async def start(self) -> None:
        await asyncio.gather(self.whole.start(), self.shared.start())

    async def stop(self) -> None:
        for future in self._pending:
            future.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        self._pending.clear()
        await asyncio.gather(self.whole.stop(), self.shared.stop())

    def retry_later(self, record: Record, delay: float) -> None:
        self._of(record.topic).retry_later(record, delay)

    def is_paused(self, topic: str, partition: int) -> bool:
        return self._of(topic).is_paused(topic, partition)

    async def drained(self) -> bool:
        return await self.whole.drained() and await self.shared.drained()

    async def batches(self, timeout_ms: int = 200) -> AsyncIterator[list[Record]]:
        sources = [self.whole.batches(timeout_ms), self.shared.batches(timeout_ms)]
        idle = dict.fromkeys(sources, False)
        for source in sources:
            self._pending[asyncio.ensure_future(anext(source))] = source
        while True:
            done, _ = await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
            batch: list[Record] = []
            for future in done:
                source = self._pending.pop(future)
                got = future.result()
                idle[source] = not got
                batch += got
                self._pending[asyncio.ensure_future(anext(source))] = source
            if batch or all(idle.values()):
                yield batch
