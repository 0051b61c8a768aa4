"""Hypothesis fuzzing of envelope address parsing: only AddressError escapes, and what parses is
normalised and stable (parse(str(a)) == a)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from posthorn.mail.address import (
    MAX_LOCAL_OCTETS,
    MAX_PATH_OCTETS,
    Address,
    AddressError,
    parse_address,
    parse_address_bytes,
    split_plus,
)
from tests.fuzz.budget import budget

FUZZ = budget(400)

# Pieces that exercise every branch: specials, quotes, escapes, dots, IDN, literals, routes.
_PIECES = st.sampled_from(
    [
        "a", "Z", "0", ".", "..", "@", "<", ">", '"', "\\", " ", "%", "!", "+", ":", ",", "[", "]",
        "IPv6:", "::1", "1.2.3.4", "xn--", "-", "ü", "ß", "例", "\u3002", "\u200d", "\x00", "\x85",
        "\udcff", "😀", "example", "org", "Bücher", "xn--bcher-kva",
    ]
)  # fmt: skip
_SOUP = st.lists(_PIECES, max_size=12).map("".join)


def check(address: Address) -> None:
    """Invariants of every successful parse."""
    assert address.local
    assert address.domain == address.domain.lower() or address.domain.startswith("[IPv6:")
    assert address.domain.isascii()
    rendered = str(address)
    assert len(rendered.encode("utf-8")) + 2 <= MAX_PATH_OCTETS
    local_part = rendered[: rendered.rindex("@")]
    assert len(local_part.encode("utf-8")) <= MAX_LOCAL_OCTETS
    assert parse_address(rendered) == address
    assert parse_address(address.canonical).canonical == address.canonical
    address.display.encode("utf-8")
    base, tag = split_plus(address.local)
    assert base + ("" if tag is None else "+" + tag) == address.local


def attempt(text: str) -> None:
    try:
        address = parse_address(text)
    except AddressError:
        return
    check(address)


@FUZZ
@given(st.text(max_size=80))
def test_any_text(text: str) -> None:
    attempt(text)


@FUZZ
@given(_SOUP, _SOUP)
def test_structured(local: str, domain: str) -> None:
    attempt(f"{local}@{domain}")
    attempt(f'"{local}"@{domain}')
    attempt(f"<{local}@{domain}>")


@FUZZ
@given(st.binary(max_size=80))
def test_any_bytes(raw: bytes) -> None:
    try:
        address = parse_address_bytes(raw)
    except AddressError:
        return
    check(address)
