"""A Paillier backend whose work runs on worker processes: the cores, not threads.

``PooledBackend`` implements ``PaillierBackend`` by cutting each list into one contiguous
slice per worker and running the gmpy2 backend on each slice in a ``ProcessPoolExecutor``
(processes, because big-integer arithmetic holds the GIL). Elementwise results are
concatenated; ``dot`` and ``sum`` multiply the partial products modulo n^2. ``matmul`` gives each
worker a contiguous block of the matrix's rows over all the bases (each worker's multi-exponentiation
then shares its bases' inverses across its rows); a matrix of fewer rows than workers is cut by
terms instead, like ``dot``, and the partial products multiplied row by row. Every vector
operation above the seam (encoding, bounds, packing) is unchanged, so its overflow checks
hold for pooled work too.

Each worker builds a backend per key once (the fixed-base tables of key-owner and DJN
encryption are the costly part) and keeps it for the life of the process.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from accel import _gmp
from accel.backend import PaillierBackend
from accel.errors import MissingPrivateKeyError, ShapeMismatchError
from accel.gmp_backend import Encryption, Gmpy2Backend
from accel.keys import PrivateKey, PublicKey
from accel.wire import PublishedKey

#: Below this many items per worker a slice costs more to ship than to compute.
MIN_SLICE = 8
#: How often a worker checks that the process that started it is still there (seconds).
PARENT_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class KeySpec:
    """Everything a worker needs to build the backend: plain integers, cheap to pickle."""

    n: int
    p: int | None
    q: int | None
    encryption: str
    djn_base: int | None
    djn_exponent_bits: int | None


@functools.lru_cache(maxsize=16)
def _backend(spec: KeySpec) -> Gmpy2Backend:
    public = PublicKey(spec.n)
    private = None if spec.p is None or spec.q is None else PrivateKey(public, spec.p, spec.q)
    return Gmpy2Backend(
        public,
        private,
        encryption=Encryption(spec.encryption),
        djn_base=spec.djn_base,
        djn_exponent_bits=spec.djn_exponent_bits,
    )


def _run(spec: KeySpec, method: str, args: tuple[Sequence[Any], ...]) -> Any:
    """In a worker: one backend call on one slice; mpz results go back as ints."""
    result = getattr(_backend(spec), method)(*args)
    return [int(x) for x in result] if isinstance(result, list) else int(result)


def _ready() -> int:
    return os.getpid()


def _worker_start(parent: int) -> None:
    """In each worker, first: leave Ctrl-C to the parent, and end when the parent is gone.

    A terminal sends Ctrl-C to the whole process group, and the parent stops its workers itself. A parent
    killed or crashed runs no clean-up, and a worker holds the private keys it decrypts with, which must not
    outlive the node.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class WorkerPool:
    """``workers`` processes (started with ``spawn``: the parent runs an event loop and threads).

    A pool whose worker died (killed, out of memory) is started again at the next submit: the request that met
    the death fails (``BrokenProcessPool``), the ones after it run.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.workers = workers
        #: slices submitted so far (what the workers were given to do)
        self.submitted = 0
        #: times the pool was started again after a worker died
        self.restarts = 0
        self._lock = threading.Lock()
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_start,
            initargs=(os.getpid(),),
        )

    def warm(self) -> list[int]:
        """Start every worker now (spawning takes a while), so the first request is not the one that waits."""
        return sorted({f.result() for f in [self._submit(_ready) for _ in range(self.workers * 2)]})

    def submit(self, spec: KeySpec, method: str, args: tuple[Sequence[Any], ...]) -> Future[Any]:
        """Run one backend method on one slice in a worker; the future of its result."""
        self.submitted += 1
        return self._submit(_run, spec, method, args)

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        with self._lock:
            try:
                return self._executor.submit(fn, *args)
            except BrokenProcessPool:
                broken, self._executor = self._executor, self._start()
                self.restarts += 1
            broken.shutdown(wait=False, cancel_futures=True)
            return self._executor.submit(fn, *args)

    def close(self) -> None:
        """Stop the workers, cancelling what has not started."""
        with self._lock:
            executor = self._executor
        executor.shutdown(wait=True, cancel_futures=True)


class PooledBackend:
    """``PaillierBackend`` over a ``WorkerPool``: the gmpy2 backend, slice by slice, on every worker."""

    def __init__(
        self,
        pool: WorkerPool,
        public_key: PublicKey,
        private_key: PrivateKey | None = None,
        *,
        encryption: Encryption = Encryption.TEXTBOOK,
        djn_base: int | None = None,
        djn_exponent_bits: int | None = None,
    ) -> None:
        if private_key is not None:
            public_key.check_same(private_key.public_key)
        self.pool = pool
        self.public_key = public_key
        self._private_key = private_key
        self.name = f"pool{pool.workers}-gmpy2-{encryption.value}"
        self.spec = KeySpec(
            public_key.n,
            None if private_key is None else private_key.p,
            None if private_key is None else private_key.q,
            encryption.value,
            djn_base,
            djn_exponent_bits,
        )
        self._n2 = _gmp.mpz(public_key.nsquare)

    @property
    def private_key(self) -> PrivateKey | None:
        """The private key the workers decrypt with, if this backend was given one."""
        return self._private_key

    def _map(self, method: str, *columns: Sequence[int]) -> list[Any]:
        """Run ``method`` on one slice of the columns per worker; the results in slice order."""
        size = len(columns[0])
        if any(len(c) != size for c in columns):
            raise ShapeMismatchError(f"operands of lengths {[len(c) for c in columns]}")
        parts = max(1, min(self.pool.workers, size // MIN_SLICE))
        step = -(-size // parts) if size else 0
        futures = [
            self.pool.submit(self.spec, method, tuple(list(c[i : i + step]) for c in columns))
            for i in range(0, size, step or 1)
        ] or [self.pool.submit(self.spec, method, tuple([] for _ in columns))]
        return [f.result() for f in futures]

    def _concat(self, method: str, *columns: Sequence[int]) -> list[int]:
        return [x for part in self._map(method, *columns) for x in part]

    def _product(self, parts: list[int]) -> int:
        total = _gmp.mpz(1)
        for part in parts:
            total = total * part % self._n2
        return int(total)

    def encrypt(self, plaintexts: Sequence[int]) -> list[int]:
        """Encrypt slice by slice on the workers."""
        return self._concat("encrypt", plaintexts)

    def decrypt(self, ciphertexts: Sequence[int]) -> list[int]:
        """Decrypt slice by slice on the workers (they hold the factorisation in ``spec``)."""
        if self._private_key is None:
            raise MissingPrivateKeyError(f"the {self.name} backend was built without the private key")
        return self._concat("decrypt", ciphertexts)

    def add(self, a: Sequence[int], b: Sequence[int]) -> list[int]:
        """Add slice by slice on the workers."""
        return self._concat("add", a, b)

    def add_plain(self, a: Sequence[int], plaintexts: Sequence[int]) -> list[int]:
        """Add plaintexts slice by slice on the workers."""
        return self._concat("add_plain", a, plaintexts)

    def mul_plain(self, a: Sequence[int], scalars: Sequence[int]) -> list[int]:
        """Multiply by scalars slice by slice on the workers."""
        return self._concat("mul_plain", a, scalars)

    def dot(self, a: Sequence[int], scalars: Sequence[int]) -> int:
        """Partial dot products on the workers, multiplied together here."""
        return self._product(self._map("dot", a, scalars))

    def matmul(self, a: Sequence[int], rows: Sequence[Sequence[int]]) -> list[int]:
        """Rows shared between the workers (fewer rows than workers: one ``dot`` per row, sliced)."""
        for row in rows:
            if len(row) != len(a):
                raise ShapeMismatchError(f"operands of lengths {len(a)} and {len(row)}")
        if len(rows) < self.pool.workers:
            return [self.dot(a, row) for row in rows]
        bases = list(a)
        step = -(-len(rows) // self.pool.workers)
        futures = [
            self.pool.submit(self.spec, "matmul", (bases, [list(r) for r in rows[i : i + step]]))
            for i in range(0, len(rows), step)
        ]
        return [x for f in futures for x in f.result()]

    def sum(self, a: Sequence[int]) -> int:
        """Partial sums on the workers, multiplied together here."""
        return self._product(self._map("sum", a))


def pooled(pool: WorkerPool) -> Callable[[PublishedKey, PrivateKey | None, Encryption, int | None], PaillierBackend]:
    """An engine's backend maker (``accel.engine.MakeBackend``) whose backends run on ``pool``'s workers."""

    def make(
        published: PublishedKey, private: PrivateKey | None, mode: Encryption, djn_base: int | None
    ) -> PaillierBackend:
        return PooledBackend(
            pool,
            published.public_key,
            private,
            encryption=mode,
            djn_base=djn_base,
            djn_exponent_bits=published.djn_exponent_bits,
        )

    return make
