"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3): known vectors, strictness, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posthorn.imap import utf7

VECTORS = [
    ("INBOX", "INBOX"),
    ("", ""),
    ("&", "&-"),
    ("a&b", "a&-b"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("Gelöschte Elemente", "Gel&APY-schte Elemente"),
    ("ää", "&AOQA5A-"),
    ("&ä", "&-&AOQ-"),
    # RFC 3501 §5.1.3's own example: 台北 and 日本語 in a hierarchy.
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("😀", "&2D3eAA-"),  # a surrogate pair in UTF-16
    ("a\tb", "a&AAk-b"),  # control characters are shifted too
]


@pytest.mark.parametrize(("name", "encoded"), VECTORS)
def test_encode(name: str, encoded: str) -> None:
    assert utf7.encode(name) == encoded


@pytest.mark.parametrize(("name", "encoded"), VECTORS)
def test_decode(name: str, encoded: str) -> None:
    assert utf7.decode(encoded) == name


@pytest.mark.parametrize(
    "bad",
    [
        "&ACY-",  # "&" spelled in base64 instead of "&-"
        "&AGE-",  # "a" (printable ASCII) in base64
        "&AOQ",  # unterminated shift
        "a&",  # unterminated shift at the end
        "&AOQ-&AOQ-",  # two adjacent shifts: the canonical form is one shift
        "&AOR-",  # non-zero padding bits
        "&AO-",  # partial UTF-16 unit
        "&AOQA-",  # 3 octets: one and a half UTF-16 units
        "&2D0-",  # a lone high surrogate
        "&AO/k-",  # "/" is not in the modified alphabet (it is ",")
        "Entwürfe",  # 8-bit characters must be shifted
        "a\x00b",
        "tab\there",
    ],
)
def test_decode_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        utf7.decode(bad)


def test_encode_rejects_lone_surrogate() -> None:
    with pytest.raises(ValueError):
        utf7.encode("bad\udcff")


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_roundtrip(name: str) -> None:
    encoded = utf7.encode(name)
    assert encoded.isascii() and encoded.isprintable()
    assert utf7.decode(encoded) == name


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("&-AOQ5a,+/Z2D3eU=x é"), max_size=20))
def test_decode_is_canonical(text: str) -> None:
    """Whatever decodes has exactly one spelling: decode then encode gives the input back."""
    try:
        name = utf7.decode(text)
    except ValueError:
        return
    assert utf7.encode(name) == text
