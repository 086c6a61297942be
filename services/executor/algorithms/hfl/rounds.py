"""Helpers shared by the roles of an HFL job: checkpoint state, single-sender gathers, message fields."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from services.executor.api import Message, QuorumError, TaskContext

from .config import Setup

#: How long a party waits for the aggregator's answer, in round deadlines: the aggregator itself
#: waits one deadline for updates, then possibly one for reveals and one for the decryption.
ANSWER_DEADLINES = 3.0


class ProtocolError(Exception):
    """A peer's message lacks a field or has the wrong kind of value."""


def tensor(message: Message, name: str) -> npt.NDArray[Any]:
    value = message.get(name)
    if not isinstance(value, np.ndarray):
        raise ProtocolError(f"message lacks the tensor {name!r}")
    return value


def blob(message: Message, name: str) -> bytes:
    value = message.get(name)
    if not isinstance(value, bytes):
        raise ProtocolError(f"message lacks the bytes {name!r}")
    return value


def names(data: bytes) -> list[str]:
    value = json.loads(data)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError("expected a JSON list of node ids")
    return value


def abort_message(error: QuorumError) -> Message:
    """The answer that tells a waiting party its round aborted, and why (the same QuorumError)."""
    return {"abort": json.dumps({"tag": error.tag, "got": error.got, "needed": error.needed}).encode()}


async def gather_one(ctx: TaskContext, node: str, tag: str, round_no: int, deadline: float) -> Message:
    """The (tag, round) message of one node; QuorumError if it does not come in time or says the round aborted."""
    got = (await ctx.channel.gather(node, tag, round_no, deadline=deadline, quorum=1))[node]
    if "abort" in got:
        reason = json.loads(blob(got, "abort"))
        raise QuorumError(str(reason["tag"]), round_no, [str(g) for g in reason["got"]], int(reason["needed"]))
    return got


async def gather_each(
    ctx: TaskContext, nodes: Sequence[str], tag: str, round_no: int, deadline: float
) -> dict[str, Message]:
    """The (tag, round) messages of every node named, waited for together (all are needed)."""
    replies = await asyncio.gather(*(gather_one(ctx, n, tag, round_no, deadline) for n in nodes))
    return dict(zip(nodes, replies, strict=True))


async def send_each(ctx: TaskContext, nodes: Sequence[str], tag: str, round_no: int, message: Message) -> None:
    for node in nodes:
        await ctx.channel.send(node, tag, round_no, message)


def save(
    ctx: TaskContext, round_no: int, setup: Setup | None, weights: npt.NDArray[np.float64] | None, secret: bytes
) -> None:
    """One checkpoint: the round finished, what round 0 established, the global model, this node's secret."""
    state: dict[str, npt.NDArray[Any] | bytes] = {"secret": secret}
    if setup is not None:
        state["setup"] = setup.to_bytes()
    if weights is not None:
        state["weights"] = weights
    ctx.checkpoints.save(round_no, state)


def restore(ctx: TaskContext) -> tuple[int, Setup | None, npt.NDArray[np.float64] | None, bytes] | None:
    """The latest checkpoint as (round, setup or None, weights or None, secret), or None on a fresh start."""
    latest = ctx.checkpoints.latest()
    if latest is None:
        return None
    round_no, state = latest
    setup_bytes, weights, secret = state.get("setup"), state.get("weights"), state.get("secret", b"")
    setup = Setup.from_bytes(setup_bytes) if isinstance(setup_bytes, bytes) else None
    w = np.asarray(weights, dtype=np.float64) if isinstance(weights, np.ndarray) else None
    return round_no, setup, w, secret if isinstance(secret, bytes) else b""


def as_mapping(tensors: Mapping[str, npt.NDArray[np.float64]]) -> dict[str, npt.NDArray[Any]]:
    return {k: np.array(v) for k, v in tensors.items()}
