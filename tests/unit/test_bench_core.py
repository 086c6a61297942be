"""The epoch core `interfed bench vertical` times beside HEU: its result check refuses wrong sums, and every path
it times (our accelerator, HEU's two schemes) computes X^T d within the fixed-point bound."""

from __future__ import annotations

import numpy as np
import pytest

from accel.client import AccelClient
from bench.vertical import CORE_BATCH, D_BITS, HEU_SCHEMES, checked, core_data, heu_core, our_core
from services.executor.algorithms.hetero_lr.component import X_PRECISION

ROWS = CORE_BATCH + 44  # a whole batch and a short one


def _fixed_point(x: np.ndarray, d: np.ndarray) -> list[np.ndarray]:
    """X^T d per batch on the rounded encodings, as an exact fixed-point computation would give it."""
    out = []
    for start in range(0, len(d), CORE_BATCH):
        xb = np.rint(np.ldexp(x[start : start + CORE_BATCH], X_PRECISION))
        db = np.rint(np.ldexp(d[start : start + CORE_BATCH], D_BITS))
        out.append(np.ldexp(xb.T @ db, -(X_PRECISION + D_BITS)))
    return out


def test_the_check_accepts_fixed_point_sums_and_refuses_a_lost_term_a_wrong_sign_or_a_missing_batch() -> None:
    x, d = core_data(ROWS)
    good = _fixed_point(x, d)
    assert 0 < checked("fixed point", x, d, good) <= 1
    j = int(np.argmax(np.abs(x[:CORE_BATCH]).max(axis=1) * np.abs(d[:CORE_BATCH])))  # the batch's largest term
    lost = [good[0] - x[j] * d[j], *good[1:]]
    with pytest.raises(RuntimeError, match="past its fixed-point bound"):
        checked("a lost term", x, d, lost)
    with pytest.raises(RuntimeError, match="past its fixed-point bound"):
        checked("a wrong sign", x, d, [-good[0], *good[1:]])
    with pytest.raises(RuntimeError, match="2 batches"):
        checked("a missing batch", x, d, good[:1])
    with pytest.raises(RuntimeError, match="shape"):
        checked("a missing sum", x, d, [good[0][:-1], *good[1:]])


async def test_our_accelerator_computes_the_core_within_the_fixed_point_bound() -> None:
    x, d = core_data(ROWS)
    seconds, _, results = await our_core(x, d, AccelClient.in_process("party"), AccelClient.in_process("arbiter"), 1024)
    assert seconds > 0
    assert checked("ours", x, d, results) <= 1


@pytest.mark.parametrize("scheme", sorted(HEU_SCHEMES))
def test_heu_computes_the_core_within_the_fixed_point_bound(scheme: str) -> None:
    pytest.importorskip("heu", reason="HEU is the bench extra: pip install -e '.[bench]'")
    x, d = core_data(ROWS)
    row = heu_core(x, d, scheme, 1024)
    assert row.path.startswith(f"HEU {HEU_SCHEMES[scheme]}")
    assert row.seconds > 0
    assert row.error <= 1
