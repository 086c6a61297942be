"""Benchmark component: plaintext FedAvg rounds of a float64 vector of ``size`` parameters, timed at the aggregator.

Each round every host sends its update to the aggregator, which averages them and sends the model
back to the host role; each party's metrics are its rounds' wall times (``round_<n>_seconds``).
"""

from __future__ import annotations

import time

import numpy as np

from services.executor.api import ComponentResult, JobContext


class RoundTrip:
    async def run(self, ctx: JobContext) -> ComponentResult:
        rounds, size = int(ctx.params["rounds"]), int(ctx.params["size"])
        rng = np.random.default_rng(ctx.seed + sum(map(ord, ctx.me)))
        model = np.zeros(size)
        seconds: dict[str, float] = {}
        for r in range(rounds):
            started = time.perf_counter()
            if ctx.role == "host":
                await ctx.channel.send("aggregator", "update", r, {"w": model + rng.normal(0, 1, size)})
                got = await ctx.channel.gather("aggregator", "model", r, deadline=ctx.round_deadline)
                model = next(iter(got.values()))["w"]  # type: ignore[assignment]
            else:
                got = await ctx.channel.gather("host", "update", r, deadline=ctx.round_deadline)
                model = np.mean([np.asarray(m["w"]) for m in got.values()], axis=0)
                await ctx.channel.send("host", "model", r, {"w": model})
            seconds[f"round_{r}_seconds"] = time.perf_counter() - started
            ctx.report(r, {"seconds": seconds[f"round_{r}_seconds"]})
        return ComponentResult({"w": model}, seconds)
