"""What an evidence service keeps: its Merkle log of witnessed evidence records, persisted in the node home."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from services.evidence.merkle import MerkleLog

_LENGTH = struct.Struct(">I")


class EvidenceLog:
    """The Merkle log over witnessed EvidenceRecorded record values, in evidence-topic order.

    Leaf i is the encoded envelope of the i-th EvidenceRecorded this party accepted from the
    (one-partition) evidence topic. The leaves are kept in ``path`` as length-prefixed records,
    appended as they are witnessed, so that a restart resumes the same log and can tell whether
    the topic still holds what it held (a rewritten history, not a fresh start). With no ``path``
    the log lives in memory only (a one-off session, an auditor).
    """

    def __init__(self, path: Path | None = None) -> None:
        self.tree = MerkleLog()
        self._leaves: list[bytes] = []
        self._by_event: dict[str, int] = {}
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            kept = self._load(path)
            self._file = path.open("r+b" if path.exists() else "wb")
            self._file.truncate(kept)  # a torn last record (a crash mid-write) is re-witnessed from the topic
            self._file.seek(kept)

    def _load(self, path: Path) -> int:
        if not path.exists():
            return 0
        data = path.read_bytes()
        at = 0
        while at + _LENGTH.size <= len(data):
            (n,) = _LENGTH.unpack_from(data, at)
            if at + _LENGTH.size + n > len(data):
                break
            self._add(data[at + _LENGTH.size : at + _LENGTH.size + n], None)
            at += _LENGTH.size + n
        return at

    @property
    def size(self) -> int:
        return self.tree.size

    def leaf(self, index: int) -> bytes:
        return self._leaves[index]

    def index_of(self, event_id: str) -> int | None:
        """The leaf of the evidence record with this event id, or of the evidence of the event with this id."""
        return self._by_event.get(event_id)

    def append(self, leaf: bytes, event_ids: tuple[str, ...] = ()) -> int:
        """Append one leaf, persisting it first; returns its index."""
        if self._file is not None:
            self._file.write(_LENGTH.pack(len(leaf)) + leaf)
            self._file.flush()
        return self._add(leaf, event_ids)

    def sync(self) -> None:
        """Make what was appended durable (called at intervals, not per leaf: the topic is the source)."""
        if self._file is not None:
            os.fsync(self._file.fileno())

    def index_events(self, index: int, event_ids: tuple[str, ...]) -> None:
        for event_id in event_ids:
            self._by_event.setdefault(event_id, index)

    def _add(self, leaf: bytes, event_ids: tuple[str, ...] | None) -> int:
        index = self.tree.append(leaf)
        self._leaves.append(leaf)
        if event_ids:
            self.index_events(index, event_ids)
        return index

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
