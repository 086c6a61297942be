"""Reassembly of chunked events, bounded in memory and checked against the whole digest."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from mesh.errors import MalformedChunkError


@dataclass
class _Assembly:
    count: int
    whole_size: int
    started: float
    pieces: list[bytes] = field(default_factory=list)
    received: int = 0


class ChunkAssembler:
    """Collects the pieces one sender sends under one digest, in order, on one partition.

    Pieces of one event travel in order on one partition, so a gap or a piece out
    of order is an error, not something to wait for. Assemblies that do not finish
    within ``ttl`` seconds, or that would exceed ``max_bytes`` in all, are dropped.
    """

    KEEP_DONE = 8

    def __init__(self, max_bytes: int = 256 * 1024 * 1024, ttl: float = 300.0, max_event_bytes: int = 64 * 1024 * 1024):
        self.max_bytes = max_bytes
        self.max_event_bytes = max_event_bytes
        self.ttl = ttl
        self._open: dict[tuple[str, bytes], _Assembly] = {}
        self._held = 0
        # Wholes handed out but not yet released: the last piece may be read again if the
        # whole event has to be retried (e.g. its schema is not known yet).
        self._done: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()

    def add(self, sender: str, chunk: dict[str, Any]) -> bytes | None:
        """Add one piece; return the whole encoded envelope when the last piece arrives."""
        self._expire()
        digest, index, count, size = chunk["whole_sha256"], chunk["index"], chunk["count"], chunk["whole_size"]
        if len(digest) != 32 or not 0 <= index < count or not 0 < size <= self.max_event_bytes:
            raise MalformedChunkError(f"chunk fields out of range (index {index}/{count}, size {size})")
        key = (sender, digest)
        if index == count - 1 and key in self._done:
            return self._done[key]
        asm = self._open.get(key)
        if asm is None:
            if index != 0:
                raise MalformedChunkError(f"chunk {index}/{count} of {digest.hex()[:16]} without its first piece")
            if self._held + size > self.max_bytes:
                raise MalformedChunkError(f"reassembly would hold more than {self.max_bytes} bytes")
            asm = self._open[key] = _Assembly(count=count, whole_size=size, started=time.monotonic())
            self._held += size
        if count != asm.count or size != asm.whole_size or index != len(asm.pieces):
            self._drop(key)
            raise MalformedChunkError(f"chunk {index}/{count} of {digest.hex()[:16]} does not follow its predecessors")
        asm.pieces.append(chunk["data"])
        asm.received += len(chunk["data"])
        if asm.received > asm.whole_size:
            self._drop(key)
            raise MalformedChunkError(f"pieces of {digest.hex()[:16]} exceed its declared size {asm.whole_size}")
        if len(asm.pieces) < asm.count:
            return None
        self._drop(key)
        whole = b"".join(asm.pieces)
        if len(whole) != asm.whole_size or hashlib.sha256(whole).digest() != digest:
            raise MalformedChunkError(f"reassembled event {digest.hex()[:16]} does not match its digest")
        self._done[key] = whole
        self._held += len(whole)
        while len(self._done) > self.KEEP_DONE:
            self._held -= len(self._done.popitem(last=False)[1])
        return whole

    def release(self, sender: str, digest: bytes) -> None:
        """The whole event's fate is settled (applied, ignored or refused): forget it."""
        whole = self._done.pop((sender, digest), None)
        if whole is not None:
            self._held -= len(whole)

    def _drop(self, key: tuple[str, bytes]) -> None:
        asm = self._open.pop(key, None)
        if asm is not None:
            self._held -= asm.whole_size

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.ttl
        for key in [k for k, a in self._open.items() if a.started < cutoff]:
            self._drop(key)
