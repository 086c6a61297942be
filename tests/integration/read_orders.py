"""Feeding captured records to a service in a chosen read order, without a broker: each partition in offset
order, the partitions interleaved however the caller picks, through ``Service.process`` as a reader would."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from mesh.bus import Record
from mesh.service import Service

#: A partition: (Kafka topic name, partition number).
Partition = tuple[str, int]


async def feed(  # noqa: C901  # the reader's hold-back rules, kept together in one stand-in (below)
    service: Service, partitions: Mapping[Partition, Sequence[Record]], pick: Callable[[list[Partition]], Partition]
) -> None:
    """Hand ``service`` every record of ``partitions``: each partition in offset order, the next record always from
    the partition ``pick`` chooses among those with records left and not held back.

    This is the one place that knows how ``Service.process`` holds back a record it may accept later (a
    retriable refusal): a minimal stand-in for the reader, which ``process`` asks whether a partition is held
    back and tells to hold one back until a fence (below).
    """

    class HeldBack:
        """What ``Service.process`` needs of its reader: which partitions are held back at a record that waits,
        and which records are parked.

        A captured history is all on the broker already, so the fence a real reader would take when it first
        meets a waiting record covers the awaited topics to their ends: a held partition is read again, or a
        parked record handed again, once every partition of those topics is fed to its end, and if the record
        fails again its failure is final, as with a real reader (docs/protocol.md §6.5).
        """

        def __init__(self) -> None:
            self.held: dict[Partition, frozenset[str]] = {}
            self.parked: list[tuple[Record, frozenset[str]]] = []
            self.waited: set[tuple[str, int, int]] = set()

        def is_paused(self, topic: str, partition: int) -> bool:
            return (topic, partition) in self.held

        def wait_for(self, record: Record, topics: Iterable[str], *, park: bool = False) -> bool:
            spot = (record.topic, record.partition, record.offset)
            if spot in self.waited:
                return False
            self.waited.add(spot)
            if park:
                self.parked.append((record, frozenset(topics)))
            else:
                self.held[(record.topic, record.partition)] = frozenset(topics)
            return True

        def reached(self, topics: frozenset[str]) -> bool:
            return all(position[p] == len(partitions[p]) for p in partitions if p[0] in topics)

        def release_reached(self) -> list[Record]:
            for held, topics in list(self.held.items()):
                if self.reached(topics):
                    del self.held[held]
            due = [record for record, topics in self.parked if self.reached(topics)]
            self.parked = [(record, topics) for record, topics in self.parked if not self.reached(topics)]
            return due

    reader = HeldBack()
    service._reader = reader  # type: ignore[assignment]  # the seam this helper stands in for
    position = dict.fromkeys(partitions, 0)
    while (left := [p for p in partitions if position[p] < len(partitions[p])]) or reader.parked:
        for record in reader.release_reached():
            await service.process(record)
        ready = [p for p in left if p not in reader.held]
        if not ready:
            if left:
                stuck = [partitions[p][position[p]] for p in left]
                raise AssertionError(f"{service.name} waits for ever: {[(r.topic, r.offset) for r in stuck]}")
            continue
        chosen = pick(ready)
        await service.process(partitions[chosen][position[chosen]])
        if chosen not in reader.held:
            position[chosen] += 1
    service.caught_up.set()  # every record of every partition handled: caught up, as a reader would say
