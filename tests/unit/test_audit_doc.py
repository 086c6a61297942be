"""docs/audit.md's offline verifier, run as written: it accepts every true proof and refuses altered ones;
and docs/protocol.md §13.1's table of governed steps, which must be GOVERNED row for row."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh.evidence import GOVERNED
from mesh.signing import NodeSigner
from services.evidence.heads import TreeHead
from services.evidence.merkle import MerkleLog

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
PROTOCOL = DOC.with_name("protocol.md")
KEY = NodeSigner(Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def snippet() -> dict[str, Any]:
    code = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert code is not None, "docs/audit.md lost its Python snippet"
    namespace: dict[str, Any] = {}
    exec(code.group(1).split("p = json.load")[0], namespace)
    return namespace


def head(log: MerkleLog, size: int) -> dict[str, Any]:
    return TreeHead("bank", size, log.root(size), 1767225600000).signed(KEY).to_json()


def test_the_documented_verifier_checks_inclusion_and_consistency_at_every_size(snippet: dict[str, Any]) -> None:
    log = MerkleLog()
    for i in range(17):
        log.append(b"leaf %d" % i)
    key = KEY.public_key.hex()
    for size in range(1, 18):
        new = head(log, size)
        for i in range(size):
            proof = [h.hex() for h in log.inclusion_proof(i, size)]
            claim = {"leaf_index": i, "leaf": (b"leaf %d" % i).hex(), "inclusion_proof": proof, "tree_head": new}
            assert snippet["inclusion_ok"](claim, key)
            assert not snippet["inclusion_ok"]({**claim, "leaf_index": i + 1}, key)
            assert not snippet["inclusion_ok"]({**claim, "leaf": b"other".hex()}, key)
        for m in range(size + 1):
            claim = {
                "old_head": head(log, m),
                "new_head": new,
                "consistency_proof": [h.hex() for h in log.consistency_proof(m, size)],
            }
            assert snippet["consistency_ok"](claim, key)
            if 0 < m < size:
                assert not snippet["consistency_ok"](
                    {**claim, "consistency_proof": claim["consistency_proof"][1:]}, key
                )


def test_the_documented_verifier_refuses_a_head_signed_by_another_key(snippet: dict[str, Any]) -> None:
    log = MerkleLog()
    log.append(b"x")
    claim = {"leaf_index": 0, "leaf": b"x".hex(), "inclusion_proof": [], "tree_head": head(log, 1)}
    other = NodeSigner(Ed25519PrivateKey.generate()).public_key.hex()
    with pytest.raises(Exception, match="Signature was forged or corrupt"):
        snippet["inclusion_ok"](claim, other)


def _sections(text: str) -> dict[str, str]:
    """docs/protocol.md's numbered sections by number ("13.1"), each with its text up to the next heading."""
    parts = re.split(r"^#{2,3} (\d+(?:\.\d+)?)\.? .*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_protocols_table_of_governed_steps_is_governed_and_names_where_each_event_is_defined() -> None:
    sections = _sections(PROTOCOL.read_text(encoding="utf-8"))
    rows = re.findall(r"^\| `(interfed\.[\w.]+)` \| `([\w.]+)` \| §([\d.]+) \|", sections["13.1"], re.M)
    assert [(t, a) for t, a, _ in rows] == list(GOVERNED.items())
    for payload_type, _, where in rows:
        short = payload_type.rsplit(".", 1)[1]
        assert f"`{short}`" in sections[where] or f"`{payload_type}`" in sections[where], (payload_type, where)
