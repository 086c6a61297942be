"""mesh.chunks: reassembly of chunked events, in order, digest-checked and bounded in memory."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.chunks import ChunkAssembler
from mesh.errors import MalformedChunkError

WHOLE = bytes(range(256)) * 4


def pieces(whole: bytes, cuts: list[int], digest: bytes | None = None, size: int | None = None) -> list[dict[str, Any]]:
    """Chunk records for ``whole`` cut at ``cuts`` (sorted offsets), as a sender would publish them."""
    bounds = [0, *cuts, len(whole)]
    parts = [whole[a:b] for a, b in itertools.pairwise(bounds)]
    return [
        {
            "whole_sha256": digest if digest is not None else hashlib.sha256(whole).digest(),
            "index": i,
            "count": len(parts),
            "whole_size": len(whole) if size is None else size,
            "data": part,
        }
        for i, part in enumerate(parts)
    ]


def feed(assembler: ChunkAssembler, chunks: list[dict[str, Any]], sender: str = "node-a") -> list[bytes | None]:
    return [assembler.add(sender, c) for c in chunks]


def test_pieces_in_order_reassemble_to_the_whole_on_the_last_one() -> None:
    results = feed(ChunkAssembler(), pieces(WHOLE, [100, 500, 900]))
    assert results == [None, None, None, WHOLE]


def test_one_piece_is_a_whole_at_once() -> None:
    assert feed(ChunkAssembler(), pieces(WHOLE, [])) == [WHOLE]


def test_reassembled_bytes_that_do_not_match_the_digest_are_malformed() -> None:
    chunks = pieces(WHOLE, [512], digest=hashlib.sha256(b"something else").digest())
    assembler = ChunkAssembler()
    assert assembler.add("node-a", chunks[0]) is None
    with pytest.raises(MalformedChunkError, match="digest"):
        assembler.add("node-a", chunks[1])


def test_a_piece_changed_in_transit_fails_the_digest() -> None:
    chunks = pieces(WHOLE, [512])
    chunks[1]["data"] = bytes([chunks[1]["data"][0] ^ 1]) + chunks[1]["data"][1:]
    with pytest.raises(MalformedChunkError, match="digest"):
        feed(ChunkAssembler(), chunks)


def test_a_piece_without_its_first_piece_is_malformed() -> None:
    with pytest.raises(MalformedChunkError, match="first piece"):
        ChunkAssembler().add("node-a", pieces(WHOLE, [300, 600])[1])


def test_a_piece_out_of_order_is_malformed_and_drops_the_assembly() -> None:
    chunks = pieces(WHOLE, [300, 600])
    assembler = ChunkAssembler()
    assembler.add("node-a", chunks[0])
    with pytest.raises(MalformedChunkError, match="does not follow"):
        assembler.add("node-a", chunks[2])
    with pytest.raises(MalformedChunkError, match="first piece"):  # nothing of it was kept
        assembler.add("node-a", chunks[1])


def test_a_repeated_piece_is_malformed() -> None:
    chunks = pieces(WHOLE, [300, 600])
    assembler = ChunkAssembler()
    assembler.add("node-a", chunks[0])
    assembler.add("node-a", chunks[1])
    with pytest.raises(MalformedChunkError):
        assembler.add("node-a", chunks[1])


@pytest.mark.parametrize("field", ["count", "whole_size"])
def test_a_piece_that_changes_count_or_size_midway_is_malformed(field: str) -> None:
    chunks = pieces(WHOLE, [300, 600])
    chunks[1][field] += 1
    with pytest.raises(MalformedChunkError):
        feed(ChunkAssembler(), chunks)


def test_an_event_larger_than_max_event_bytes_is_malformed() -> None:
    assembler = ChunkAssembler(max_event_bytes=len(WHOLE) - 1)
    with pytest.raises(MalformedChunkError, match="out of range"):
        assembler.add("node-a", pieces(WHOLE, [100])[0])


def test_an_event_of_exactly_max_event_bytes_is_accepted() -> None:
    assert feed(ChunkAssembler(max_event_bytes=len(WHOLE)), pieces(WHOLE, [100]))[-1] == WHOLE


def test_assemblies_beyond_max_bytes_in_all_are_refused_until_one_is_done() -> None:
    assembler = ChunkAssembler(max_bytes=len(WHOLE) * 2)
    other = bytes(reversed(WHOLE))
    third = WHOLE[::2] + WHOLE[1::2]
    first_chunks, second_chunks, third_chunks = pieces(WHOLE, [10]), pieces(other, [10]), pieces(third, [10])
    assembler.add("node-a", first_chunks[0])
    assembler.add("node-a", second_chunks[0])
    with pytest.raises(MalformedChunkError, match="more than"):
        assembler.add("node-a", third_chunks[0])
    assert assembler.add("node-a", first_chunks[1]) == WHOLE
    with pytest.raises(MalformedChunkError, match="more than"):  # held until applied (it may be retried) ...
        assembler.add("node-a", third_chunks[0])
    assembler.release("node-a", hashlib.sha256(WHOLE).digest())
    assert feed(assembler, third_chunks)[-1] == third  # ... then its budget serves another event


def test_a_refused_assembly_releases_its_budget() -> None:
    assembler = ChunkAssembler(max_bytes=len(WHOLE))
    chunks = pieces(WHOLE, [300, 600])
    assembler.add("node-a", chunks[0])
    with pytest.raises(MalformedChunkError):
        assembler.add("node-a", chunks[2])
    assert feed(assembler, chunks)[-1] == WHOLE


def test_pieces_overrunning_the_declared_size_are_refused_before_the_last_one() -> None:
    """A sender declaring a small whole_size cannot make the assembler hold more than that."""
    chunks = pieces(WHOLE, list(range(100, len(WHOLE), 100)), size=150)
    assembler = ChunkAssembler()
    assembler.add("node-a", chunks[0])
    with pytest.raises(MalformedChunkError, match="exceed"):
        assembler.add("node-a", chunks[1])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("whole_sha256", b"\x00" * 31),
        ("whole_sha256", b""),
        ("index", -1),
        ("index", 3),
        ("count", 0),
        ("whole_size", 0),
        ("whole_size", -5),
    ],
)
def test_chunk_fields_out_of_range_are_malformed(field: str, value: object) -> None:
    chunk = pieces(WHOLE, [300, 600])[0]
    chunk[field] = value
    with pytest.raises(MalformedChunkError, match="out of range"):
        ChunkAssembler().add("node-a", chunk)


def test_an_assembly_older_than_the_ttl_is_dropped() -> None:
    assembler = ChunkAssembler(ttl=-1.0)  # every open assembly is already too old at the next add
    chunks = pieces(WHOLE, [300])
    assembler.add("node-a", chunks[0])
    with pytest.raises(MalformedChunkError, match="first piece"):
        assembler.add("node-a", chunks[1])


def test_assemblies_of_different_senders_and_events_interleave() -> None:
    other = bytes(reversed(WHOLE))
    a, b, c = pieces(WHOLE, [400]), pieces(WHOLE, [700]), pieces(other, [100])
    assembler = ChunkAssembler()
    assert assembler.add("node-a", a[0]) is None
    assert assembler.add("node-b", b[0]) is None
    assert assembler.add("node-a", c[0]) is None
    assert assembler.add("node-b", b[1]) == WHOLE
    assert assembler.add("node-a", c[1]) == other
    assert assembler.add("node-a", a[1]) == WHOLE


def test_pieces_from_another_sender_do_not_join_an_assembly() -> None:
    chunks = pieces(WHOLE, [400])
    assembler = ChunkAssembler()
    assembler.add("node-a", chunks[0])
    with pytest.raises(MalformedChunkError, match="first piece"):
        assembler.add("node-b", chunks[1])


def test_the_last_piece_read_again_gives_the_whole_again_until_released() -> None:
    """A whole event retried later (say its schema was not known yet) is handed out again from its last piece."""
    chunks = pieces(WHOLE, [400])
    assembler = ChunkAssembler()
    assert feed(assembler, chunks)[-1] == WHOLE
    assert assembler.add("node-a", chunks[-1]) == WHOLE
    assembler.release("node-a", chunks[0]["whole_sha256"])
    with pytest.raises(MalformedChunkError, match="first piece"):
        assembler.add("node-a", chunks[-1])


@given(whole=st.binary(min_size=1, max_size=4096), data=st.data())
def test_any_bytes_cut_into_any_pieces_reassemble_exactly(whole: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=20), label="cuts"))
    chunks = pieces(whole, cuts)
    results = feed(ChunkAssembler(), chunks)
    assert results[:-1] == [None] * (len(chunks) - 1)
    assert results[-1] == whole


def test_a_whole_kept_for_a_retry_survives_other_wholes_being_released() -> None:
    """The service releases only what a settled record assembled; a paused one's whole stays for its retry."""
    assembler = ChunkAssembler()
    first, second = pieces(WHOLE, [10]), pieces(bytes(reversed(WHOLE)), [10])
    feed(assembler, first)  # completed, its record then retried later
    feed(assembler, second)
    assembler.release("node-a", hashlib.sha256(bytes(reversed(WHOLE))).digest())
    assert assembler.add("node-a", first[-1]) == WHOLE
