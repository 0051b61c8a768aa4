"""Parse-once MIME scanner: message bytes in, `MessageInfo` (ENVELOPE, BODYSTRUCTURE, offsets) out.

`parse_message` runs once per message at ingest; readers (IMAP FETCH, SEARCH, threading) use
the stored result and never parse MIME again. It owns the body structure; header blocks,
MIME values and address lists are read by `posthorn.mail.headers`.

Invariants, whatever the input (tests/fuzz/test_mime_fuzz.py checks them):
- Total: never raises. Malformed input gives a best-effort structure that IMAP can still write.
- ``info.size == len(data)``; for every part ``0 <= header_offset <= body_offset <= end_offset
  <= len(data)``, and a child's range lies inside its parent's body range. Offsets are absolute,
  also inside message/rfc822 parts. ``size == end_offset - body_offset`` (octets as stored; no
  CRLF normalisation).
- A multipart always has at least one part, and a message/rfc822 or message/global part always
  has ``message``: where the input has none, see the fallbacks below.
- Fast: only bulk ``bytes`` operations on bodies (``find``, ``count``, regex on header blocks);
  no Python loop per body line.

Rules and choices:
- Missing or invalid Content-Type: text/plain; charset=us-ascii (RFC 2045 §5.2), but
  message/rfc822 inside multipart/digest (RFC 2046 §5.1.5). Parameters are otherwise as found:
  a text part whose header names no charset has none here.
- ``lines`` (text/* and message/*, 0 otherwise) is the number of LF octets in the body, as
  Dovecot counts it: a last line without a line end is not counted, and the line end before a
  boundary belongs to the boundary (RFC 2046 §5.1.1), so "Hello" + CRLF + "--b" has 0 lines.
- A multipart without a usable boundary or without any body part gets one synthetic empty
  text/plain part (zero length, at the multipart's body start), as Dovecot writes it.
- Nesting is capped at `MAX_DEPTH` and the part count at `MAX_PARTS`. Past the caps a multipart
  gets the synthetic empty part and a message/rfc822 becomes an opaque application/octet-stream.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from posthorn.mail.headers import (
    find_body,
    header_fields,
    msg_ids,
    parse_address_list,
    parse_content_type,
    parse_disposition,
    parse_encoding,
    parse_language,
)
from posthorn.mail.info import BodyPart, EmbeddedMessage, Envelope, MessageInfo, Params

log = logging.getLogger(__name__)

MAX_DEPTH = 50
"""Multipart and message/rfc822 levels parsed below the top; deeper ones are opaque."""
MAX_PARTS = 10_000
"""Body parts per message; past it the rest of a multipart is its last part, unparsed."""

_ContentType = tuple[str, str, Params]
_TEXT_PLAIN: _ContentType = ("text", "plain", (("charset", "us-ascii"),))  # RFC 2045 §5.2
_RFC822: _ContentType = ("message", "rfc822", ())  # RFC 2046 §5.1.5
_OPAQUE = ("application", "octet-stream")
_ENCAPSULATED = frozenset({"rfc822", "global"})  # RFC 2046 §5.2.1, RFC 6532 §3.7


@dataclass(slots=True)
class _Scan:
    """State of one parse: the bytes and how many more parts may be created."""

    data: bytes
    parts_left: int


def parse_message(data: bytes) -> MessageInfo:
    """Everything IMAP needs from a message, computed in one pass. Never raises."""
    try:
        return _parse(data)
    except Exception:  # a bug here must not stop delivery: store the message as plain text
        log.exception("MIME scan failed; storing the message as one text/plain part")
        return _flat(data)


def _parse(data: bytes) -> MessageInfo:
    scan = _Scan(data, MAX_PARTS)
    body, fields = _entity(scan, 0, len(data), 0, _TEXT_PLAIN)
    # RFC 5256 §2.2 (REFERENCES step 1): References, else the first msg-id of In-Reply-To.
    references = msg_ids(fields.get("references")) or msg_ids(fields.get("in-reply-to"))[:1]
    return MessageInfo(
        size=len(data),
        header_size=body.body_offset,
        envelope=_envelope(fields),
        body=body,
        references=references,
    )


def _flat(data: bytes) -> MessageInfo:
    _, body_start = find_body(data, 0, len(data))
    body = BodyPart(
        *_TEXT_PLAIN,
        size=len(data) - body_start,
        lines=data.count(b"\n", body_start),
        body_offset=body_start,
        end_offset=len(data),
    )
    return MessageInfo(len(data), body_start, Envelope(), body)


def _envelope(fields: dict[str, str]) -> Envelope:
    """RFC 3501 §7.4.2 ENVELOPE fields, raw; Sender/Reply-To defaults are the formatter's job."""
    return Envelope(
        date=fields.get("date"),
        subject=fields.get("subject"),
        from_=parse_address_list(fields.get("from")),
        sender=parse_address_list(fields.get("sender")),
        reply_to=parse_address_list(fields.get("reply-to")),
        to=parse_address_list(fields.get("to")),
        cc=parse_address_list(fields.get("cc")),
        bcc=parse_address_list(fields.get("bcc")),
        in_reply_to=fields.get("in-reply-to"),
        message_id=fields.get("message-id"),
    )


def _entity(
    scan: _Scan, start: int, end: int, depth: int, default: _ContentType
) -> tuple[BodyPart, dict[str, str]]:
    """The entity (header + body) in ``data[start:end]`` and its header fields."""
    scan.parts_left -= 1
    data = scan.data
    header_end, body_start = find_body(data, start, end)
    fields = header_fields(data[start:header_end])
    ct = fields.get("content-type")
    parsed = None if ct is None else parse_content_type(ct)
    ctype, subtype, params = parsed or default  # RFC 2045 §5.2: invalid is treated as absent
    parts: tuple[BodyPart, ...] = ()
    message = None
    if ctype == "multipart":
        parts = _multipart(scan, subtype, params, body_start, end, depth)
    elif ctype == "message" and subtype in _ENCAPSULATED:
        if depth >= MAX_DEPTH or scan.parts_left <= 0:
            ctype, subtype = _OPAQUE
        else:
            inner, inner_fields = _entity(scan, body_start, end, depth + 1, _TEXT_PLAIN)
            message = EmbeddedMessage(_envelope(inner_fields), inner)
    disposition = fields.get("content-disposition")
    language = fields.get("content-language")
    part = BodyPart(
        type=ctype,
        subtype=subtype,
        params=params,
        id=fields.get("content-id"),
        description=fields.get("content-description"),
        encoding=parse_encoding(fields.get("content-transfer-encoding")),
        size=end - body_start,
        # RFC 3501 §7.4.2: body size in text lines, for text/* and message/rfc822 (see above).
        lines=data.count(b"\n", body_start, end) if ctype in ("text", "message") else 0,
        md5=fields.get("content-md5"),
        disposition=None if disposition is None else parse_disposition(disposition),
        language=None if language is None else parse_language(language),
        location=fields.get("content-location"),
        header_offset=start,
        body_offset=body_start,
        end_offset=end,
        parts=parts,
        message=message,
    )
    return part, fields


def _multipart(
    scan: _Scan, subtype: str, params: Params, start: int, end: int, depth: int
) -> tuple[BodyPart, ...]:
    """The body parts of a multipart whose body is ``data[start:end]`` (RFC 2046 §5.1)."""
    boundary = next((v for k, v in params if k == "boundary"), "")
    if not boundary or depth >= MAX_DEPTH or scan.parts_left <= 0:
        return (_empty_part(start),)
    delimiter = b"--" + boundary.encode("utf-8", "surrogateescape")
    ranges = split_multipart(scan.data, start, end, delimiter, max(scan.parts_left, 1))
    if not ranges:
        return (_empty_part(start),)
    # RFC 2046 §5.1.5: in a digest, a body part without Content-Type is a message/rfc822.
    default = _RFC822 if subtype == "digest" else _TEXT_PLAIN
    return tuple(_entity(scan, s, e, depth + 1, default)[0] for s, e in ranges)


def _empty_part(offset: int) -> BodyPart:
    """Dovecot's stand-in for a multipart without parts: an empty text/plain body."""
    return BodyPart(*_TEXT_PLAIN, header_offset=offset, body_offset=offset, end_offset=offset)


def split_multipart(
    data: bytes, start: int, end: int, delimiter: bytes, limit: int = MAX_PARTS
) -> list[tuple[int, int]]:
    """The ``(start, end)`` ranges of the body parts in the multipart body ``data[start:end]``.

    ``delimiter`` is ``b"--" + boundary``. RFC 2046 §5.1.1: a delimiter line starts a line, may
    end in transport padding (LWSP), and the line end before it belongs to it, not to the part
    above. The close delimiter ("--" after the boundary) ends the parts; the preamble before the
    first delimiter and the epilogue after the close are not parts. Without a close delimiter,
    the last part runs to ``end``; after ``limit`` parts, so does the last one.
    """
    ranges: list[tuple[int, int]] = []
    part_start = -1  # -1 while in the preamble or after the close delimiter
    for line_start, line_end, close in _delimiter_lines(data, start, end, delimiter):
        if part_start >= 0:
            if len(ranges) + 1 >= limit:
                break
            ranges.append((part_start, _before_line_end(data, part_start, line_start)))
        part_start = -1 if close else line_end
        if close:
            break
    if part_start >= 0:
        ranges.append((part_start, end))
    return ranges


def _delimiter_lines(
    data: bytes, start: int, end: int, delimiter: bytes
) -> Iterator[tuple[int, int, bool]]:
    """``(line_start, line_end, is_close)`` of each delimiter line in ``data[start:end]``.

    Candidates are found with ``bytes.find`` on LF + delimiter: the cost is per candidate, not
    per line.
    """
    needle = b"\n" + delimiter
    if data.startswith(delimiter, start, end):
        hit = start
    else:
        hit = data.find(needle, start, end)
        hit = -1 if hit < 0 else hit + 1
    while hit >= 0:
        after = hit + len(delimiter)
        eol = data.find(b"\n", after, end)
        line_end = end if eol < 0 else eol + 1
        if data.startswith(b"--", after, end):  # the close delimiter; the rest of it is ignored
            yield hit, line_end, True
        elif not data[after:line_end].strip(b" \t\r\n"):  # RFC 2046 §5.1.1 transport-padding
            yield hit, line_end, False
        hit = data.find(needle, hit, end)
        hit = -1 if hit < 0 else hit + 1


def _before_line_end(data: bytes, lo: int, pos: int) -> int:
    """``pos`` moved back over the CRLF (or bare LF) that ends the line before it, not below lo."""
    if pos > lo and data[pos - 1] == 0x0A:
        pos -= 1
        if pos > lo and data[pos - 1] == 0x0D:
            pos -= 1
    return pos
