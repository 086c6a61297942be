"""What a requester cannot make the accelerator's engine hold or compute: bounded caches and a maximum key size.

Requesters choose the keys they send (any odd n), so the engine's per-key caches (backends and
drawn DJN bases) are LRUs of documented sizes, and a key beyond the maximum size is refused with
its own code before anything is computed under it (docs/protocol.md §14.7).
"""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from accel import KeyPair, PackingSpec
from accel.client import request_record
from accel.engine import BACKEND_CACHE, DJN_BASE_CACHE, MAX_KEY_BITS, Engine
from accel.errors import AccelError, ClockSkewError, DeadlineExceededError, KeyTooLargeError
from accel.gmp_backend import Encryption, Gmpy2Backend
from accel.keys import PrivateKey, PublicKey
from accel.keystore import KeyStore
from accel.lru import Lru
from accel.packing import Packer
from accel.vector import Paillier
from accel.wire import PublishedKey, int_to_le, packed_record, plain_record, vector_record
from mesh.trust import SKEW_MS
from services.accel.service import time_allowed


def odd(bits: int) -> int:
    """A requester-chosen modulus: any odd number of exactly ``bits`` bits passes the record checks."""
    return secrets.randbits(bits) | (1 << (bits - 1)) | 1


class CountingEngine(Engine):
    def __init__(self) -> None:
        self.built: list[str] = []
        super().__init__("acc", KeyStore.empty(), self._build)

    def _build(
        self, published: PublishedKey, private: PrivateKey | None, mode: Encryption, djn_base: int | None
    ) -> Gmpy2Backend:
        self.built.append(published.key_id)
        return Gmpy2Backend(published.public_key, private, encryption=mode, djn_base=djn_base)


def encrypt_under(engine: Engine, n: int, fast: bool = False) -> None:
    request = request_record("acc", "ENCRYPT", PublicKey(n), plain=plain_record([1], 0))
    engine.compute(request | {"encryption": "FAST" if fast else "TEXTBOOK"}, "requester")


def test_the_backend_cache_keeps_at_most_its_size_and_the_most_recently_used() -> None:
    engine = CountingEngine()
    keys = [odd(256) for _ in range(BACKEND_CACHE + 40)]
    hot = keys[0]
    for n in keys:
        encrypt_under(engine, n)
        encrypt_under(engine, hot)  # used after every other key: never the least recently used
    assert len(engine.backends) == BACKEND_CACHE
    assert engine.built.count(PublishedKey(PublicKey(hot)).key_id) == 1
    encrypt_under(engine, keys[1])  # evicted long ago: built again
    assert engine.built.count(PublishedKey(PublicKey(keys[1])).key_id) == 2


def test_djn_bases_drawn_for_requesters_keys_are_bounded_too() -> None:
    engine = CountingEngine()
    for _ in range(DJN_BASE_CACHE + 10):
        encrypt_under(engine, odd(256), fast=True)
    assert len(engine.djn_bases) == DJN_BASE_CACHE
    assert len(engine.backends) == BACKEND_CACHE


def test_lru_evicts_the_least_recently_used_and_builds_once_per_stay() -> None:
    made: list[int] = []
    cache: Lru[int, int] = Lru(2)

    def get(k: int) -> int:
        return cache.get(k, lambda: made.append(k) or k * 10)

    assert [get(1), get(2), get(1), get(3), get(1), get(2)] == [10, 20, 10, 30, 10, 20]
    assert made == [1, 2, 3, 2]  # 2 was the least recently used when 3 came in
    assert len(cache) == 2
    with pytest.raises(ValueError, match="at least one"):
        Lru(0)


def test_a_key_beyond_the_maximum_size_is_refused_with_its_own_code_before_any_work() -> None:
    engine = CountingEngine()
    with pytest.raises(KeyTooLargeError, match=f"{MAX_KEY_BITS + 2} bits") as refused:
        encrypt_under(engine, odd(MAX_KEY_BITS + 2))
    assert refused.value.reason == "KEY_TOO_LARGE"
    assert not refused.value.retriable
    # a key of megabytes is refused by its length, before its integer is even read
    huge = request_record("acc", "SUM", PublicKey(3)) | {"key_id": "0" * 32}
    huge["public_key"] = huge["public_key"] | {"n": b"\xff" * (1 << 20)}
    with pytest.raises(KeyTooLargeError):
        engine.compute(huge, "requester")
    assert engine.built == []


def test_a_key_of_exactly_the_maximum_size_is_served() -> None:
    engine = CountingEngine()
    key = PublicKey(odd(MAX_KEY_BITS))
    backend = Gmpy2Backend(key)
    x = Paillier(backend).encrypt_encoded([1, 2], 0)
    request = request_record("acc", "ADD", key, vectors=[vector_record(x), vector_record(x)])
    reply = engine.compute(request, "requester")
    assert reply["vector"]["bound"] == int_to_le(2 * x.bound)


# -- what can be checked of a vector's bound and packing (protocol.md §14.10) -------------------


@pytest.fixture
def owner(keypair: KeyPair) -> Engine:
    keys = KeyStore.empty()
    keys.add(keypair)
    return Engine("owner", keys, lambda pub, priv, mode, base: Gmpy2Backend(pub.public_key, priv, encryption=mode))


def call(engine: Engine, operation: str, key: PublicKey, **operands: object) -> dict[str, object]:
    return engine.compute(request_record("owner", operation, key, **operands), "owner")


def refused_code(engine: Engine, operation: str, key: PublicKey, **operands: object) -> str:
    with pytest.raises(AccelError) as refused:
        call(engine, operation, key, **operands)
    return refused.value.reason


def test_a_bound_beyond_the_keys_signed_range_is_refused_before_any_work(owner: Engine, keypair: KeyPair) -> None:
    key = keypair.public_key
    x = Paillier(Gmpy2Backend(key)).encrypt_encoded([1, 2], 0)
    record = vector_record(x) | {"bound": int_to_le(key.max_int + 1)}
    assert refused_code(owner, "SUM", key, vectors=[record]) == "MALFORMED_CIPHERTEXT"
    assert refused_code(owner, "ENCRYPT", key, plain=plain_record([1], 0), bound=int_to_le(key.max_int + 1)) == (
        "PAILLIER_OVERFLOW"
    )


def test_the_key_owner_refuses_to_decrypt_values_beyond_the_bound_the_vector_claims(
    owner: Engine, keypair: KeyPair
) -> None:
    """A requester that understated a bound (here 1 for values up to 1000) got its sums computed; the key
    owner sees the lie at decryption and refuses with BOUND_VIOLATED instead of returning the values."""
    key = keypair.public_key
    x = Paillier(Gmpy2Backend(key)).encrypt_encoded([1000, -3], 0)
    honest = call(owner, "DECRYPT", key, vectors=[vector_record(x)])
    assert honest["plain"] == plain_record([1000, -3], 0)
    lying = vector_record(x) | {"bound": int_to_le(1)}
    summed = call(owner, "SUM", key, vectors=[lying])["vector"]
    assert refused_code(owner, "DECRYPT", key, vectors=[summed]) == "BOUND_VIOLATED"
    assert refused_code(owner, "DECRYPT", key, vectors=[lying]) == "BOUND_VIOLATED"


def test_a_packed_vector_whose_terms_understate_its_sums_is_refused_at_decryption(
    owner: Engine, keypair: KeyPair
) -> None:
    """Three packed plaintexts summed but declared as one term: the padding slots, which must decode to 0,
    and the slots' range give the lie away."""
    key = keypair.public_key
    spec = PackingSpec(16, 8, clip=1.0)
    packed = Packer(Gmpy2Backend(key), spec).encrypt(np.array([0.5, -0.25, 1.0]))
    three = packed + packed + packed
    assert call(owner, "PACKED_DECRYPT", key, packed=[packed_record(three)])["plain"] == plain_record(
        [int(v) for v in 3 * spec.quantise([0.5, -0.25, 1.0])], 0
    )
    understated = packed_record(three) | {"terms": 1}
    assert refused_code(owner, "PACKED_DECRYPT", key, packed=[understated]) == "BOUND_VIOLATED"


def test_packing_that_does_not_fit_the_key_is_refused_with_a_code_not_a_crash(owner: Engine) -> None:
    """A requester-chosen key too small for one slot of the declared width: MALFORMED_CIPHERTEXT, not ACCEL_ERROR."""
    tiny = PublicKey(odd(20))  # 20 bits: not one 24-bit slot
    record = {
        "spec": {"value_bits": 16, "headroom_bits": 8, "clip": 1.0, "max_terms": None},
        "slots": 0,
        "length": 1,
        "terms": 1,
        "ciphertexts": [int_to_le(5)],
    }
    assert refused_code(owner, "PACKED_ADD", tiny, packed=[record, record]) == "MALFORMED_CIPHERTEXT"
    spec = {"value_bits": 16, "headroom_bits": 8, "clip": 1.0, "max_terms": None}
    assert refused_code(owner, "PACKED_ENCRYPT", tiny, values=[0.5], packing=spec) == "MALFORMED_CIPHERTEXT"


# -- deadlines under clock skew (protocol.md §14.8) ----------------------------------------------


@pytest.mark.parametrize("skew_minutes", range(-10, 11))
def test_deadline_sweep_the_whole_timeout_within_the_tolerance_a_refusal_beyond(skew_minutes: int) -> None:
    """A request with a 30 s timeout, read 200 ms after it was sent by a sender whose clock is off by
    ``skew_minutes``: within 5 minutes it gets its whole timeout less at most the transit, beyond it is refused."""
    sent = 1_800_000_000_000
    issued_at, received = sent + skew_minutes * 60_000, sent + 200
    if abs(skew_minutes) <= 5:
        assert 29.8 <= time_allowed(issued_at, 30_000, received) <= 30.0
    else:
        with pytest.raises(DeadlineExceededError if skew_minutes < 0 else ClockSkewError):
            time_allowed(issued_at, 30_000, received)


def test_a_request_that_really_waited_is_charged_for_the_wait_beyond_the_tolerance() -> None:
    """Age beyond the tolerance is real waiting (or more skew than allowed): it comes off the timeout."""
    assert time_allowed(0, 60_000, SKEW_MS + 20_000) == 40.0
    assert time_allowed(0, 60_000, SKEW_MS + 60_000) == 0.0
    with pytest.raises(DeadlineExceededError):
        time_allowed(0, 60_000, SKEW_MS + 60_001)
