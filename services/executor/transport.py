"""Round messages on ``rounds``: tensors and byte strings cut into digest-checked pieces, addressed to a role or a node.

A message is identified by (job, sender, tag, round). Each field travels as pieces of at most
``piece_bytes``, each its own event, so neither side ever holds more than one message's worth
of one sender plus a piece; a receiver keeps the first complete copy of an identity and ignores
any later delivery of it, so a re-sent round never counts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mesh import events
from mesh.events import ROUND_PART
from mesh.publisher import Publisher
from services.executor.api import Message, QuorumError
from services.executor.errors import BadRoundMessageError, InboxFullError

#: Bytes of field data per piece: well under the default record limit, so a piece is one record.
PIECE_BYTES = 256 * 1024
#: Unfinished bytes a receiver holds for one sender at most.
MAX_PENDING_PER_SENDER = 256 * 1024 * 1024

Identity = tuple[str, str, str, int]  # job, sender, tag, round


def encode_field(value: Any) -> tuple[str, str, list[int], bytes]:
    """(kind, dtype, shape, little-endian raw bytes) of one field."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes", "", [], bytes(value)
    arr = np.asarray(value)
    if arr.dtype.hasobject:
        raise TypeError("object arrays cannot travel")
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return "tensor", arr.dtype.str, list(arr.shape), np.ascontiguousarray(arr).tobytes()


def decode_field(kind: str, dtype: str, shape: Sequence[int], data: bytes) -> Any:
    if kind == "bytes":
        return data
    if kind != "tensor":
        raise BadRoundMessageError(f"field kind {kind!r} is not tensor or bytes")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise BadRoundMessageError(f"dtype {dtype!r} is not a numpy dtype") from None
    if dt.hasobject or int(np.prod(shape, dtype=np.int64)) * dt.itemsize != len(data):
        raise BadRoundMessageError(f"{len(data)} bytes do not make a {dtype} tensor of shape {list(shape)}")
    return np.frombuffer(data, dtype=dt).reshape(shape).copy()


def pieces(  # noqa: PLR0917  # the message identity, then the message
    job_id: str, to: str, tag: str, round_no: int, message: Message, piece_bytes: int
) -> Iterator[events.RoundPart]:
    """The RoundPart payloads of one message, field by field in name order."""
    names = sorted(message)
    for index, name in enumerate(names):
        kind, dtype, shape, raw = encode_field(message[name])
        digest = hashlib.sha256(raw).digest()
        count = max(1, -(-len(raw) // piece_bytes))
        for part in range(count):
            yield {
                "job_id": job_id,
                "to": to,
                "tag": tag,
                "round": round_no,
                "fields": len(names),
                "field_index": index,
                "name": name,
                "kind": kind,
                "dtype": dtype,
                "shape": shape,
                "part": part,
                "parts": count,
                "field_size": len(raw),
                "field_sha256": digest,
                "data": raw[part * piece_bytes : (part + 1) * piece_bytes],
            }


@dataclass
class _Assembly:
    fields: int
    done: dict[str, Any] = field(default_factory=dict)
    current: list[bytes] = field(default_factory=list)
    held: int = 0


class Inbox:
    """The messages addressed to one node, by identity; the first complete copy of each wins."""

    def __init__(self, max_pending_per_sender: int = MAX_PENDING_PER_SENDER) -> None:
        self.max_pending = max_pending_per_sender
        self.complete: dict[Identity, dict[str, Any]] = {}
        self._open: dict[Identity, _Assembly] = {}
        self._pending: dict[str, int] = {}
        self.duplicates = 0
        self.changed = asyncio.Event()

    def add(self, sender: str, p: events.RoundPart) -> None:
        """Take one piece in; raises BadRoundMessageError / InboxFullError for a piece that does not fit."""
        ident: Identity = (p["job_id"], sender, p["tag"], p["round"])
        if ident in self.complete:
            self.duplicates += p["field_index"] == 0 and p["part"] == 0
            return
        asm = self._open.get(ident)
        if asm is None:
            if p["field_index"] != 0 or p["part"] != 0:
                return  # the tail of a copy whose head we never saw (we joined mid-message): the re-send completes it
            asm = self._open[ident] = _Assembly(fields=p["fields"])
        if p["fields"] != asm.fields or p["field_index"] != len(asm.done):
            if p["field_index"] == 0 and p["part"] == 0:  # a fresh copy starts over (the sender restarted)
                self._drop(ident, sender)
                self.add(sender, p)
                return
            return  # pieces of an older, interrupted copy
        if p["part"] != len(asm.current):
            if p["part"] == 0:
                self._drop(ident, sender)
                self.add(sender, p)
            return
        held = self._pending.get(sender, 0) + len(p["data"])
        if held > self.max_pending:
            self._drop(ident, sender)
            raise InboxFullError(f"{sender} has more than {self.max_pending} bytes of unfinished messages here")
        self._pending[sender] = held
        asm.current.append(p["data"])
        asm.held += len(p["data"])
        if len(asm.current) < p["parts"]:
            return
        raw = b"".join(asm.current)
        asm.current = []
        if len(raw) != p["field_size"] or hashlib.sha256(raw).digest() != p["field_sha256"]:
            self._drop(ident, sender)
            raise BadRoundMessageError(f"field {p['name']} of {ident} does not match its digest")
        asm.done[p["name"]] = decode_field(p["kind"], p["dtype"], p["shape"], raw)
        if len(asm.done) == asm.fields:
            self.complete[ident] = asm.done
            self._drop(ident, sender)
            self.changed.set()

    def _drop(self, ident: Identity, sender: str) -> None:
        asm = self._open.pop(ident, None)
        if asm is not None:
            self._pending[sender] = self._pending.get(sender, 0) - asm.held

    def forget_job(self, job_id: str) -> None:
        for ident in [i for i in self.complete if i[0] == job_id]:
            del self.complete[ident]

    async def wait_change(self, timeout: float) -> None:
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)


class BusChannel:
    """``api.RoundChannel`` of one party in one job, over the ``rounds`` topic."""

    def __init__(
        self,
        publisher: Publisher,
        inbox: Inbox,
        job_id: str,
        me: str,
        roles: Mapping[str, Sequence[str]],
        *,
        piece_bytes: int = PIECE_BYTES,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.publisher, self.inbox, self.job_id, self.me, self.roles = publisher, inbox, job_id, me, roles
        self.piece_bytes = piece_bytes
        #: field bytes this party sent in the job's round pieces (envelopes and signatures not counted)
        self.sent_bytes = 0
        self._clock = clock or (lambda: asyncio.get_running_loop().time())

    def resolve(self, to: str) -> list[str]:
        return list(self.roles[to]) if to in self.roles else [to]

    async def send(self, to: str, tag: str, round_no: int, message: Message) -> None:
        """Every piece of the message sent pipelined, in order; returns once the broker has them all."""
        parts = list(pieces(self.job_id, to, tag, round_no, message, self.piece_bytes))
        await self.publisher.publish_all("rounds", ROUND_PART, parts, subject=self.job_id)
        self.sent_bytes += sum(len(p["data"]) for p in parts)

    async def gather(
        self, from_: str, tag: str, round_no: int, *, deadline: float, quorum: int | None = None
    ) -> dict[str, Message]:
        senders = self.resolve(from_)
        needed = len(senders) if quorum is None else quorum
        until = self._clock() + deadline

        def arrived() -> dict[str, Message]:
            box = self.inbox.complete
            return {s: box[(self.job_id, s, tag, round_no)] for s in senders if (self.job_id, s, tag, round_no) in box}

        while len(arrived()) < len(senders) and (left := until - self._clock()) > 0:
            await self.inbox.wait_change(min(left, 0.5))
        got = arrived()
        if len(got) < needed:
            raise QuorumError(tag, round_no, sorted(got), needed)
        return got
