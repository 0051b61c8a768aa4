"""FETCH items and responses (posthorn.imap.fetch), against real messages parsed by
posthorn.mail.mime and a reader over prefix + stored bytes, as the store serves them."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posthorn.imap.fetch import (
    FetchFailed,
    FetchRequest,
    Kind,
    Section,
    filter_header,
    find_part,
    format_date_time,
    parse_fetch_items,
    render_fetch,
)
from posthorn.imap.values import Atom, ParseError, String, Value
from posthorn.mail.mime import parse_message
from posthorn.store.base import MessageMeta

DATA = Path(__file__).resolve().parent.parent / "data" / "mime"
PREFIX = b"Return-Path: <bob@example.com>\r\nDelivered-To: alice@example.org\r\n"
WHEN = datetime(2025, 2, 5, 9, 12, 0, tzinfo=timezone(timedelta(hours=1)))


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


class Reader:
    """The store's view: prefix then stored bytes; counts what was read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, int | None]] = []

    async def __call__(self, start: int, length: int | None) -> bytes:
        self.reads.append((start, length))
        return self.data[start:] if length is None else self.data[start : start + length]


def message(
    data: bytes, prefix: bytes = PREFIX, *, with_info: bool = True
) -> tuple[MessageMeta, Reader]:
    meta = MessageMeta(
        uid=7,
        modseq=42,
        flags=frozenset({"\\Seen"}),
        internal_date=WHEN,
        size=len(prefix) + len(data),
        prefix_size=len(prefix),
        info=parse_message(data) if with_info else None,
    )
    return meta, Reader(prefix + data)


def items(text: str) -> Value:
    """A FETCH argument as the wire layer hands it over: an atom or a list of atoms (a
    bracketed part, spaces and all, stays inside its atom)."""
    if not text.startswith("("):
        return Atom(text)
    out: list[Value] = []
    depth = 0
    word = ""
    for ch in text[1:-1]:
        if ch == " " and depth == 0:
            out.append(Atom(word))
            word = ""
            continue
        depth += ch == "["
        depth -= ch == "]"
        word += ch
    out.append(Atom(word))
    return tuple(out)


async def fetch(
    text: str, data: bytes, prefix: bytes = PREFIX, *, with_info: bool = True, **kw: bool
) -> bytes:
    meta, read = message(data, prefix, with_info=with_info)
    return await render_fetch(parse_fetch_items(items(text)), 3, meta, read, flags=["\\Seen"], **kw)


SIMPLE = crlf(
    "From: Alice <alice@example.org>\n"
    "To: bob@example.com\n"
    "Subject: Hello\n"
    "X-Long: first\n"
    "  second\n"
    "Date: Tue, 18 Nov 2025 09:12:00 +0100\n"
    "Message-ID: <1@example.org>\n"
    "\n"
    "line one\n"
    "line two\n"
)
SIMPLE_HEADER, SIMPLE_TEXT = SIMPLE.split(b"\r\n\r\n", 1)
FORWARDED = (DATA / "forwarded.eml").read_bytes()
MIXED = (DATA / "mixed-attachment.eml").read_bytes()


# --- parsing --------------------------------------------------------------------------------


def kinds(req: FetchRequest) -> list[Kind]:
    return [i.kind for i in req.items]


def test_macros() -> None:
    fast = [Kind.FLAGS, Kind.INTERNALDATE, Kind.RFC822_SIZE]
    assert kinds(parse_fetch_items(Atom("fast"))) == fast
    assert kinds(parse_fetch_items(Atom("ALL"))) == [*fast, Kind.ENVELOPE]
    assert kinds(parse_fetch_items(Atom("FULL"))) == [*fast, Kind.ENVELOPE, Kind.BODY]


def test_flags_only_needs_nothing() -> None:
    req = parse_fetch_items(Atom("FLAGS"))
    assert not (req.needs_info or req.needs_bytes or req.sets_seen or req.modseq or req.uid)


@pytest.mark.parametrize(
    ("text", "info", "data", "seen"),
    [
        ("ENVELOPE", True, False, False),
        ("BODYSTRUCTURE", True, False, False),
        ("RFC822.SIZE", False, False, False),
        ("BODY[]", False, True, True),
        ("BODY.PEEK[]", False, True, False),
        ("BODY.PEEK[]<0.100>", False, True, False),
        ("BODY.PEEK[1.2]", True, True, False),
        ("BODY.PEEK[HEADER]", True, True, False),
        ("BODY[TEXT]", True, True, True),
        ("RFC822", False, True, True),
        ("RFC822.HEADER", True, True, False),
        ("RFC822.TEXT", True, True, True),
        ("BINARY[1]", True, True, True),
        ("BINARY.PEEK[1]", True, True, False),
        ("BINARY.SIZE[1]", True, True, False),
    ],
)
def test_request_flags(text: str, info: bool, data: bool, seen: bool) -> None:
    req = parse_fetch_items(Atom(text))
    assert (req.needs_info, req.needs_bytes, req.sets_seen) == (info, data, seen)


def test_uid_and_modseq_flags() -> None:
    req = parse_fetch_items((Atom("uid"), Atom("MODSEQ")))
    assert req.uid and req.modseq


def test_sections_parse() -> None:
    req = parse_fetch_items(
        items(
            '(BODY.PEEK[HEADER.FIELDS (From "To" x-Long)]<5.10> BODY[1.2.MIME] '
            "BODY[3.HEADER.FIELDS.NOT (Subject)] BINARY.PEEK[2]<0.7> BINARY.SIZE[] body[]<0.1>)"
        )
    )
    first, mime, fnot, binary, bsize, whole = req.items
    assert first.section == Section((), "HEADER.FIELDS", ("FROM", "TO", "X-LONG"))
    assert first.partial == (5, 10) and first.peek
    assert first.label == "BODY[HEADER.FIELDS (FROM TO X-LONG)]<5>"
    assert mime.section == Section((1, 2), "MIME") and mime.label == "BODY[1.2.MIME]"
    assert fnot.label == "BODY[3.HEADER.FIELDS.NOT (SUBJECT)]"
    assert binary.kind is Kind.BINARY and binary.label == "BINARY[2]<0>"
    assert bsize.kind is Kind.BINARY_SIZE and bsize.label == "BINARY.SIZE[]"
    assert whole.label == "BODY[]<0>"


def test_duplicates_listed_once() -> None:
    req = parse_fetch_items(items("(FLAGS UID FLAGS BODY[] BODY[])"))
    assert kinds(req) == [Kind.FLAGS, Kind.UID, Kind.SECTION]


@pytest.mark.parametrize(
    "value",
    [
        Atom("BOGUS"),
        Atom("BODY[HEADER.FIELDS]"),  # the list is required
        Atom("BODY[HEADER.FIELDS ()]"),
        Atom("BODY[HEADER (From)]"),
        Atom("BODY[MIME]"),  # MIME needs a part
        Atom("BODY[0]"),
        Atom("BODY[1.0.TEXT]"),
        Atom("BODY[1.]"),
        Atom("BODY[.TEXT]"),
        Atom("BODY[TEXT.HEADER]"),
        Atom("BODY[99999999999]"),
        Atom("BODY[" + "1" * 5000 + "]"),
        Atom("BODY[]<" + "1" * 5000 + ".1>"),
        Atom("BODY[]<99999999999999999999.1>"),
        Atom("BODY[]<0.0>"),  # nz-number length
        Atom("BODY[]<5>"),
        Atom("BINARY[HEADER]"),
        Atom("BINARY.SIZE[1]<0.5>"),
        Atom("BODY[HEADER.FIELDS (Fr:om)]"),
        Atom("BODY[HEADER.FIELDS (From {4})]"),
        Atom("BODY"),  # fine as BODY, but not with junk:
        Atom("ALL FAST"),
        (),
        (Atom("FLAGS"), (Atom("UID"),)),
        (Atom("ALL"),),  # macros stand alone, never in a list
        String(b"FLAGS"),
    ],
)
def test_invalid_items(value: Value) -> None:
    if value == Atom("BODY"):
        parse_fetch_items(value)
        return
    with pytest.raises(ParseError):
        parse_fetch_items(value)


_ITEM_PIECES = st.sampled_from(
    [
        "BODY", "BODY.PEEK", "BINARY", "BINARY.SIZE", "[", "]", "<", ">", ".", "0", "1", "2",
        "9" * 30, "HEADER", "HEADER.FIELDS", ".NOT", "TEXT", "MIME", " ", "(", ")", '"', "\\",
        "From", "{3}", "ü", "\x00", "RFC822", ".SIZE", "FLAGS", "ALL",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_ITEM_PIECES, max_size=12).map("".join))
def test_parse_only_raises_parse_error(text: str) -> None:
    try:
        req = parse_fetch_items(Atom(text))
    except ParseError:
        return
    for item in req.items:
        assert item.label.isascii()


# --- the cheap items ---------------------------------------------------------------------------


async def test_fast_items() -> None:
    wire = await fetch("(FLAGS UID INTERNALDATE RFC822.SIZE MODSEQ)", SIMPLE)
    size = len(PREFIX) + len(SIMPLE)
    assert wire == (
        b'* 3 FETCH (FLAGS (\\Seen) UID 7 INTERNALDATE " 5-Feb-2025 09:12:00 +0100" '
        b"RFC822.SIZE %d MODSEQ (42))\r\n" % size
    )


async def test_forced_uid_and_modseq_come_first_once() -> None:
    wire = await fetch("(FLAGS UID MODSEQ)", SIMPLE, uid=True, modseq=True)
    assert wire == b"* 3 FETCH (UID 7 MODSEQ (42) FLAGS (\\Seen))\r\n"
    wire = await fetch("FLAGS", SIMPLE, uid=True)
    assert wire == b"* 3 FETCH (UID 7 FLAGS (\\Seen))\r\n"


async def test_flags_reported_as_given() -> None:
    meta, read = message(SIMPLE)
    wire = await render_fetch(
        parse_fetch_items(Atom("FLAGS")), 1, meta, read, flags=("\\Seen", "\\Recent", "$Junk")
    )
    assert wire == b"* 1 FETCH (FLAGS (\\Seen \\Recent $Junk))\r\n"
    wire = await render_fetch(parse_fetch_items(Atom("FLAGS")), 1, meta, read, flags=())
    assert wire == b"* 1 FETCH (FLAGS ())\r\n"
    assert read.reads == []


@pytest.mark.parametrize(
    ("dt", "text"),
    [
        (WHEN, '" 5-Feb-2025 09:12:00 +0100"'),
        (datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC), '"31-Dec-2024 23:59:59 +0000"'),
        (
            datetime(2025, 7, 1, 0, 0, tzinfo=timezone(-timedelta(hours=9, minutes=30))),
            '" 1-Jul-2025 00:00:00 -0930"',
        ),
        (datetime(2025, 7, 10, 1, 2, 3), '"10-Jul-2025 01:02:03 +0000"'),  # naive: UTC
    ],
)
def test_format_date_time(dt: datetime, text: str) -> None:
    assert format_date_time(dt) == text


# --- ENVELOPE ----------------------------------------------------------------------------------


async def test_envelope_simple() -> None:
    wire = await fetch("ENVELOPE", SIMPLE)
    # RFC 9051 §7.5.2: sender and reply-to default to from; empty lists are NIL.
    assert wire == (
        b'* 3 FETCH (ENVELOPE ("Tue, 18 Nov 2025 09:12:00 +0100" "Hello" '
        b'(("Alice" NIL "alice" "example.org")) (("Alice" NIL "alice" "example.org")) '
        b'(("Alice" NIL "alice" "example.org")) ((NIL NIL "bob" "example.com")) '
        b'NIL NIL NIL "<1@example.org>"))\r\n'
    )


async def test_envelope_group_and_raw_encoded_words() -> None:
    wire = await fetch("ENVELOPE", MIXED, b"")
    assert wire == (
        b'* 3 FETCH (ENVELOPE ("Wed, 19 Nov 2025 14:00:00 +0000" '
        b'"=?utf-8?q?Quartalsbericht_f=C3=BCr_Q3?=" '
        b'(("Doe, Jane" NIL "jane" "example.org")) (("Doe, Jane" NIL "jane" "example.org")) '
        b'(("Doe, Jane" NIL "jane" "example.org")) '
        b'((NIL NIL "team" NIL)(NIL NIL "bob" "example.com")("Carl R." NIL "carl" "example.com")'
        b"(NIL NIL NIL NIL)) "
        b'NIL NIL "<ask-q3@example.com>" "<report-q3@example.org>"))\r\n'
    )


async def test_envelope_explicit_sender_reply_to_and_empty() -> None:
    data = crlf(
        "From: a@example.org\nSender: s@example.org\nReply-To: r@example.org\nCc: \n\nbody\n"
    )
    wire = await fetch("ENVELOPE", data)
    assert wire == (
        b'* 3 FETCH (ENVELOPE (NIL NIL ((NIL NIL "a" "example.org")) '
        b'((NIL NIL "s" "example.org")) ((NIL NIL "r" "example.org")) '
        b"NIL NIL NIL NIL NIL))\r\n"
    )
    assert await fetch("ENVELOPE", b"\r\nno header at all") == (
        b"* 3 FETCH (ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n"
    )


async def test_envelope_8bit_and_specials() -> None:
    data = (
        b'Subject: Gr\xc3\xbc\xc3\x9fe "quoted" \\ back\r\n'
        b"From: =?x?q?y?= <j\xe9r\xf4me@example.org>\r\n\r\nx"
    )
    wire = await fetch("ENVELOPE", data, b"")
    subject = b'Gr\xc3\xbc\xc3\x9fe "quoted" \\ back'
    assert wire == (
        b"* 3 FETCH (ENVELOPE (NIL {%d}\r\n%s " % (len(subject), subject)
        + b'(("=?x?q?y?=" NIL {6}\r\nj\xe9r\xf4me "example.org")) ' * 3
        + b"NIL NIL NIL NIL NIL))\r\n"
    )
    # UTF8=ACCEPT: valid UTF-8 is quoted (escapes applied), invalid stays a literal.
    wire = await fetch("ENVELOPE", data, b"", utf8=True)
    assert wire.startswith(
        b'* 3 FETCH (ENVELOPE (NIL "Gr\xc3\xbc\xc3\x9fe \\"quoted\\" \\\\ back" '
    )
    assert b"{6}\r\nj\xe9r\xf4me" in wire


# --- BODYSTRUCTURE and BODY --------------------------------------------------------------------

# forwarded.eml: multipart/mixed (text/plain, message/rfc822 (multipart/alternative (text/plain,
# text/html))). Checked by hand against RFC 9051 §9 / RFC 3501 §9:
#   body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]   (bodies not space-separated)
#   body-ext-mpart  = body-fld-param SP body-fld-dsp SP body-fld-lang SP body-fld-loc
#   body-type-text  = media-text SP body-fields SP body-fld-lines
#   body-fields     = body-fld-param SP body-fld-id SP body-fld-desc SP body-fld-enc SP
#                     body-fld-octets
#   body-type-msg   = media-message SP body-fields SP envelope SP body SP body-fld-lines
#   body-ext-1part  = body-fld-md5 SP body-fld-dsp SP body-fld-lang SP body-fld-loc
# Sizes: "See below.\r\n" is 12 octets, 1 line (the CRLF before "--fwd42" is the boundary's);
# the message/rfc822 body runs from after "inline\r\n\r\n" to before "\r\n--fwd42--": 320
# octets, 15 LF; "Lunch?" (6) and "<b>Lunch?</b>" (13) have no line end of their own: 0 lines.
# The first text/plain names no charset, so its params are NIL (as stored, see mail/mime.py;
# Dovecot would write ("charset" "us-ascii") there).
FORWARDED_ENVELOPE = (
    b'(NIL "Lunch on Thursday?" (("Alice Example" NIL "alice" "example.org")) '
    b'(("Alice Example" NIL "alice" "example.org")) (("Alice Example" NIL "alice" "example.org")) '
    b'(("Bob" NIL "bob" "example.com")) NIL NIL NIL "<inner@example.org>")'
)
FORWARDED_BODYSTRUCTURE = (
    b'(("text" "plain" NIL NIL NIL "7BIT" 12 1 NIL NIL NIL NIL)'
    b'("message" "rfc822" NIL NIL NIL "7BIT" 320 '
    + FORWARDED_ENVELOPE
    + b' (("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 6 0 NIL NIL NIL NIL)'
    b'("text" "html" ("charset" "us-ascii") NIL NIL "7BIT" 13 0 NIL NIL NIL NIL) '
    b'"alternative" ("boundary" "in1") NIL NIL NIL) 15 NIL ("inline" NIL) NIL NIL) '
    b'"mixed" ("boundary" "fwd42") NIL NIL NIL)'
)
FORWARDED_BODY = (
    b'(("text" "plain" NIL NIL NIL "7BIT" 12 1)'
    b'("message" "rfc822" NIL NIL NIL "7BIT" 320 '
    + FORWARDED_ENVELOPE
    + b' (("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 6 0)'
    b'("text" "html" ("charset" "us-ascii") NIL NIL "7BIT" 13 0) "alternative") 15) "mixed")'
)


async def test_bodystructure_nested_message() -> None:
    wire = await fetch("BODYSTRUCTURE", FORWARDED)
    assert wire == b"* 3 FETCH (BODYSTRUCTURE " + FORWARDED_BODYSTRUCTURE + b")\r\n"


async def test_body_nested_message() -> None:
    wire = await fetch("BODY", FORWARDED)
    assert wire == b"* 3 FETCH (BODY " + FORWARDED_BODY + b")\r\n"


async def test_bodystructure_simple() -> None:
    # No Content-Type at all: RFC 2045 §5.2 text/plain; charset=us-ascii.
    wire = await fetch("(BODY BODYSTRUCTURE)", SIMPLE)
    assert wire == (
        b'* 3 FETCH (BODY ("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 20 2) '
        b'BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 20 2 '
        b"NIL NIL NIL NIL))\r\n"
    )


async def test_bodystructure_extension_fields() -> None:
    # RFC 2231 parameters arrive decoded from mail/mime.py ("Bericht für Q3.pdf", 19 octets):
    # 8-bit, so a literal without UTF-8 and a quoted string with it (RFC 6855 §3).
    name = "Bericht für Q3.pdf".encode()
    assert len(name) == 19

    def expected(quoted: bytes) -> bytes:
        return (
            b"* 3 FETCH (BODYSTRUCTURE ((("
            b'"text" "plain" ("charset" "utf-8") NIL NIL "QUOTED-PRINTABLE" 37 2 NIL NIL NIL NIL)('
            b'"text" "html" ("charset" "utf-8") NIL NIL "QUOTED-PRINTABLE" 46 1 NIL NIL NIL NIL) '
            b'"alternative" ("boundary" "==inner==") NIL NIL NIL)('
            b'"application" "pdf" ("name" ' + quoted + b') "<pdf1@example.org>" '
            b'"Quarterly report" "BASE64" 820 NIL '
            b'("attachment" ("filename" ' + quoted + b' "size" "1234")) NIL NIL) '
            b'"mixed" ("boundary" "==outer==") NIL NIL NIL))\r\n'
        )

    assert await fetch("BODYSTRUCTURE", MIXED) == expected(b"{19}\r\n" + name)
    assert await fetch("BODYSTRUCTURE", MIXED, utf8=True) == expected(b'"' + name + b'"')


async def test_bodystructure_md5_language_location_and_unknown_encoding() -> None:
    data = crlf(
        "Content-Type: application/octet-stream\n"
        "Content-Transfer-Encoding: x-uuencode\n"
        "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
        "Content-Language: en, de\n"
        "Content-Location: http://example.org/x\n"
        "\n"
        "abc\n"
    )
    wire = await fetch("BODYSTRUCTURE", data)
    assert wire == (
        b'* 3 FETCH (BODYSTRUCTURE ("application" "octet-stream" NIL NIL NIL "x-uuencode" 5 '
        b'"Q2hlY2sgSW50ZWdyaXR5IQ==" NIL ("en" "de") "http://example.org/x"))\r\n'
    )


async def test_bodystructure_8bit_param_is_a_literal() -> None:
    data = b'Content-Type: text/plain; name="r\xe9sum\xe9.txt"\r\n\r\nx'
    wire = await fetch("BODY", data)
    assert wire == (
        b'* 3 FETCH (BODY ("text" "plain" ("name" {10}\r\nr\xe9sum\xe9.txt) '
        b'NIL NIL "7BIT" 1 0))\r\n'
    )


# --- sections ----------------------------------------------------------------------------------


def lit(data: bytes) -> bytes:
    return b"{%d}\r\n%s" % (len(data), data)


async def test_whole_message_includes_prefix() -> None:
    wire = await fetch("BODY.PEEK[]", SIMPLE)
    assert wire == b"* 3 FETCH (BODY[] " + lit(PREFIX + SIMPLE) + b")\r\n"
    assert await fetch("RFC822", SIMPLE) == b"* 3 FETCH (RFC822 " + lit(PREFIX + SIMPLE) + b")\r\n"


async def test_header_includes_prefix_and_blank_line() -> None:
    header = PREFIX + SIMPLE_HEADER + b"\r\n\r\n"
    assert await fetch("BODY[HEADER]", SIMPLE) == (
        b"* 3 FETCH (BODY[HEADER] " + lit(header) + b")\r\n"
    )
    assert await fetch("RFC822.HEADER", SIMPLE) == (
        b"* 3 FETCH (RFC822.HEADER " + lit(header) + b")\r\n"
    )


async def test_text() -> None:
    assert (
        await fetch("BODY[TEXT]", SIMPLE) == b"* 3 FETCH (BODY[TEXT] " + lit(SIMPLE_TEXT) + b")\r\n"
    )
    assert await fetch("RFC822.TEXT", SIMPLE) == (
        b"* 3 FETCH (RFC822.TEXT " + lit(SIMPLE_TEXT) + b")\r\n"
    )


async def test_header_reads_only_the_header() -> None:
    meta, read = message(SIMPLE)
    await render_fetch(parse_fetch_items(Atom("BODY.PEEK[HEADER]")), 1, meta, read, flags=())
    assert read.reads == [(0, len(PREFIX) + len(SIMPLE_HEADER) + 4)]


async def test_header_fields() -> None:
    wire = await fetch("BODY.PEEK[HEADER.FIELDS (x-long Subject delivered-to NOPE)]", SIMPLE)
    # Original order and spelling, continuation lines kept, then the blank line.
    fields = (
        b"Delivered-To: alice@example.org\r\nSubject: Hello\r\nX-Long: first\r\n  second\r\n\r\n"
    )
    assert wire == (
        b"* 3 FETCH (BODY[HEADER.FIELDS (X-LONG SUBJECT DELIVERED-TO NOPE)] "
        + lit(fields)
        + b")\r\n"
    )


async def test_header_fields_not() -> None:
    wire = await fetch(
        "BODY[HEADER.FIELDS.NOT (Return-Path Delivered-To From To Date X-LONG Message-ID)]", SIMPLE
    )
    label = b"BODY[HEADER.FIELDS.NOT (RETURN-PATH DELIVERED-TO FROM TO DATE X-LONG MESSAGE-ID)]"
    assert wire == b"* 3 FETCH (" + label + b" " + lit(b"Subject: Hello\r\n\r\n") + b")\r\n"


async def test_header_fields_none_match() -> None:
    wire = await fetch("BODY.PEEK[HEADER.FIELDS (X-NONE)]", SIMPLE)
    assert wire == b"* 3 FETCH (BODY[HEADER.FIELDS (X-NONE)] {2}\r\n\r\n)\r\n"


async def test_header_fields_of_headers_only_message() -> None:
    wire = await fetch("BODY.PEEK[HEADER.FIELDS (SUBJECT)]", b"From: a@b\r\nSubject: hi", b"")
    assert (
        wire
        == b"* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] " + lit(b"Subject: hi\r\n\r\n") + b")\r\n"
    )


def test_filter_header_unit() -> None:
    header = b"A: 1\r\nB: 2\r\n\tmore\r\nnot a field\r\na : 3\r\n\r\n"
    assert filter_header(header, frozenset({b"a"}), False) == b"A: 1\r\na : 3\r\n\r\n"
    assert filter_header(header, frozenset({b"a"}), True) == b"B: 2\r\n\tmore\r\n\r\n"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("BODY[1]", b"See below.\r\n"),
        ("BODY[1.MIME]", b"Content-Type: text/plain\r\n\r\n"),
        ("BODY[2.2]", b"<b>Lunch?</b>"),
        ("BODY[2.1.MIME]", b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"),
        ("BODY[2.MIME]", b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"),
        (
            "BODY[2.HEADER.FIELDS (SUBJECT MESSAGE-ID)]",
            b"Subject: Lunch on Thursday?\r\nMessage-ID: <inner@example.org>\r\n\r\n",
        ),
        ("BODY[2.TEXT]<0.5>", b"--in1"),
        ("BODY[1.TEXT]", b""),  # part 1 is no message/rfc822
        ("BODY[1.HEADER]", b""),
        ("BODY[3]", b""),  # no such part
        ("BODY[1.1]", b""),
        ("BODY[2.3]", b""),
        ("BODY[2.1.1]", b""),
    ],
)
async def test_parts(section: str, expected: bytes) -> None:
    wire = await fetch(section, FORWARDED)
    label = section.encode().replace(b"<0.5>", b"<0>")
    body = lit(expected) if expected else b'""'
    assert wire == b"* 3 FETCH (" + label + b" " + body + b")\r\n"


async def test_part_of_message_rfc822_is_the_whole_inner_message() -> None:
    info = parse_message(FORWARDED)
    inner = info.body.parts[1]
    wire = await fetch("BODY[2]", FORWARDED)
    assert (
        wire
        == b"* 3 FETCH (BODY[2] " + lit(FORWARDED[inner.body_offset : inner.end_offset]) + b")\r\n"
    )
    hdr = await fetch("BODY[2.HEADER]", FORWARDED)
    assert hdr.startswith(b"* 3 FETCH (BODY[2.HEADER] {") and hdr.endswith(b"in1\r\n\r\n)\r\n")


async def test_part_one_of_a_single_part_message_is_its_body() -> None:
    assert await fetch("BODY[1]", SIMPLE) == b"* 3 FETCH (BODY[1] " + lit(SIMPLE_TEXT) + b")\r\n"
    assert await fetch("BODY[2]", SIMPLE) == b'* 3 FETCH (BODY[2] "")\r\n'
    assert await fetch("BODY[1.1]", SIMPLE) == b'* 3 FETCH (BODY[1.1] "")\r\n'


def test_find_part_digest() -> None:
    info = parse_message((DATA / "digest.eml").read_bytes())
    one = find_part(info.body, (1,))
    assert one is not None and one.message is not None
    inner = find_part(info.body, (1, 1))
    assert inner is not None and (inner.type, inner.subtype) == ("text", "plain")
    assert find_part(info.body, (1, 2)) is None
    three = find_part(info.body, (3,))
    assert three is not None and three.type == "text"


@pytest.mark.parametrize(
    ("partial", "expected"),
    [
        ("<0.4>", b"Retu"),
        ("<7.4>", b"Path"),
        ("<0.99999>", PREFIX + SIMPLE),
        (f"<{len(PREFIX) + len(SIMPLE)}.10>", b""),
        ("<99999.10>", b""),
    ],
)
async def test_partial(partial: str, expected: bytes) -> None:
    wire = await fetch("BODY.PEEK[]" + partial, SIMPLE)
    origin = partial[1:].split(".")[0].encode()
    body = lit(expected) if expected else b'""'
    assert wire == b"* 3 FETCH (BODY[]<" + origin + b"> " + body + b")\r\n"


async def test_partial_of_header_fields_cuts_the_filtered_text() -> None:
    wire = await fetch("BODY.PEEK[HEADER.FIELDS (SUBJECT)]<2.5>", SIMPLE)
    assert wire == b"* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)]<2> {5}\r\nbject)\r\n"


async def test_nul_in_body_is_replaced() -> None:
    data = b"Subject: x\r\n\r\na\x00b"
    wire = await fetch("BODY[TEXT]", data)
    assert wire == b"* 3 FETCH (BODY[TEXT] {3}\r\na\x80b)\r\n"


async def test_without_info_sections_still_work() -> None:
    """If the session did not load MessageInfo, sections are found from the bytes."""
    for text in ("BODY[HEADER]", "BODY[TEXT]", "BODY[2.1]", "ENVELOPE", "BINARY[2.1]"):
        assert await fetch(text, FORWARDED, with_info=False) == await fetch(text, FORWARDED)


async def test_several_items_in_order() -> None:
    wire = await fetch("(UID BODY.PEEK[1] RFC822.SIZE)", FORWARDED, b"")
    assert wire == (
        b"* 3 FETCH (UID 7 BODY[1] "
        + lit(b"See below.\r\n")
        + b" RFC822.SIZE %d)\r\n" % len(FORWARDED)
    )


# --- BINARY (RFC 3516) -------------------------------------------------------------------------

PAYLOAD = b"\x00\x01binary\xff\r\ndata\x00"


def binary_message(encoding: str, body: bytes) -> bytes:
    return (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        b"hi\r\n--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: " + encoding.encode() + b"\r\n\r\n" + body + b"\r\n--b--\r\n"
    )


B64 = binary_message("base64", base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n").rstrip())


async def test_binary_base64_with_nul_is_literal8() -> None:
    wire = await fetch("BINARY[2]", B64)
    assert wire == b"* 3 FETCH (BINARY[2] ~{%d}\r\n%s)\r\n" % (len(PAYLOAD), PAYLOAD)
    assert await fetch("BINARY.SIZE[2]", B64) == b"* 3 FETCH (BINARY.SIZE[2] %d)\r\n" % len(PAYLOAD)
    assert await fetch("BINARY.PEEK[2]<2.6>", B64) == b"* 3 FETCH (BINARY[2]<2> {6}\r\nbinary)\r\n"


async def test_binary_base64_junk_decodes_leniently() -> None:
    data = binary_message("BASE64", b"aGVs!!bG8\r\n*gd29y*bGQ")  # no padding, junk inside
    assert await fetch("BINARY[2]", data) == b"* 3 FETCH (BINARY[2] {11}\r\nhello world)\r\n"
    data = binary_message("base64", b"aGVsbG8=x")  # a stray character after the padding
    assert await fetch("BINARY[2]", data) == b"* 3 FETCH (BINARY[2] {5}\r\nhello)\r\n"
    data = binary_message("base64", b"aGVsbG8gd")  # one character too many to decode
    assert await fetch("BINARY[2]", data) == b"* 3 FETCH (BINARY[2] {6}\r\nhello )\r\n"


async def test_binary_quoted_printable() -> None:
    data = binary_message("quoted-printable", b"caf=C3=A9 =\r\nsoft")
    wire = await fetch("BINARY[2]", data)
    assert wire == b"* 3 FETCH (BINARY[2] {10}\r\ncaf\xc3\xa9 soft)\r\n"
    assert await fetch("BINARY.SIZE[2]", data) == b"* 3 FETCH (BINARY.SIZE[2] 10)\r\n"


async def test_binary_identity_and_composites() -> None:
    data = binary_message("8bit", b"raw \xff")
    assert await fetch("BINARY[2]", data) == b"* 3 FETCH (BINARY[2] {5}\r\nraw \xff)\r\n"
    assert await fetch("BINARY.SIZE[2]", data) == b"* 3 FETCH (BINARY.SIZE[2] 5)\r\n"
    assert await fetch("BINARY[1]", data) == b"* 3 FETCH (BINARY[1] {2}\r\nhi)\r\n"
    whole = await fetch("BINARY[]", data, b"")
    assert whole == b"* 3 FETCH (BINARY[] " + lit(data) + b")\r\n"
    assert await fetch("BINARY.SIZE[]", data, b"") == b"* 3 FETCH (BINARY.SIZE[] %d)\r\n" % len(
        data
    )


async def test_binary_missing_part() -> None:
    assert await fetch("BINARY[9]", B64) == b'* 3 FETCH (BINARY[9] "")\r\n'
    assert await fetch("BINARY.SIZE[9]", B64) == b"* 3 FETCH (BINARY.SIZE[9] 0)\r\n"


async def test_binary_unknown_encoding_fails() -> None:
    data = binary_message("x-uuencode", b"begin 644 x\r\nend")
    with pytest.raises(FetchFailed) as e:
        await fetch("BINARY[2]", data)
    assert e.value.code == "UNKNOWN-CTE"
    with pytest.raises(FetchFailed):
        await fetch("BINARY.SIZE[2]", data)
    # BODY[] of the same part is fine: it is not decoded.
    assert await fetch("BODY[2]", data) == b"* 3 FETCH (BODY[2] {16}\r\nbegin 644 x\r\nend)\r\n"


# --- robustness --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n",
        b"no header",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\nno parts",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"From: <\r\nTo: ;;,\r\nSubject: \xff\x00\r\n\r\n\x00",
        B64[:60],
    ],
)
async def test_garbage_never_raises(data: bytes) -> None:
    text = (
        "(FLAGS UID ENVELOPE BODYSTRUCTURE BODY BODY[] BODY[HEADER] BODY[TEXT] "
        "BODY[HEADER.FIELDS (FROM)] BODY[1] BODY[1.MIME] BODY[1.1] BODY[2.HEADER] BINARY[1] "
        "BINARY.SIZE[1] BODY[]<3.4>)"
    )
    wire = await fetch(text, data)
    assert wire.startswith(b"* 3 FETCH (") and wire.endswith(b")\r\n")
