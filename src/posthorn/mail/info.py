"""Parse-once message metadata: what IMAP ENVELOPE, BODYSTRUCTURE and section fetches need.

Computed once when a message enters the store (`posthorn.mail.mime.parse_message`) and kept
beside it as JSON, so readers never re-parse MIME. Header values are `str` decoded from the wire
bytes as UTF-8 with ``surrogateescape``: encoding them the same way gives back the exact octets,
8-bit junk included. Nothing here is decoded (RFC 2047 words stay encoded), because IMAP returns
these values raw (RFC 3501 §7.4.2).

Offsets are byte offsets into the stored message bytes (the blob, without any per-delivery
prefix); a reader that prepends a prefix adds its length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class EnvelopeAddress:
    """One element of an ENVELOPE address list (RFC 3501 §7.4.2 / RFC 9051 §7.5.2).

    Group syntax is flattened as IMAP does: a group start is ``mailbox=<group name>, host=None``,
    a group end is ``mailbox=None, host=None``.
    """

    name: str | None
    route: str | None
    mailbox: str | None
    host: str | None


@dataclass(frozen=True, slots=True)
class Envelope:
    """Header fields of ENVELOPE, as found (absent = None / empty tuple).

    Sender and Reply-To are *not* defaulted to From here; the IMAP formatter applies that rule.
    """

    date: str | None = None
    subject: str | None = None
    from_: tuple[EnvelopeAddress, ...] = ()
    sender: tuple[EnvelopeAddress, ...] = ()
    reply_to: tuple[EnvelopeAddress, ...] = ()
    to: tuple[EnvelopeAddress, ...] = ()
    cc: tuple[EnvelopeAddress, ...] = ()
    bcc: tuple[EnvelopeAddress, ...] = ()
    in_reply_to: str | None = None
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One node of the MIME tree (RFC 2045/2046), with the fields BODYSTRUCTURE needs.

    ``type``/``subtype`` are lower-cased; parameter names are lower-cased, values kept as found
    (RFC 2231 continuations joined). ``size`` is the body's octet count, ``lines`` its line count
    (meaningful for text/* and message/rfc822). ``header_offset``/``body_offset``/``end_offset``
    locate the part's header, body and end in the message bytes, for BODY[1.2.MIME] and friends.
    A multipart has ``parts``; a message/rfc822 has ``message`` (its envelope and body).
    """

    type: str
    subtype: str
    params: Params = ()
    id: str | None = None
    description: str | None = None
    encoding: str = "7bit"
    size: int = 0
    lines: int = 0
    md5: str | None = None
    disposition: tuple[str, Params] | None = None
    language: tuple[str, ...] | None = None
    location: str | None = None
    header_offset: int = 0
    body_offset: int = 0
    end_offset: int = 0
    parts: tuple[BodyPart, ...] = ()
    message: EmbeddedMessage | None = None


@dataclass(frozen=True, slots=True)
class EmbeddedMessage:
    """The inside of a message/rfc822 part."""

    envelope: Envelope
    body: BodyPart


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """Everything computed once at ingest. ``size`` counts the stored bytes exactly."""

    size: int
    header_size: int
    envelope: Envelope
    body: BodyPart
    references: tuple[str, ...] = field(default=())

    def to_json(self) -> str:
        return json.dumps(_encode(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> MessageInfo:
        return _decode_info(json.loads(text))


# JSON form: compact lists in field order; json round-trips lone surrogates, so the
# surrogateescape'd header bytes survive exactly.


def _addr(a: EnvelopeAddress) -> list[Any]:
    return [a.name, a.route, a.mailbox, a.host]


def _env(e: Envelope) -> list[Any]:
    return [
        e.date,
        e.subject,
        [_addr(a) for a in e.from_],
        [_addr(a) for a in e.sender],
        [_addr(a) for a in e.reply_to],
        [_addr(a) for a in e.to],
        [_addr(a) for a in e.cc],
        [_addr(a) for a in e.bcc],
        e.in_reply_to,
        e.message_id,
    ]


def _part(p: BodyPart) -> list[Any]:
    return [
        p.type,
        p.subtype,
        [list(kv) for kv in p.params],
        p.id,
        p.description,
        p.encoding,
        p.size,
        p.lines,
        p.md5,
        None
        if p.disposition is None
        else [p.disposition[0], [list(kv) for kv in p.disposition[1]]],
        None if p.language is None else list(p.language),
        p.location,
        p.header_offset,
        p.body_offset,
        p.end_offset,
        [_part(c) for c in p.parts],
        None if p.message is None else [_env(p.message.envelope), _part(p.message.body)],
    ]


def _encode(info: MessageInfo) -> list[Any]:
    return [
        1,
        info.size,
        info.header_size,
        _env(info.envelope),
        _part(info.body),
        list(info.references),
    ]


def _params(raw: list[list[str]]) -> Params:
    return tuple((k, v) for k, v in raw)


def _d_addr(raw: list[Any]) -> EnvelopeAddress:
    return EnvelopeAddress(raw[0], raw[1], raw[2], raw[3])


def _d_env(raw: list[Any]) -> Envelope:
    def addrs(i: int) -> tuple[EnvelopeAddress, ...]:
        return tuple(_d_addr(a) for a in raw[i])

    return Envelope(
        date=raw[0],
        subject=raw[1],
        from_=addrs(2),
        sender=addrs(3),
        reply_to=addrs(4),
        to=addrs(5),
        cc=addrs(6),
        bcc=addrs(7),
        in_reply_to=raw[8],
        message_id=raw[9],
    )


def _d_part(raw: list[Any]) -> BodyPart:
    disp = raw[9]
    msg = raw[16]
    return BodyPart(
        type=raw[0],
        subtype=raw[1],
        params=_params(raw[2]),
        id=raw[3],
        description=raw[4],
        encoding=raw[5],
        size=raw[6],
        lines=raw[7],
        md5=raw[8],
        disposition=None if disp is None else (disp[0], _params(disp[1])),
        language=None if raw[10] is None else tuple(raw[10]),
        location=raw[11],
        header_offset=raw[12],
        body_offset=raw[13],
        end_offset=raw[14],
        parts=tuple(_d_part(c) for c in raw[15]),
        message=None if msg is None else EmbeddedMessage(_d_env(msg[0]), _d_part(msg[1])),
    )


def _decode_info(raw: list[Any]) -> MessageInfo:
    if raw[0] != 1:
        raise ValueError(f"unknown MessageInfo format version {raw[0]!r}")
    return MessageInfo(
        size=raw[1],
        header_size=raw[2],
        envelope=_d_env(raw[3]),
        body=_d_part(raw[4]),
        references=tuple(raw[5]),
    )
