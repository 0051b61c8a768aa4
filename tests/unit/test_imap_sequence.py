"""Sequence sets (RFC 9051 §9): parsing, resolving ``*``, and the compact form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthorn.imap.sequence import format_sequence, parse_sequence_set
from posthorn.imap.values import ParseError


@pytest.mark.parametrize(
    ("text", "largest", "ranges"),
    [
        ("1", 5, [(1, 1)]),
        ("1:*", 5, [(1, 5)]),
        ("*", 5, [(5, 5)]),
        ("*:3", 5, [(3, 5)]),  # n:m is m:n
        ("4:2,7,9:*", 12, [(2, 4), (7, 7), (9, 12)]),
        ("1:3,2:6,8", 10, [(1, 6), (8, 8)]),  # merged
        ("1:*", 0, []),  # an empty mailbox
        ("7:9", 3, [(7, 9)]),  # kept: UID sets may name UIDs that do not exist
    ],
)
def test_ranges(text: str, largest: int, ranges: list[tuple[int, int]]) -> None:
    assert parse_sequence_set(text).ranges(largest) == ranges


@pytest.mark.parametrize("text", ["", "0", "01", "1:", ":1", "a", "1,,2", "4294967296", "-1"])
def test_invalid(text: str) -> None:
    with pytest.raises(ParseError):
        parse_sequence_set(text)


def test_saved_result_and_contains() -> None:
    assert parse_sequence_set("$").saved
    s = parse_sequence_set("2:4,*")
    assert [n for n in range(1, 11) if s.contains(n, 10)] == [2, 3, 4, 10]


def test_format() -> None:
    assert format_sequence([1, 2, 3, 5, 7, 8]) == "1:3,5,7:8"
    assert format_sequence([]) == ""


@given(st.sets(st.integers(1, 500), min_size=1))
def test_format_round_trips(numbers: set[int]) -> None:
    ordered = sorted(numbers)
    ranges = parse_sequence_set(format_sequence(ordered)).ranges(max(ordered))
    assert [n for a, b in ranges for n in range(a, b + 1)] == ordered
