"""Packing: quantised values share a plaintext, slot sums are exact, and the addition budget is enforced."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel import PackedVector, Packer, PackingBudgetError, PackingSpec, PaillierBackend

FAST = settings(max_examples=15, deadline=None)
SPECS = [PackingSpec(16, 8), PackingSpec(13, 5, clip=4.0)]  # byte-aligned slots, and the generic path


@pytest.fixture(scope="module", params=SPECS, ids=["16+8", "13+5"])
def spec(request: pytest.FixtureRequest) -> PackingSpec:
    assert isinstance(request.param, PackingSpec)
    return request.param


def test_slots_per_plaintext_fill_the_modulus() -> None:
    assert PackingSpec(16, 8).slots(2048) == 85
    assert PackingSpec(16, 8).slots(512) == 21


def test_quantisation_clips_and_rounds() -> None:
    spec = PackingSpec(8, 4, clip=2.0)
    assert spec.q_max == 127
    np.testing.assert_array_equal(spec.quantise([0.0, 2.0, -2.0, 5.0, -5.0, 1.0]), [0, 127, -127, 127, -127, 64])


@FAST
@given(data=st.data())
def test_sums_of_packed_vectors_equal_sums_of_quantised_values(
    backend: PaillierBackend, spec: PackingSpec, data: st.DataObject
) -> None:
    packer = Packer(backend, spec)
    length = data.draw(st.integers(1, 2 * packer.slots + 3))
    count = data.draw(st.integers(1, 4))
    floats = st.floats(-2 * spec.clip, 2 * spec.clip, allow_nan=False)
    arrays = [np.array(data.draw(st.lists(floats, min_size=length, max_size=length))) for _ in range(count)]
    total: PackedVector = packer.encrypt(arrays[0])
    for array in arrays[1:]:
        total = total + packer.encrypt(array)
    assert total.terms == count
    expected = sum(spec.quantise(a) for a in arrays)
    np.testing.assert_array_equal(packer.decrypt_quantised(total), expected)


def test_decrypted_floats_are_the_sums_within_quantisation_error(backends: dict[str, PaillierBackend]) -> None:
    packer = Packer(backends["gmpy2-djn"], PackingSpec(16, 8, clip=1.0))
    rng = np.random.default_rng(3)
    a, b = rng.uniform(-1, 1, 100), rng.uniform(-1, 1, 100)
    np.testing.assert_allclose(packer.decrypt(packer.encrypt(a) + packer.encrypt(b)), a + b, atol=2 / 32767)


def test_extreme_values_fill_the_budget_exactly(backends: dict[str, PaillierBackend]) -> None:
    spec = PackingSpec(8, 2)  # at most 4 terms
    packer = Packer(backends["gmpy2-textbook"], spec)
    top, bottom = packer.encrypt([1.0, -1.0, 1.0]), packer.encrypt([-1.0, 1.0, 1.0])
    total = top + bottom + top + top
    assert total.remaining_additions == 0
    np.testing.assert_array_equal(packer.decrypt_quantised(total), [2 * 127, -2 * 127, 4 * 127])


def test_exceeding_the_declared_budget_is_refused(backends: dict[str, PaillierBackend]) -> None:
    spec = PackingSpec(16, 8, max_terms=3)
    packer = Packer(backends["gmpy2-djn"], spec)
    one = packer.encrypt([0.5, -0.5])
    three = one + one + one
    assert three.remaining_additions == 0
    with pytest.raises(PackingBudgetError):
        three + one
    # The headroom bounds the budget: 2^8 terms at most.
    with pytest.raises(ValueError, match="max_terms"):
        PackingSpec(16, 8, max_terms=257)


def test_mixing_packings_is_refused(backends: dict[str, PaillierBackend]) -> None:
    backend = backends["gmpy2-textbook"]
    a = Packer(backend, PackingSpec(16, 8)).encrypt([0.1])
    b = Packer(backend, PackingSpec(16, 8, clip=2.0)).encrypt([0.1])
    with pytest.raises(ValueError, match="different packing"):
        a + b


def test_packed_ciphertexts_decrypt_under_every_backend(backends: dict[str, PaillierBackend]) -> None:
    spec = PackingSpec(16, 8)
    values = np.linspace(-1, 1, 50)
    for name, encryptor in backends.items():
        packed = Packer(encryptor, spec).encrypt(values)
        for other_name, decryptor in backends.items():
            got = Packer(decryptor, spec).decrypt_quantised(packed)
            np.testing.assert_array_equal(got, spec.quantise(values), err_msg=f"{name} -> {other_name}")
