"""The hetero LR component: one ``run`` per role, rounds of the standard protocol (docs/vertical.md, "Hetero LR").

Per mini-batch (round r): each host sends [[u_h]] = [[X_h w_h]] (and, with one host,
[[sum u_h^2]] for the loss) to the guest; the guest forms [[d]] = 1/4 ([[u]] + u_g - 2y) and
sends it to the hosts; every party computes its gradient [[X^T d / B]], masks (and packs)
it and sends it to the arbiter, the guest adding the encrypted Taylor loss; the arbiter
decrypts and returns each party its masked gradient, which the party unmasks and applies.
After each epoch the arbiter announces the loss and whether training stops.

Work that does not wait on other work runs concurrently, so a round is as long as its critical path
(host encrypts -> guest forms [[d]] -> each party's gradient -> arbiter decrypts) and no longer: a host
encrypts [[u_h]] and [[sum u_h^2]] together; the guest sends [[d]] before anything else and computes
its gradient and the loss side by side; the arbiter decrypts and answers each party's gradient as it
arrives, the loss after the answers. Over an accelerator with several workers these calls overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import numpy as np

from accel.vector import EncryptedVector
from accel.wire import PublishedKey
from services.executor.algorithms.hetero_lr import codec, masking, maths
from services.executor.algorithms.hetero_lr.maths import Array, Schedule
from services.executor.api import ComponentResult, LocalDataset, Message, TaskContext

T = TypeVar("T")

#: A public bound on |u_h| (declared, so the ciphertexts' bound reveals nothing about the data).
U_BOUND = float(1 << 20)
#: Fractional bits of the (standardised) features in X^T [[d]]: a feature is rounded to 2^-10 of its
#: standard deviation, so the exponents of the multi-exponentiation are ~14 bits, not the ~26 of
#: X/B at 32 bits; 1/B is applied after unmasking, in plaintext (docs/vertical.md, "Messages").
X_PRECISION = 10
#: Fractional bits of the loss's plaintext coefficients (u_g/4 - y/2 in the DOT, 1/8 on [[sum u_h^2]]):
#: their rounding moves a batch's loss sum by < 256 * 2^-17 * |u_h|, far below ``tol`` once divided by the rows.
LOSS_PRECISION = 16


async def side_by_side(*steps: Coroutine[Any, Any, T]) -> list[T]:
    """Run ``steps`` side by side; the first that fails cancels the others, which are awaited, and its error is raised
    as it is (a quorum error stays one): no step outlives the round that started it."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class HeteroLRError(Exception):
    """The parties' data or messages do not fit together (row counts, labels, shapes): the job fails."""


def _raw(message: Message, name: str) -> bytes:
    value = message.get(name)
    if not isinstance(value, bytes):
        raise HeteroLRError(f"message without its {name!r} bytes")
    return value


def _tensor(message: Message, name: str) -> np.ndarray:
    value = message.get(name)
    if not isinstance(value, np.ndarray):
        raise HeteroLRError(f"message without its {name!r} tensor")
    return value


def load_aligned(inputs: Mapping[str, LocalDataset]) -> tuple[Array, Array | None, list[str]]:
    """(standardised features, labels or None, ids) restricted to the intersection, rows ordered by id."""
    ids, x, y, _ = inputs["train"].load()
    if ids is None:
        raise HeteroLRError("the training dataset has no id column: rows cannot be aligned")
    listed = [str(i) for i in ids.tolist()]
    keep = list(range(len(listed)))
    if "intersection" in inputs:
        wanted, _, _, _ = inputs["intersection"].load()
        chosen = set() if wanted is None else {str(i) for i in wanted.tolist()}
        keep = [i for i in keep if listed[i] in chosen]
        if len(keep) != len(chosen):
            raise HeteroLRError(f"{len(chosen) - len(keep)} intersection ids are not in the training dataset")
    order = sorted(keep, key=lambda i: listed[i])
    return maths.standardise(x[order]), None if y is None else y[order], [listed[i] for i in order]


class HeteroLR:
    """Component ``hetero_lr``: dispatches to the party's role."""

    async def run(self, ctx: TaskContext) -> ComponentResult:
        if ctx.role == "arbiter":
            return await Arbiter(ctx).run()
        if ctx.role in ("guest", "host"):
            return await Learner(ctx).run()
        raise ValueError(f"hetero_lr has the roles guest, host and arbiter, not {ctx.role!r}")


class Arbiter:
    """Holds the Paillier key: decrypts masked gradients and the loss, decides when training stops."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx

    async def run(self) -> ComponentResult:
        ctx = self.ctx
        saved = ctx.checkpoints.latest()
        # The key pair is made and kept by the node's accelerator (its service, or the in-process path):
        # the private key never leaves it, and the arbiter decrypts through ctx.accel by key id.
        if saved is None:
            key = await ctx.accel.generate_key(int(ctx.params["key_bits"]))
        else:  # the checkpoint names the job's key by its public form; the accelerator still holds it
            key = codec.key_of(_raw(saved[1], "key"))
        parties = [*ctx.roles["guest"], *ctx.roles.get("host", [])]
        await ctx.channel.send("guest", "hlr.key", 0, {"key": codec.key_bytes(key)})
        await ctx.channel.send("host", "hlr.key", 0, {"key": codec.key_bytes(key)})
        meta = await ctx.channel.gather("guest", "hlr.meta", 0, deadline=ctx.round_deadline)
        rows = int(_tensor(next(iter(meta.values())), "shape")[0])
        schedule = Schedule.of(ctx.params, ctx.seed)
        losses: list[float] = [] if saved is None else [float(x) for x in np.asarray(saved[1]["losses"])]
        start = 0 if saved is None else saved[0] + 1
        round_no = sum(len(schedule.batches(rows, e)) for e in range(start))
        single_host = len(ctx.roles.get("host", [])) == 1
        for epoch in range(start, schedule.max_epochs):
            total = 0.0
            for _ in schedule.batches(rows, epoch):
                got = await side_by_side(*(self._answer(party, key, round_no) for party in parties))
                for message in got:
                    if single_host and "loss" in message:
                        loss = codec.vector_of(_raw(message, "loss"), key)
                        total += float((await ctx.accel.decrypt(loss))[0])
                round_no += 1
            if single_host:
                losses.append(total / rows)
            stop = single_host and maths.converged(losses, schedule.tol)
            verdict = {"loss": np.array([losses[-1] if losses else np.nan]), "stop": np.array([int(stop)])}
            await ctx.channel.send("guest", "hlr.epoch", epoch, verdict)
            await ctx.channel.send("host", "hlr.epoch", epoch, verdict)
            ctx.checkpoints.save(epoch, {"losses": np.array(losses), "key": codec.key_bytes(key)})
            ctx.report(epoch, {"loss": losses[-1]} if losses else {})
            if stop:
                break
        return ComponentResult(
            model={},
            metrics={
                "epochs": float(len(losses) or schedule.max_epochs),
                "rounds": float(round_no),
                **({"loss": losses[-1]} if losses else {}),
            },
        )

    async def _answer(self, party: str, key: PublishedKey, round_no: int) -> Message:
        """Wait for ``party``'s masked gradient, decrypt it and send it back; the message (its loss, if any)."""
        ctx = self.ctx
        got = await ctx.channel.gather(party, "hlr.grad", round_no, deadline=ctx.round_deadline)
        message = got[party]
        vector = codec.vector_of(_raw(message, "gradient"), key)
        plain, _ = await ctx.accel.decrypt_mantissas(vector)
        masked = masking.unpack(plain, _tensor(message, "layout"))
        await ctx.channel.send(party, "hlr.grad.plain", round_no, {"masked": codec.ints_bytes(masked)})
        return message


class Learner:
    """The guest (labels, some features, the intercept) or a host (other features): computes and updates its weights."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.guest = ctx.role == "guest"
        self.hosts = list(ctx.roles.get("host", []))
        self.pack = bool(ctx.params["pack_gradients"])
        self.fast = bool(ctx.params["fast_encrypt"])

    async def run(self) -> ComponentResult:
        ctx = self.ctx
        x, labels, _ = load_aligned(ctx.inputs)
        if self.guest:
            if labels is None:
                raise HeteroLRError("the guest's training dataset has no label column")
            y = maths.signed(labels)
            x = maths.with_intercept(x)
            await ctx.channel.send("host", "hlr.meta", 0, {"shape": np.array(x.shape, dtype=np.int64)})
            await ctx.channel.send("arbiter", "hlr.meta", 0, {"shape": np.array(x.shape, dtype=np.int64)})
        else:
            y = np.zeros(0)
            meta = await ctx.channel.gather("guest", "hlr.meta", 0, deadline=ctx.round_deadline)
            rows = int(_tensor(next(iter(meta.values())), "shape")[0])
            if rows != x.shape[0]:
                raise HeteroLRError(
                    f"the guest has {rows} aligned rows, this host {x.shape[0]}: align them by PSI first"
                )
        got = await ctx.channel.gather("arbiter", "hlr.key", 0, deadline=ctx.round_deadline)
        key = codec.key_of(_raw(next(iter(got.values())), "key"))
        schedule = Schedule.of(ctx.params, ctx.seed)
        saved = ctx.checkpoints.latest()
        w = np.zeros(x.shape[1]) if saved is None else np.asarray(saved[1]["w"], dtype=np.float64)
        start = 0 if saved is None else saved[0] + 1
        penalised = np.ones(x.shape[1])
        if self.guest:
            penalised[-1] = 0.0  # the intercept
        round_no = sum(len(schedule.batches(x.shape[0], e)) for e in range(start))
        epochs, loss = start, float("nan")
        for epoch in range(start, schedule.max_epochs):
            for batch in schedule.batches(x.shape[0], epoch):
                step = await (
                    self._guest_round(key, x[batch], y[batch], w, round_no)
                    if self.guest
                    else self._host_round(key, x[batch], w, round_no)
                )
                w = w - schedule.learning_rate * (step + schedule.alpha * penalised * w)
                round_no += 1
            verdict = await ctx.channel.gather("arbiter", "hlr.epoch", epoch, deadline=ctx.round_deadline)
            message = next(iter(verdict.values()))
            loss, epochs = float(_tensor(message, "loss")[0]), epoch + 1
            ctx.checkpoints.save(epoch, {"w": w})
            ctx.report(epoch, {"loss": loss})
            if int(_tensor(message, "stop")[0]):
                break
        model = {"weights": w[:-1], "intercept": w[-1:]} if self.guest else {"weights": w}
        return ComponentResult(model=model, metrics={"epochs": float(epochs), "rounds": float(round_no), "loss": loss})

    async def _encrypted_u(self, key: PublishedKey, u: Array) -> EncryptedVector:
        return await self.ctx.accel.encrypt(key, u, fast=self.fast, value_bound=U_BOUND)

    async def _host_round(self, key: PublishedKey, x: Array, w: Array, round_no: int) -> Array:
        ctx = self.ctx
        u = x @ w
        if len(self.hosts) == 1:  # the loss's u_h^2 term; with several hosts their cross terms are missing
            vector, square = await side_by_side(
                self._encrypted_u(key, u), ctx.accel.encrypt(key, [float(u @ u)], fast=self.fast)
            )
            message = {"u": codec.vector_bytes(vector), "u2": codec.vector_bytes(square)}
        else:
            message = {"u": codec.vector_bytes(await self._encrypted_u(key, u))}
        await ctx.channel.send("guest", "hlr.u", round_no, message)
        got = await ctx.channel.gather("guest", "hlr.d", round_no, deadline=ctx.round_deadline)
        d = codec.vector_of(_raw(next(iter(got.values())), "d"), key)
        return await self._gradient(d, x, round_no, None)

    async def _guest_round(self, key: PublishedKey, x: Array, y: Array, w: Array, round_no: int) -> Array:
        ctx = self.ctx
        u_g = x @ w
        got = await ctx.channel.gather("host", "hlr.u", round_no, deadline=ctx.round_deadline)
        parts = [codec.vector_of(_raw(got[h], "u"), key) for h in self.hosts]
        u_h = parts[0]
        for other in parts[1:]:
            u_h = await ctx.accel.add(u_h, other)
        # [[d]] = 1/4 ([[u_h]] + u_g - 2y): the 1/4 is exact at 2 fractional bits
        d = await ctx.accel.mul_plain(await ctx.accel.add_plain(u_h, u_g - 2.0 * y), 0.25, precision=2)
        await ctx.channel.send("host", "hlr.d", round_no, {"d": codec.vector_bytes(d)})
        if len(self.hosts) != 1:
            return await self._gradient(d, x, round_no, None)
        loss = asyncio.ensure_future(self._loss(got[self.hosts[0]], key, u_h, u_g, y))
        try:
            return await self._gradient(d, x, round_no, loss)
        finally:  # done by then, unless the gradient failed first: then it stops here, its error not lost
            loss.cancel()
            await asyncio.gather(loss, return_exceptions=True)

    async def _loss(
        self, message: Message, key: PublishedKey, u_h: EncryptedVector, u_g: Array, y: Array
    ) -> EncryptedVector:
        """[[sum_i log 2 - y_i u_i / 2 + u_i^2 / 8]] with u = u_g + u_h, from [[u_h]] and [[sum u_h^2]]."""
        accel = self.ctx.accel
        cross = await accel.dot(u_h, 0.25 * u_g - 0.5 * y, precision=LOSS_PRECISION)  # the terms linear in u_h
        u2 = codec.vector_of(_raw(message, "u2"), key)
        square = await accel.mul_plain(u2, 0.125, precision=LOSS_PRECISION)  # same exponent as cross
        plain = maths.taylor_loss_sum(u_g, y)
        return await accel.add_plain(await accel.add(cross, square), plain)

    async def _gradient(
        self, d: EncryptedVector, x: Array, round_no: int, loss: asyncio.Future[EncryptedVector] | None
    ) -> Array:
        """X^T [[d]], masked (and packed), decrypted by the arbiter, unmasked and divided by B here.

        ``loss``, computed meanwhile, travels with the guest's gradient.
        """
        ctx = self.ctx
        gradient = await ctx.accel.transpose_dot(d, x, precision=X_PRECISION)
        sent, masks = await masking.mask_and_pack(ctx.accel, gradient, self.pack)
        message: dict[str, Any] = {"gradient": codec.vector_bytes(sent), "layout": masks.layout()}
        if loss is not None:
            message["loss"] = codec.vector_bytes(await loss)
        await ctx.channel.send("arbiter", "hlr.grad", round_no, message)
        got = await ctx.channel.gather("arbiter", "hlr.grad.plain", round_no, deadline=ctx.round_deadline)
        masked, _ = codec.ints_of(_raw(next(iter(got.values())), "masked"))
        step: Array = masks.unmask(masked) / x.shape[0]
        return step
