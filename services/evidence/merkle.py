"""An append-only Merkle log with RFC 9162 (Certificate Transparency v2) hashing, proofs and their verification."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "MerkleLog",
    "MerkleRangeError",
    "leaf_hash",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
#: RFC 9162 carries tree sizes and leaf indexes as uint64; anything larger is not a valid tree head.
MAX_TREE_SIZE = 2**64 - 1
#: MTH({}) = HASH(""): the root of the empty tree (RFC 9162 §2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()

# Domain separation (RFC 9162 §2.1.1): a leaf can never be passed off as an interior node, or the
# other way round, so a proof cannot claim a subtree is a leaf (second-preimage attacks).
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_PAIR = 2 * HASH_SIZE
_sha256 = hashlib.sha256


class MerkleRangeError(ValueError):
    """A leaf index or tree size outside the log was asked of it (a caller's mistake, not a bad proof)."""


def leaf_hash(leaf_data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d): the hash of one leaf."""
    return _sha256(_LEAF_PREFIX + leaf_data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """k, the largest power of two smaller than n (n >= 2), where RFC 9162 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleLog:
    """The Merkle tree over every leaf appended so far, answering for any of its past sizes.

    Level h holds, back to back in one bytearray, the hash of every *complete* subtree of 2**h
    leaves aligned on a multiple of 2**h (level 0: the leaf hashes). Appending adds one leaf hash
    and, amortised, one interior hash. Any RFC 9162 subtree D[s:e] the proofs need either is one
    of those (one lookup) or ends at the requested size's right edge, where it folds the O(log n) complete
    subtrees that make up its size; each proof needs at most one such fold. So roots and proofs
    cost O(log n) lookups and hashes, and memory is ~64 bytes a leaf with no per-hash objects.
    """

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    def append(self, leaf_data: bytes) -> int:
        """Append one leaf and return its index (0 for the first)."""
        # The hot path of a busy log: locals and in-place bytearray appends, no per-hash objects kept.
        levels = self._levels
        level = levels[0]
        level += _sha256(_LEAF_PREFIX + leaf_data).digest()
        index = self._size
        self._size = count = index + 1
        height = 0
        # An even count at a level means its last two hashes just became siblings of a complete
        # subtree one level up: hash them now, so no subtree is ever hashed twice.
        while not count & 1:
            parent = _sha256(_NODE_PREFIX + level[-_PAIR:]).digest()
            height += 1
            if height == len(levels):
                levels.append(bytearray())
            level = levels[height]
            level += parent
            count >>= 1
        return index

    def leaf_hash(self, index: int) -> bytes:
        """The hash of the leaf at ``index``."""
        self._check_index(index, self._size)
        return self._complete(0, index)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all of them); EMPTY_ROOT for size 0."""
        size = self._size if size is None else size
        self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        return self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1: the audit path of one leaf, leaf side first."""
        self._check_size(size)
        self._check_index(index, size)
        siblings: list[bytes] = []
        start, end = 0, size
        # Walk down from the root: each step keeps the half holding the leaf and records the other.
        while end - start > 1:
            mid = start + _split(end - start)
            if index < mid:
                siblings.append(self._subtree(mid, end))
                end = mid
            else:
                siblings.append(self._subtree(start, mid))
                start = mid
        siblings.reverse()
        return siblings

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """PROOF(old_size, D[0:new_size]) of RFC 9162 §2.1.4.1, deepest node first.

        Empty when the sizes are equal, and when ``old_size`` is 0: every tree extends the empty one.
        """
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise MerkleRangeError(f"old size {old_size} is not between 0 and the new size {new_size}")
        if old_size in (0, new_size):
            return []
        nodes: list[bytes] = []
        start, end = 0, new_size
        # SUBPROOF(m, D[start:end], b) unrolled; `whole` is b: the old tree is still a whole subtree
        # (its root is known to the verifier), true until the walk first steps right.
        whole = True
        while old_size != end:
            mid = start + _split(end - start)
            if old_size <= mid:
                nodes.append(self._subtree(mid, end))
                end = mid
            else:
                nodes.append(self._subtree(start, mid))
                start = mid
                whole = False
        if not whole:
            nodes.append(self._subtree(start, end))
        nodes.reverse()
        return nodes

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]), for start a multiple of the power of two at or above end - start.

        Every subtree of the RFC's recursive split has that alignment, so its perfect parts are in
        the levels: the binary digits of its size, largest first, are its complete subtrees left
        to right, and its root folds them from the right.
        """
        width = end - start
        if width & (width - 1) == 0:
            height = width.bit_length() - 1
            return self._complete(height, start >> height)
        parts: list[bytes] = []
        for height in range(width.bit_length() - 1, -1, -1):
            if width >> height & 1:
                parts.append(self._complete(height, start >> height))
                start += 1 << height
        root = parts.pop()
        while parts:
            root = _sha256(_NODE_PREFIX + parts.pop() + root).digest()
        return root

    def _complete(self, height: int, position: int) -> bytes:
        """The hash of the complete subtree at ``position`` on level ``height``."""
        offset = position * HASH_SIZE
        return bytes(self._levels[height][offset : offset + HASH_SIZE])

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._size:
            raise MerkleRangeError(f"tree size {size} is not between 0 and the log's size {self._size}")

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if not 0 <= index < size:
            raise MerkleRangeError(f"leaf index {index} is not in a tree of {size} leaves (0 to {size - 1})")


def _well_formed(*hashes: bytes) -> bool:
    return all(len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows the leaf with ``leaf_hash`` at ``index`` in the tree of ``size`` with ``root``.

    RFC 9162 §2.1.3.2, step for step. Any malformed input (index not below size, a size outside
    uint64, a hash that is not 32 bytes, a proof of the wrong length) is False, never an exception.
    """
    # Step 1, plus the RFC's uint64 range and hash length, which the wire format implies.
    if not 0 <= index < size <= MAX_TREE_SIZE or not _well_formed(leaf_hash, root, *proof):
        return False
    fn, sn = index, size - 1  # step 2
    r = leaf_hash  # step 3
    for p in proof:  # step 4
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root  # step 5


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Whether ``proof`` shows the tree (new_size, new_root) is an append-only extension of (old_size, old_root).

    RFC 9162 §2.1.4.2 for 0 < old_size < new_size. The RFC leaves the trivial cases to the reader;
    here the proof must then be empty, equal sizes need equal roots, and a size-0 tree head must
    carry the empty tree's root (the one root that size can have; Sigsum checks the same). Any
    malformed input is False, never an exception.
    """
    if not 0 <= old_size <= new_size <= MAX_TREE_SIZE or not _well_formed(old_root, new_root, *proof):
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT and (new_size > 0 or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:  # step 1
        return False
    # Step 2: a power-of-two old tree is a complete subtree of the new one, so the proof leaves
    # out its root, which the verifier already holds.
    path = [old_root, *proof] if old_size & (old_size - 1) == 0 else list(proof)
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0  # step 7
