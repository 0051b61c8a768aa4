"""FETCH: parse the data items a client asks for, and write one message's FETCH response.

`parse_fetch_items` turns the argument after the sequence set (RFC 9051 §6.4.5) into a
`FetchRequest` once per command; `render_fetch` writes ``* n FETCH (...)`` for one message from
its `MessageMeta`, the parse-once `MessageInfo` and a `ByteReader` that reads only the octet
ranges a section needs. Nothing here touches the mailbox or the socket.

Invariants:
- Garbage in a message never raises: the metadata was parsed leniently and section data is cut
  from offsets checked against the sizes. The one error on purpose is `FetchFailed`
  (``NO [UNKNOWN-CTE]`` for BINARY of an encoding we cannot decode, RFC 3516 §4.3).
- Offsets in `MessageInfo` count from the stored bytes; the reader's octets start with
  ``prefix_size`` octets of per-copy header lines, so every offset here is shifted by it, and
  the top-level HEADER (which the prefix is part of) starts at 0.
- A section that names a part the message does not have answers ``""`` (RFC 9051 §6.4.5).
- Speed: ENVELOPE and BODYSTRUCTURE are built as one ``str`` and encoded once (UTF-8 with
  surrogateescape gives back the header octets); FLAGS/UID/INTERNALDATE/RFC822.SIZE/MODSEQ
  are a couple of string operations each.
"""

from __future__ import annotations

import binascii
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from posthorn.imap.response import Quoter, astring, text_quoter
from posthorn.imap.values import Atom, ParseError, Refused, Value
from posthorn.mail.headers import find_body
from posthorn.mail.info import BodyPart, Envelope, EnvelopeAddress, MessageInfo, Params
from posthorn.mail.mime import parse_message
from posthorn.store.base import MessageMeta


class Kind(enum.Enum):
    FLAGS = "FLAGS"
    UID = "UID"
    INTERNALDATE = "INTERNALDATE"
    RFC822_SIZE = "RFC822.SIZE"
    MODSEQ = "MODSEQ"
    ENVELOPE = "ENVELOPE"
    BODY = "BODY"  # the non-extensible BODYSTRUCTURE
    BODYSTRUCTURE = "BODYSTRUCTURE"
    SECTION = "BODY[]"  # BODY[...], BODY.PEEK[...], RFC822, RFC822.HEADER, RFC822.TEXT
    BINARY = "BINARY[]"  # BINARY[...], BINARY.PEEK[...] (RFC 3516)
    BINARY_SIZE = "BINARY.SIZE[]"


@dataclass(frozen=True, slots=True)
class Section:
    """RFC 9051 §6.4.5 section-spec: ``part`` numbers (``()`` = the whole message) and what
    of it: ``""`` (the body / whole message), HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT
    or MIME. ``fields`` are the upper-cased HEADER.FIELDS names."""

    part: tuple[int, ...] = ()
    text: str = ""
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FetchItem:
    """One FETCH data item. ``label`` is its name in the response, partial origin included
    (``BODY[HEADER]<0>``): PEEK is dropped and RFC822.* answer under their own names."""

    kind: Kind
    label: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """What one FETCH command asks, parsed once and rendered per message.

    ``needs_info``: load `MessageInfo` (ENVELOPE, BODY[STRUCTURE], and any section but the
    whole message, whose offsets come from it). ``needs_bytes``: some item reads message
    octets. ``sets_seen``: a non-PEEK BODY[...]/BINARY[...], RFC822 or RFC822.TEXT (RFC 9051
    §6.4.5). ``modseq``/``uid``: MODSEQ (RFC 7162 §3.1.4.1) / UID is among the items."""

    items: tuple[FetchItem, ...]
    needs_info: bool
    needs_bytes: bool
    sets_seen: bool
    modseq: bool
    uid: bool


class ByteReader(Protocol):
    async def __call__(self, start: int, length: int | None) -> bytes:
        """Octets ``start`` .. ``start+length`` of the message as the reader sees it (prefix
        then stored bytes); ``length`` None reads to the end."""
        ...


class FetchFailed(Refused):
    """The message cannot be rendered as asked: the session answers ``NO [code] message``."""


# --- parsing -----------------------------------------------------------------------------------

_SIMPLE = {
    k.value: FetchItem(k, k.value)
    for k in (
        Kind.FLAGS,
        Kind.UID,
        Kind.INTERNALDATE,
        Kind.RFC822_SIZE,
        Kind.MODSEQ,
        Kind.ENVELOPE,
        Kind.BODY,
        Kind.BODYSTRUCTURE,
    )
}
# RFC 9051 §6.4.5 (RFC 3501 §6.4.5): RFC822 = BODY[], RFC822.HEADER = BODY.PEEK[HEADER],
# RFC822.TEXT = BODY[TEXT], each answered under its own name.
_SIMPLE["RFC822"] = FetchItem(Kind.SECTION, "RFC822", Section())
_SIMPLE["RFC822.HEADER"] = FetchItem(
    Kind.SECTION, "RFC822.HEADER", Section(text="HEADER"), None, True
)
_SIMPLE["RFC822.TEXT"] = FetchItem(Kind.SECTION, "RFC822.TEXT", Section(text="TEXT"))

_MACROS = {
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}

_SECTIONED = re.compile(
    r"(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)\[([^\]]*)\]"
    r"(?:<([0-9]{1,20})\.([0-9]{1,20})>)?",
    re.IGNORECASE | re.DOTALL,
)
_SECTION_SPEC = re.compile(
    r"(?P<part>[1-9][0-9]{0,9}(?:\.[1-9][0-9]{0,9})*)?"
    r"(?:(?(part)\.)(?P<text>HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME))?"
    r"(?: \((?P<list>.*)\))?",
    re.DOTALL | re.IGNORECASE,
)
_HEADER_NAME = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^\s()"{]+))', re.DOTALL)
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 §3.6.8 ftext
_MAX_NUMBER = 0xFFFFFFFF
_MAX_NUMBER64 = (1 << 63) - 1


def parse_fetch_items(value: Value) -> FetchRequest:
    """The FETCH argument after the sequence set: ALL, FAST, FULL, one item, or a list of them.

    Raises `ParseError` (``BAD``) for anything else. Repeated items are listed once."""
    if isinstance(value, Atom) and value.text.upper() in _MACROS:
        atoms: tuple[Value, ...] = tuple(Atom(n) for n in _MACROS[value.text.upper()])
    elif isinstance(value, tuple):
        if not value:
            raise ParseError("FETCH: empty list of data items")
        atoms = value
    else:
        atoms = (value,)
    items: list[FetchItem] = []
    for v in atoms:
        if not isinstance(v, Atom):
            raise ParseError("FETCH: expected a data item")
        item = _parse_item(v.text)
        if item not in items:
            items.append(item)
    return _request(tuple(items))


def _request(items: tuple[FetchItem, ...]) -> FetchRequest:
    needs_info = needs_bytes = sets_seen = False
    for it in items:
        k = it.kind
        if k in (Kind.ENVELOPE, Kind.BODY, Kind.BODYSTRUCTURE):
            needs_info = True
        elif k is Kind.SECTION or k is Kind.BINARY or k is Kind.BINARY_SIZE:
            needs_bytes = True
            sec = it.section
            # Anything but the whole message needs offsets: a part's, or where the header ends
            # (known from MessageInfo, so the header alone is read, not the whole message).
            if sec is not None and (sec.part or sec.text):
                needs_info = True
            # RFC 9051 §6.4.5: BODY[...] and BINARY[...] set \Seen; the .PEEK forms do not.
            if k is not Kind.BINARY_SIZE and not it.peek:
                sets_seen = True
    return FetchRequest(
        items=items,
        needs_info=needs_info,
        needs_bytes=needs_bytes,
        sets_seen=sets_seen,
        modseq=any(it.kind is Kind.MODSEQ for it in items),
        uid=any(it.kind is Kind.UID for it in items),
    )


def _parse_item(text: str) -> FetchItem:
    simple = _SIMPLE.get(text.upper())
    if simple is not None:
        return simple
    m = _SECTIONED.fullmatch(text)
    if m is None:
        raise ParseError(f"FETCH: unknown data item {text[:40]!r}")
    name = m.group(1).upper()
    partial = None
    if m.group(3) is not None:
        if name == "BINARY.SIZE":
            raise ParseError("FETCH: BINARY.SIZE takes no partial")
        origin, length = int(m.group(3)), int(m.group(4))
        if length == 0 or origin > _MAX_NUMBER64 or length > _MAX_NUMBER64:
            raise ParseError("FETCH: invalid partial")  # RFC 9051 §9: nz-number64 length
        partial = (origin, length)
    if name.startswith("BINARY"):
        section = _parse_binary_section(m.group(2))
        kind = Kind.BINARY_SIZE if name == "BINARY.SIZE" else Kind.BINARY
        base = "BINARY.SIZE" if kind is Kind.BINARY_SIZE else "BINARY"
    else:
        section = _parse_section(m.group(2))
        kind, base = Kind.SECTION, "BODY"
    label = f"{base}[{_section_text(section)}]"
    if partial is not None:
        label += f"<{partial[0]}>"  # RFC 9051 §7.5.2: the response names only the origin
    return FetchItem(kind, label, section, partial, name.endswith(".PEEK"))


def _part_numbers(text: str) -> tuple[int, ...]:
    nums = tuple(int(n) for n in text.split("."))
    if any(n > _MAX_NUMBER for n in nums):
        raise ParseError("FETCH: section part number out of range")
    return nums


def _parse_binary_section(spec: str) -> Section:
    """RFC 3516 §4.2 / RFC 9051 §9 section-binary: only part numbers."""
    if not spec:
        return Section()
    if re.fullmatch(r"[1-9][0-9]{0,9}(?:\.[1-9][0-9]{0,9})*", spec) is None:
        raise ParseError("FETCH: BINARY takes only part numbers")
    return Section(_part_numbers(spec))


def _parse_section(spec: str) -> Section:
    """RFC 9051 §6.4.5 / §9 section-spec."""
    m = _SECTION_SPEC.fullmatch(spec)
    if m is None:
        raise ParseError("FETCH: invalid section")
    part = _part_numbers(m.group("part")) if m.group("part") else ()
    text = (m.group("text") or "").upper()
    if text == "MIME" and not part:
        raise ParseError("FETCH: MIME needs a part number")
    listed = m.group("list") is not None
    if listed != text.startswith("HEADER.FIELDS"):
        raise ParseError("FETCH: a header list goes with HEADER.FIELDS only")
    fields: tuple[str, ...] = ()
    if listed:
        fields = _header_list(m.group("list"))
    return Section(part, text, fields)


def _header_list(inner: str) -> tuple[str, ...]:
    """RFC 9051 §9 header-list: one or more header-fld-name (astring), upper-cased."""
    names: list[str] = []
    pos = 0
    while pos < len(inner):
        if inner[pos:].strip() == "":
            break
        m = _HEADER_NAME.match(inner, pos)
        if m is None:
            raise ParseError("FETCH: invalid header list")
        name = m.group(2) if m.group(1) is None else re.sub(r"\\(.)", r"\1", m.group(1))
        if _FIELD_NAME.fullmatch(name) is None:
            raise ParseError("FETCH: invalid header field name")
        names.append(name.upper())
        pos = m.end()
        if pos < len(inner) and not inner[pos].isspace():
            raise ParseError("FETCH: invalid header list")
    if not names:
        raise ParseError("FETCH: empty header list")
    return tuple(names)


def _section_text(s: Section) -> str:
    parts = ".".join(str(n) for n in s.part)
    out = parts + "." + s.text if parts and s.text else parts or s.text
    if s.fields:
        out += " (" + " ".join(astring(f).decode("ascii") for f in s.fields) + ")"
    return out


# --- rendering: the cheap items -----------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_date_time(dt: datetime) -> str:
    """RFC 9051 §9 date-time, quoted: ``" 5-Feb-2025 09:12:00 +0100"`` (day space-padded).

    Month names from a table, not strftime, which follows the locale. Naive means UTC."""
    off = dt.utcoffset()
    secs = 0 if off is None else int(off.total_seconds())
    sign = "-" if secs < 0 else "+"
    hours, mins = divmod(abs(secs) // 60, 60)
    return (
        f'"{dt.day:2d}-{_MONTHS[dt.month - 1]}-{dt.year:04d} '
        f'{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} {sign}{hours:02d}{mins:02d}"'
    )


# --- rendering: ENVELOPE and BODYSTRUCTURE ------------------------------------------------------
# Each takes ``q``, the nstring quoter for the session's UTF-8 mode (`response.text_quoter`).


def _addresses(addrs: tuple[EnvelopeAddress, ...], q: Quoter) -> str:
    """RFC 9051 §9: ``"(" 1*address ")"`` or NIL; each ``(name adl mailbox host)``. Group
    markers come from `posthorn.mail.headers` already in RFC 9051 §7.5.2 form."""
    if not addrs:
        return "NIL"
    return (
        "(" + "".join(f"({q(a.name)} {q(a.route)} {q(a.mailbox)} {q(a.host)})" for a in addrs) + ")"
    )


def render_envelope(e: Envelope, q: Quoter) -> str:
    """RFC 9051 §7.5.2 ENVELOPE; Sender and Reply-To default to From when absent or empty.
    Strings go out raw (no RFC 2047 decoding), as the RFC asks."""
    from_ = _addresses(e.from_, q)
    sender = _addresses(e.sender, q) if e.sender else from_
    reply_to = _addresses(e.reply_to, q) if e.reply_to else from_
    return (
        f"({q(e.date)} {q(e.subject)} {from_} {sender} {reply_to} {_addresses(e.to, q)} "
        f"{_addresses(e.cc, q)} {_addresses(e.bcc, q)} {q(e.in_reply_to)} {q(e.message_id)})"
    )


# RFC 2045 §6.1 mechanisms, upper-cased as Dovecot writes them; others go out as found.
_ENCODINGS = {
    e: '"' + e.upper() + '"' for e in ("7bit", "8bit", "binary", "base64", "quoted-printable")
}
_EMPTY_PART = BodyPart("text", "plain", (("charset", "us-ascii"),))


def _params(params: Params, q: Quoter) -> str:
    """RFC 9051 §9 body-fld-param: ``("name" "value" ...)`` or NIL."""
    if not params:
        return "NIL"
    return "(" + " ".join(f"{q(k)} {q(v)}" for k, v in params) + ")"


def _extension(p: BodyPart, q: Quoter) -> str:
    """The tail body-ext-1part and body-ext-mpart share: SP body-fld-dsp SP body-fld-lang SP
    body-fld-loc. Dovecot's form: the language always as a list."""
    dsp = p.disposition
    lang = p.language
    dsp_text = "NIL" if dsp is None else f"({q(dsp[0])} {_params(dsp[1], q)})"
    lang_text = "NIL" if lang is None else "(" + " ".join(map(q, lang)) + ")"
    return f" {dsp_text} {lang_text} {q(p.location)}"


def render_body_structure(p: BodyPart, q: Quoter, *, extensible: bool = True) -> str:
    """RFC 9051 §7.5.2 BODYSTRUCTURE (``extensible``) or BODY, per the RFC 9051 §9 ``body``
    grammar: body-type-mpart, body-type-msg (message/rfc822 and message/global with their
    envelope, body and lines), body-type-text (lines) or body-type-basic."""
    if p.type == "multipart":
        # RFC 9051 §9: 1*body SP media-subtype: the parts follow each other without spaces.
        parts = p.parts or (_EMPTY_PART,)
        out = "".join([render_body_structure(c, q, extensible=extensible) for c in parts])
        out += " " + q(p.subtype)
        if extensible:
            out += " " + _params(p.params, q) + _extension(p, q)
        return "(" + out + ")"
    enc = _ENCODINGS.get(p.encoding) or q(p.encoding)
    out = (
        f"({q(p.type)} {q(p.subtype)} {_params(p.params, q)} {q(p.id)} {q(p.description)} "
        f"{enc} {p.size}"
    )
    if p.message is not None:
        inner = render_body_structure(p.message.body, q, extensible=extensible)
        out += f" {render_envelope(p.message.envelope, q)} {inner} {p.lines}"
    elif p.type == "text":
        out += f" {p.lines}"
    if extensible:
        out += " " + q(p.md5) + _extension(p, q)
    return out + ")"


# --- rendering: section data --------------------------------------------------------------------


def find_part(body: BodyPart, numbers: tuple[int, ...]) -> BodyPart | None:
    """The part that RFC 9051 §6.4.5 part numbers name, or None.

    A message's children are its multipart body's parts, or just its body (part 1 of a
    non-multipart message is its body); a multipart's children are its parts; a message/rfc822
    part's children are those of the message inside it; any other part has none."""
    kids: tuple[BodyPart, ...] = body.parts if body.type == "multipart" else (body,)
    cur = body
    for n in numbers:
        if n > len(kids):
            return None
        cur = kids[n - 1]
        if cur.type == "multipart":
            kids = cur.parts
        elif cur.message is not None:
            inner = cur.message.body
            kids = inner.parts if inner.type == "multipart" else (inner,)
        else:
            kids = ()
    return cur


_FIELD_BREAK = re.compile(rb"\n(?![ \t])")  # a line end not followed by a continuation line


def filter_header(header: bytes, names: frozenset[bytes], exclude: bool) -> bytes:
    """RFC 9051 §6.4.5 HEADER.FIELDS (``exclude`` False) / HEADER.FIELDS.NOT: the fields whose
    lower-cased names are (not) in ``names``, continuation lines kept, in their original order,
    then the blank line."""
    chunks = _FIELD_BREAK.split(header)
    last = len(chunks) - 1
    out: list[bytes] = []
    for i, field in enumerate(chunks):
        colon = field.find(b":")
        if colon <= 0:  # the blank line, or a line that is no field
            continue
        if (field[:colon].rstrip(b" \t").lower() in names) != exclude:
            out.append(field + (b"\n" if i < last else b"\r\n"))
    out.append(b"\r\n")
    return b"".join(out)


async def _read_range(
    read: ByteReader, start: int, end: int, partial: tuple[int, int] | None
) -> bytes:
    """Octets ``start`` .. ``end`` of the reader, cut to ``partial`` (RFC 9051 §6.4.5: an
    origin past the end gives an empty string)."""
    if partial is not None:
        start += partial[0]
        end = min(end, start + partial[1])
    if start >= end:
        return b""
    return await read(start, end - start)


def _clip(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return data
    return data[partial[0] : partial[0] + partial[1]]


async def _header_end(meta: MessageMeta, read: ByteReader) -> int:
    """Where the top-level header ends (after its blank line), in reader offsets."""
    if meta.info is not None:
        return meta.prefix_size + meta.info.header_size
    data = await read(0, None)  # without the parsed metadata: find the blank line ourselves
    return find_body(data, 0, len(data))[1]


async def _info(meta: MessageMeta, read: ByteReader) -> MessageInfo:
    """The parsed structure; the session loads it when `FetchRequest.needs_info` says so, and
    parsing here is only the fallback that keeps a forgetful caller correct."""
    if meta.info is not None:
        return meta.info
    return parse_message(await read(meta.prefix_size, None))


async def _section(item: FetchItem, meta: MessageMeta, read: ByteReader) -> bytes:
    """The octets of a BODY[section]<partial> (RFC 9051 §6.4.5)."""
    sec = item.section
    assert sec is not None
    partial = item.partial
    if not sec.part:
        if not sec.text:
            return await _read_range(read, 0, meta.size, partial)
        end = await _header_end(meta, read)
        if sec.text == "TEXT":
            return await _read_range(read, end, meta.size, partial)
        if sec.text == "HEADER":  # the prefix lines are header lines: they belong here
            return await _read_range(read, 0, end, partial)
        header = await _read_range(read, 0, end, None)
        return _clip(_fields(header, sec), partial)
    p = find_part((await _info(meta, read)).body, sec.part)
    if p is None:
        return b""
    base = meta.prefix_size
    if not sec.text:
        return await _read_range(read, base + p.body_offset, base + p.end_offset, partial)
    if sec.text == "MIME":
        return await _read_range(read, base + p.header_offset, base + p.body_offset, partial)
    if p.message is None:  # HEADER/TEXT of a part that holds no message: nothing there
        return b""
    inner = p.message.body
    if sec.text == "TEXT":
        return await _read_range(read, base + inner.body_offset, base + p.end_offset, partial)
    header = await _read_range(read, base + inner.header_offset, base + inner.body_offset, None)
    if sec.text == "HEADER":
        return _clip(header, partial)
    return _clip(_fields(header, sec), partial)


def _fields(header: bytes, sec: Section) -> bytes:
    names = frozenset(f.lower().encode("ascii") for f in sec.fields)
    return filter_header(header, names, sec.text == "HEADER.FIELDS.NOT")


_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]+")


def decode_base64(data: bytes) -> bytes:
    """Lenient base64 (RFC 2045 §6.8 says to ignore characters outside the alphabet); a
    truncated last quantum decodes as far as it goes."""
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        clean = _B64_JUNK.sub(b"", data)
        if len(clean) % 4 == 1:
            clean = clean[:-1]
        return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))


_IDENTITY = frozenset({"7bit", "8bit", "binary"})


async def _binary(item: FetchItem, meta: MessageMeta, read: ByteReader) -> bytes | None:
    """The decoded octets of BINARY[section] (RFC 3516 §4.2), already cut to the partial when
    that is cheaper. None: the part does not exist."""
    sec = item.section
    assert sec is not None
    if not sec.part:
        return await _read_range(read, 0, meta.size, item.partial)
    p = find_part((await _info(meta, read)).body, sec.part)
    if p is None:
        return None
    base = meta.prefix_size
    enc = p.encoding
    # Composite parts carry no encoding of their own to undo (RFC 2045 §6.4).
    if enc in _IDENTITY or p.type == "multipart" or p.message is not None:
        return await _read_range(read, base + p.body_offset, base + p.end_offset, item.partial)
    raw = await _read_range(read, base + p.body_offset, base + p.end_offset, None)
    if enc == "base64":
        return _clip(decode_base64(raw), item.partial)
    if enc == "quoted-printable":
        return _clip(binascii.a2b_qp(raw), item.partial)
    raise FetchFailed("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE")  # RFC 3516 §4.3


async def _binary_size(item: FetchItem, meta: MessageMeta, read: ByteReader) -> int:
    """RFC 3516 §4.2 BINARY.SIZE: the decoded size, without reading when nothing is decoded."""
    sec = item.section
    assert sec is not None
    if not sec.part:
        return meta.size
    p = find_part((await _info(meta, read)).body, sec.part)
    if p is None:
        return 0
    if p.encoding in _IDENTITY or p.type == "multipart" or p.message is not None:
        return p.size
    data = await _binary(item, meta, read)
    return 0 if data is None else len(data)


def _literal(data: bytes) -> bytes:
    """Section data as a literal; NUL may not appear in one (RFC 9051 §4.3 CHAR8), so it is
    replaced by 0x80 as Dovecot does, keeping every offset and size."""
    if not data:
        return b'""'
    if b"\0" in data:
        data = data.replace(b"\0", b"\x80")
    return b"{%d}\r\n%b" % (len(data), data)


def _literal8(data: bytes) -> bytes:
    """RFC 3516 §4.2: decoded data with NUL goes out as literal8 ``~{n}``."""
    if not data:
        return b'""'
    return b"%s{%d}\r\n%b" % (b"~" if b"\0" in data else b"", len(data), data)


async def render_fetch(
    req: FetchRequest,
    seq: int,
    meta: MessageMeta,
    read: ByteReader,
    *,
    flags: Iterable[str],
    uid: bool = False,
    modseq: bool = False,
    utf8: bool = False,
    rev2: bool = False,
) -> bytes:
    """The untagged ``* seq FETCH (...)`` CRLF for one message (RFC 9051 §7.5.2).

    ``flags`` is what FLAGS reports (the session adds ``\\Recent``). ``uid`` forces UID in
    first place (UID FETCH, RFC 9051 §6.4.9), ``modseq`` forces MODSEQ next (CONDSTORE,
    RFC 7162 §3.1.4.1); neither is repeated when the client asked for it too. ``utf8``: the
    client enabled UTF8=ACCEPT (RFC 6855 §3) or IMAP4rev2, so valid UTF-8 header strings may
    be quoted. ``rev2`` changes nothing here today; it is accepted so the session need not
    know which items differ. Raises `FetchFailed` (``NO``), nothing else on purpose."""
    out: list[str | bytes] = []
    if uid:
        out.append(f"UID {meta.uid}")
    if modseq:
        out.append(f"MODSEQ ({meta.modseq})")
    has_bytes = False
    for item in req.items:
        k = item.kind
        if k is Kind.FLAGS:
            out.append("FLAGS (" + " ".join(flags) + ")")
        elif k is Kind.UID:
            if not uid:
                out.append(f"UID {meta.uid}")
        elif k is Kind.RFC822_SIZE:
            out.append(f"RFC822.SIZE {meta.size}")
        elif k is Kind.INTERNALDATE:
            out.append("INTERNALDATE " + format_date_time(meta.internal_date))
        elif k is Kind.MODSEQ:
            if not modseq:  # RFC 7162 §3.1.4.1: a parenthesised mod-sequence-value
                out.append(f"MODSEQ ({meta.modseq})")
        elif k is Kind.ENVELOPE:
            info = await _info(meta, read)
            out.append("ENVELOPE " + render_envelope(info.envelope, text_quoter(utf8)))
        elif k is Kind.BODYSTRUCTURE or k is Kind.BODY:
            info = await _info(meta, read)
            ext = k is Kind.BODYSTRUCTURE
            body = render_body_structure(info.body, text_quoter(utf8), extensible=ext)
            out.append(k.value + " " + body)
        elif k is Kind.SECTION:
            data = await _section(item, meta, read)
            out.append(item.label.encode("ascii") + b" " + _literal(data))
            has_bytes = True
        elif k is Kind.BINARY:
            bin_data = await _binary(item, meta, read)
            out.append(item.label.encode("ascii") + b" " + _literal8(bin_data or b""))
            has_bytes = True
        else:  # Kind.BINARY_SIZE
            out.append(f"{item.label} {await _binary_size(item, meta, read)}")
    if not has_bytes:
        text = f"* {seq} FETCH (" + " ".join(out) + ")\r\n"  # type: ignore[arg-type]
        return text.encode("utf-8", "surrogateescape")
    pieces = [p if isinstance(p, bytes) else p.encode("utf-8", "surrogateescape") for p in out]
    return b"* %d FETCH (%b)\r\n" % (seq, b" ".join(pieces))
