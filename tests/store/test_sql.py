"""Multi-row statements' chunks (sql.chunks): every item once, in order, in few sizes."""

from __future__ import annotations

from remediator.store.sql import ROWS_PER_STATEMENT, chunks, chunks_to_pad, pad


def test_chunks_are_powers_of_two_in_order() -> None:
    for n in (0, 1, 3, 37, ROWS_PER_STATEMENT, 200):
        found = chunks(list(range(n)))
        assert [i for chunk in found for i in chunk] == list(range(n))
        assert all(len(c) & (len(c) - 1) == 0 and len(c) <= ROWS_PER_STATEMENT for c in found)
    assert [len(c) for c in chunks(list(range(37)))] == [32, 4, 1]


def test_a_chunk_read_is_padded_to_a_power_of_two_rows() -> None:
    assert [pad(n) for n in (0, 1, 2, 3, 5, 8, 9, 64)] == [0, 0, 0, 1, 3, 0, 7, 0]
    assert [len(c) for c in chunks_to_pad(list(range(130)))] == [64, 64, 2]
