"""Round messages and the inbox: tensors keep dtype and shape, pieces are digest-checked, duplicates count once."""

from __future__ import annotations

import numpy as np
import pytest

from services.executor.checkpoints import FileCheckpoints, model_digest
from services.executor.errors import BadRoundMessageError, InboxFullError
from services.executor.transport import Inbox, decode_field, encode_field, pieces

JOB = "0b6c2c52-96a2-4c8e-9b43-2a1f0a1e6a10"


def message() -> dict[str, object]:
    return {
        "w": np.arange(1000, dtype=np.float64).reshape(10, 100),
        "n": np.array([7], dtype=">i4"),  # big-endian in: little-endian on the wire
        "ct": b"\x00\x01ciphertext" * 50,
    }


def test_fields_round_trip_with_dtype_and_shape() -> None:
    for value in message().values():
        kind, dtype, shape, raw = encode_field(value)
        back = decode_field(kind, dtype, shape, raw)
        if kind == "bytes":
            assert back == value
        else:
            np.testing.assert_array_equal(back, value)
            assert back.shape == np.asarray(value).shape
            assert dtype.startswith(("<", "|"))


def test_a_message_cut_into_small_pieces_is_reassembled() -> None:
    parts = list(pieces(JOB, "aggregator", "step", 3, message(), piece_bytes=500))
    assert len(parts) > 3
    assert all(len(p["data"]) <= 500 for p in parts)
    inbox = Inbox()
    for p in parts:
        inbox.add("party1", p)
    got = inbox.complete[(JOB, "party1", "step", 3)]
    np.testing.assert_array_equal(got["w"], message()["w"])
    assert got["ct"] == message()["ct"]


def test_a_second_delivery_of_an_identity_is_ignored() -> None:
    inbox = Inbox()
    for p in pieces(JOB, "aggregator", "step", 0, {"x": np.ones(3)}, 1024):
        inbox.add("party1", p)
    for p in pieces(JOB, "aggregator", "step", 0, {"x": np.zeros(3)}, 1024):  # a re-send, even with other content
        inbox.add("party1", p)
    np.testing.assert_array_equal(inbox.complete[(JOB, "party1", "step", 0)]["x"], np.ones(3))
    assert inbox.duplicates == 1


def test_a_copy_interrupted_and_sent_again_completes_from_the_new_copy() -> None:
    inbox = Inbox()
    first = list(pieces(JOB, "aggregator", "step", 0, message(), 500))
    for p in first[:2]:  # the sender dies mid-message
        inbox.add("party1", p)
    for p in first:  # and sends the whole message again after restarting
        inbox.add("party1", p)
    np.testing.assert_array_equal(inbox.complete[(JOB, "party1", "step", 0)]["w"], message()["w"])


def test_a_piece_not_matching_its_digest_is_refused() -> None:
    parts = list(pieces(JOB, "aggregator", "step", 0, {"x": np.ones(300)}, 1000))
    parts[-1] = parts[-1] | {"data": b"\xff" * len(parts[-1]["data"])}
    inbox = Inbox()
    for p in parts[:-1]:
        inbox.add("party1", p)
    with pytest.raises(BadRoundMessageError):
        inbox.add("party1", parts[-1])
    assert (JOB, "party1", "step", 0) not in inbox.complete


def test_a_sender_cannot_make_a_receiver_hold_more_than_its_bound() -> None:
    inbox = Inbox(max_pending_per_sender=4000)
    parts = list(pieces(JOB, "aggregator", "step", 0, {"x": np.ones(1000)}, 1000))  # 8000 bytes
    for p in parts[:4]:
        inbox.add("party1", p)
    with pytest.raises(InboxFullError):
        inbox.add("party1", parts[4])
    assert inbox._pending["party1"] == 0  # what it held was let go


def test_a_wrong_tensor_size_is_refused() -> None:
    with pytest.raises(BadRoundMessageError):
        decode_field("tensor", "<f8", [3], b"\x00" * 16)


def test_checkpoints_survive_a_reload_and_the_latest_wins(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ck = FileCheckpoints(tmp_path / "ck")
    assert ck.latest() is None
    ck.save(0, {"model": np.zeros(2)})
    ck.save(1, {"model": np.ones(2), "blob": b"abc"})
    rnd, state = FileCheckpoints(tmp_path / "ck").latest()  # type: ignore[misc]
    assert rnd == 1
    np.testing.assert_array_equal(state["model"], np.ones(2))
    assert state["blob"] == b"abc"


def test_the_model_digest_depends_on_values_names_and_dtypes() -> None:
    a = model_digest({"w": np.ones(3)})
    assert a == model_digest({"w": np.ones(3)})
    assert a != model_digest({"w": np.ones(3, dtype=np.float32)})
    assert a != model_digest({"v": np.ones(3)})
    assert a != model_digest({"w": np.array([1.0, 1.0, 2.0])})
