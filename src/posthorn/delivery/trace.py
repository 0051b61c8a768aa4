"""Trace fields of local delivery: the per-copy prefix, and reading ``Delivered-To`` back.

Final delivery adds, per copy and above everything the message already has:

- ``Return-Path: <reverse-path>`` — RFC 5321 §4.4: "When the delivery SMTP server makes the
  'final delivery' of a message, it inserts a return-path line at the beginning of the mail
  data"; ``<>`` for the null reverse path (RFC 5321 §4.5.5).
- ``Delivered-To: account`` — RFC 9228: the address the copy was delivered to (our account's
  canonical address, after alias expansion), so a message that comes back around — forwarded
  out and returned — is recognised as a loop (Postfix and qmail do the same).
- the ``Received`` field the SMTP side built at acceptance (RFC 5321 §4.4), kept in the
  envelope rather than written into the spool file.

The prefix is stored once per copy next to the shared message bytes (`Delivery.prefix`), so the
bytes in the spool file are never rewritten (DESIGN.md "Write the bytes once").

Everything here is pure, except `read_header_block`, which blocks (run it in a thread).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from posthorn.mail.address import AddressError, parse_address

HEADER_LIMIT: Final = 256 * 1024
"""How much of a message is searched for its header block; a longer header is cut here."""

# RFC 5322 §2.1: the header ends at the first empty line (bare LF tolerated, as in mail.headers).
_END_OF_HEADER: Final = re.compile(rb"\n\r?\n")
# RFC 5322 §2.2.3: a field continues on lines starting with WSP. Obsolete space before the
# colon accepted (RFC 5322 §4.5).
_DELIVERED_TO: Final = re.compile(
    rb"^delivered-to[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)", re.IGNORECASE | re.MULTILINE
)


def prefix(mail_from: str, account: str, received: bytes) -> bytes:
    """The bytes put before one delivered copy (see the module docstring)."""
    return b"".join(
        (
            b"Return-Path: <",
            mail_from.encode("utf-8"),  # RFC 6531 §3.7.3: UTF-8 when SMTPUTF8 was used
            b">\r\nDelivered-To: ",
            account.encode("utf-8"),
            b"\r\n",
            received,
        )
    )


def read_header_block(path: Path, limit: int = HEADER_LIMIT) -> bytes:
    """The header block of the message in ``path`` (at most ``limit`` bytes). Blocks."""
    with path.open("rb") as f:
        data = f.read(limit)
    return header_block(data, limit)


def header_block(data: bytes, limit: int = HEADER_LIMIT) -> bytes:
    """The header block at the start of ``data`` (at most ``limit`` bytes). Pure."""
    data = data[:limit]
    end = _END_OF_HEADER.search(data)
    return data if end is None else data[: end.start() + 1]


def delivered_to(header: bytes) -> frozenset[str]:
    """Every ``Delivered-To`` address in ``header``, as canonical keys (`Address.canonical`
    when it parses, else lower-cased text), to compare with account addresses."""
    found = set()
    for match in _DELIVERED_TO.finditer(header):
        value = match.group(1).decode("utf-8", "surrogateescape")
        text = " ".join(value.split())
        try:
            found.add(parse_address(text).canonical)
        except AddressError:
            found.add(text.strip("<>").lower())
    return frozenset(found)
