"""Byte-literal tests of the IMAP serialisation primitives (posthorn.imap.response)."""

from __future__ import annotations

import pytest

from posthorn.imap import response as r


@pytest.mark.parametrize(
    ("data", "utf8", "wire"),
    [
        (b"hello", False, b'"hello"'),
        (b"", False, b'""'),
        (b'say "hi" \\o/', False, b'"say \\"hi\\" \\\\o/"'),
        ("hello", False, b'"hello"'),
        (b"a\r\nb", False, b"{4}\r\na\r\nb"),
        (b"a\nb", True, b"{3}\r\na\nb"),
        (b"nul\x00", True, b"{4}\r\nnul\x00"),
        # 8-bit: a literal unless UTF-8 is enabled and the octets are valid UTF-8 (RFC 6855 §3).
        ("Grüße", False, b"{7}\r\nGr\xc3\xbc\xc3\x9fe"),
        ("Grüße", True, b'"Gr\xc3\xbc\xc3\x9fe"'),
        (b"caf\xe9", True, b"{4}\r\ncaf\xe9"),
        # str from a surrogateescape decoding gives back its original octets.
        (b"caf\xe9".decode("utf-8", "surrogateescape"), True, b"{4}\r\ncaf\xe9"),
        (b"\x7f\x01", False, b'"\x7f\x01"'),
    ],
)
def test_quoted_or_literal(data: bytes | str, utf8: bool, wire: bytes) -> None:
    assert r.quoted_or_literal(data, utf8=utf8) == wire


@pytest.mark.parametrize(
    ("text", "utf8"),
    [
        ("plain", False),
        ('q"uo\\te', False),
        ("Grüße", False),
        ("Grüße", True),
        (b"caf\xe9".decode("utf-8", "surrogateescape"), True),
        ("line\r\nbreak", True),
    ],
)
def test_quote_text_matches_bytes_form(text: str, utf8: bool) -> None:
    encoded = r.quote_text(text, utf8=utf8).encode("utf-8", "surrogateescape")
    assert encoded == r.quoted_or_literal(text, utf8=utf8)
    assert r.text_quoter(utf8)(text) == r.quote_text(text, utf8=utf8)
    assert r.text_quoter(utf8)(None) == "NIL"


def test_nstring() -> None:
    assert r.nstring(None) == b"NIL"
    assert r.nstring("") == b'""'
    assert r.nstring(b"x") == b'"x"'


@pytest.mark.parametrize(
    ("s", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("Sent]", b"Sent]"),  # resp-specials is an ASTRING-CHAR
        ("a/b.c-d_e+f&g'~|}#$!", b"a/b.c-d_e+f&g'~|}#$!"),
        ("two words", b'"two words"'),
        ("", b'""'),
        ("NIL", b'"NIL"'),
        ("nil", b'"nil"'),
        ("a(b", b'"a(b"'),
        ("a{b", b'"a{b"'),
        ("50%", b'"50%"'),
        ("a*", b'"a*"'),
        ('q"', b'"q\\""'),
        ("ü", b"{2}\r\n\xc3\xbc"),
    ],
)
def test_astring(s: str, wire: bytes) -> None:
    assert r.astring(s) == wire


def test_flag_list() -> None:
    assert r.flag_list(["\\Seen", "$Forwarded"]) == b"(\\Seen $Forwarded)"
    assert r.flag_list([]) == b"()"


@pytest.mark.parametrize(
    ("name", "utf8", "wire"),
    [
        ("INBOX", False, b"INBOX"),
        ("Sent", False, b"Sent"),
        ("Entwürfe", False, b"Entw&APw-rfe"),
        ("Entwürfe", True, b'"Entw\xc3\xbcrfe"'),
        ("Q&A", False, b"Q&-A"),
        ("Q&A", True, b"Q&A"),
        ("My Folder", False, b'"My Folder"'),
        ("Gelöschte Elemente", False, b'"Gel&APY-schte Elemente"'),
    ],
)
def test_mailbox_name(name: str, utf8: bool, wire: bytes) -> None:
    assert r.mailbox_name(name, utf8=utf8) == wire


def test_tagged() -> None:
    assert r.tagged("a1", "OK", "done") == b"a1 OK done\r\n"
    assert r.tagged("a1", "NO", "no such mailbox", "NONEXISTENT") == (
        b"a1 NO [NONEXISTENT] no such mailbox\r\n"
    )
    # A line break in the text must not end the response early.
    assert r.tagged("a1", "BAD", "x\r\n* OK forged") == b"a1 BAD x * OK forged\r\n"


def test_untagged() -> None:
    assert r.untagged("CAPABILITY IMAP4rev1") == b"* CAPABILITY IMAP4rev1\r\n"
    assert r.untagged(b"1 FETCH (BODY[] {2}\r\nhi)") == b"* 1 FETCH (BODY[] {2}\r\nhi)\r\n"


def test_continuation() -> None:
    assert r.continuation() == b"+ \r\n"
    assert r.continuation("Ready") == b"+ Ready\r\n"
    assert r.continuation_b64(b"") == b"+ \r\n"
    assert r.continuation_b64(b"hi") == b"+ aGk=\r\n"
