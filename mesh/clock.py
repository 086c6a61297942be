"""The federation's clock: wall time in milliseconds since the Unix epoch, the unit of every signed time."""

from __future__ import annotations

import time


def now_ms() -> int:
    """This machine's wall time in whole milliseconds since the epoch: ``issued_at``, ``expires_at``, ``not_after``.

    Receivers compare such times across machines, so they tolerate the skew ``mesh.trust.SKEW_MS``.
    """
    return time.time_ns() // 1_000_000
