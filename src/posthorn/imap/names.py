"""Mailbox names on the wire and in the store (RFC 9051 §5.1, RFC 3501 §5.1.3).

The store speaks Unicode names with ``/`` between levels; clients send UTF-8, or modified
UTF-7 unless they enabled UTF8=ACCEPT or IMAP4rev2. Checking happens here, once, so that no
name a client can send steps outside the account's own tree.
"""

from __future__ import annotations

from posthorn.imap import utf7
from posthorn.imap.values import ParseError, Value, astring_bytes

DELIMITER = "/"
MAX_MAILBOX_NAME = 1000  # octets, UTF-8
MAX_MAILBOX_DEPTH = 40


def decode_name(value: Value, *, utf8: bool, what: str) -> str:
    """A mailbox name or LIST pattern as Unicode: UTF-8 on the wire, and modified UTF-7
    (RFC 3501 §5.1.3) decoded unless the client enabled UTF8=ACCEPT or IMAP4rev2."""
    try:
        text = astring_bytes(value, what).decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"{what} is not valid UTF-8") from None
    if not utf8 and "&" in text:
        try:
            text = utf7.decode(text)
        except ValueError:
            raise ParseError(f"{what} is not valid modified UTF-7") from None
    return text


def mailbox_name(value: Value, *, utf8: bool) -> str:
    """A client's mailbox name as the store's Unicode name, checked (RFC 9051 §5.1).

    Modified UTF-7 is decoded unless the client enabled UTF8=ACCEPT or IMAP4rev2, but 8-bit
    UTF-8 is accepted either way (RFC 9051 §5.1.3 lets servers accept it). Names that could
    confuse the hierarchy (``..``, empty levels, control characters) are refused outright, so
    no name can step outside the account's own tree.
    """
    if len(astring_bytes(value, "mailbox name")) > MAX_MAILBOX_NAME:
        raise ParseError("mailbox name too long")
    text = decode_name(value, utf8=utf8, what="mailbox name")
    if text.endswith(DELIMITER):  # RFC 9051 §6.3.4: a trailing delimiter is allowed
        text = text[:-1]
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise ParseError("mailbox name has control characters")
    if not text:
        raise ParseError("empty mailbox name")
    parts = text.split(DELIMITER)
    if len(parts) > MAX_MAILBOX_DEPTH:
        raise ParseError("mailbox name nested too deeply")
    if any(p in ("", ".", "..") for p in parts):
        raise ParseError("mailbox name has an empty, '.' or '..' level")
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return DELIMITER.join(parts)
