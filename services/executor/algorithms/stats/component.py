"""Pooled mean and variance: hosts send sufficient statistics; the aggregator combines and returns them."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from services.executor.api import ComponentResult, TaskContext

MOMENTS, POOLED = "stats.moments", "stats.pooled"


def moments(x: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[np.float64]]:
    """One party's sufficient statistics: row count, per-feature sum and sum of squares."""
    return {"n": np.array([float(len(x))]), "sum": x.sum(axis=0), "sumsq": np.square(x).sum(axis=0)}


def pool(parts: list[dict[str, Any]], ddof: int) -> dict[str, npt.NDArray[np.float64]]:
    """The mean and variance of the union of the parties' rows, from their moments alone."""
    n = sum(float(p["n"][0]) for p in parts)
    if n <= ddof:
        raise ValueError(f"{n:.0f} rows in all: too few for ddof={ddof}")
    total = np.sum([p["sum"] for p in parts], axis=0)
    squares = np.sum([p["sumsq"] for p in parts], axis=0)
    mean = total / n
    # sum((x - mean)^2) = sumsq - n mean^2; clipped at 0 against rounding on constant features
    variance = np.maximum(squares - n * np.square(mean), 0.0) / (n - ddof)
    return {"n": np.array([n]), "mean": mean, "variance": variance}


class FederatedStats:
    """Roles: every ``host`` brings a dataset; the ``aggregator`` pools. Everyone ends with the same result."""

    async def run(self, ctx: TaskContext) -> ComponentResult:
        ddof = int(ctx.params.get("ddof", 0))
        if ctx.role == "host":
            _, x, _, names = ctx.inputs["data"].load()
            message = moments(x) | {"features": json.dumps(names).encode()}
            await ctx.channel.send("aggregator", MOMENTS, 0, message)
            got = await ctx.channel.gather("aggregator", POOLED, 0, deadline=ctx.round_deadline)
            result = dict(next(iter(got.values())))
        else:
            got = await ctx.channel.gather("host", MOMENTS, 0, deadline=ctx.round_deadline)
            names_seen = {bytes(m["features"]) for m in got.values()}
            if len(names_seen) != 1:
                raise ValueError("the hosts' datasets do not have the same feature columns")
            parts = [dict(m) for m in got.values()]
            result = pool(parts, ddof) | {"features": names_seen.pop()}
            await ctx.channel.send("host", POOLED, 0, result)
        model = {k: np.asarray(v) for k, v in result.items() if k != "features"}
        ctx.report(0, {"rows": float(model["n"][0])})
        return ComponentResult(model=model, metrics={"rows": float(model["n"][0])})
