"""The PSI component: the guest aligns its ids with every host's, and only the agreed parties learn the result.

Flow per host (docs/vertical.md has the messages): handshake; both sides send their
first-stage ciphertexts X25519(k_own, H(id)) in batches ("psi.enc", round = batch index; a
host sends its ids in a private random order); the host blinds the guest's batches a second
time and returns them in order ("psi.dual.enc"); the guest blinds the host's a second time
itself. Equal second-stage values (compared on their first ``truncate_bits`` bits) are equal
ids. The guest intersects over all hosts and, if the result goes to every rank, tells each
host which of the positions it sent are in the intersection ("psi.result"). A host learns
only that and the guest's item count; the guest learns the intersection and the hosts' counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Sequence
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from services.executor.algorithms.psi import curve, handshake
from services.executor.algorithms.psi.handshake import Agreement, PsiHandshakeError
from services.executor.api import ComponentResult, Message, TaskContext

T = TypeVar("T")

ENC, DUAL, HANDSHAKE, RESPONSE, RESULT = (
    "psi.enc",
    "psi.dual.enc",
    "psi.handshake",
    "psi.handshake.response",
    "psi.result",
)


class PsiProtocolError(Exception):
    """A peer sent a batch that breaks the protocol (wrong size, index or point): the job fails."""


@dataclass
class Blinder:
    """This party's secret scalar and where its scalar multiplications run."""

    scalar: bytes
    pool: Executor | None
    tasks: list[asyncio.Future[Any]] = field(default_factory=list)

    def start(self, work: Awaitable[T]) -> asyncio.Future[T]:
        """``work`` started now, to be awaited later; the run cancels it if it ends first (a failure)."""
        task = asyncio.ensure_future(work)
        self.tasks.append(task)
        return task

    async def hash_and_blind(self, ids: Sequence[str]) -> bytes:
        return await self._run(curve.hash_and_blind, list(ids))

    async def blind(self, points: bytes) -> bytes:
        return await self._run(curve.blind, points)

    async def _run(self, fn: object, arg: object) -> bytes:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.pool, fn, self.scalar, arg)  # type: ignore[arg-type]
        except curve.SmallOrderPointError as exc:
            raise PsiProtocolError(f"a peer sent a small-order point: {exc}") from exc
        except BrokenProcessPool as exc:
            if self.pool is not None:
                curve.forget_pool(self.pool)
            raise RuntimeError(f"a PSI worker process died ({exc}); the next run starts new workers") from exc


@contextlib.asynccontextmanager
async def blinder(workers: int) -> AsyncIterator[Blinder]:
    """This run's blinder on the process's shared workers; batches still running when the run ends are cancelled."""
    # The scalar is fresh per run, never derived from the job seed: the other parties know the seed.
    me = Blinder(curve.new_scalar(), curve.worker_pool(workers))
    try:
        yield me
    finally:
        for task in me.tasks:
            task.cancel()
        if me.tasks:
            await asyncio.gather(*me.tasks, return_exceptions=True)


def batch_message(index: int, last: bool, count: int, ciphertext: bytes) -> Message:
    return {"batch": np.array([index, int(last), count], dtype=np.int64), "ciphertext": ciphertext}


def read_batch(message: Message, index: int, width: int) -> tuple[bool, int, bytes]:
    meta, ciphertext = message.get("batch"), message.get("ciphertext")
    if not isinstance(meta, np.ndarray) or meta.shape != (3,) or not isinstance(ciphertext, bytes):
        raise PsiProtocolError(f"batch {index}: not a PSI batch (need 'batch' [index, last, count] and 'ciphertext')")
    got, last, count = (int(x) for x in meta)
    if got != index or count < 0 or len(ciphertext) != count * width:
        raise PsiProtocolError(
            f"batch {index}: index {got}, count {count}, {len(ciphertext)} bytes (need {count} x {width} bytes)"
        )
    return bool(last), count, ciphertext


async def send_batches(ctx: TaskContext, to: str, tag: str, chunks: Sequence[Awaitable[bytes]], width: int) -> None:
    """Send ``chunks`` (whole ``width``-byte items each) as batches 0..n-1, each as soon as it and those
    before it are ready (so the peer starts on batch 0 while later ones are still being blinded);
    an empty set is one empty batch."""
    pending = list(chunks) or [_ready(b"")]
    for index, part in enumerate(pending):
        chunk = await part
        await ctx.channel.send(
            to, tag, index, batch_message(index, index == len(pending) - 1, len(chunk) // width, chunk)
        )


async def _ready(value: bytes) -> bytes:
    return value


async def receive_batches(ctx: TaskContext, from_: str, tag: str, width: int) -> AsyncIterator[tuple[bool, bytes]]:
    """(is last, ciphertext) of the batches of (from_, tag) in order, up to the one flagged last."""
    index = 0
    while True:
        got = await ctx.channel.gather(from_, tag, index, deadline=ctx.round_deadline)
        last, _, ciphertext = read_batch(got[from_], index, width)
        yield last, ciphertext
        if last:
            return
        index += 1


def truncated(points: bytes, width: int) -> list[bytes]:
    return [points[i : i + width] for i in range(0, len(points), curve.POINT_BYTES)]


class PSI:
    """ECDH-PSI between one guest and one or more hosts (component ``psi``)."""

    async def run(self, ctx: TaskContext) -> ComponentResult:
        ids = _ids(ctx)
        if ctx.role == "guest":
            rows, sizes = await self._guest(ctx, ids)
        elif ctx.role == "host":
            rows, sizes = await self._host(ctx, ids)
        else:
            raise ValueError(f"psi has the roles guest and host, not {ctx.role!r}")
        ctx.report(0, {"intersection": float(len(rows))})
        order = np.asarray(rows, dtype=np.int64)
        return ComponentResult(
            model={"rows": order, "ids": np.array([ids[i] for i in order.tolist()], dtype=np.str_)},
            metrics={"intersection": float(len(order)), "items": float(len(ids)), **sizes},
        )

    async def _guest(self, ctx: TaskContext, ids: list[str]) -> tuple[list[int], dict[str, float]]:
        hosts = list(ctx.roles["host"])
        result_to = handshake.ALL_RANKS if ctx.params["result_to"] == "all" else 0
        proposal = handshake.encode(handshake.request(0, len(ids), result_to))
        for host in hosts:
            await ctx.channel.send(host, HANDSHAKE, 0, {"request": proposal})
        replies = await ctx.channel.gather("host", RESPONSE, 0, deadline=ctx.round_deadline)
        agreements = {h: handshake.accept(handshake.decode(_bytes(replies[h], "response")), len(ids)) for h in hosts}
        batch = int(ctx.params["batch_size"])
        async with blinder(int(ctx.params["workers"])) as me:
            # one task per batch, shared by every host: each host's sender takes them in order as they finish
            own = [me.start(me.hash_and_blind(ids[i : i + batch])) for i in range(0, len(ids), batch)]
            matched = await asyncio.gather(*(me.start(self._with_host(ctx, me, h, own, agreements[h])) for h in hosts))
        # own row i is in the intersection if every host's matching set holds it
        common = set(range(len(ids)))
        for own_rows, _ in matched:
            common &= own_rows
        rows = sorted(common, key=lambda i: ids[i])
        if result_to == handshake.ALL_RANKS:
            for host, (_, positions) in zip(hosts, matched, strict=True):
                keep = [p for p, own_row in positions if own_row in common]
                await ctx.channel.send(host, RESULT, 0, {"positions": np.array(sorted(keep), dtype=np.int64)})
        return rows, {f"items.{h}": float(a.host_items) for h, a in agreements.items()}

    async def _with_host(
        self,
        ctx: TaskContext,
        me: Blinder,
        host: str,
        own_batches: Sequence[asyncio.Future[bytes]],
        agreement: Agreement,
    ) -> tuple[set[int], list[tuple[int, int]]]:
        """(own rows found at this host, [(host position, own row)] of the matches)."""
        width = agreement.truncate_bytes

        async def theirs_blinded_again() -> bytes:
            # every batch goes to the pool as it arrives, so the workers stay busy
            pending = [me.start(me.blind(chunk)) async for _, chunk in receive_batches(ctx, host, ENC, 32)]
            return b"".join(await asyncio.gather(*pending))

        async def ours_from_them() -> bytes:
            out = bytearray()
            async for _, chunk in receive_batches(ctx, host, DUAL, width):
                out += chunk
            return bytes(out)

        sending = send_batches(ctx, host, ENC, own_batches, curve.POINT_BYTES)
        # started on the blinder, so a failure of one (a bad batch) cancels the others with the run
        _, theirs, ours = await asyncio.gather(
            me.start(sending), me.start(theirs_blinded_again()), me.start(ours_from_them())
        )
        sent = sum(len(b.result()) for b in own_batches) // curve.POINT_BYTES
        if len(ours) != width * sent:
            raise PsiProtocolError(f"{host} returned {len(ours) // width} second-stage items for {sent}")
        position = {value: i for i, value in enumerate(truncated(theirs, width))}
        pairs = [
            (position[v], row)
            for row, v in enumerate(ours[i : i + width] for i in range(0, len(ours), width))
            if v in position
        ]
        return {row for _, row in pairs}, pairs

    async def _host(self, ctx: TaskContext, ids: list[str]) -> tuple[list[int], dict[str, float]]:
        (guest,) = ctx.roles["guest"]
        result_to = handshake.ALL_RANKS if ctx.params["result_to"] == "all" else 0
        got = await ctx.channel.gather(guest, HANDSHAKE, 0, deadline=ctx.round_deadline)
        proposal = handshake.decode(_bytes(got[guest], "request"))
        response = handshake.respond(proposal, len(ids), result_to, int(ctx.params["truncate_bits"]))
        await ctx.channel.send(guest, RESPONSE, 0, {"response": handshake.encode(response)})
        code = response["header"]["error_code"]
        if code != handshake.OK:
            raise PsiHandshakeError(code, response["header"]["error_msg"])
        width = int(ctx.params["truncate_bits"]) // 8 if ctx.params["truncate_bits"] != -1 else curve.POINT_BYTES
        # a private order, so the positions the guest sees say nothing about the host's file
        order = np.random.default_rng(int.from_bytes(os.urandom(16), "little")).permutation(len(ids))
        shuffled = [ids[i] for i in order.tolist()]
        batch = int(ctx.params["batch_size"])
        async with blinder(int(ctx.params["workers"])) as me:

            async def send_own() -> None:
                parts = [me.start(me.hash_and_blind(shuffled[i : i + batch])) for i in range(0, len(shuffled), batch)]
                await send_batches(ctx, guest, ENC, parts, curve.POINT_BYTES)

            async def answer(index: int, last: bool, chunk: bytes) -> None:
                dual = b"".join(truncated(await me.blind(chunk), width))
                count = len(chunk) // curve.POINT_BYTES
                await ctx.channel.send(guest, DUAL, index, batch_message(index, last, count, dual))

            async def serve_guest() -> None:
                answers, index = [], 0
                async for last, chunk in receive_batches(ctx, guest, ENC, curve.POINT_BYTES):
                    answers.append(me.start(answer(index, last, chunk)))
                    index += 1
                await asyncio.gather(*answers)

            await asyncio.gather(me.start(send_own()), me.start(serve_guest()))
        if result_to != handshake.ALL_RANKS:
            return [], {f"items.{guest}": float(proposal["io_param"]["item_num"])}
        got = await ctx.channel.gather(guest, RESULT, 0, deadline=ctx.round_deadline)
        positions = got[guest].get("positions")
        if not isinstance(positions, np.ndarray) or (
            positions.size and not (positions.min() >= 0 and positions.max() < len(ids))
        ):
            raise PsiProtocolError("psi.result: positions missing or out of range")
        rows = sorted((int(order[p]) for p in positions.tolist()), key=lambda i: ids[i])
        return rows, {f"items.{guest}": float(proposal["io_param"]["item_num"])}


def _bytes(message: Message, name: str) -> bytes:
    value = message.get(name)
    if not isinstance(value, bytes):
        raise PsiHandshakeError(handshake.BAD_PARAMS, f"handshake message without its {name!r} bytes")
    return value


def _ids(ctx: TaskContext) -> list[str]:
    dataset = ctx.inputs["data"]
    ids, _, _, _ = dataset.load()
    if ids is None:
        raise ValueError(f"dataset {dataset.dataset_id} has no id column to intersect on")
    values: npt.NDArray[np.str_] = ids.astype(np.str_)
    listed: list[str] = values.tolist()
    if len(set(listed)) != len(listed):
        raise ValueError(f"dataset {dataset.dataset_id} has duplicate ids: PSI needs each id once")
    return listed
