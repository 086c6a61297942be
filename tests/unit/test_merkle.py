"""services.evidence.merkle: the CT reference vectors, proofs against a naive RFC 9162 reference, and tampering.

The reference below is the RFC's recursive definitions written out over lists (MTH, PATH,
SUBPROOF of §2.1.1, §2.1.3.1, §2.1.4.1), with hashlib directly, so a bug in the log's cached
levels or in its unrolled proof walks cannot hide behind a shared helper.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.evidence.merkle import (
    EMPTY_ROOT,
    MAX_TREE_SIZE,
    MerkleLog,
    MerkleRangeError,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "vectors" / "merkle.json").read_text(encoding="utf-8")
)
LEAVES = [bytes.fromhex(h) for h in VECTORS["leaves_hex"]]
ROOTS = {r["size"]: bytes.fromhex(r["root_hex"]) for r in VECTORS["roots"]}

# -- the naive reference: RFC 9162 §2.1 as written ---------------------------------------------


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(hashes: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (so a big tree's leaves are hashed once)."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = ref_split(len(hashes))
    return ref_node(ref_mth(hashes[:k]), ref_mth(hashes[k:]))


def ref_path(m: int, hashes: Sequence[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = ref_split(len(hashes))
    if m < k:
        return [*ref_path(m, hashes[:k]), ref_mth(hashes[k:])]
    return [*ref_path(m - k, hashes[k:]), ref_mth(hashes[:k])]


def ref_subproof(m: int, hashes: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(hashes)
    if m == n:
        return [] if whole else [ref_mth(hashes)]
    k = ref_split(n)
    if m <= k:
        return [*ref_subproof(m, hashes[:k], whole), ref_mth(hashes[k:])]
    return [*ref_subproof(m - k, hashes[k:], False), ref_mth(hashes[:k])]


def build(leaves: Sequence[bytes]) -> MerkleLog:
    log = MerkleLog()
    for i, data in enumerate(leaves):
        assert log.append(data) == i
    return log


def flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def bit_flips(proof: list[bytes]) -> Iterator[list[bytes]]:
    """The proof with one bit flipped, for every bit of every element."""
    for i, element in enumerate(proof):
        for bit in range(len(element) * 8):
            yield [*proof[:i], flip(element, bit), *proof[i + 1 :]]


def added_or_removed(proof: list[bytes], extra: bytes) -> Iterator[list[bytes]]:
    """The proof with an element added (front, middle, back) or one removed (each position)."""
    for at in range(len(proof) + 1):
        yield [*proof[:at], extra, *proof[at:]]
    for at in range(len(proof)):
        yield [*proof[:at], *proof[at + 1 :]]


# -- known answers: the Certificate Transparency reference tree ---------------------------------


def test_leaf_and_node_hashes_match_published_hashes() -> None:
    hashes = VECTORS["hashes"]
    assert EMPTY_ROOT.hex() == hashes["empty_root_hex"] == hashlib.sha256(b"").hexdigest()
    for case in hashes["leaves"]:
        data = bytes.fromhex(case["data_hex"])
        assert leaf_hash(data).hex() == ref_leaf(data).hex() == case["hash_hex"]
    for case in hashes["nodes"]:
        left, right = bytes.fromhex(case["left_hex"]), bytes.fromhex(case["right_hex"])
        assert node_hash(left, right).hex() == ref_node(left, right).hex() == case["hash_hex"]


def test_roots_match_published_roots_at_every_size_while_appending() -> None:
    """After each append, the root of every size so far (not only the current one) is the published one."""
    assert sorted(ROOTS) == list(range(len(LEAVES) + 1))
    log = MerkleLog()
    assert log.root() == log.root(0) == ROOTS[0]
    for count, data in enumerate(LEAVES, start=1):
        log.append(data)
        assert log.size == count
        assert log.root() == ROOTS[count]
        for size in range(count + 1):
            assert log.root(size) == ROOTS[size]
            assert ref_mth([ref_leaf(d) for d in LEAVES[:size]]) == ROOTS[size]


def test_inclusion_proofs_match_published_paths_and_verify() -> None:
    log = build(LEAVES)
    hashes = [ref_leaf(d) for d in LEAVES]
    for case in VECTORS["inclusion_proofs"]:
        index, size = case["index"], case["size"]
        expected = [bytes.fromhex(h) for h in case["proof_hex"]]
        assert log.inclusion_proof(index, size) == expected, case
        assert ref_path(index, hashes[:size]) == expected, case
        assert verify_inclusion(leaf_hash(LEAVES[index]), index, size, expected, ROOTS[size]), case


def test_consistency_proofs_match_published_proofs_and_verify() -> None:
    log = build(LEAVES)
    hashes = [ref_leaf(d) for d in LEAVES]
    for case in VECTORS["consistency_proofs"]:
        old, new = case["old_size"], case["new_size"]
        expected = [bytes.fromhex(h) for h in case["proof_hex"]]
        assert log.consistency_proof(old, new) == expected, case
        assert ref_subproof(old, hashes[:new], True) == expected, case
        assert verify_consistency(old, new, ROOTS[old], ROOTS[new], expected), case


# -- proofs against the reference, exhaustively for small trees ---------------------------------

SMALL = [i.to_bytes(2, "big") for i in range(65)]


def test_every_inclusion_proof_up_to_65_leaves_equals_the_reference_and_verifies() -> None:
    log = build(SMALL)
    hashes = [ref_leaf(d) for d in SMALL]
    for size in range(1, len(SMALL) + 1):
        root = log.root(size)
        assert root == ref_mth(hashes[:size])
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            assert proof == ref_path(index, hashes[:size]), (index, size)
            assert verify_inclusion(hashes[index], index, size, proof, root), (index, size)


def test_every_consistency_proof_up_to_65_leaves_equals_the_reference_and_verifies() -> None:
    log = build(SMALL)
    hashes = [ref_leaf(d) for d in SMALL]
    roots = [log.root(size) for size in range(len(SMALL) + 1)]
    for new in range(1, len(SMALL) + 1):
        for old in range(1, new + 1):
            proof = log.consistency_proof(old, new)
            assert proof == ref_subproof(old, hashes[:new], True), (old, new)
            assert verify_consistency(old, new, roots[old], roots[new], proof), (old, new)


# -- properties over random logs ----------------------------------------------------------------

# Distinct leaves: with two equal leaves, moving a proof to the other one's index is a true claim.
leaf_lists = st.lists(st.binary(max_size=16), min_size=1, max_size=80, unique=True)


@st.composite
def log_and_leaf(draw: st.DrawFn) -> tuple[list[bytes], int, int]:
    leaves = draw(leaf_lists)
    size = draw(st.integers(1, len(leaves)))
    return leaves, draw(st.integers(0, size - 1)), size


@st.composite
def log_and_sizes(draw: st.DrawFn) -> tuple[list[bytes], int, int]:
    leaves = draw(st.lists(st.binary(max_size=16), min_size=2, max_size=80, unique=True))
    new = draw(st.integers(2, len(leaves)))
    return leaves, draw(st.integers(1, new - 1)), new


@given(leaf_lists)
def test_root_of_every_size_equals_the_naive_mth(leaves: list[bytes]) -> None:
    log = build(leaves)
    hashes = [ref_leaf(d) for d in leaves]
    for size in range(len(leaves) + 1):
        assert log.root(size) == ref_mth(hashes[:size])
    for index, data in enumerate(leaves):
        assert log.leaf_hash(index) == hashes[index] == leaf_hash(data)


@given(log_and_leaf())
def test_inclusion_proof_equals_the_reference_path_and_verifies_against_its_root(
    case: tuple[list[bytes], int, int],
) -> None:
    leaves, index, size = case
    log = build(leaves)
    proof = log.inclusion_proof(index, size)
    assert proof == ref_path(index, [ref_leaf(d) for d in leaves[:size]])
    assert verify_inclusion(leaf_hash(leaves[index]), index, size, proof, log.root(size))


@given(log_and_sizes())
def test_consistency_proof_equals_the_reference_and_verifies_against_both_roots(
    case: tuple[list[bytes], int, int],
) -> None:
    leaves, old, new = case
    log = build(leaves)
    proof = log.consistency_proof(old, new)
    assert proof == ref_subproof(old, [ref_leaf(d) for d in leaves[:new]], True)
    assert verify_consistency(old, new, log.root(old), log.root(new), proof)


def corrupted_inclusions(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes, *, other_root: bytes
) -> Iterator[tuple[bytes, int, int, list[bytes], bytes]]:
    """Every tampering of a valid inclusion claim the verifier must refuse."""
    for wrong_index in (index - 1, index + 1, index ^ 2):
        yield leaf, wrong_index, size, proof, root
    for wrong_size in (size * 2, size // 2):
        yield leaf, index, wrong_size, proof, root
    for wrong_root in (other_root, EMPTY_ROOT, flip(root, 0), flip(root, 255)):
        yield leaf, index, size, proof, wrong_root
    yield flip(leaf, 7), index, size, proof, root
    for wrong_proof in (*bit_flips(proof), *added_or_removed(proof, root), *added_or_removed(proof, EMPTY_ROOT)):
        yield leaf, index, size, wrong_proof, root


@settings(deadline=None)
@given(log_and_leaf())
def test_corrupted_inclusion_proof_never_verifies(case: tuple[list[bytes], int, int]) -> None:
    leaves, index, size = case
    log = build(leaves)
    root = log.root(size)
    other_root = log.root(size - 1) if size > 1 else log.root(len(leaves)) if len(leaves) > 1 else EMPTY_ROOT
    proof = log.inclusion_proof(index, size)
    leaf = leaf_hash(leaves[index])
    for claim in corrupted_inclusions(leaf, index, size, proof, root, other_root=other_root):
        assert not verify_inclusion(*claim), claim[1:3]


def corrupted_consistencies(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> Iterator[tuple[int, int, bytes, bytes, list[bytes]]]:
    """Every tampering of a valid consistency claim (0 < old < new) the verifier must refuse."""
    for wrong_old in (old - 1, old + 1, old ^ 2):
        yield wrong_old, new, old_root, new_root, proof
    # Not new + 1: a proof cannot tell a leaf hash from a subtree hash, so (1, 3)'s proof also shows
    # a 4-leaf tree whose right half hashes to leaf 2. Only sizes whose proofs differ in length are refused.
    for wrong_new in (new * 2, new // 2):
        yield old, wrong_new, old_root, new_root, proof
    for wrong_root in (EMPTY_ROOT, flip(old_root, 0), flip(old_root, 255)):
        yield old, new, wrong_root, new_root, proof
        yield old, new, old_root, wrong_root, proof
    yield old, new, new_root, old_root, proof
    yield old, new, old_root, new_root, []
    extras = (old_root, new_root, EMPTY_ROOT, proof[0])
    for wrong_proof in (*bit_flips(proof), *(p for extra in extras for p in added_or_removed(proof, extra))):
        yield old, new, old_root, new_root, wrong_proof


@settings(deadline=None)
@given(log_and_sizes())
def test_corrupted_consistency_proof_never_verifies(case: tuple[list[bytes], int, int]) -> None:
    leaves, old, new = case
    log = build(leaves)
    proof = log.consistency_proof(old, new)
    assert proof, "0 < old < new always needs a proof"
    for claim in corrupted_consistencies(old, new, log.root(old), log.root(new), proof):
        assert not verify_consistency(*claim), claim[:2]


@st.composite
def log_and_three_sizes(draw: st.DrawFn) -> tuple[list[bytes], int, int, int]:
    leaves = draw(st.lists(st.binary(max_size=16), min_size=1, max_size=80, unique=True))
    a, b, c = sorted(draw(st.lists(st.integers(0, len(leaves)), min_size=3, max_size=3)))
    return leaves, a, b, c


@given(log_and_three_sizes())
def test_consistency_chains_like_a_log_grows(case: tuple[list[bytes], int, int, int]) -> None:
    """Heads a ≤ b ≤ c of one log: each step and the whole stride verify, and later appends change no old root."""
    leaves, a, b, c = case
    log = build(leaves[:c])
    roots = {n: log.root(n) for n in (a, b, c)}
    for old, new in ((a, b), (b, c), (a, c)):
        assert verify_consistency(old, new, roots[old], roots[new], log.consistency_proof(old, new))
    for extra in (b"more", b"and more"):
        log.append(extra)
        assert {n: log.root(n) for n in (a, b, c)} == roots


@settings(deadline=None)
@given(log_and_leaf())
def test_a_proof_shows_its_own_leaf_and_no_other(case: tuple[list[bytes], int, int]) -> None:
    """An inclusion proof verifies for the leaf it was made for, at no other index, and for no other leaf."""
    leaves, index, size = case
    log = build(leaves)
    proof, root = log.inclusion_proof(index, size), log.root(size)
    assert verify_inclusion(leaf_hash(leaves[index]), index, size, proof, root)
    for other in range(size):
        if other != index:
            assert not verify_inclusion(leaf_hash(leaves[other]), index, size, proof, root)
            assert not verify_inclusion(leaf_hash(leaves[index]), other, size, proof, root)


# -- the edges: sizes 0, equal sizes, out of range, malformed input ------------------------------

H = hashlib.sha256(b"some hash").digest()


def test_empty_log_has_the_empty_root_and_no_proofs() -> None:
    log = MerkleLog()
    assert log.size == 0
    assert log.root() == log.root(0) == EMPTY_ROOT
    assert log.consistency_proof(0, 0) == []
    with pytest.raises(MerkleRangeError):
        log.inclusion_proof(0, 0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda log: log.root(4), "tree size 4 is not between 0 and the log's size 3"),
        (lambda log: log.root(-1), "tree size -1"),
        (lambda log: log.inclusion_proof(3, 3), "leaf index 3 is not in a tree of 3 leaves (0 to 2)"),
        (lambda log: log.inclusion_proof(-1, 3), "leaf index -1"),
        (lambda log: log.inclusion_proof(2, 2), "leaf index 2 is not in a tree of 2 leaves"),
        (lambda log: log.inclusion_proof(0, 4), "tree size 4"),
        (lambda log: log.consistency_proof(2, 4), "tree size 4"),
        (lambda log: log.consistency_proof(3, 2), "old size 3 is not between 0 and the new size 2"),
        (lambda log: log.consistency_proof(-1, 2), "old size -1"),
        (lambda log: log.leaf_hash(3), "leaf index 3"),
    ],
)
def test_asking_outside_the_log_raises_a_value_error_naming_the_bad_number(
    call: Callable[[MerkleLog], object], message: str
) -> None:
    log = build([b"a", b"b", b"c"])
    with pytest.raises(MerkleRangeError, match=re.escape(message)):
        call(log)
    assert issubclass(MerkleRangeError, ValueError)


def test_proofs_of_trivial_claims_are_empty() -> None:
    log = build([b"a", b"b", b"c"])
    assert log.inclusion_proof(0, 1) == []
    assert log.consistency_proof(0, 3) == []
    assert log.consistency_proof(3, 3) == []
    assert log.consistency_proof(2, 2) == []


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (1, 1), (2, 1), (-1, 1), (0, -1), (5, 5)])
def test_inclusion_with_index_not_below_size_never_verifies(index: int, size: int) -> None:
    for leaf, root in [(H, H), (H, EMPTY_ROOT), (EMPTY_ROOT, EMPTY_ROOT)]:
        for proof in ([], [H]):
            assert not verify_inclusion(leaf, index, size, proof, root)


def test_single_leaf_tree_root_is_its_leaf_hash_with_an_empty_proof() -> None:
    leaf = leaf_hash(b"data")
    assert build([b"data"]).root() == leaf
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 1, [leaf], leaf)
    assert not verify_inclusion(leaf, 0, 1, [], EMPTY_ROOT)
    assert not verify_inclusion(b"", 0, 1, [], b"")


def test_hashes_that_are_not_32_bytes_never_verify() -> None:
    log = build(LEAVES)
    proof, root, leaf = log.inclusion_proof(5, 8), ROOTS[8], leaf_hash(LEAVES[5])
    assert verify_inclusion(leaf, 5, 8, proof, root)
    assert not verify_inclusion(leaf + b"\x00", 5, 8, proof, root)
    assert not verify_inclusion(leaf, 5, 8, proof, root[:31])
    assert not verify_inclusion(leaf, 5, 8, [*proof[:2], proof[2] + b"\x00"], root)
    consistency = log.consistency_proof(6, 8)
    assert verify_consistency(6, 8, ROOTS[6], ROOTS[8], consistency)
    assert not verify_consistency(6, 8, ROOTS[6][:31], ROOTS[8], consistency)
    assert not verify_consistency(6, 8, ROOTS[6], ROOTS[8] + b"\x00", consistency)
    assert not verify_consistency(6, 8, ROOTS[6], ROOTS[8], [consistency[0][:31], *consistency[1:]])
    assert not verify_consistency(3, 3, b"short", b"short", [])


def test_consistency_from_the_empty_tree_needs_the_empty_root_and_no_proof() -> None:
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 1, EMPTY_ROOT, ROOTS[1], [])
    assert verify_consistency(0, 8, EMPTY_ROOT, ROOTS[8], [])
    # Size 0 has exactly one root; a tree head claiming another is not a tree head.
    assert not verify_consistency(0, 0, H, H, [])
    assert not verify_consistency(0, 8, H, ROOTS[8], [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, H, [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    assert not verify_consistency(0, 1, EMPTY_ROOT, ROOTS[1], [EMPTY_ROOT])


def test_consistency_of_equal_sizes_needs_equal_roots_and_no_proof() -> None:
    assert verify_consistency(1, 1, ROOTS[1], ROOTS[1], [])
    assert verify_consistency(8, 8, ROOTS[8], ROOTS[8], [])
    assert not verify_consistency(8, 8, ROOTS[8], ROOTS[7], [])
    assert not verify_consistency(1, 1, EMPTY_ROOT, ROOTS[1], [])
    assert not verify_consistency(8, 8, ROOTS[8], ROOTS[8], [ROOTS[8]])
    assert not verify_consistency(1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])


def test_consistency_backwards_or_with_an_empty_proof_never_verifies() -> None:
    assert not verify_consistency(1, 0, ROOTS[1], EMPTY_ROOT, [])
    assert not verify_consistency(2, 1, ROOTS[2], ROOTS[1], [])
    assert not verify_consistency(8, 6, ROOTS[8], ROOTS[6], build(LEAVES).consistency_proof(6, 8))
    assert not verify_consistency(1, 2, ROOTS[1], ROOTS[2], [])
    assert not verify_consistency(-1, 2, ROOTS[1], ROOTS[2], [])


def test_sizes_beyond_uint64_never_verify() -> None:
    # A tree of 2**64 - 1 leaves has a last leaf; one of 2**64 is outside RFC 9162's uint64 fields.
    assert not verify_inclusion(H, 0, MAX_TREE_SIZE + 1, [H] * 64, H)
    assert not verify_inclusion(H, MAX_TREE_SIZE, MAX_TREE_SIZE + 1, [H] * 64, H)
    assert not verify_consistency(1, MAX_TREE_SIZE + 1, H, H, [H] * 64)
    assert not verify_consistency(MAX_TREE_SIZE + 1, MAX_TREE_SIZE + 1, H, H, [])


hashes32 = st.one_of(st.binary(min_size=32, max_size=32), st.sampled_from([H, EMPTY_ROOT, *ROOTS.values()]))
any_hash = st.one_of(hashes32, st.binary(max_size=40))
sizes = st.one_of(st.integers(-3, 20), st.integers(-(2**70), 2**70))


@given(any_hash, sizes, sizes, st.lists(any_hash, max_size=70), any_hash)
def test_verify_inclusion_returns_a_bool_for_any_input(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> None:
    assert verify_inclusion(leaf, index, size, proof, root) in (True, False)


@given(sizes, sizes, any_hash, any_hash, st.lists(any_hash, max_size=70))
def test_verify_consistency_returns_a_bool_for_any_input(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    assert verify_consistency(old, new, old_root, new_root, proof) in (True, False)


# -- scale ----------------------------------------------------------------------------------------

MILLION = 1_000_000


@pytest.mark.slow
def test_million_leaf_log_gives_proofs_that_verify() -> None:
    """10^6 leaves: the root equals the naive MTH, and inclusion and consistency proofs verify."""
    leaves = [i.to_bytes(8, "big") for i in range(MILLION)]
    log = build(leaves)
    assert log.size == MILLION
    root = log.root()
    assert root == ref_mth([ref_leaf(d) for d in leaves])
    for index, size in [(0, MILLION), (MILLION - 1, MILLION), (314_159, MILLION), (524_288, 765_433)]:
        proof = log.inclusion_proof(index, size)
        assert len(proof) <= 20
        assert verify_inclusion(leaf_hash(leaves[index]), index, size, proof, log.root(size))
        assert not verify_inclusion(
            leaf_hash(leaves[index]), index, size, [flip(proof[0], 0), *proof[1:]], log.root(size)
        )
    for old, new in [(1, MILLION), (314_159, MILLION), (524_288, MILLION), (MILLION - 1, MILLION), (2, 765_433)]:
        proof = log.consistency_proof(old, new)
        assert len(proof) <= 40
        assert verify_consistency(old, new, log.root(old), log.root(new), proof)
        assert not verify_consistency(old, new, log.root(old), flip(log.root(new), 0), proof)
