"""The PSI blinding backend against RFC 7748's vectors and OpenSSL, the handshake's refusals, the shared workers."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from accel.client import AccelClient
from services.executor.algorithms.local_run import Party, run_local
from services.executor.algorithms.psi import curve, handshake
from services.executor.algorithms.psi.component import ENC, HANDSHAKE, PSI, RESPONSE, PsiProtocolError, batch_message
from services.executor.api import ComponentResult, JobContext, LocalDataset

#: RFC 7748 §5.2: (scalar, u, X25519(scalar, u)); the second u has bit 255 set, which X25519 ignores.
RFC7748 = [
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
    (
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ),
]


@pytest.mark.parametrize(("scalar", "u", "expected"), RFC7748)
def test_blind_is_rfc7748_x25519(scalar: str, u: str, expected: str) -> None:
    assert curve.blind(bytes.fromhex(scalar), bytes.fromhex(u)).hex() == expected


def test_blind_matches_the_rfc7748_iterated_vector() -> None:
    """RFC 7748 §5.2: k = u = 9; repeat k, u = X25519(k, u), k; the results after 1 and 1000 iterations."""
    k = u = bytes([9]) + bytes(31)
    after: dict[int, str] = {}
    for i in range(1, 1001):
        k, u = curve.blind(k, u), k
        after[i] = k.hex()
    assert after[1] == "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
    assert after[1000] == "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"


def test_a_batch_gives_the_bytes_openssl_gives_point_by_point() -> None:
    """The wire is unchanged by the backend: libsodium's batch equals OpenSSL's X25519 on every hashed id."""
    scalar = curve.new_scalar()
    points = b"".join(curve.hash_to_u(f"row-{i}") for i in range(200))
    key = X25519PrivateKey.from_private_bytes(scalar)
    openssl = b"".join(
        key.exchange(X25519PublicKey.from_public_bytes(points[i : i + 32])) for i in range(0, len(points), 32)
    )
    assert curve.blind(scalar, points) == openssl


def test_a_small_order_point_inside_a_batch_is_named() -> None:
    points = curve.hash_to_u("a") + (1).to_bytes(32, "little") + curve.hash_to_u("b")
    with pytest.raises(curve.SmallOrderPointError, match="point 1 "):
        curve.blind(curve.new_scalar(), points)


def test_a_ragged_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="whole 32-byte points"):
        curve.blind(curve.new_scalar(), bytes(33))


def _offer() -> dict[str, Any]:
    return handshake.request(0, 10, handshake.ALL_RANKS)


def _refusal(body: dict[str, Any]) -> tuple[int, str]:
    header = handshake.respond(body, 10, handshake.ALL_RANKS, 128)["header"]
    return header["error_code"], header["error_msg"]


def test_a_host_accepts_the_suite_it_speaks() -> None:
    response = handshake.respond(_offer(), 12, handshake.ALL_RANKS, 128)
    agreement = handshake.accept(response, 10)
    assert (agreement.truncate_bits, agreement.host_items) == (128, 12)


def test_a_host_refuses_an_algorithm_it_does_not_run() -> None:
    body = _offer()
    body["supported_algos"] = ["RSA_PSI"]
    code, message = _refusal(body)
    assert code == handshake.UNSUPPORTED_ALGO
    assert "RSA_PSI" in message


def test_a_host_refuses_a_suite_or_point_format_it_does_not_speak() -> None:
    ristretto = _offer()
    ristretto["protocol_family_params"][0]["ec_suits"] = [
        {"curve": "RISTRETTO255", "hash": "SHA_512", "hash2curve_strategy": "ELLIGATOR2"}
    ]
    assert _refusal(ristretto)[0] == handshake.UNSUPPORTED_SUITE
    compressed = _offer()
    compressed["protocol_family_params"][0]["point_octet_formats"] = ["COMPRESSED"]
    assert _refusal(compressed)[0] == handshake.UNSUPPORTED_SUITE


def test_a_host_refuses_another_version_and_a_malformed_request() -> None:
    other = _offer()
    other["version"] = 3
    assert _refusal(other)[0] == handshake.UNSUPPORTED_VERSION
    broken = _offer()
    del broken["io_param"]
    assert _refusal(broken)[0] == handshake.BAD_PARAMS


def test_the_guest_refuses_a_decision_it_did_not_offer() -> None:
    response = handshake.respond(_offer(), 10, handshake.ALL_RANKS, 128)
    other = copy.deepcopy(response)
    other["protocol_family_params"][0]["ec_suit"] = {"curve": "SECP256K1"}
    with pytest.raises(handshake.PsiHandshakeError, match="not offered"):
        handshake.accept(other, 10)


def _two_parties(tmp_path: Path, sides: dict[str, list[str]], *, batch_size: int) -> list[Party]:
    """A guest and a host on two worker processes, each with its ids in a CSV file."""
    params = {"result_to": "all", "batch_size": batch_size, "truncate_bits": 128, "workers": 2}
    parties = []
    for side, ids in sides.items():
        (tmp_path / f"{side}.csv").write_text("id\n" + "".join(f"{i}\n" for i in ids))
        dataset = LocalDataset(side, tmp_path / f"{side}.csv", {"id": "id"})
        parties.append(Party(side, side, {"data": dataset}, AccelClient.in_process(), params))
    return parties


async def test_runs_and_parties_share_one_set_of_worker_processes(tmp_path: Path) -> None:
    """Two runs with workers=2: both parties use the same pool, kept between runs, and the result is exact."""
    guest, host = [f"u{i}" for i in range(300)], [f"u{i}" for i in range(150, 420)]
    parties = _two_parties(tmp_path, {"guest": guest, "host": host}, batch_size=64)
    first = await run_local(PSI(), parties, round_deadline=60.0)
    pool = curve.worker_pool(2)
    second = await run_local(PSI(), parties, round_deadline=60.0)
    assert curve.worker_pool(2) is pool
    expected = sorted(set(guest) & set(host))
    for results in (first, second):
        assert [r.model["ids"].tolist() for r in results.values()] == [expected, expected]


class _RaggedHost(PSI):
    """A guest as usual; a host that agrees in the handshake, then sends a first-stage batch of 33 bytes."""

    async def run(self, ctx: JobContext) -> ComponentResult:
        if ctx.role == "guest":
            return await super().run(ctx)
        got = await ctx.channel.gather("guest", HANDSHAKE, 0, deadline=ctx.round_deadline)
        request = got["guest"]["request"]
        assert isinstance(request, bytes)
        response = handshake.respond(handshake.decode(request), 1, handshake.ALL_RANKS, 128)
        await ctx.channel.send("guest", RESPONSE, 0, {"response": handshake.encode(response)})
        await ctx.channel.send("guest", ENC, 0, batch_message(0, True, 1, bytes(33)))
        return ComponentResult(model={}, metrics={})


async def test_a_ragged_batch_fails_the_run_with_the_reason_while_the_guest_still_blinds(tmp_path: Path) -> None:
    """The guest's own batches are still in the workers when the host's bad batch arrives: the run fails with
    the reason, and the pending batches are cancelled rather than left running past the run."""
    parties = _two_parties(tmp_path, {"guest": [f"g{i}" for i in range(2000)], "host": ["h"]}, batch_size=100)
    with pytest.raises(PsiProtocolError, match=r"batch 0: index 0, count 1, 33 bytes"):
        await run_local(_RaggedHost(), parties, round_deadline=30.0)
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftover == []
