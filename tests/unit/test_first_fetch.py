"""When a record was first fetched: a partition read again from a held record keeps each record's first time,
which is what a fence is compared with (docs/protocol.md §6.5)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mesh.bus import _FirstFetch


@given(st.integers(0, 10), st.lists(st.tuples(st.floats(0, 1), st.integers(1, 20)), min_size=1, max_size=30))
def test_each_offset_keeps_the_time_of_the_first_fetch_that_reached_it(
    log_start: int, fetches: list[tuple[float, int]]
) -> None:
    """A partition is read on from where it was, or again from a held record (a seek back to any offset read
    before); each fetch returns a run of records, and time only grows."""
    times = _FirstFetch()
    first: dict[int, int] = {}
    end = log_start
    for at, (back, length) in enumerate(fetches, 1):
        start = end - round(back * (end - log_start))
        end = max(end, start + length)
        for offset in range(start, start + length):
            assert times.of(offset, at) == first.setdefault(offset, at)
        times.note(start + length, at)


def test_forgetting_below_a_position_keeps_what_later_offsets_need() -> None:
    times = _FirstFetch()
    times.note(10, 1)
    times.note(20, 2)
    times.note(30, 3)
    times.forget_below(15)
    assert [times.of(o, 9) for o in (15, 25, 30)] == [2, 3, 9]
