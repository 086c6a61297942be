"""services.evidence.state and heads: the persisted log resumes exactly, and head signatures bind every field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.errors import BadSignatureError
from mesh.signing import NodeSigner
from services.evidence.heads import COSIGNATURE_TAG, HEAD_TAG, TreeHead, cosign, cosignature_bytes, verify_cosignature
from services.evidence.merkle import MerkleLog
from services.evidence.state import EvidenceLog

TREE_HEADS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "tree_heads.json").read_text("utf-8"))
KEY = NodeSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))))
OTHER = NodeSigner(Ed25519PrivateKey.generate())
leaves = st.lists(st.binary(max_size=64), max_size=40)


@settings(deadline=None, max_examples=30)
@given(first=leaves, then=leaves)
def test_a_reopened_log_has_the_same_leaves_and_roots_and_goes_on_appending(
    tmp_path_factory: pytest.TempPathFactory, first: list[bytes], then: list[bytes]
) -> None:
    path = tmp_path_factory.mktemp("log") / "log.bin"
    log = EvidenceLog(path)
    for leaf in first:
        log.append(leaf)
    log.close()
    again = EvidenceLog(path)
    assert again.size == len(first)
    assert [again.leaf(i) for i in range(again.size)] == first
    for leaf in then:
        again.append(leaf)
    reference = MerkleLog()
    for leaf in first + then:
        reference.append(leaf)
    assert again.tree.root() == reference.root()
    again.close()
    assert EvidenceLog(path).tree.root() == reference.root()


def test_a_torn_last_record_is_dropped_and_the_file_cut_back(tmp_path: Path) -> None:
    path = tmp_path / "log.bin"
    log = EvidenceLog(path)
    log.append(b"first")
    log.append(b"second")
    log.close()
    whole = path.read_bytes()
    path.write_bytes(whole[:-3])  # a crash in the middle of writing the second record
    again = EvidenceLog(path)
    assert again.size == 1
    assert again.leaf(0) == b"first"
    again.append(b"second")
    again.close()
    assert path.read_bytes() == whole


def test_an_in_memory_log_writes_nothing(tmp_path: Path) -> None:
    log = EvidenceLog()
    log.append(b"x")
    assert log.index_of("nothing") is None
    assert list(tmp_path.iterdir()) == []


def test_head_signing_bytes_are_the_tag_and_the_fixed_layout() -> None:
    head = TreeHead("node-a", 3, bytes(range(32)), 1767225600000)
    expected = (
        HEAD_TAG + b"\x00\x06node-a" + (3).to_bytes(8, "big") + (1767225600000).to_bytes(8, "big") + bytes(range(32))
    )
    assert head.signing_bytes() == expected
    assert cosignature_bytes(head, "w") == COSIGNATURE_TAG + b"\x00\x01w" + expected[len(HEAD_TAG) :]


@pytest.mark.parametrize("field", [("log_id", "node-b"), ("tree_size", 4), ("root_hash", bytes(32)), ("timestamp", 1)])
def test_changing_any_field_of_a_signed_head_breaks_its_signature(field: tuple[str, object]) -> None:
    head = TreeHead("node-a", 3, bytes(range(32)), 1767225600000).signed(KEY)
    head.verify(KEY.public_key)
    changed = TreeHead.from_payload({**head.payload(), field[0]: field[1]})
    with pytest.raises(BadSignatureError):
        changed.verify(KEY.public_key)
    with pytest.raises(BadSignatureError):
        head.verify(OTHER.public_key)


def test_a_head_signature_never_passes_as_a_cosignature_nor_the_other_way() -> None:
    head = TreeHead("node-a", 3, bytes(range(32)), 1).signed(KEY)
    as_cosignature = {**head.payload(), "witness": "node-a"}
    with pytest.raises(BadSignatureError):
        verify_cosignature(as_cosignature, KEY.public_key)
    cosigned = cosign(head, "node-a", KEY)
    with pytest.raises(BadSignatureError):
        TreeHead("node-a", 3, bytes(range(32)), 1, cosigned["signature"]).verify(KEY.public_key)
    verify_cosignature(cosigned, KEY.public_key)


@pytest.mark.parametrize("bad", [{"root_hash": bytes(31)}, {"tree_size": -1}, {"signature": bytes(63)}])
def test_malformed_heads_are_bad_signatures_not_crashes(bad: dict[str, object]) -> None:
    head = TreeHead.from_payload({**TreeHead("n", 1, bytes(32), 1).signed(KEY).payload(), **bad})
    with pytest.raises(BadSignatureError):
        head.verify(KEY.public_key)


@pytest.mark.parametrize("case", TREE_HEADS["cases"], ids=lambda c: c["name"])
def test_heads_and_cosignatures_reproduce_the_golden_vectors(case: dict[str, object]) -> None:
    """heads.py against tests/vectors/tree_heads.json, which generate.py builds from the definition alone."""
    h = case["head"]
    assert isinstance(h, dict)
    head = TreeHead(h["log_id"], h["tree_size"], bytes.fromhex(h["root_hash_hex"]), h["timestamp"])
    assert head.signing_bytes().hex() == case["signing_bytes_hex"]
    signed = head.signed(KEY)
    assert signed.signature.hex() == case["signature_hex"]
    signed.verify(bytes.fromhex(TREE_HEADS["public_key_hex"]))
    assert cosignature_bytes(head, str(case["witness"])).hex() == case["cosignature_signing_bytes_hex"]
    assert cosign(head, str(case["witness"]), KEY)["signature"].hex() == case["cosignature_hex"]
