"""Building the message webmail sends or saves as a draft, with the stdlib `email` package.

Owns the bytes of a web-composed message. Pure: values in, bytes out, no I/O.

Invariants:
- Header injection is impossible: every value that reaches a header field (addresses, subject,
  In-Reply-To, References) is refused with `ComposeError` if it holds CR, LF or NUL, and the
  `email` package folds and encodes (RFC 2047 / RFC 2231) what remains.
- ``From`` is always the account (the API never lets a session choose it). ``Message-ID`` and
  ``Date`` are always set (RFC 5322 §3.6.1, §3.6.4; RFC 6409 §8.2, §8.3).
- A sent message has no ``Bcc`` field (RFC 5322 §3.6.3, first method: Bcc recipients get the
  message through the envelope only). A draft keeps it, so reopening a draft keeps the Bcc
  recipients; a draft never goes out as it is (sending builds the message again).
- Attachment file names are reduced to a safe base name (`safe_filename`); content types not of
  the ``type/subtype`` shape become ``application/octet-stream``.
- Line ends are CRLF (RFC 5322 §2.1); the body is UTF-8 text/plain, 8bit when short-lined
  (``eight_bit`` then tells the envelope to ask for 8BITMIME, RFC 6152).
"""

from __future__ import annotations

import email.policy
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import Final

from posthorn.mail.address import Address, AddressError, parse_address
from posthorn.smtp.trace import message_id

__all__ = [
    "MAX_FILENAME_CHARS",
    "Attachment",
    "ComposeError",
    "Composed",
    "Composition",
    "build_message",
    "parse_recipients",
    "safe_filename",
]

MAX_FILENAME_CHARS: Final = 200
MAX_HEADER_CHARS: Final = 8000
"""Per header input (a subject, an address list): far above real use, bounding folding work."""
MAX_REFERENCES: Final = 50
_CONTENT_TYPE: Final = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$"
)
_MSG_ID: Final = re.compile(r"<[^<>\s]+>")
_BREAKS: Final = ("\r", "\n", "\x00")


class ComposeError(ValueError):
    """The input cannot make a message; the text is safe to show to the user."""


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Composition:
    """What the compose form sends (docs/web-api.md ``POST /api/send``), as text."""

    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    in_reply_to: str = ""
    references: str = ""
    attachments: tuple[Attachment, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Composed:
    data: bytes
    message_id: str
    recipients: tuple[Address, ...]  # To, Cc and Bcc, each address once, in that order
    eight_bit: bool  # the bytes are not 7-bit: BODY=8BITMIME
    smtputf8: bool  # an address needs SMTPUTF8 (RFC 6531)


def build_message(
    form: Composition,
    *,
    sender: str,
    hostname: str,
    draft: bool = False,
    now: datetime | None = None,
) -> Composed:
    """The message for ``form`` from the account ``sender``. For a draft, addresses that do
    not parse are kept as typed (a draft may be unfinished); for sending they are refused."""
    for name in ("to", "cc", "bcc", "subject", "in_reply_to", "references"):
        _check_header_input(name, getattr(form, name))
    lists = {
        name: parse_recipients(getattr(form, name), lenient=draft) for name in ("to", "cc", "bcc")
    }
    if not draft and not any(lists.values()):
        raise ComposeError("at least one recipient is needed")
    author = _address(sender)
    every = [author] + [a for entries in lists.values() for _, a in entries if a is not None]
    smtputf8 = not all(a.is_ascii for a in every)
    policy = email.policy.SMTPUTF8 if smtputf8 else email.policy.SMTP
    msg = EmailMessage(policy=policy)
    msg["From"] = HeaderAddress(addr_spec=str(author))
    for name, header in (("to", "To"), ("cc", "Cc"), ("bcc", "Bcc")):
        entries, raw = lists[name], getattr(form, name)
        if (entries or (draft and raw.strip())) and (name != "bcc" or draft):
            _set_addresses(msg, header, entries, raw)
    if form.subject:
        msg["Subject"] = form.subject
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    mid = message_id(hostname)
    msg["Message-ID"] = mid
    in_reply_to = _MSG_ID.findall(form.in_reply_to)[:1]
    references = _MSG_ID.findall(form.references)[-MAX_REFERENCES:] or in_reply_to
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to[0]
    if references:
        msg["References"] = " ".join(references)
    body = form.body.replace("\r\n", "\n").replace("\r", "\n")
    msg.set_content(body, subtype="plain", charset="utf-8")
    for att in form.attachments:
        ctype = att.content_type if _CONTENT_TYPE.match(att.content_type) else ""
        maintype, _, subtype = (ctype or "application/octet-stream").lower().partition("/")
        msg.add_attachment(
            att.data, maintype=maintype, subtype=subtype, filename=safe_filename(att.filename)
        )
    data = msg.as_bytes()
    seen: set[str] = set()
    recipients: list[Address] = []
    for entries in lists.values():
        for _, addr in entries:
            if addr is not None and addr.canonical not in seen:
                seen.add(addr.canonical)
                recipients.append(addr)
    return Composed(data, mid, tuple(recipients), not data.isascii(), smtputf8)


def _check_header_input(name: str, value: str) -> None:
    if any(c in value for c in _BREAKS):
        raise ComposeError(f"{name} must not contain line breaks")
    if len(value) > MAX_HEADER_CHARS:
        raise ComposeError(f"{name} is too long")


def _address(text: str) -> Address:
    try:
        return parse_address(text)
    except AddressError as e:
        raise ComposeError(f"not a valid address: {text!r} ({e})") from None


def parse_recipients(text: str, *, lenient: bool = False) -> list[tuple[str, Address | None]]:
    """``Name <a@b>, c@d`` as (display name, address) pairs. An entry that does not parse is
    a `ComposeError`, or with ``lenient`` kept with address None (drafts)."""
    _check_header_input("address list", text)
    if not text.strip():
        return []
    out: list[tuple[str, Address | None]] = []
    for name, addr in getaddresses([text]):
        if not addr and not name:
            if lenient:
                continue
            raise ComposeError(f"not a valid address list: {text!r}")
        try:
            out.append((name, parse_address(addr)))
        except AddressError as e:
            if not lenient:
                raise ComposeError(f"not a valid address: {addr or name!r} ({e})") from None
            out.append((name, None))
    return out


def _set_addresses(
    msg: EmailMessage, header: str, entries: Sequence[tuple[str, Address | None]], raw: str
) -> None:
    """The addresses, or for a draft with entries that do not parse, the text as typed; if the
    `email` package cannot even store that, the entries that did parse."""
    parsed = [HeaderAddress(display_name=n, addr_spec=str(a)) for n, a in entries if a]
    if entries and len(parsed) == len(entries):
        msg[header] = parsed
        return
    try:
        msg[header] = raw.strip()
    except (ValueError, IndexError, TypeError):  # the email package's parser on junk
        if header in msg:
            del msg[header]
        if parsed:
            msg[header] = parsed


def safe_filename(name: str) -> str:
    """A file name safe to write anywhere: the last path component, no control or format
    characters, no leading dots, at most `MAX_FILENAME_CHARS` characters, never empty."""
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = name.strip().lstrip(".").strip()
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_FILENAME_CHARS - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME_CHARS]
    return name or "attachment"
