"""Quota size parsing (posthorn.directory.sizes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthorn.directory.errors import BadSize
from posthorn.directory.sizes import MAX_SIZE, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("0", 0),
        ("unlimited", None),
        ("UNLIMITED", None),
        (" 500M ", 500 * 1024**2),
        ("500m", 500 * 1024**2),
        ("500MB", 500 * 1024**2),
        ("500MiB", 500 * 1024**2),
        ("1G", 1024**3),
        ("1 G", 1024**3),
        ("2T", 2 * 1024**4),
        ("4k", 4096),
        ("1.5G", 1536 * 1024**2),
        ("0.5K", 512),
        ("1B", 1),
    ],
)
def test_parse_size(text: str, size: int | None) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty size"),
        ("   ", "empty size"),
        ("-1", "bad size"),
        ("1X", "bad size"),
        ("M", "bad size"),
        ("1,5G", "bad size"),
        ("1.5", "fraction needs a unit"),
        ("unlimited please", "bad size"),
        ("99999999999T", "too large"),
        ("١٢٣", "bad size"),  # Arabic-Indic digits are not sizes
    ],
)
def test_parse_size_errors(text: str, message: str) -> None:
    with pytest.raises(BadSize) as info:
        parse_size(text)
    assert message in info.value.message
    assert isinstance(info.value, ValueError)


def test_format_size() -> None:
    assert format_size(None) == "unlimited"
    assert format_size(0) == "0"
    assert format_size(1000) == "1000"
    assert format_size(500 * 1024**2) == "500M"
    assert format_size(1536 * 1024**2) == "1536M"
    assert format_size(1024**4) == "1T"


@given(st.integers(min_value=0, max_value=MAX_SIZE) | st.none())
def test_format_parse_round_trip(size: int | None) -> None:
    assert parse_size(format_size(size)) == size
