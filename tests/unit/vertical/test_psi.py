"""ECDH-PSI over X25519: the intersection is exact, only the agreed parties learn it, a mismatch is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accel.client import AccelClient
from services.executor.algorithms.local_run import Party, Traffic, run_local
from services.executor.algorithms.psi import curve
from services.executor.algorithms.psi.component import PSI
from services.executor.algorithms.psi.handshake import PsiHandshakeError
from services.executor.api import LocalDataset

PARAMS: dict[str, Any] = {"result_to": "all", "batch_size": 100, "truncate_bits": 128, "workers": 1}


def _ids(path: Path, ids: list[str]) -> LocalDataset:
    path.write_text("id\n" + "".join(f"{i}\n" for i in ids))
    return LocalDataset(path.stem, path, {"id": "id"})


async def _psi(
    tmp_path: Path,
    sides: dict[str, list[str]],
    params: dict[str, dict[str, Any]] | None = None,
    traffic: Traffic | None = None,
) -> dict[str, Any]:
    accel = AccelClient.in_process()
    parties = [
        Party(
            node,
            "guest" if node == "guest" else "host",
            {"data": _ids(tmp_path / f"{node}.csv", ids)},
            accel,
            {**PARAMS, **(params or {}).get(node, {})},
        )
        for node, ids in sides.items()
    ]
    return await run_local(PSI(), parties, round_deadline=10.0, traffic=traffic)


def test_blinding_commutes_on_hashed_u_coordinates() -> None:
    """X25519(a, X25519(b, H(id))) == X25519(b, X25519(a, H(id))): what ECDH-PSI rests on."""
    a, b = curve.new_scalar(), curve.new_scalar()
    ids = [f"id-{i}" for i in range(50)]
    assert curve.blind(a, curve.hash_and_blind(b, ids)) == curve.blind(b, curve.hash_and_blind(a, ids))
    assert curve.hash_and_blind(a, ids) != curve.hash_and_blind(b, ids)


def test_a_small_order_point_is_refused() -> None:
    with pytest.raises(curve.SmallOrderPointError):
        curve.blind(curve.new_scalar(), bytes(32))


async def test_intersection_is_exact_over_several_batches_and_both_learn_it(tmp_path: Path) -> None:
    guest = [f"user{i}" for i in range(1000)]
    host = [f"user{i}" for i in range(700, 1450)]
    traffic = Traffic()
    results = await _psi(tmp_path, {"guest": guest, "host": host}, traffic=traffic)
    expected = sorted(set(guest) & set(host))
    assert results["guest"].model["ids"].tolist() == expected
    assert results["host"].model["ids"].tolist() == expected
    assert [host[i] for i in results["host"].model["rows"].tolist()] == expected
    assert [guest[i] for i in results["guest"].model["rows"].tolist()] == expected
    # 32-byte first-stage points both ways, 16-byte (128-bit) second-stage ones back to the guest
    assert traffic.bytes_by_tag["psi.dual.enc"] == 1000 * 16 + 10 * 24


async def test_three_parties_intersect_over_every_host(tmp_path: Path) -> None:
    sides = {
        "guest": [str(i) for i in range(300)],
        "h1": [str(i) for i in range(100, 400)],
        "h2": [str(i) for i in range(0, 500, 2)],
    }
    results = await _psi(tmp_path, sides)
    expected = sorted(set(sides["guest"]) & set(sides["h1"]) & set(sides["h2"]))
    assert all(r.model["ids"].tolist() == expected for r in results.values())


async def test_result_to_the_guest_only_leaves_the_host_without_it(tmp_path: Path) -> None:
    only_guest = {"guest": {"result_to": "guest"}, "host": {"result_to": "guest"}}
    results = await _psi(tmp_path, {"guest": ["a", "b", "c"], "host": ["b", "c", "d"]}, only_guest)
    assert results["guest"].model["ids"].tolist() == ["b", "c"]
    assert results["host"].model["ids"].tolist() == []
    assert results["host"].metrics["intersection"] == 0


async def test_a_mismatched_result_party_is_refused_by_both_sides(tmp_path: Path) -> None:
    """The host agreed to give the result to the guest only; the guest asks for everyone: refused with the reason."""
    mismatch = {"guest": {"result_to": "all"}, "host": {"result_to": "guest"}}
    with pytest.raises(PsiHandshakeError, match="rank -1"):
        await _psi(tmp_path, {"guest": ["a"], "host": ["a"]}, mismatch)


async def test_empty_and_disjoint_sets_give_an_empty_intersection(tmp_path: Path) -> None:
    results = await _psi(tmp_path, {"guest": [], "host": ["x", "y"]})
    assert results["guest"].model["ids"].tolist() == []
    assert results["host"].model["ids"].tolist() == []
    results = await _psi(tmp_path, {"guest": ["a"], "host": ["b"]})
    assert results["guest"].metrics["intersection"] == 0


async def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate ids"):
        await _psi(tmp_path, {"guest": ["a", "a"], "host": ["a"]})
