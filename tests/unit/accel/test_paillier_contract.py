"""The Paillier backend contract: one suite, run over every backend (phe reference and the gmpy2 ones).

Each backend must decrypt exactly what plaintext arithmetic gives, decrypt every other
backend's ciphertexts, and agree bit for bit with phe on the deterministic operations.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel import (
    EncryptedVector,
    ExponentMismatchError,
    Paillier,
    PaillierBackend,
    PaillierKeyMismatchError,
    PaillierOverflowError,
    ShapeMismatchError,
)

FAST = settings(max_examples=15, deadline=None)
ints = st.integers(-(2**64), 2**64)
small_ints = st.integers(-(2**20), 2**20)
vectors = st.lists(ints, min_size=1, max_size=6)


def pairs(elements: st.SearchStrategy[int] = ints) -> st.SearchStrategy[tuple[list[int], list[int]]]:
    return st.integers(1, 6).flatmap(
        lambda size: st.tuples(
            st.lists(elements, min_size=size, max_size=size), st.lists(elements, min_size=size, max_size=size)
        )
    )


class BackendContract:
    """What every ``PaillierBackend`` must do; subclasses name the backend."""

    backend_name: ClassVar[str]

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, backends: dict[str, PaillierBackend]) -> PaillierBackend:
        return backends[cls.backend_name]

    @pytest.fixture(scope="class")
    @classmethod
    def ops(cls, backend: PaillierBackend) -> Paillier:
        return Paillier(backend)

    def encrypt_ints(self, ops: Paillier, values: list[int]) -> EncryptedVector:
        return ops.encrypt(np.array(values, dtype=object), precision=0)

    # -- encryption and decryption ----------------------------------------------------------

    @FAST
    @given(values=vectors)
    def test_round_trip_is_exact(self, ops: Paillier, values: list[int]) -> None:
        assert ops.decrypt_mantissas(self.encrypt_ints(ops, values)) == values

    @FAST
    @given(values=vectors)
    def test_every_backend_decrypts_these_ciphertexts(
        self, ops: Paillier, backends: dict[str, PaillierBackend], values: list[int]
    ) -> None:
        encrypted = self.encrypt_ints(ops, values)
        for name, other in backends.items():
            assert Paillier(other).decrypt_mantissas(encrypted.with_backend(other)) == values, name

    def test_decrypts_every_other_backends_ciphertexts(
        self, ops: Paillier, backends: dict[str, PaillierBackend]
    ) -> None:
        values = [0, 1, -1, 2**60, -(2**60)]
        for name, other in backends.items():
            encrypted = Paillier(other).encrypt(np.array(values), precision=0)
            assert ops.decrypt_mantissas(encrypted.with_backend(ops.backend)) == values, name

    def test_floats_round_trip_to_the_precision(self, ops: Paillier) -> None:
        values = np.array([0.0, 1.5, -2.25, 1e-3, -123456.789, 3.0e9])
        decrypted = ops.decrypt(ops.encrypt(values, precision=40))
        np.testing.assert_allclose(decrypted, values, rtol=0, atol=2.0**-40)

    def test_encryption_is_randomised(self, backend: PaillierBackend) -> None:
        first, second = backend.encrypt([42, 42])
        assert first != second
        assert backend.decrypt([first, second]) == [42, 42]

    def test_extremes_of_the_plaintext_space_round_trip(self, backend: PaillierBackend) -> None:
        n = backend.public_key.n
        plaintexts = [0, 1, n // 2, n - 1]
        assert backend.decrypt(backend.encrypt(plaintexts)) == plaintexts

    # -- homomorphic operations, checked against plaintext arithmetic --------------------

    @FAST
    @given(operands=pairs())
    def test_add_ciphertexts(self, ops: Paillier, operands: tuple[list[int], list[int]]) -> None:
        a, b = operands
        total = self.encrypt_ints(ops, a) + self.encrypt_ints(ops, b)
        assert ops.decrypt_mantissas(total) == [x + y for x, y in zip(a, b, strict=True)]

    @FAST
    @given(operands=pairs())
    def test_add_plaintext_vector_and_subtract(self, ops: Paillier, operands: tuple[list[int], list[int]]) -> None:
        a, b = operands
        encrypted = self.encrypt_ints(ops, a)
        plain = np.array(b, dtype=object)
        assert ops.decrypt_mantissas(encrypted + plain) == [x + y for x, y in zip(a, b, strict=True)]
        assert ops.decrypt_mantissas(encrypted - plain) == [x - y for x, y in zip(a, b, strict=True)]
        assert ops.decrypt_mantissas(plain - encrypted) == [y - x for x, y in zip(a, b, strict=True)]

    @FAST
    @given(values=vectors, scalar=ints)
    def test_multiply_by_integer_scalar(self, ops: Paillier, values: list[int], scalar: int) -> None:
        product = self.encrypt_ints(ops, values).mul(scalar)
        assert product.exponent == 0
        assert ops.decrypt_mantissas(product) == [x * scalar for x in values]

    @FAST
    @given(operands=pairs(small_ints))
    def test_multiply_by_plaintext_vector(self, ops: Paillier, operands: tuple[list[int], list[int]]) -> None:
        a, b = operands
        product = self.encrypt_ints(ops, a) * np.array(b, dtype=np.int64)
        assert ops.decrypt_mantissas(product) == [x * y for x, y in zip(a, b, strict=True)]

    @FAST
    @given(values=vectors, scalar=st.floats(-1e6, 1e6, allow_nan=False))
    def test_multiply_by_fixed_point_scalar(self, ops: Paillier, values: list[int], scalar: float) -> None:
        product = self.encrypt_ints(ops, values).mul(scalar, precision=32)
        encoded_scalar = round(scalar * 2**32)
        assert product.exponent == -32
        assert ops.decrypt_mantissas(product) == [x * encoded_scalar for x in values]

    @FAST
    @given(values=st.lists(ints, min_size=0, max_size=8))
    def test_sum(self, ops: Paillier, values: list[int]) -> None:
        assert ops.decrypt_mantissas(self.encrypt_ints(ops, values).sum()) == [sum(values)]

    @FAST
    @given(
        shape=st.tuples(st.integers(1, 5), st.integers(1, 3)),
        data=st.data(),
    )
    def test_transpose_dot_is_xt_times_d(self, ops: Paillier, shape: tuple[int, int], data: st.DataObject) -> None:
        m, k = shape
        d = data.draw(st.lists(ints, min_size=m, max_size=m))
        x = np.array(data.draw(st.lists(st.lists(small_ints, min_size=k, max_size=k), min_size=m, max_size=m)))
        result = self.encrypt_ints(ops, d).transpose_dot(x)
        expected = [sum(int(x[i, j]) * d[i] for i in range(m)) for j in range(k)]
        assert len(result) == k
        assert ops.decrypt_mantissas(result) == expected
        # numpy defers to EncryptedVector: X.T @ [[d]] is the same product.
        assert ops.decrypt_mantissas(x.T @ self.encrypt_ints(ops, d)) == expected

    @FAST
    @given(
        data=st.data(),
        size=st.integers(0, 24),
        bits=st.sampled_from([1, 4, 5, 8, 14, 33, 64, 200]),
    )
    def test_dot_is_exact_for_every_exponent_size(
        self, ops: Paillier, data: st.DataObject, size: int, bits: int
    ) -> None:
        """Multi-exponentiation path: empty, one term, zeros, negatives, scalars up to 200 bits."""
        values = data.draw(st.lists(ints, min_size=size, max_size=size))
        limit = 1 << bits
        scalars = data.draw(st.lists(st.one_of(st.just(0), st.integers(-limit, limit)), min_size=size, max_size=size))
        encrypted = self.encrypt_ints(ops, values)
        result = encrypted.left_matmul_encoded([scalars], 0)
        assert ops.decrypt_mantissas(result) == [sum(k * v for k, v in zip(scalars, values, strict=True))]

    @FAST
    @given(data=st.data(), shape=st.tuples(st.integers(1, 12), st.integers(1, 7)))
    def test_matmul_rows_are_exact_and_equal_their_dots(
        self, ops: Paillier, data: st.DataObject, shape: tuple[int, int]
    ) -> None:
        """M @ [[x]] in one backend call: each row exactly its plaintext dot product, and the same as ``dot``."""
        length, count = shape
        values = data.draw(st.lists(ints, min_size=length, max_size=length))
        scalars = st.lists(st.integers(-(2**40), 2**40), min_size=length, max_size=length)
        rows = [data.draw(scalars) for _ in range(count)]
        encrypted = self.encrypt_ints(ops, values)
        product = ops.backend.matmul(encrypted.ciphertexts, rows)
        assert product == [ops.backend.dot(encrypted.ciphertexts, row) for row in rows]
        expected = [sum(k * v for k, v in zip(row, values, strict=True)) for row in rows]
        assert ops.decrypt_mantissas(encrypted.left_matmul_encoded(rows, 0)) == expected

    def test_packing_product_of_powers_of_two_is_exact(self, ops: Paillier) -> None:
        """The masking step's P^T [[g]]: exponents 2^(w t) up to hundreds of bits, one bit set each."""
        values = list(range(1, 11))
        width = 40
        rows = [[1 << (width * j) if j // 5 == c else 0 for j in range(10)] for c in range(2)]
        packed = ops.decrypt_mantissas(self.encrypt_ints(ops, values).left_matmul_encoded(rows, 0))
        assert packed == [sum(values[j] << (width * j) for j in range(5 * c, 5 * c + 5)) for c in range(2)]

    def test_float_pipeline_matches_numpy(self, ops: Paillier) -> None:
        rng = np.random.default_rng(7)
        d, x, w = rng.normal(size=6), rng.normal(size=(6, 3)), rng.normal(size=6)
        encrypted = ops.encrypt(d)
        np.testing.assert_allclose(ops.decrypt(encrypted.transpose_dot(x)), x.T @ d, atol=1e-8)
        np.testing.assert_allclose(ops.decrypt((encrypted * w + 0.5).sum()), [np.sum(d * w + 0.5)], atol=1e-8)

    # -- deterministic operations agree bit for bit with phe ------------------------------

    def test_deterministic_operations_match_phe_bit_for_bit(
        self, backend: PaillierBackend, reference: PaillierBackend
    ) -> None:
        a = backend.encrypt([5, 7, 11])
        b = backend.encrypt([1, 2, 3])
        scalars = [3, -4, 0]
        assert backend.add(a, b) == reference.add(a, b)
        assert backend.add_plain(a, [1, 2, 3]) == reference.add_plain(a, [1, 2, 3])
        assert backend.mul_plain(a, scalars) == reference.mul_plain(a, scalars)
        assert backend.dot(a, scalars) == reference.dot(a, scalars)
        rows = [scalars, [2**70, -(2**33) + 1, 17], [0, 0, 0]]
        assert backend.matmul(a, rows) == reference.matmul(a, rows)
        assert backend.matmul(a, []) == reference.matmul(a, []) == []
        assert backend.sum(a) == reference.sum(a)
        assert backend.decrypt([backend.dot(a, scalars)]) == [backend.public_key.n + 15 - 28]

    # -- refusals ---------------------------------------------------------------------

    def test_adding_different_exponents_is_refused_until_aligned(self, ops: Paillier) -> None:
        coarse = ops.encrypt(np.array([1.5, -2.0]), precision=8)
        fine = ops.encrypt(np.array([0.25, 0.125]), precision=16)
        with pytest.raises(ExponentMismatchError):
            coarse + fine
        np.testing.assert_array_equal(ops.decrypt(coarse.align(-16) + fine), [1.75, -1.875])
        with pytest.raises(ExponentMismatchError):
            fine.align(-8)

    def test_overflow_is_refused_before_computing(self, ops: Paillier) -> None:
        max_int = ops.backend.public_key.max_int
        half = max_int // 2
        encrypted = ops.encrypt(np.array([half], dtype=object), precision=0, value_bound=half)
        with pytest.raises(PaillierOverflowError):
            encrypted.mul(3)
        with pytest.raises(PaillierOverflowError):
            encrypted + encrypted + encrypted
        with pytest.raises(PaillierOverflowError):
            ops.encrypt(np.array([max_int + 1], dtype=object), precision=0)
        # Right at the edge still decrypts right.
        assert ops.decrypt_mantissas(encrypted.mul(2)) == [half * 2]
        assert ops.decrypt_mantissas(encrypted.mul(-2)) == [-half * 2]

    def test_overflow_through_repeated_scaling_is_refused(self, ops: Paillier) -> None:
        encrypted = ops.encrypt(np.array([0.5, -0.75]))

        def scale_forever() -> None:
            scaled = encrypted
            for _ in range(100):
                scaled = scaled.mul(2.5)

        with pytest.raises(PaillierOverflowError):
            scale_forever()

    def test_declared_bound_is_enforced_and_used(self, ops: Paillier) -> None:
        encrypted = ops.encrypt(np.array([0.5, -0.25]), precision=10, value_bound=4.0)
        assert encrypted.bound == 4 << 10
        with pytest.raises(PaillierOverflowError, match="declared bound"):
            ops.encrypt(np.array([5.0]), value_bound=4.0)

    def test_mismatched_shapes_are_refused(self, ops: Paillier) -> None:
        encrypted = ops.encrypt(np.array([1, 2, 3]), precision=0)
        with pytest.raises(ShapeMismatchError):
            encrypted + ops.encrypt(np.array([1, 2]), precision=0)
        with pytest.raises(ShapeMismatchError):
            encrypted * np.array([1, 2])
        with pytest.raises(ShapeMismatchError):
            encrypted.transpose_dot(np.ones((2, 2)))

    def test_other_keys_ciphertexts_are_refused(self, ops: Paillier, phe_keypair: object) -> None:
        from accel import Gmpy2Backend, KeyPair

        assert isinstance(phe_keypair, KeyPair)
        stranger = Paillier(Gmpy2Backend(phe_keypair.public_key, phe_keypair.private_key))
        theirs = stranger.encrypt(np.array([1.0]))
        with pytest.raises(PaillierKeyMismatchError):
            ops.encrypt(np.array([1.0])) + theirs
        with pytest.raises(PaillierKeyMismatchError):
            ops.decrypt(theirs)


class TestPheBackend(BackendContract):
    backend_name = "phe"


class TestGmpy2Textbook(BackendContract):
    backend_name = "gmpy2-textbook"


class TestGmpy2KeyOwner(BackendContract):
    backend_name = "gmpy2-key-owner"


class TestGmpy2Djn(BackendContract):
    backend_name = "gmpy2-djn"


class TestPooledGmpy2KeyOwner(BackendContract):
    """The gmpy2 backend on two worker processes: every slice boundary, and MATMUL cut by rows or by terms."""

    backend_name = "pool2-gmpy2-key-owner"
