"""The PSI handshake (BFIA open algorithm protocol §2.1-2.2): what the guest proposes, what a host accepts.

Messages are canonical JSON (sorted keys, no spaces) carried as bytes on the round channel,
with the fields and meanings of the BFIA ``HandshakeRequest``/``HandshakeResponse``;
enumerations are spelled as names instead of the BFIA integers (docs/vertical.md lists them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HANDSHAKE_VERSION = 2
ALGO = "ECDH_PSI"
FAMILY = "ECC"
#: The one suite this implementation speaks (curve, hash, hash-to-curve strategy).
SUITE = {"curve": "CURVE25519", "hash": "SHA_512", "hash2curve_strategy": "DIRECT_HASH_AS_U"}
POINT_FORMAT = "X25519_U_LE32"
PROTOCOL_VERSION = 1
ALL_RANKS = -1

#: error_code values of a HandshakeResponse header
OK, UNSUPPORTED_ALGO, UNSUPPORTED_SUITE, UNSUPPORTED_VERSION, RESULT_MISMATCH, BAD_PARAMS = 0, 1, 2, 3, 4, 5


class PsiHandshakeError(Exception):
    """The parties do not agree on how to run the PSI: the job fails with this reason on both sides."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"PSI handshake refused (code {code}): {message}")
        self.code = code


@dataclass(frozen=True)
class Agreement:
    """What both sides run with once the handshake succeeded."""

    truncate_bits: int  # second-stage ciphertexts are compared on their first truncate_bits bits
    result_to_rank: int  # -1: every party learns the intersection; 0: only the guest
    guest_items: int
    host_items: int

    @property
    def truncate_bytes(self) -> int:
        return self.truncate_bits // 8


def encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def decode(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PsiHandshakeError(BAD_PARAMS, f"handshake message is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise PsiHandshakeError(BAD_PARAMS, "handshake message is not a JSON object")
    return body


def request(rank: int, items: int, result_to_rank: int) -> dict[str, Any]:
    """The guest's HandshakeRequest."""
    return {
        "version": HANDSHAKE_VERSION,
        "requester_rank": rank,
        "supported_algos": [ALGO],
        "protocol_families": [FAMILY],
        "protocol_family_params": [
            {
                "supported_versions": [PROTOCOL_VERSION],
                "ec_suits": [SUITE],
                "point_octet_formats": [POINT_FORMAT],
                "support_point_truncation": True,
            }
        ],
        "io_param": {"supported_versions": [PROTOCOL_VERSION], "item_num": items, "result_to_rank": result_to_rank},
    }


def respond(body: Mapping[str, Any], items: int, result_to_rank: int, truncate_bits: int) -> dict[str, Any]:
    """A host's HandshakeResponse to ``body``: the decision, or a header with the reason it refuses."""
    try:
        code, message = _judge(body, result_to_rank)
    except (KeyError, TypeError, IndexError) as exc:
        code, message = BAD_PARAMS, f"malformed HandshakeRequest: missing or mistyped {exc}"
    response: dict[str, Any] = {"header": {"error_code": code, "error_msg": message}}
    if code == OK:
        response |= {
            "algo": ALGO,
            "protocol_families": [FAMILY],
            "protocol_family_params": [
                {
                    "version": PROTOCOL_VERSION,
                    "ec_suit": SUITE,
                    "point_octet_format": POINT_FORMAT,
                    "support_point_truncation": True,
                    "bit_length_after_truncated": truncate_bits,
                }
            ],
            "io_param": {"version": PROTOCOL_VERSION, "result_to_rank": result_to_rank, "item_num": items},
        }
    return response


def _judge(body: Mapping[str, Any], result_to_rank: int) -> tuple[int, str]:
    if body["version"] != HANDSHAKE_VERSION:
        return UNSUPPORTED_VERSION, f"handshake version {body['version']}; this party speaks {HANDSHAKE_VERSION}"
    if ALGO not in body["supported_algos"]:
        return UNSUPPORTED_ALGO, f"algorithms {body['supported_algos']} offered; this party runs only {ALGO}"
    if FAMILY not in body["protocol_families"]:
        return UNSUPPORTED_ALGO, f"protocol families {body['protocol_families']} offered; {ALGO} needs {FAMILY}"
    params = body["protocol_family_params"][body["protocol_families"].index(FAMILY)]
    if (
        PROTOCOL_VERSION not in params["supported_versions"]
        or PROTOCOL_VERSION not in body["io_param"]["supported_versions"]
    ):
        return UNSUPPORTED_VERSION, f"versions {params['supported_versions']} offered; this party speaks 1"
    if SUITE not in params["ec_suits"]:
        return UNSUPPORTED_SUITE, f"suites {params['ec_suits']} offered; this party speaks only {SUITE}"
    if POINT_FORMAT not in params["point_octet_formats"]:
        return UNSUPPORTED_SUITE, f"point formats {params['point_octet_formats']} offered; need {POINT_FORMAT}"
    if body["io_param"]["result_to_rank"] != result_to_rank:
        return RESULT_MISMATCH, (
            f"the guest wants the result to go to rank {body['io_param']['result_to_rank']};"
            f" this party agreed to {result_to_rank}"
        )
    return OK, ""


def accept(response: Mapping[str, Any], guest_items: int) -> Agreement:
    """The guest's reading of a HandshakeResponse; raises the host's refusal as ``PsiHandshakeError``."""
    try:
        header = response["header"]
        if header["error_code"] != OK:
            raise PsiHandshakeError(int(header["error_code"]), str(header["error_msg"]))
        params = response["protocol_family_params"][0]
        if response["algo"] != ALGO or params["ec_suit"] != SUITE or params["point_octet_format"] != POINT_FORMAT:
            raise PsiHandshakeError(UNSUPPORTED_SUITE, f"the host decided on something not offered: {response}")
        bits = int(params["bit_length_after_truncated"])
        return Agreement(
            _truncation(bits),
            int(response["io_param"]["result_to_rank"]),
            guest_items,
            int(response["io_param"]["item_num"]),
        )
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise PsiHandshakeError(BAD_PARAMS, f"malformed HandshakeResponse: {exc}") from exc


def _truncation(bits: int) -> int:
    if bits == -1:
        return 256
    if bits % 8 or not 80 <= bits <= 256:
        raise PsiHandshakeError(BAD_PARAMS, f"bit_length_after_truncated {bits}: need a multiple of 8 in [80, 256]")
    return bits
