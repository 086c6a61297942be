"""A test component: hosts move a shared vector towards their feature means, the aggregator averages by row count.

Each round, every host sends (its step from the current model, its row count) to the aggregator,
which sends back the weighted average; all end with the same model. Deterministic, checkpointed
each round, so a party killed and restarted resumes and the result is that of an uninterrupted run.
With ``busy``, each party spends its ``pause`` in its accelerator (encrypting under a small key of
its own) instead of sleeping: a party stopped mid-round is then almost surely inside a Paillier call.
"""

from __future__ import annotations

import asyncio

import numpy as np

from services.executor.api import ComponentResult, JobContext


class FederatedMean:
    async def run(self, ctx: JobContext) -> ComponentResult:
        rounds, rate, pause = int(ctx.params["rounds"]), float(ctx.params["rate"]), float(ctx.params["pause"])
        busy = bool(ctx.params["busy"])
        key = await ctx.accel.generate_key(512) if busy else None
        start, model = 0, None
        saved = ctx.checkpoints.latest()
        if saved is not None:
            start, state = saved[0] + 1, saved[1]
            model = state["model"]
        if ctx.role == "host":
            _, x, _, _ = ctx.inputs["train"].load()
            mean, rows = x.mean(axis=0), np.array([len(x)], dtype=np.int64)
            if model is None:
                model = np.zeros_like(mean)
        for r in range(start, rounds):
            if ctx.role == "host":
                assert model is not None
                step = model + rate * (mean - model)
                await ctx.channel.send("aggregator", "step", r, {"step": step, "rows": rows})
                got = await ctx.channel.gather("aggregator", "model", r, deadline=ctx.round_deadline)
                model = next(iter(got.values()))["model"]
            else:
                got = await ctx.channel.gather("host", "step", r, deadline=ctx.round_deadline)
                weights = np.array([int(m["rows"][0]) for m in got.values()], dtype=np.float64)  # type: ignore[index]
                steps = np.stack([m["step"] for m in got.values()])  # type: ignore[misc]
                model = (steps * weights[:, None]).sum(axis=0) / weights.sum()
                await ctx.channel.send("host", "model", r, {"model": model})
            ctx.checkpoints.save(r, {"model": model})
            ctx.report(r, {"norm": float(np.linalg.norm(model))})
            if pause and key is not None:
                until = asyncio.get_running_loop().time() + pause
                while asyncio.get_running_loop().time() < until:
                    await ctx.accel.encrypt(key, np.ones(64))
            elif pause:
                await asyncio.sleep(pause)
        assert model is not None
        return ComponentResult({"model": model}, {"norm": float(np.linalg.norm(model))})
