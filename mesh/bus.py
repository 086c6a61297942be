"""Kafka transport over aiokafka: topic creation, keyed acks=all produce, manually assigned and group reading."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
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

#: Longest wait of each of a MergedReader's two polls (ms): it waits for both, so this bounds the latency
#: one idle reader adds to the other's records.
MERGED_POLL_MS = 20

#: Room the Kafka record batch framing needs on top of key and value.
RECORD_OVERHEAD = 512


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record, as the service pipeline sees it.

    ``fetched_at`` is when this reader first fetched the record (``time.monotonic()``): a record read
    again after its partition was held keeps its first time, which is what a fence compares with.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    fetched_at: float = 0.0


class Bus(Protocol):
    """The seam services talk through; KafkaBus is the implementation, a real broker always behind it."""

    names: TopicNames
    max_record_bytes: int

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        """Produce one record with acks=all; returns once the broker has it."""
        ...

    async def send_all(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce (key, value) records in order, pipelined; returns once the broker has every one of them."""
        ...

    async def ensure_topics(self, names: Iterable[str] | None = None) -> None:
        """Create the protocol topics ``names`` (default: every shared topic) where missing, with their configs."""
        ...

    def reader(self, topics: Iterable[str]) -> Reader:
        """A reader of every partition of ``topics`` from the beginning."""
        ...

    def group_reader(self, topics: Iterable[str], group_id: str) -> GroupReader:
        """A reader of ``topics`` as one member of the consumer group ``group_id``."""
        ...


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
        """Start the producer (acks=all); ``send`` needs it."""
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
        """Stop the producer, once what it holds is sent."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> KafkaBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def ensure_topics(self, names: Iterable[str] | None = None) -> None:
        """Create protocol topics (shared or node ones) with their required configs; existing ones stay as they are."""
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

    async def send_all(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce records in order without waiting for each acknowledgement, then wait for all of them.

        Records of one key go to one partition, where the producer keeps one request in flight at a time:
        they land in the order given. The first failure is raised (the others may have landed).
        """
        if self._producer is None:
            raise RuntimeError("bus not started")
        acks: list[asyncio.Future[Any]] = []
        try:
            for key, value in records:
                acks.append(await self._producer.send(topic, value=value, key=key))
        finally:  # the records handed over are waited for even when a later one could not be (none left unheard)
            results = await asyncio.gather(*acks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def reader(self, topics: Iterable[str]) -> Reader:
        """A reader of every partition of ``topics`` from the beginning, on this bus's broker."""
        return Reader(self.bootstrap, list(topics), self.max_record_bytes, security=self.security)

    def group_reader(self, topics: Iterable[str], group_id: str) -> GroupReader:
        """A reader of ``topics`` as one member of the consumer group ``group_id``, on this bus's broker."""
        return GroupReader(self.bootstrap, list(topics), self.max_record_bytes, group_id, security=self.security)


class Fence:
    """A point on some topics: "everything appended to them before the fence was taken".

    It is reached once the readers of its scope have handled every record its partitions held then:
    for each partition, the position has come to the end offset listed after the fence was taken and
    to the high watermark of the first fetch response processed after it (Apache Kafka's listed end
    offsets are exact; the embedded broker's fall short when a produce request carried several
    records, its high watermarks do not). A partition held back by another waiting record is waited
    for like any other: the records that may wait are so arranged that no two wait on each other
    (docs/protocol.md §6.5). An event's prerequisites (a certificate, a schema, a job proposal) were
    acknowledged before the event was produced, so before it was fetched: once a fence taken after
    its first fetch is reached, a record still missing one will never get it.
    """

    def __init__(self, topics: frozenset[str], readers: list[Reader]) -> None:
        self.topics = topics
        self.taken = time.monotonic()
        self.reached = False
        self._readers = readers
        # Each partition's last fetch response as the fence is taken: the first response after it is
        # the one whose high watermark counts (compared by value, so a wall-clock step cannot fool it).
        self._polled = {tp: r.consumer.last_poll_timestamp(tp) for r, tp in self._partitions()}
        self._targets: dict[TopicPartition, int] = {}
        self._listed: asyncio.Task[dict[TopicPartition, int]] | None = None

    def _partitions(self) -> list[tuple[Reader, TopicPartition]]:
        return [(r, tp) for r in self._readers for tp in r.assignment() if tp.topic in self.topics]

    async def check(self) -> bool:
        """Whether the fence is reached (and stays so)."""
        if self.reached:
            return True
        parts = self._partitions()
        if self._listed is None:
            self._listed = asyncio.ensure_future(_end_offsets(parts))
        if not self._listed.done():
            return False
        if self._listed.exception() is not None:  # the broker did not answer in time: ask again next time
            log.warning("fence_end_offsets_failed", error=repr(self._listed.exception()))
            self._listed = None
            return False
        listed = self._listed.result()
        for reader, tp in parts:
            target = self._targets.get(tp)
            if target is None:
                polled = reader.consumer.last_poll_timestamp(tp)
                high = reader.consumer.highwater(tp)
                if polled is None or polled == self._polled.get(tp) or high is None:
                    return False
                target = self._targets[tp] = max(high, listed.get(tp, 0))
            if await reader.consumer.position(tp) < target:
                return False
        self.reached = True
        return True

    def cancel(self) -> None:
        """Stop listing the topics' ends, if that is still under way."""
        if self._listed is not None:
            self._listed.cancel()


async def _end_offsets(parts: list[tuple[Reader, TopicPartition]]) -> dict[TopicPartition, int]:
    listed: dict[TopicPartition, int] = {}
    for reader in {id(r): r for r, _ in parts}.values():
        mine = [tp for r, tp in parts if r is reader]
        if mine:
            listed.update(await reader.consumer.end_offsets(mine))
    return listed


class _FirstFetch:
    """When each offset of one partition was first fetched: (end offset, time) steps, oldest first."""

    __slots__ = ("steps",)

    def __init__(self) -> None:
        self.steps: list[tuple[int, float]] = []

    def note(self, end: int, at: float) -> None:
        if not self.steps or end > self.steps[-1][0]:
            self.steps.append((end, at))

    def of(self, offset: int, default: float) -> float:
        for end, at in self.steps:
            if offset < end:
                return at
        return default

    def forget_below(self, offset: int) -> None:
        while len(self.steps) > 1 and self.steps[0][0] <= offset:
            del self.steps[0]


class Reader:
    """Reads every partition of some topics from the beginning, without consumer-group membership.

    Services must see every event of their topics, so they assign partitions themselves and keep
    their own positions; the embedded broker's group joins are slow and fragile, and the mesh needs
    none of what they offer here.

    The reader knows how far its partitions reached when it started (``caught_up``), and holds a
    partition back at a record that waits for something other topics should bring (``wait_for``).
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
        self.consumer = AIOKafkaConsumer(
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
        self._fence_scope: list[Reader] = [self]
        self._start_ends: dict[TopicPartition, int] = {}
        self._targets: dict[TopicPartition, int] = {}
        self._held: dict[TopicPartition, Fence] = {}
        self._parked: list[tuple[Record, Fence]] = []
        self._fences: dict[frozenset[str], Fence] = {}
        self._first_fetch: dict[TopicPartition, _FirstFetch] = {}

    async def start(self) -> None:
        """Start the consumer and assign it every partition of the topics, each from offset 0."""
        await self.consumer.start()
        partitions: list[TopicPartition] = []
        for topic in self._topics:
            parts = await self._partitions(topic)
            partitions += [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_beginning(*partitions)
        self._start_ends = await self.consumer.end_offsets(partitions)

    async def _partitions(self, topic: str) -> set[int]:
        """The topic's partitions, once each has a leader (a new topic on Kafka needs a moment)."""
        client = self.consumer._client  # noqa: SLF001 - aiokafka has no public metadata refresh
        # Asked for by name, a topic it may not describe comes back as an authorisation error; in a
        # request for every topic, the broker would only leave it out.
        await client.add_topic(topic)
        for _ in range(100):
            await client.force_metadata_update()
            if topic in client.cluster.unauthorized_topics:
                raise TopicAuthorizationFailedError(topic)  # a secured broker's ACLs: say so, not "does not exist"
            parts = self.consumer.partitions_for_topic(topic)
            if parts and all((client.cluster.leader_for_partition(TopicPartition(topic, p)) or -1) >= 0 for p in parts):
                return set(parts)
            await asyncio.sleep(0.1)
        raise KafkaError(f"topic {topic} does not exist; create the protocol topics first")

    async def stop(self) -> None:
        """Cancel the fences still pending and stop the consumer."""
        for fence in {*self._fences.values(), *self._held.values(), *(f for _, f in self._parked)}:
            fence.cancel()
        await self.consumer.stop()

    def assignment(self) -> set[TopicPartition]:
        """The partitions this reader reads."""
        return set(self.consumer.assignment())

    async def held(self) -> int:
        """How many records the assigned partitions hold now (for the progress of a replay)."""
        parts = list(self.consumer.assignment())
        ends = await self.consumer.end_offsets(parts)
        starts = await self.consumer.beginning_offsets(parts)
        return sum(ends[p] - starts[p] for p in parts)

    def _target(self, tp: TopicPartition) -> int | None:
        target = self._targets.get(tp)
        if target is None:
            high = self.consumer.highwater(tp)
            if high is None:
                return None  # no fetch response yet: where the partition ends is not known
            target = self._targets[tp] = max(high, self._start_ends.get(tp, 0))
        return target

    def start_ends(self) -> dict[tuple[str, int], int | None]:
        """Where each assigned partition ended as this reader started (None: not known yet).

        The end offset listed at start, raised by the high watermark of a fetch response since then.
        """
        return {(tp.topic, tp.partition): self._target(tp) for tp in self.consumer.assignment()}

    async def caught_up(self) -> bool:
        """Whether every record the assigned partitions held when this reader started has been handled.

        For each partition: a fetch response has come (so the broker really answered), and the position
        has reached both the end offset listed at start and the high watermark of a response since;
        and no record waits (held back or parked). An empty fetch means nothing: a paused broker gives
        nothing but.
        """
        if self._parked:
            return False
        for tp in self.consumer.assignment():
            target = self._target(tp)
            if target is None or tp in self._held or await self.consumer.position(tp) < target:
                return False
        return True

    # -- records that wait: a partition held back, or a record parked ---------------------------

    def is_paused(self, topic: str, partition: int) -> bool:
        """Whether the partition is held back at a record that waits for a fence."""
        return TopicPartition(topic, partition) in self._held

    def wait_for(self, record: Record, topics: Iterable[str], *, park: bool = False) -> bool:
        """Let ``record`` wait until ``topics`` have been read as far as they were when it came.

        True if the record now waits: its partition is held back and read again from it once the
        fence is reached, or, with ``park`` (a topic whose records may be handled in any order), the
        partition goes on and the record alone is handed back then. False if a fence taken after the
        record was first fetched is reached already: whatever the record lacks is not coming, so its
        failure is final. Topics this reader's scope does not read are never waited for.
        """
        key = frozenset(topics)
        fence = self._fences.get(key)
        if fence is None or fence.taken < record.fetched_at:
            fence = self._fences[key] = Fence(key, self._fence_scope)
        elif fence.reached:
            return False
        if park:
            self._parked.append((record, fence))
            return True
        tp = TopicPartition(record.topic, record.partition)
        self.consumer.seek(tp, record.offset)
        self.consumer.pause(tp)
        self._held[tp] = fence
        return True

    async def _release_reached(self) -> None:
        """Check the fences records wait on; resume the held partitions whose fence is reached."""
        assigned = self.consumer.assignment()
        for tp in [tp for tp in self._held if tp not in assigned]:
            del self._held[tp]  # a group took it away; its next owner reads it from the committed position
        waiting = {id(f): f for f in (*self._held.values(), *(f for _, f in self._parked))}
        for fence in waiting.values():
            await fence.check()
        for tp, fence in list(self._held.items()):
            if fence.reached:
                del self._held[tp]
                self.consumer.resume(tp)

    async def fetch(self, timeout_ms: int = 200) -> list[Record]:
        """One batch (empty when idle): parked records now due first, then what the poll brings.

        Each partition's records are in offset order.
        """
        await self._release_reached()
        due = [record for record, fence in self._parked if fence.reached]
        fetched = await self.consumer.getmany(timeout_ms=0 if due else timeout_ms, max_records=500)
        self._parked = [(record, fence) for record, fence in self._parked if not fence.reached]
        at = time.monotonic()
        batch = due
        for tp, records in fetched.items():
            if not records:
                continue
            first = self._first_fetch.setdefault(tp, _FirstFetch())
            first.forget_below(records[0].offset)
            batch += [
                Record(tp.topic, tp.partition, r.offset, r.key, r.value or b"", first.of(r.offset, at)) for r in records
            ]
            first.note(records[-1].offset + 1, at)
        return batch

    async def batches(self, timeout_ms: int = 200) -> AsyncIterator[list[Record]]:
        """Yield batches forever (empty ones when idle)."""
        while True:
            yield await self.fetch(timeout_ms)


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
        """Start the consumer and join the group; a topic that does not exist fails here, by name."""
        await self.consumer.start()
        for topic in self._topics:
            await self._partitions(topic)  # fail early, naming the topic, if it does not exist
        self.consumer.subscribe(self._topics)

    def assigned(self) -> set[tuple[str, int]]:
        """The partitions this member holds now (empty until the group has assigned them)."""
        return {(tp.topic, tp.partition) for tp in self.consumer.assignment()}


class MergedReader:
    """A reader of whole topics and a group reader of shared ones, read side by side as one.

    Fences span both: a request on a shared topic may wait for a certificate on ``registry``.
    """

    def __init__(self, whole: Reader, shared: GroupReader) -> None:
        self.whole = whole
        self.shared = shared
        whole._fence_scope = shared._fence_scope = [whole, shared]  # noqa: SLF001 - one module
        self._shared_topics = set(shared._topics)  # noqa: SLF001 - one module

    def _of(self, topic: str) -> Reader:
        return self.shared if topic in self._shared_topics else self.whole

    async def start(self) -> None:
        """Start both readers."""
        await asyncio.gather(self.whole.start(), self.shared.start())

    async def stop(self) -> None:
        """Stop both readers."""
        await asyncio.gather(self.whole.stop(), self.shared.stop())

    def wait_for(self, record: Record, topics: Iterable[str], *, park: bool = False) -> bool:
        """Let ``record`` wait, on the reader of its topic (``Reader.wait_for``)."""
        return self._of(record.topic).wait_for(record, topics, park=park)

    def is_paused(self, topic: str, partition: int) -> bool:
        """Whether the partition is held back, on the reader of its topic."""
        return self._of(topic).is_paused(topic, partition)

    def start_ends(self) -> dict[tuple[str, int], int | None]:
        """Where each partition of the whole topics ended as reading started (``Reader.start_ends``)."""
        return self.whole.start_ends()

    async def caught_up(self) -> bool:
        """Whether both readers have caught up."""
        return await self.whole.caught_up() and await self.shared.caught_up()

    async def batches(self, timeout_ms: int = 200) -> AsyncIterator[list[Record]]:
        """Poll both readers at once, briefly, and yield what both brought.

        Nothing is fetched ahead of the service (a position seen between batches is one it has handled
        up to), and no poll is cancelled (aiokafka's consumer does not take a cancelled poll cleanly).
        """
        poll_ms = min(timeout_ms, MERGED_POLL_MS)
        while True:
            whole, shared = await asyncio.gather(self.whole.fetch(poll_ms), self.shared.fetch(poll_ms))
            yield whole + shared
