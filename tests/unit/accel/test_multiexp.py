"""Multi-exponentiation (accel.multiexp) against one powmod per term, for every window and its edges."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel import KeyPair, MalformedCiphertextError, _gmp
from accel.multiexp import (
    WINDOWS,
    batch_invert,
    bucket_product,
    choose_window,
    multi_exp,
    multi_exp_rows,
    signed_digits,
)

FAST = settings(max_examples=40, deadline=None)


def naive(bases: list[int], exponents: list[int], modulus: int) -> int:
    """prod b^e mod M with gmpy2's powmod per term (a negative e through the inverse)."""
    total = _gmp.mpz(1)
    for b, e in zip(bases, exponents, strict=True):
        total = total * _gmp.powmod(b, e, modulus) % modulus
    return int(total)


@pytest.fixture(scope="module")
def modulus(keypair: KeyPair) -> int:
    return keypair.public_key.nsquare


@pytest.fixture(scope="module")
def bases(keypair: KeyPair) -> list[int]:
    """Random elements of Z*_{n^2} (invertible: gcd with n is 1 except with negligible probability)."""
    n2 = keypair.public_key.nsquare
    return [secrets.randbelow(n2 - 2) + 2 for _ in range(40)]


@given(e=st.integers(0, 2**300), window=st.sampled_from(list(WINDOWS)))
@settings(max_examples=200, deadline=None)
def test_signed_digits_recompose_the_exponent_and_stay_in_range(e: int, window: int) -> None:
    count = -(-(e.bit_length() + 1) // window)
    digits = signed_digits(e, window, count)
    half = 1 << (window - 1)
    assert all(-half <= d <= half for d in digits)
    assert sum(d << (window * i) for i, d in enumerate(digits)) == e


def test_signed_digits_refuse_too_few_digits() -> None:
    with pytest.raises(ValueError, match="wider"):
        signed_digits(1 << 16, 4, 4)


@pytest.mark.parametrize("window", list(WINDOWS))
def test_every_window_at_its_digit_edges(window: int, bases: list[int], modulus: int) -> None:
    """Digits at 0, 1, 2^(c-1) (kept positive), 2^(c-1) + 1 (carried), 2^c - 1 and exponents one bit wider."""
    half, full = 1 << (window - 1), 1 << window
    edges = [1, half, half + 1, full - 1, full, full + 1, (full << window) - 1, half * (full + 1), 2**70 + half]
    exponents = [e if i % 2 else -e for i, e in enumerate(edges)]
    chosen = bases[: len(exponents)]
    inverses = batch_invert(chosen, modulus)
    terms = [(i, e) for i, e in enumerate(exponents)]
    assert bucket_product(chosen, inverses, terms, window, modulus) == naive(chosen, exponents, modulus)


@FAST
@given(data=st.data(), size=st.integers(0, 40), bits=st.sampled_from([1, 2, 7, 8, 9, 14, 33, 64, 300]))
def test_multi_exp_equals_one_powmod_per_term(
    data: st.DataObject, size: int, bits: int, bases: list[int], modulus: int
) -> None:
    limit = 1 << bits
    exponents = data.draw(st.lists(st.integers(-limit, limit), min_size=size, max_size=size))
    assert multi_exp(bases[:size], exponents, modulus) == naive(bases[:size], exponents, modulus)


@FAST
@given(data=st.data(), size=st.integers(1, 40), rows=st.integers(1, 5))
def test_rows_share_the_bases_and_each_equals_its_own_product(
    data: st.DataObject, size: int, rows: int, bases: list[int], modulus: int
) -> None:
    matrix = [data.draw(st.lists(st.integers(-(2**40), 2**40), min_size=size, max_size=size)) for _ in range(rows)]
    assert multi_exp_rows(bases[:size], matrix, modulus) == [naive(bases[:size], r, modulus) for r in matrix]


def test_empty_zero_and_single_terms(bases: list[int], modulus: int) -> None:
    assert multi_exp([], [], modulus) == 1
    assert multi_exp(bases[:3], [0, 0, 0], modulus) == 1
    assert multi_exp(bases[:1], [5], modulus) == naive(bases[:1], [5], modulus)
    assert multi_exp(bases[:1], [-5], modulus) == naive(bases[:1], [-5], modulus)
    assert multi_exp_rows(bases[:2], [], modulus) == []


def test_sparse_powers_of_two_of_a_packing_product(bases: list[int], modulus: int) -> None:
    """P^T [[g]]: each exponent is one bit, up to ~1000 bits high; the squarings are shared."""
    exponents = [1 << (97 * j) for j in range(11)]
    assert multi_exp(bases[:11], exponents, modulus) == naive(bases[:11], exponents, modulus)


def test_window_choice_falls_back_to_powmod_for_one_term_and_grows_with_terms() -> None:
    assert choose_window(0, 10) is None
    assert choose_window(5, 0) is None
    assert choose_window(1, 32) is None
    small, large = choose_window(16, 32), choose_window(4096, 32)
    assert small is not None
    assert large is not None
    assert small < large


def test_batch_invert_matches_invert_and_refuses_a_non_unit(bases: list[int], modulus: int) -> None:
    assert batch_invert(bases, modulus) == [int(_gmp.invert(b, modulus)) for b in bases]
    assert batch_invert([], modulus) == []
    with pytest.raises(MalformedCiphertextError):
        batch_invert([*bases[:3], 0], modulus)


def test_rows_of_another_length_are_refused(bases: list[int], modulus: int) -> None:
    with pytest.raises(ValueError, match="exponents for"):
        multi_exp_rows(bases[:3], [[1, 2]], modulus)
