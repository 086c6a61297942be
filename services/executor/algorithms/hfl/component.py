"""FedAvg as a component: data parties train locally, the aggregator averages, optionally under secure aggregation.

Round 0 ("setup") establishes row counts, feature count and keys; rounds 1..epochs each
carry one FedAvg step. docs/algorithms.md gives every message and what each scheme tolerates.
A party sends u_i = (n_i / N) (w_i - w), N the rows of all parties; the aggregator forms
w + (N / sum_{i in S} n_i) sum_{i in S} u_i over the survivors S, which is the sample-weighted
FedAvg average of the survivors' local models.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import numpy.typing as npt

from accel import Gmpy2Backend, Packer, PrivateKey, PublicKey, generate_keypair
from services.executor.api import ComponentResult, Message, QuorumError, TaskContext

from . import secure
from .config import Config, ConfigError, Setup
from .models import ModelSpec, Vector
from .rounds import (
    ANSWER_DEADLINES,
    abort_message,
    blob,
    gather_each,
    gather_one,
    names,
    restore,
    save,
    send_each,
    tensor,
)


class FedAvg:
    """The HFL component: what it does depends on the role it plays in the job."""

    async def run(self, ctx: TaskContext) -> ComponentResult:
        config = Config.of(ctx.params, ctx.roles, ctx.seed, ctx.job_id)
        if ctx.role == "aggregator":
            return await _aggregate(ctx, config)
        if ctx.role in {"guest", "host"}:
            return await _train(ctx, config)
        if ctx.role == "arbiter":
            return await _hold_key(ctx, config)
        raise ConfigError(f"HFL has no role {ctx.role!r}")


# -- the data parties ------------------------------------------------------------------------


def _load(ctx: TaskContext, config: Config) -> tuple[Vector, npt.NDArray[np.int64]]:
    if "train" not in ctx.inputs:
        raise ConfigError("an HFL party needs its 'train' dataset")
    _, x, y, _ = ctx.inputs["train"].load()
    if y is None:
        raise ConfigError("the 'train' dataset has no label column")
    labels = y.astype(np.int64)
    if len(labels) == 0 or np.any(labels != y) or labels.min() < 0 or labels.max() >= config.classes:
        raise ConfigError(f"labels must be integers in [0, {config.classes}) and the dataset not empty")
    return x, labels


async def _new_secret(ctx: TaskContext, config: Config) -> bytes:
    """This node's secret for the job: an X25519 key (masks) or, for the key holder, a Paillier key."""
    if config.secure_aggregation == "masks" and ctx.me in config.parties:
        return secure.private_bytes(secure.new_mask_key())
    if config.secure_aggregation == "paillier" and ctx.me == config.key_holder:
        pair = await asyncio.to_thread(generate_keypair, config.paillier_bits)  # seconds: keep the loop free
        return json.dumps({"p": str(pair.private_key.p), "q": str(pair.private_key.q)}).encode()
    return b""


def _private_key(secret: bytes) -> PrivateKey:
    factors = json.loads(secret)
    p, q = int(factors["p"]), int(factors["q"])
    return PrivateKey(PublicKey(p * q), p, q)


async def _setup(ctx: TaskContext, config: Config, secret: bytes, rows: int, features: int) -> Setup:
    """Round 0: every party tells all its rows, features and mask key; the key holder publishes its n."""
    everyone = [*config.parties, config.aggregator]
    deadline = ctx.round_deadline
    if ctx.me == config.key_holder and config.secure_aggregation == "paillier":
        n = _private_key(secret).public_key.n
        await send_each(ctx, everyone, "paillier-key", 0, {"n": str(n).encode()})
    if ctx.me in config.parties:
        message: dict[str, npt.NDArray[np.int64] | bytes] = {"counts": np.array([rows, features], dtype=np.int64)}
        if config.secure_aggregation == "masks":
            message["mask_key"] = secure.public_bytes(secure.mask_key(secret))
        await send_each(ctx, everyone, "setup", 0, message)
    setup = Setup()
    if ctx.me in everyone:
        got = await gather_each(ctx, config.parties, "setup", 0, deadline)
        for node, msg in got.items():
            counts = tensor(msg, "counts")
            setup.rows[node] = int(counts[0])
            setup.features = int(counts[1]) if setup.features in {0, int(counts[1])} else -1
            if config.secure_aggregation == "masks":
                setup.mask_keys[node] = blob(msg, "mask_key").hex()
        if setup.features < 1:
            raise ConfigError("the parties' datasets do not have the same number of features")
    if config.secure_aggregation == "paillier":
        if ctx.me == config.key_holder:
            setup.paillier_n = str(_private_key(secret).public_key.n)
        else:
            setup.paillier_n = blob(await gather_one(ctx, config.key_holder, "paillier-key", 0, deadline), "n").decode()
    return setup


def _spec(config: Config, setup: Setup) -> ModelSpec:
    return ModelSpec(config.model, setup.features, config.classes, config.hidden)


async def _start(ctx: TaskContext, config: Config, rows: int, features: int) -> tuple[int, Setup, Vector | None, bytes]:
    """Resume from the latest checkpoint, or run round 0 (the secret is saved before anything is sent)."""
    resumed = restore(ctx)
    if resumed is not None and resumed[1] is not None:
        round_no, setup, weights, secret = resumed
        assert setup is not None
        return round_no, setup, weights, secret
    secret = resumed[3] if resumed is not None else await _new_secret(ctx, config)
    save(ctx, 0, None, None, secret)
    setup = await _setup(ctx, config, secret, rows, features)
    has_model = ctx.me in config.parties or ctx.me == config.aggregator
    weights = _spec(config, setup).init(config.seed) if has_model else None
    save(ctx, 0, setup, weights, secret)
    return 0, setup, weights, secret


async def _train(ctx: TaskContext, config: Config) -> ComponentResult:
    x, y = _load(ctx, config)
    done, setup, weights, secret = await _start(ctx, config, len(y), x.shape[1])
    assert weights is not None
    spec, me = _spec(config, setup), config.index(ctx.me)
    metrics: dict[str, float] = {}
    for round_no in range(done + 1, config.epochs + 1):
        rng = np.random.default_rng([config.seed, round_no, me])
        local = spec.train(
            weights,
            x,
            y,
            epochs=config.local_epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            rng=rng,
        )
        update = (len(y) / setup.total_rows) * (local - weights)
        await ctx.channel.send(
            config.aggregator, "update", round_no, await _protect(ctx, config, setup, secret, update, round_no=round_no)
        )
        if config.secure_aggregation == "paillier" and ctx.me == config.key_holder:
            await _decrypt_sum(ctx, config, secret, round_no)
        if config.secure_aggregation == "masks":
            await _reveal(ctx, config, setup, secret, round_no)
        answer = await gather_one(ctx, config.aggregator, "global", round_no, ctx.round_deadline * ANSWER_DEADLINES)
        weights = tensor(answer, "weights").astype(np.float64)
        loss, _ = spec.loss_and_gradient(weights, x, y)
        metrics = {"loss": loss, "accuracy": spec.accuracy(weights, x, y)}
        ctx.report(round_no, metrics)
        save(ctx, round_no, setup, weights, secret)
    return ComponentResult(model=spec.unflatten(weights), metrics=metrics)


async def _protect(
    ctx: TaskContext, config: Config, setup: Setup, secret: bytes, update: Vector, *, round_no: int
) -> Message:
    """The update as this round's message: in the clear, masked, or packed and encrypted."""
    if config.secure_aggregation == "none":
        return {"update": update}
    if config.secure_aggregation == "masks":
        mine, me = secure.mask_key(secret), config.index(ctx.me)
        masked = secure.to_fixed(update)
        for peer in config.parties:
            if peer != ctx.me:
                seed = secure.round_seed(mine, bytes.fromhex(setup.mask_keys[peer]), config.job_id, round_no)
                masked = secure.apply_mask(
                    masked, secure.expand(seed, update.size), secure.pair_sign(me, config.index(peer))
                )
        return {"update": masked}
    if np.any(np.abs(update) > config.clip):
        raise secure.SecureAggregationError(
            f"an update value {float(np.abs(update).max()):.3g} exceeds the clip {config.clip:g}: raise 'clip'"
        )
    public = PublicKey(int(setup.paillier_n))
    packed = await ctx.accel.packed_encrypt(public, update, secure.packing_spec(config.clip, len(config.parties)))
    return secure.packed_to_message(packed)


async def _reveal(ctx: TaskContext, config: Config, setup: Setup, secret: bytes, round_no: int) -> None:
    """Answer the aggregator's survivor list: reveal this round's seeds with the dropped, if any."""
    told = await gather_one(ctx, config.aggregator, "survivors", round_no, ctx.round_deadline * ANSWER_DEADLINES)
    survivors = names(blob(told, "survivors"))
    dropped = [p for p in config.parties if p not in survivors]
    if ctx.me not in survivors or not dropped:
        return
    if len(survivors) < config.quorum:  # revealing then would hand the aggregator too few parties' sum
        raise secure.SecureAggregationError(f"asked to reveal seeds for {len(survivors)} survivors, below the quorum")
    mine = secure.mask_key(secret)
    seeds = {
        f"seed/{p}": secure.round_seed(mine, bytes.fromhex(setup.mask_keys[p]), config.job_id, round_no)
        for p in dropped
    }
    await ctx.channel.send(config.aggregator, "reveal", round_no, seeds)


# -- the key holder (Paillier) ------------------------------------------------------------------


async def _decrypt_sum(ctx: TaskContext, config: Config, secret: bytes, round_no: int) -> None:
    """Decrypt the aggregator's sum of the round, only if it sums at least a quorum of updates."""
    private = _private_key(secret)
    spec = secure.packing_spec(config.clip, len(config.parties))
    asked = await gather_one(ctx, config.aggregator, "sum", round_no, ctx.round_deadline * ANSWER_DEADLINES)
    vector = secure.packed_from_message(asked, private.public_key, spec)
    if vector.terms < config.quorum:
        raise secure.SecureAggregationError(f"asked to decrypt a sum of {vector.terms} updates, below the quorum")
    packer = Packer(Gmpy2Backend(private.public_key, private), spec)
    total = await asyncio.to_thread(packer.decrypt, vector)
    await ctx.channel.send(config.aggregator, "sum-plain", round_no, {"sum": total})


async def _hold_key(ctx: TaskContext, config: Config) -> ComponentResult:
    if config.secure_aggregation != "paillier":
        raise ConfigError("an arbiter takes part in HFL only as the Paillier key holder")
    done, setup, _, secret = await _start(ctx, config, 0, 0)
    for round_no in range(done + 1, config.epochs + 1):
        await _decrypt_sum(ctx, config, secret, round_no)
        save(ctx, round_no, setup, None, secret)
    return ComponentResult(model={}, metrics={})


# -- the aggregator ------------------------------------------------------------------------------


async def _aggregate(ctx: TaskContext, config: Config) -> ComponentResult:
    done, setup, weights, secret = await _start(ctx, config, 0, 0)
    assert weights is not None
    spec = _spec(config, setup)
    metrics: dict[str, float] = {}
    for round_no in range(done + 1, config.epochs + 1):
        try:
            updates = await _gather_updates(ctx, config, round_no)
            survivors = [p for p in config.parties if p in updates]
            total = await _sum(ctx, config, setup, updates, survivors, round_no=round_no)
        except QuorumError as error:  # tell every waiting party why, so the job fails with this reason
            await _abort(ctx, config, round_no, error)
            raise
        weights = weights + total * (setup.total_rows / sum(setup.rows[p] for p in survivors))
        await send_each(ctx, config.parties, "global", round_no, {"weights": weights})
        metrics = {"survivors": float(len(survivors)), "dropped": float(len(config.parties) - len(survivors))}
        ctx.report(round_no, metrics)
        save(ctx, round_no, setup, weights, secret)
    return ComponentResult(model=spec.unflatten(weights), metrics=metrics)


async def _gather_updates(ctx: TaskContext, config: Config, round_no: int) -> dict[str, Message]:
    """Every party's update by the deadline, at least a quorum of them (QuorumError otherwise)."""
    roles = [role for role in ("guest", "host") if ctx.roles.get(role)]
    answers = await asyncio.gather(
        *(ctx.channel.gather(role, "update", round_no, deadline=ctx.round_deadline, quorum=0) for role in roles)
    )
    arrived = {sender: message for answer in answers for sender, message in answer.items()}
    if len(arrived) < config.quorum:
        raise QuorumError("update", round_no, sorted(arrived), config.quorum)
    return arrived


async def _abort(ctx: TaskContext, config: Config, round_no: int, error: QuorumError) -> None:
    """Answer each message the others wait for in this round with the abort (the parties' reads are tag by tag)."""
    message = abort_message(error)
    if config.secure_aggregation == "masks":
        await send_each(ctx, config.parties, "survivors", round_no, message)
    if config.secure_aggregation == "paillier":
        await ctx.channel.send(config.key_holder, "sum", round_no, message)
    await send_each(ctx, config.parties, "global", round_no, message)


async def _sum(
    ctx: TaskContext, config: Config, setup: Setup, updates: dict[str, Message], survivors: list[str], *, round_no: int
) -> Vector:
    """The survivors' summed updates, recovered from masks or decrypted by the key holder as the scheme needs."""
    if config.secure_aggregation == "none":
        plain = np.zeros(tensor(updates[survivors[0]], "update").shape)
        for p in survivors:
            plain += tensor(updates[p], "update").astype(np.float64)
        return plain
    if config.secure_aggregation == "paillier":
        public = PublicKey(int(setup.paillier_n))
        spec = secure.packing_spec(config.clip, len(config.parties))
        vectors = [secure.packed_from_message(updates[p], public, spec) for p in survivors]
        summed = await ctx.accel.packed_add(*vectors) if len(vectors) > 1 else vectors[0]
        await ctx.channel.send(config.key_holder, "sum", round_no, secure.packed_to_message(summed))
        answer = await gather_one(ctx, config.key_holder, "sum-plain", round_no, ctx.round_deadline * ANSWER_DEADLINES)
        return tensor(answer, "sum").astype(np.float64)
    masked = [tensor(updates[p], "update").astype(np.uint64) for p in survivors]
    total = masked[0]
    for vector in masked[1:]:
        total = secure.apply_mask(total, vector, 1)
    await send_each(ctx, config.parties, "survivors", round_no, {"survivors": json.dumps(survivors).encode()})
    dropped = [p for p in config.parties if p not in survivors]
    if dropped:
        reveals = await gather_each(ctx, survivors, "reveal", round_no, ctx.round_deadline)
        for survivor in survivors:
            for peer in dropped:
                seed = blob(reveals[survivor], f"seed/{peer}")
                mask = secure.expand(seed, total.size)
                # the survivor added +-mask for this pair: take it out again
                total = secure.apply_mask(total, mask, -secure.pair_sign(config.index(survivor), config.index(peer)))
    return secure.from_fixed(total)
