"""``interfed bench psi``: where the CPU time of one ECDH-PSI goes, and end-to-end runs at several sizes.

The stages are timed one by one in this process (CPU time, ``time.process_time``) on a sample
of ids, as the component runs them: reading the id column, hashing to the curve, the X25519
blinding (libsodium, which the component uses, and OpenSSL through ``cryptography``, the
alternative, timed in turns), the round trip of a batch to a worker process (pickling), the batch messages and
the final matching. A run with ``n`` ids per side does each stage a known number of times per
id (``per_run``: 2 for what both sides do to their own ids, 4 for the blindings), so the CPU
seconds of a run and its lower bound on the machine's cores follow; the end-to-end runs
(``bench.vertical.run_psi``, both parties in one process over ``LocalChannel``) show how close
the component comes to that bound.
"""

from __future__ import annotations

import pickle
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from services.executor.algorithms.psi import component, curve
from services.executor.api import LocalDataset


@dataclass(frozen=True)
class Stage:
    name: str
    micros_per_id: float  # CPU microseconds per id, measured
    per_run: int  # times a run with n ids per side does it, per n (0: measured for comparison only)

    def run_seconds(self, ids_per_side: int) -> float:
        return self.micros_per_id * self.per_run * ids_per_side / 1e6


def _cpu(fn: Callable[[], object], items: int) -> float:
    started = time.process_time()
    fn()
    return (time.process_time() - started) / items * 1e6


def _interleaved(fns: list[Callable[[bytes], object]], items: bytes, rounds: int = 10) -> list[float]:
    """CPU microseconds per point of each of ``fns``, taking turns on slices of ``items``: a shared
    machine's load then weighs on each alike, where timing one after the other would not."""
    step = -(-len(items) // curve.POINT_BYTES // rounds) * curve.POINT_BYTES
    spent = [0.0] * len(fns)
    for start in range(0, len(items), step):
        for i, fn in enumerate(fns):
            began = time.process_time()
            fn(items[start : start + step])
            spent[i] += time.process_time() - began
    return [t / (len(items) // curve.POINT_BYTES) * 1e6 for t in spent]


def _openssl_blind(scalar: bytes, points: bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(scalar)
    return b"".join(
        key.exchange(X25519PublicKey.from_public_bytes(points[i : i + curve.POINT_BYTES]))
        for i in range(0, len(points), curve.POINT_BYTES)
    )


def stage_costs(sample: int, batch: int = 8192, truncate_bytes: int = 16) -> list[Stage]:
    """Each stage's CPU cost per id, on ``sample`` ids."""
    ids = [f"id{i}" for i in range(sample)]
    with tempfile.TemporaryDirectory(prefix="interfed-bench-psi-") as root:
        path = Path(root) / "ids.csv"
        path.write_text("id\n" + "".join(f"{i}\n" for i in ids))
        dataset = LocalDataset("ids", path, {"id": "id"})
        read = _cpu(lambda: dataset.load()[0].astype(np.str_).tolist(), sample)  # type: ignore[union-attr]
    scalar = curve.new_scalar()
    hashed = b"".join(curve.hash_to_u(i) for i in ids)
    first = curve.blind(scalar, hashed)
    batches = [ids[i : i + batch] for i in range(0, sample, batch)]
    sodium, openssl = _interleaved([lambda p: curve.blind(scalar, p), lambda p: _openssl_blind(scalar, p)], hashed)

    def round_trips() -> None:  # the ids or points to a worker and the 32-byte results back, as the pool pickles them
        for start in range(0, sample, batch):
            # our own objects, pickled and read back in this process, as the pool does with them
            pickle.loads(pickle.dumps((scalar, batches[start // batch])))  # noqa: S301
            pickle.loads(pickle.dumps(first[start * 32 : (start + batch) * 32]))  # noqa: S301

    def messages() -> None:  # build and check one side's first-stage and second-stage batch messages
        for index, start in enumerate(range(0, sample, batch)):
            chunk = first[start * 32 : (start + batch) * 32]
            component.read_batch(component.batch_message(index, False, len(chunk) // 32, chunk), index, 32)
            component.truncated(chunk, truncate_bytes)

    def matching() -> None:  # the guest's dictionary of the host's values, and a lookup per own value
        theirs = component.truncated(first, truncate_bytes)
        position = {v: i for i, v in enumerate(theirs)}
        sum(1 for v in theirs if v in position)

    return [
        Stage("read the id column (CSV)", read, 2),
        Stage("hash to the curve (SHA-512)", _cpu(lambda: [curve.hash_to_u(i) for i in ids], sample), 2),
        Stage("X25519 blinding, libsodium (both stages)", sodium, 4),
        Stage("X25519 blinding, OpenSSL via cryptography (not used)", openssl, 0),
        Stage("batch to a worker and back (pickle)", _cpu(round_trips, sample), 4),
        Stage("batch messages and truncation", _cpu(messages, sample), 2),
        Stage("matching (the guest's dictionary and lookups)", _cpu(matching, sample), 1),
    ]
