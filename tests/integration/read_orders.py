"""Feeding captured records to a service in a chosen read order, without a broker: each partition in offset
order, the partitions interleaved however the caller picks, through ``Service.process`` as a reader would."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from mesh.bus import Record
from mesh.service import Service

#: A partition: (Kafka topic name, partition number).
Partition = tuple[str, int]


async def feed(
    service: Service, partitions: Mapping[Partition, Sequence[Record]], pick: Callable[[list[Partition]], Partition]
) -> None:
    """Hand ``service`` every record of ``partitions``: each partition in offset order, the next record always from
    the partition ``pick`` chooses among those with records left and not held back.

    This is the one place that knows how ``Service.process`` holds back a record it may accept later (a
    retriable refusal): a minimal stand-in for the reader, which ``process`` asks whether a partition is held
    back and tells to hold one back. A held-back record is handed again once another record has settled (its
    cause may be gone) or when nothing else is left; if nothing settles in between, feeding fails naming it.
    The service is given all the time it likes (its retry window is not wall-clock time here).
    """

    class HeldBack:
        """What ``Service.process`` needs of its reader: which partitions wait for a record to be retried."""

        def __init__(self) -> None:
            self.held: set[Partition] = set()

        def is_paused(self, topic: str, partition: int) -> bool:
            return (topic, partition) in self.held

        def retry_later(self, record: Record, delay: float) -> None:
            self.held.add((record.topic, record.partition))

    reader = HeldBack()
    service._reader = reader  # type: ignore[assignment]  # the seam this helper stands in for
    service.retry_window = float("inf")  # type: ignore[misc]  # a retried record is settled by its cause, not a clock
    position = dict.fromkeys(partitions, 0)
    settled_since_release = True
    while left := [p for p in partitions if position[p] < len(partitions[p])]:
        ready = [p for p in left if p not in reader.held]
        if not ready:
            if not settled_since_release:
                stuck = [partitions[p][position[p]] for p in left]
                raise AssertionError(f"{service.name} cannot settle {[(r.topic, r.offset) for r in stuck]}")
            reader.held.clear()
            settled_since_release = False
            continue
        chosen = pick(ready)
        await service.process(partitions[chosen][position[chosen]])
        if chosen not in reader.held:
            position[chosen] += 1
            settled_since_release = True
            reader.held.clear()
