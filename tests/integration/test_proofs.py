"""``interfed audit prove`` and ``consistency`` print JSON proofs that a dozen lines of plain Python verify offline.

The verifier below is the algorithm of docs/audit.md's snippet, written only against hashlib and PyNaCl,
so it checks the proofs as another party would, not through the code that made them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from typing import Any

import nacl.signing
import pytest

from mesh.events import EVIDENCE_RECORDED
from mesh.testing import read_topic
from services.testbed import AuditedHistory

pytestmark = [pytest.mark.broker, pytest.mark.reference_lane, pytest.mark.timeout(240)]


# -- docs/audit.md, "Verifying offline in Python" -------------------------------------------------


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2: the root the audit path leads to, or None if the path cannot be right."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, hashlib.sha256(b"\x00" + leaf).digest()
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def head_bytes(h: dict[str, Any]) -> bytes:
    log_id = h["log_id"].encode()
    return (
        b"interfed/tree-head/v1\x00"
        + len(log_id).to_bytes(2, "big")
        + log_id
        + h["tree_size"].to_bytes(8, "big")
        + h["timestamp"].to_bytes(8, "big")
        + bytes.fromhex(h["root_hash"])
    )


def verify_head(h: dict[str, Any], public_key_hex: str) -> None:
    nacl.signing.VerifyKey(bytes.fromhex(public_key_hex)).verify(head_bytes(h), bytes.fromhex(h["signature"]))


def verify_inclusion_proof(p: dict[str, Any]) -> bool:
    head = p["tree_head"]
    verify_head(head, p["log_public_key"])  # raises if the head is not the log's
    path = [bytes.fromhex(x) for x in p["inclusion_proof"]]
    root = root_from_inclusion(bytes.fromhex(p["leaf"]), p["leaf_index"], head["tree_size"], path)
    return root == bytes.fromhex(head["root_hash"]) and p["event_id"].encode() in bytes.fromhex(p["leaf"])


def verify_consistency_proof(p: dict[str, Any]) -> bool:
    """RFC 9162 §2.1.4.2 between two signed heads of one log."""
    old, new = p["old_head"], p["new_head"]
    verify_head(old, p["log_public_key"])
    verify_head(new, p["log_public_key"])
    m, n = old["tree_size"], new["tree_size"]
    old_root, new_root = bytes.fromhex(old["root_hash"]), bytes.fromhex(new["root_hash"])
    proof = [bytes.fromhex(x) for x in p["consistency_proof"]]
    if m == 0:
        return not proof and old_root == hashlib.sha256(b"").digest()
    if m == n:
        return old_root == new_root and not proof
    if not proof or m > n:
        return False
    path = [old_root, *proof] if m & (m - 1) == 0 else proof
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


# -- the commands --------------------------------------------------------------------------------


def audit(history: AuditedHistory, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INTERFED_TOPIC_PREFIX": history.settings.topic_prefix}
    argv = ["audit", "--home", str(history.auditor.path), "--bootstrap", history.bootstrap, *args]
    return subprocess.run(
        [sys.executable, "-m", "interfed", *argv], env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def test_every_evidenced_event_has_an_inclusion_proof_that_verifies_offline(history: AuditedHistory) -> None:
    evidence = [
        p
        for env, p in await read_topic(history.bootstrap, history.settings, "evidence")
        if env.payload_type == EVIDENCE_RECORDED
    ]
    assert evidence
    for claim in evidence[:3]:
        proc = audit(history, "prove", claim["event_id"])
        assert proc.returncode == 0, proc.stderr
        proof = json.loads(proc.stdout)
        assert proof["tree_head"]["tree_size"] == history.final.tree_size
        assert verify_inclusion_proof(proof)
        # The same proof for another index, size or root is refused.
        assert not verify_inclusion_proof({**proof, "leaf_index": proof["leaf_index"] ^ 1})
        leaf = bytes.fromhex(proof["leaf"])
        altered = leaf[:-1] + bytes([leaf[-1] ^ 1])  # another last byte, whatever it was
        assert not verify_inclusion_proof({**proof, "leaf": altered.hex()})


async def test_the_consistency_proof_between_a_logs_first_and_last_heads_verifies_offline(
    history: AuditedHistory,
) -> None:
    proc = audit(history, "consistency", "--log", history.final.log_id)
    assert proc.returncode == 0, proc.stderr
    proof = json.loads(proc.stdout)
    assert proof["old_head"]["tree_size"] < proof["new_head"]["tree_size"] == history.final.tree_size
    assert verify_consistency_proof(proof)
    assert not verify_consistency_proof({**proof, "consistency_proof": proof["consistency_proof"][1:]})


async def test_asking_for_an_unknown_event_or_log_is_one_clear_line(history: AuditedHistory) -> None:
    proc = audit(history, "prove", "00000000-0000-4000-8000-000000000000")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "interfed: error: no evidence record for event 00000000-0000-4000-8000-000000000000 on the evidence topic"
    ]
    proc = audit(history, "consistency", "--log", "nobody")
    assert proc.returncode == 1
    assert "no signed tree heads of log 'nobody'" in proc.stderr
