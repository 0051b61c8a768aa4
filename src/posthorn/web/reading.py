"""Reading a stored message for the web: its leaf parts, body text and attachments.

Pure functions over the message bytes and the `MessageInfo` computed at ingest
(`posthorn.mail.mime`): nothing here parses MIME again, except when the stored info does not
match the bytes (then `locate` parses once, as IMAP SEARCH does).

Part numbers are IMAP's (RFC 9051 §6.4.5): a single-part message is ``1``; the children of a
multipart are ``1``, ``2`` ..., nested ones ``2.1`` and so on. A message/rfc822 part is a leaf
here (an attachment, downloaded as the embedded message).

Which leaves are the body: every text/plain leaf that is not an attachment is text (joined),
the first such text/html leaf is the HTML; every other leaf is an attachment.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from posthorn.imap.search import decode_words
from posthorn.mail.info import BodyPart, EnvelopeAddress, MessageInfo
from posthorn.mail.mime import parse_message
from posthorn.store.base import MessageMeta

__all__ = [
    "ACTIVE_TYPES",
    "Leaf",
    "attachments",
    "body_texts",
    "decode_text",
    "format_addresses",
    "leaf_bytes",
    "leaves",
    "locate",
    "served_type",
]

ACTIVE_TYPES: Final = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/javascript",
        "application/javascript",
        "application/ecmascript",
        "text/ecmascript",
        "application/x-javascript",
        "text/xsl",
    }
)
"""Types a browser would run or render as a document from our origin; served as
application/octet-stream instead (docs/web-api.md)."""


@dataclass(frozen=True, slots=True)
class Leaf:
    number: str
    part: BodyPart

    @property
    def content_type(self) -> str:
        return f"{self.part.type}/{self.part.subtype}"

    @property
    def filename(self) -> str | None:
        """The name the sender gave: Content-Disposition filename, else Content-Type name."""
        disposition = self.part.disposition
        for key, value in disposition[1] if disposition else ():
            if key == "filename" and value:
                return decode_words(value)
        for key, value in self.part.params:
            if key == "name" and value:
                return decode_words(value)
        return None

    @property
    def is_attachment(self) -> bool:
        disposition = self.part.disposition
        if disposition is not None and disposition[0].lower() == "attachment":
            return True
        if self.content_type in ("text/plain", "text/html"):
            return self.filename is not None
        return True


def locate(data: bytes, meta: MessageMeta) -> tuple[MessageInfo, int]:
    """The message's info and where its offsets start in ``data`` (after the delivery
    prefix); parses ``data`` when the stored info does not fit it."""
    info, base = meta.info, meta.prefix_size
    if info is None or base + info.size != len(data):
        return parse_message(data), 0
    return info, base


def leaves(body: BodyPart) -> Iterator[Leaf]:
    """Every leaf part with its IMAP part number, in order."""
    if not body.parts:
        yield Leaf("1", body)
        return
    yield from _children(body, "")


def _children(part: BodyPart, prefix: str) -> Iterator[Leaf]:
    for i, child in enumerate(part.parts, 1):
        number = f"{prefix}.{i}" if prefix else str(i)
        if child.parts:
            yield from _children(child, number)
        else:
            yield Leaf(number, child)


def leaf_bytes(data: bytes, base: int, leaf: Leaf) -> bytes:
    """The decoded body of a leaf (Content-Transfer-Encoding undone, RFC 2045 §6)."""
    raw = data[base + leaf.part.body_offset : base + leaf.part.end_offset]
    return decode_transfer(raw, leaf.part.encoding)


_NOT_BASE64: Final = re.compile(rb"[^A-Za-z0-9+/]")


def decode_transfer(raw: bytes, encoding: str) -> bytes:
    """RFC 2045 §6: undo base64 / quoted-printable, leniently; other encodings are identity.

    Downloads must be byte-exact, so base64 keeps its last group: padding is restored rather
    than the tail cut to a multiple of four (only a lone trailing character, which cannot
    encode a byte, is dropped)."""
    if encoding == "base64":
        cleaned = _NOT_BASE64.sub(b"", raw)
        if len(cleaned) % 4 == 1:
            cleaned = cleaned[:-1]
        try:
            return base64.b64decode(cleaned + b"=" * (-len(cleaned) % 4))
        except (binascii.Error, ValueError):
            return raw
    if encoding == "quoted-printable":
        return binascii.a2b_qp(raw)
    return raw


def decode_text(raw: bytes, part: BodyPart) -> str:
    """Text in the part's charset; unknown or missing charsets read as UTF-8, never raising."""
    charset = next((v for k, v in part.params if k == "charset"), "utf-8").strip().lower()
    if charset in ("", "us-ascii", "ascii"):
        charset = "utf-8"
    try:
        return raw.decode(charset, "replace")
    except (LookupError, ValueError, TypeError):
        return raw.decode("utf-8", "replace")


def body_texts(data: bytes, base: int, info: MessageInfo) -> tuple[str | None, str | None]:
    """(text, html) of the message, each None when it has none."""
    texts: list[str] = []
    html: str | None = None
    for leaf in leaves(info.body):
        if leaf.is_attachment:
            continue
        decoded = decode_text(leaf_bytes(data, base, leaf), leaf.part)
        if leaf.content_type == "text/plain":
            texts.append(decoded)
        elif html is None:
            html = decoded
    return ("\n".join(texts) if texts else None), html


def attachments(info: MessageInfo) -> list[Leaf]:
    return [leaf for leaf in leaves(info.body) if leaf.is_attachment]


def served_type(leaf: Leaf) -> str:
    """The Content-Type a download is served with."""
    ctype = leaf.content_type
    if ctype in ACTIVE_TYPES or "xml" in ctype or "script" in ctype:
        return "application/octet-stream"
    return ctype


def displayable(text: str) -> str:
    """Header text as shown to people: raw 8-bit octets that are not UTF-8 (kept in the
    metadata as surrogate escapes, `posthorn.mail.info`) become U+FFFD, which JSON and HTML
    can carry."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def format_addresses(addresses: tuple[EnvelopeAddress, ...]) -> str:
    """``Name <a@b>, c@d`` for display (RFC 2047 names decoded; groups flattened)."""
    out: list[str] = []
    for a in addresses:
        if a.mailbox is None or a.host is None:
            continue  # group start or end markers
        address = f"{a.mailbox}@{a.host}"
        name = decode_words(a.name).strip() if a.name else ""
        out.append(f"{name} <{address}>" if name else address)
    return displayable(", ".join(out))
