"""Byte-literal tests of the parse-once MIME scanner: posthorn.mail.mime and .headers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from posthorn.mail import mime
from posthorn.mail.headers import (
    find_body,
    header_fields,
    msg_ids,
    parse_address_list,
    parse_content_type,
    parse_disposition,
    parse_encoding,
    parse_language,
    parse_params,
)
from posthorn.mail.info import BodyPart, EnvelopeAddress, MessageInfo
from posthorn.mail.mime import parse_message, split_multipart

DATA = Path(__file__).resolve().parent.parent / "data" / "mime"
US_ASCII = (("charset", "us-ascii"),)


def crlf(text: str) -> bytes:
    """A message written with LF in the test source, as CRLF wire bytes."""
    return text.replace("\n", "\r\n").encode("utf-8")


def body_of(data: bytes, part: BodyPart) -> bytes:
    return data[part.body_offset : part.end_offset]


def walk(part: BodyPart) -> Iterator[BodyPart]:
    yield part
    for child in part.parts:
        yield from walk(child)
    if part.message is not None:
        yield from walk(part.message.body)


def addr(
    mailbox: str | None, host: str | None, name: str | None = None, route: str | None = None
) -> EnvelopeAddress:
    return EnvelopeAddress(name, route, mailbox, host)


def assert_roundtrip(info: MessageInfo) -> None:
    assert MessageInfo.from_json(info.to_json()) == info


# --- single-part messages --------------------------------------------------------------------


def test_simple_text_message() -> None:
    data = crlf(
        "From: Alice <alice@example.org>\n"
        "To: bob@example.com\n"
        "Subject: Hello\n"
        "Date: Tue, 18 Nov 2025 09:12:00 +0100\n"
        "Message-ID: <1@example.org>\n"
        "\n"
        "line one\n"
        "line two\n"
    )
    info = parse_message(data)
    header = data.index(b"\r\n\r\n") + 4
    assert info.size == len(data)
    assert info.header_size == header
    env = info.envelope
    assert env.subject == "Hello"
    assert env.date == "Tue, 18 Nov 2025 09:12:00 +0100"
    assert env.message_id == "<1@example.org>"
    assert env.from_ == (addr("alice", "example.org", "Alice"),)
    assert env.to == (addr("bob", "example.com"),)
    assert env.sender == env.reply_to == env.cc == env.bcc == ()
    assert env.in_reply_to is None
    body = info.body
    # RFC 2045 §5.2: no Content-Type means text/plain; charset=us-ascii, 7bit.
    assert (body.type, body.subtype, body.params) == ("text", "plain", US_ASCII)
    assert body.encoding == "7bit"
    assert (body.header_offset, body.body_offset, body.end_offset) == (0, header, len(data))
    assert body_of(data, body) == b"line one\r\nline two\r\n"
    assert body.size == 20
    assert body.lines == 2
    assert body.parts == ()
    assert body.message is None
    assert_roundtrip(info)


def test_lines_count_line_feeds_like_dovecot() -> None:
    info = parse_message(b"Subject: x\r\n\r\none\r\ntwo")
    assert body_of(b"Subject: x\r\n\r\none\r\ntwo", info.body) == b"one\r\ntwo"
    assert info.body.lines == 1  # a last line without a line end is not counted


def test_content_type_present_without_charset_keeps_params_as_found() -> None:
    info = parse_message(b"Content-Type: TEXT/HTML\r\n\r\n<p>hi</p>")
    assert (info.body.type, info.body.subtype, info.body.params) == ("text", "html", ())


def test_header_names_are_case_insensitive_and_first_occurrence_wins() -> None:
    data = crlf("SUBJECT: first\nsubject: second\nFROM: a@b\nfrom: c@d\n\nbody")
    env = parse_message(data).envelope
    assert env.subject == "first"
    assert env.from_ == (addr("a", "b"),)


def test_encoded_word_subject_is_kept_raw_and_folding_is_removed() -> None:
    data = crlf("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n =?utf-8?q?_aus_Berlin?=\n\nx")
    assert parse_message(data).envelope.subject == (
        "=?utf-8?q?Gr=C3=BC=C3=9Fe?= =?utf-8?q?_aus_Berlin?="
    )


def test_folded_headers_with_tabs_and_bare_lf() -> None:
    data = b"Subject: one\n\ttwo\n  three\nTo: a@b,\n c@d\n\nbody\n"
    info = parse_message(data)
    assert info.envelope.subject == "one\ttwo  three"
    assert info.envelope.to == (addr("a", "b"), addr("c", "d"))
    assert info.header_size == data.index(b"\n\n") + 2


def test_eight_bit_junk_header_round_trips_through_surrogateescape() -> None:
    raw = b"Gr\xfc\xdfe \xff\x00 aus K\xf6ln"
    data = b"Subject: " + raw + b"\r\nFrom: J\xf6rg <j@x.de>\r\n\r\nbody"
    info = parse_message(data)
    subject = info.envelope.subject
    assert subject is not None
    assert subject.encode("utf-8", "surrogateescape") == raw
    name = info.envelope.from_[0].name
    assert name is not None
    assert name.encode("utf-8", "surrogateescape") == b"J\xf6rg"
    assert_roundtrip(info)


def test_utf8_header_is_decoded() -> None:
    data = "Subject: Grüße\r\n\r\n".encode()
    assert parse_message(data).envelope.subject == "Grüße"


def test_missing_blank_line_makes_everything_header() -> None:
    data = b"Subject: no body\r\nFrom: a@b\r\n"
    info = parse_message(data)
    assert info.header_size == len(data)
    assert info.envelope.subject == "no body"
    assert (info.body.body_offset, info.body.end_offset, info.body.size) == (len(data),) * 2 + (0,)


def test_message_starting_with_blank_line_has_empty_header() -> None:
    info = parse_message(b"\r\nSubject: this is body\r\n")
    assert info.header_size == 2
    assert info.envelope.subject is None
    assert info.body.size == len(b"Subject: this is body\r\n")


def test_empty_input() -> None:
    info = parse_message(b"")
    assert (info.size, info.header_size) == (0, 0)
    assert (info.body.type, info.body.subtype, info.body.size, info.body.lines) == (
        "text",
        "plain",
        0,
        0,
    )
    assert_roundtrip(info)


def test_header_line_without_colon_is_skipped() -> None:
    data = crlf("Subject: ok\ngarbage line here\nTo: a@b\n\nbody")
    info = parse_message(data)
    assert info.envelope.subject == "ok"
    assert info.envelope.to == (addr("a", "b"),)
    assert body_of(data, info.body) == b"body"


@pytest.mark.parametrize(
    "value", ["text", "/", ";;;", "", "text/", "/plain", "(comment only)", '"text/plain"']
)
def test_bogus_content_type_falls_back_to_default(value: str) -> None:
    info = parse_message(f"Content-Type: {value}\r\n\r\nbody".encode())
    assert (info.body.type, info.body.subtype, info.body.params) == ("text", "plain", US_ASCII)


def test_other_mime_fields() -> None:
    data = crlf(
        "Content-Type: image/PNG; name=dot.png\n"
        "Content-Transfer-Encoding: Base64 (comment)\n"
        "Content-ID: <img1@x>\n"
        "Content-Description: A dot\n"
        'Content-Disposition: INLINE; filename="dot.png"\n'
        "Content-Language: en, de-AT (Austrian)\n"
        "Content-Location: http://example.com/dot.png\n"
        "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
        "\n"
        "iVBORw0KGgo=\n"
    )
    body = parse_message(data).body
    assert (body.type, body.subtype, body.params) == ("image", "png", (("name", "dot.png"),))
    assert body.encoding == "base64"
    assert body.id == "<img1@x>"
    assert body.description == "A dot"
    assert body.disposition == ("inline", (("filename", "dot.png"),))
    assert body.language == ("en", "de-AT")
    assert body.location == "http://example.com/dot.png"
    assert body.md5 == "Q2hlY2sgSW50ZWdyaXR5IQ=="
    assert body.lines == 0  # only text/* and message/* carry a line count


# --- multiparts ------------------------------------------------------------------------------


ALTERNATIVE = crlf(
    "From: a@example.org\n"
    'Content-Type: multipart/alternative; boundary="b1"\n'
    "\n"
    "preamble, ignored\n"
    "--b1\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "\n"
    "plain text\n"
    "\n"
    "--b1\n"
    "Content-Type: text/html; charset=utf-8\n"
    "\n"
    "<p>html</p>\n"
    "--b1--\n"
    "epilogue, ignored\n"
)


def test_multipart_alternative() -> None:
    data = ALTERNATIVE
    info = parse_message(data)
    top = info.body
    assert (top.type, top.subtype, top.params) == (
        "multipart",
        "alternative",
        (("boundary", "b1"),),
    )
    assert top.body_offset == info.header_size
    assert top.end_offset == len(data)
    plain, html = top.parts
    assert (plain.type, plain.subtype, plain.params) == ("text", "plain", (("charset", "utf-8"),))
    # RFC 2046 §5.1.1: the CRLF before a delimiter belongs to the delimiter.
    assert body_of(data, plain) == b"plain text\r\n"
    assert plain.lines == 1
    assert body_of(data, html) == b"<p>html</p>"
    assert html.lines == 0
    assert data[plain.header_offset : plain.body_offset] == (
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    assert_roundtrip(info)


def test_mixed_with_attachment_and_rfc2231_filename() -> None:
    data = (DATA / "mixed-attachment.eml").read_bytes()
    info = parse_message(data)
    top = info.body
    assert (top.type, top.subtype) == ("multipart", "mixed")
    alternative, pdf = top.parts
    assert (alternative.type, alternative.subtype) == ("multipart", "alternative")
    plain, html = alternative.parts
    assert body_of(data, plain) == b"Hallo zusammen,\r\nanbei der Bericht.\r\n"
    assert body_of(data, html) == b"<p>Hallo zusammen,<br>anbei der Bericht.</p>\r\n"
    assert plain.encoding == "quoted-printable"
    # The inner close line keeps its CRLF; the next CRLF belongs to the outer delimiter.
    between = data[alternative.end_offset - 15 : pdf.header_offset]
    assert between == b"--==inner==--\r\n" + b"\r\n--==outer==\r\n"
    assert (pdf.type, pdf.subtype) == ("application", "pdf")
    assert pdf.params == (("name", "Bericht für Q3.pdf"),)
    assert pdf.disposition == (
        "attachment",
        (("filename", "Bericht für Q3.pdf"), ("size", "1234")),
    )
    assert pdf.encoding == "base64"
    assert pdf.id == "<pdf1@example.org>"
    assert pdf.description == "Quarterly report"
    attachment = body_of(data, pdf)
    assert attachment.startswith(b"JVBERi0xLjQK")
    assert attachment.endswith(b"dGVzdHMK")  # without the CRLF before "--==outer==--"
    env = info.envelope
    assert env.subject == "=?utf-8?q?Quartalsbericht_f=C3=BCr_Q3?="
    assert env.from_ == (addr("jane", "example.org", "Doe, Jane"),)
    assert env.to == (
        addr("team", None),
        addr("bob", "example.com"),
        addr("carl", "example.com", "Carl R."),
        addr(None, None),
    )
    assert env.in_reply_to == "<ask-q3@example.com>"
    assert info.references == ("<kickoff@example.com>", "<ask-q3@example.com>")
    assert_roundtrip(info)


def test_nested_multipart_ranges_lie_inside_their_parents() -> None:
    info = parse_message((DATA / "mixed-attachment.eml").read_bytes())
    for parent in walk(info.body):
        for child in parent.parts:
            assert parent.body_offset <= child.header_offset
            assert child.end_offset <= parent.end_offset


def test_nested_boundary_that_extends_the_outer_one() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=abc\n"
        "\n"
        "--abc\n"
        "Content-Type: multipart/alternative; boundary=abc-1\n"
        "\n"
        "--abc-1\n"
        "\n"
        "one\n"
        "--abc-1\n"
        "\n"
        "two\n"
        "--abc-1--\n"
        "--abc\n"
        "\n"
        "three\n"
        "--abc--\n"
    )
    top = parse_message(data).body
    inner, last = top.parts
    assert [body_of(data, p) for p in inner.parts] == [b"one", b"two"]
    assert body_of(data, last) == b"three"


def test_delimiter_with_transport_padding_and_lookalike_lines() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=zz\n"
        "\n"
        "--zz \t\n"
        "\n"
        "a\n"
        "--zzz is not a delimiter\n"
        " --zz is not at line start\n"
        "--zz--\n"
    )
    (part,) = parse_message(data).body.parts
    assert body_of(data, part) == b"a\r\n--zzz is not a delimiter\r\n --zz is not at line start"


def test_part_without_header_and_empty_parts() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=q\n\n--q\n--q\n\nbody\n--q--\n")
    first, second = parse_message(data).body.parts
    assert first.header_offset == first.body_offset == first.end_offset
    assert (first.type, first.subtype, first.size) == ("text", "plain", 0)
    assert body_of(data, second) == b"body"


def test_unterminated_multipart_runs_to_the_end() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=u\n\n--u\n\nfirst\n--u\n\nsecond, cut off\n"
    )
    first, second = parse_message(data).body.parts
    assert body_of(data, first) == b"first"
    assert body_of(data, second) == b"second, cut off\r\n"
    assert second.end_offset == len(data)


def test_unterminated_inner_multipart_ends_at_the_outer_delimiter() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=o\n\n"
        "--o\nContent-Type: multipart/mixed; boundary=i\n\n--i\n\ninner\n"
        "--o\n\nouter\n--o--\n"
    )
    inner, outer = parse_message(data).body.parts
    assert [body_of(data, p) for p in inner.parts] == [b"inner"]
    assert body_of(data, outer) == b"outer"


def test_bare_lf_multipart() -> None:
    data = (
        b"Content-Type: multipart/mixed; boundary=lf\n\n"
        b"--lf\nContent-Type: text/plain\n\nline 1\nline 2\n\n--lf\n\nx\n--lf--\n"
    )
    info = parse_message(data)
    first, second = info.body.parts
    assert body_of(data, first) == b"line 1\nline 2\n"
    assert first.lines == 2
    assert body_of(data, second) == b"x"
    assert info.header_size == data.index(b"\n\n") + 2


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/mixed",  # no boundary
        'multipart/mixed; boundary=""',
        "multipart/mixed; boundary=never-used",
    ],
)
def test_multipart_without_parts_gets_one_empty_text_part(content_type: str) -> None:
    data = f"Content-Type: {content_type}\r\n\r\njust text\r\n".encode()
    top = parse_message(data).body
    (empty,) = top.parts
    assert (empty.type, empty.subtype, empty.params, empty.size, empty.lines) == (
        "text",
        "plain",
        US_ASCII,
        0,
        0,
    )
    assert empty.header_offset == empty.body_offset == empty.end_offset == top.body_offset


def test_multipart_whose_first_delimiter_is_the_close_one() -> None:
    data = b"Content-Type: multipart/mixed; boundary=c\r\n\r\n--c--\r\n"
    (empty,) = parse_message(data).body.parts
    assert empty.size == 0


def test_multipart_digest_defaults_to_message_rfc822() -> None:
    data = (DATA / "digest.eml").read_bytes()
    info = parse_message(data)
    first, second, text = info.body.parts
    for part, subject in ((first, "first"), (second, "second")):
        assert (part.type, part.subtype, part.params) == ("message", "rfc822", ())
        assert part.message is not None
        assert part.message.envelope.subject == subject
        inner = part.message.body
        assert (inner.type, inner.subtype) == ("text", "plain")
    assert second.message is not None
    assert body_of(data, second.message.body) == b"Second message.\r\n"
    assert (text.type, text.subtype) == ("text", "plain")
    assert text.message is None
    assert_roundtrip(info)


def test_digest_default_does_not_leak_into_nested_multiparts() -> None:
    data = crlf(
        "Content-Type: multipart/digest; boundary=d\n\n"
        "--d\nContent-Type: multipart/mixed; boundary=m\n\n--m\n\nplain\n--m--\n--d--\n"
    )
    (mixed,) = parse_message(data).body.parts
    assert (mixed.parts[0].type, mixed.parts[0].subtype) == ("text", "plain")


# --- message/rfc822 --------------------------------------------------------------------------


def test_message_rfc822_attachment_has_envelope_and_absolute_offsets() -> None:
    data = (DATA / "forwarded.eml").read_bytes()
    info = parse_message(data)
    note, forwarded = info.body.parts
    assert body_of(data, note) == b"See below.\r\n"
    assert (forwarded.type, forwarded.subtype) == ("message", "rfc822")
    assert forwarded.disposition == ("inline", ())
    embedded = body_of(data, forwarded)
    assert embedded.startswith(b"From: Alice Example")
    assert embedded.endswith(b"--in1--\r\n")
    assert forwarded.lines == embedded.count(b"\n")
    assert forwarded.message is not None
    env = forwarded.message.envelope
    assert env.subject == "Lunch on Thursday?"
    assert env.message_id == "<inner@example.org>"
    assert env.from_ == (addr("alice", "example.org", "Alice Example"),)
    inner = forwarded.message.body
    assert inner.header_offset == forwarded.body_offset
    assert data[inner.header_offset : inner.body_offset].endswith(b"boundary=in1\r\n\r\n")
    assert inner.end_offset == forwarded.end_offset
    assert (inner.type, inner.subtype) == ("multipart", "alternative")
    assert [body_of(data, p) for p in inner.parts] == [b"Lunch?", b"<b>Lunch?</b>"]
    assert info.envelope.subject == "Fwd: Lunch on Thursday?"  # the outer one
    assert_roundtrip(info)


def test_message_global_is_parsed_like_rfc822() -> None:
    data = crlf("Content-Type: message/global\n\nSubject: inner\n\nhi\n")
    body = parse_message(data).body
    assert body.message is not None
    assert body.message.envelope.subject == "inner"


def test_deep_multipart_nesting_is_capped() -> None:
    depth = mime.MAX_DEPTH + 20
    head = "".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n" for i in range(depth)
    )
    data = crlf(head + "\nleaf\n")
    info = parse_message(data)
    levels = 0
    part = info.body
    while part.parts:
        (part,) = part.parts
        levels += 1
    assert levels == mime.MAX_DEPTH + 1
    assert (part.type, part.subtype, part.size) == ("text", "plain", 0)  # the stand-in
    assert_roundtrip(info)


def test_deep_message_rfc822_nesting_becomes_opaque() -> None:
    depth = mime.MAX_DEPTH + 5
    data = crlf("Content-Type: message/rfc822\n\n" * depth + "Subject: bottom\n\nbody\n")
    part = parse_message(data).body
    levels = 0
    while part.message is not None:
        part = part.message.body
        levels += 1
    assert levels == mime.MAX_DEPTH
    assert (part.type, part.subtype) == ("application", "octet-stream")


def test_part_count_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mime, "MAX_PARTS", 5)
    data = crlf("Content-Type: multipart/mixed; boundary=p\n\n" + "--p\n\nx\n" * 20 + "--p--\n")
    info = parse_message(data)
    assert sum(1 for _ in walk(info.body)) <= 5
    last = info.body.parts[-1]
    assert last.end_offset == len(data)  # the rest of the multipart, unparsed


def test_parse_message_survives_an_internal_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(data: bytes) -> MessageInfo:
        raise RuntimeError("bug")

    monkeypatch.setattr(mime, "_parse", broken)
    data = b"Subject: x\r\n\r\nbody\r\n"
    info = parse_message(data)
    assert (info.size, info.header_size) == (len(data), 14)
    assert body_of(data, info.body) == b"body\r\n"


def test_sample_messages_round_trip_through_json() -> None:
    for path in sorted(DATA.glob("*.eml")):
        assert_roundtrip(parse_message(path.read_bytes()))


def test_plain_sample() -> None:
    data = (DATA / "plain.eml").read_bytes()
    info = parse_message(data)
    assert info.body.params == (("charset", "utf-8"), ("format", "flowed"))
    assert info.body.encoding == "8bit"
    assert info.envelope.cc == (addr("carol", "example.net", "Carol C."),)
    assert body_of(data, info.body).startswith(b"Hi Bob,\r\n")
    assert info.references == ()


# --- threading ids ---------------------------------------------------------------------------


def test_references_fall_back_to_first_in_reply_to() -> None:
    data = crlf("In-Reply-To: <a@x> (comment) <b@x>\n\n")
    info = parse_message(data)
    assert info.references == ("<a@x>",)
    assert info.envelope.in_reply_to == "<a@x> (comment) <b@x>"


def test_msg_ids() -> None:
    assert msg_ids("<a@x>\r\n <b@y>junk<c @ z>") == ("<a@x>", "<b@y>", "<c@z>")
    assert msg_ids("no ids <>") == ()
    assert msg_ids(None) == ()


# --- headers.py building blocks --------------------------------------------------------------


def test_find_body() -> None:
    data = b"A: 1\r\nB: 2\r\n\r\nbody"
    assert find_body(data, 0, len(data)) == (12, 14)
    assert find_body(b"A: 1\n\nbody", 0, 10) == (5, 6)
    assert find_body(b"A: 1\r\n", 0, 6) == (6, 6)
    assert find_body(b"xx\r\nbody", 2, 8) == (2, 4)


def test_header_fields_ignores_unrelated_and_continuation_lookalikes() -> None:
    block = b"X-To: no\r\nToxic: no\r\n To: no\r\nTo : yes\r\n"
    assert header_fields(block) == {"to": "yes"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a@b", [addr("a", "b")]),
        ('"Smith, J." <j@x>', [addr("j", "x", "Smith, J.")]),
        ("John Q. Public <jqp@x.y>", [addr("jqp", "x.y", "John Q. Public")]),
        ("j@x (Joe (the) Man)", [addr("j", "x", "Joe (the) Man")]),
        ("<@a.net,@b.net:u@h>", [addr("u", "h", route="@a.net,@b.net")]),
        ("Name <@a:u@h>", [addr("u", "h", "Name", "@a")]),
        ('"john doe"@x', [addr('"john doe"', "x")]),
        ("john . doe @ example . com", [addr("john.doe", "example.com")]),
        ("user@[192.0.2.1]", [addr("user", "[192.0.2.1]")]),
        ("MAILER-DAEMON", [addr("MAILER-DAEMON", "")]),
        ("<>", [addr("", "")]),
        ("=?utf-8?q?J=C3=B6rg?= <j@x>", [addr("j", "x", "=?utf-8?q?J=C3=B6rg?=")]),
        ("a@b; c@d", [addr("a", "b"), addr("c", "d")]),
        ("a@b,, ,c@d,", [addr("a", "b"), addr("c", "d")]),
        ("undisclosed-recipients:;", [addr("undisclosed-recipients", None), addr(None, None)]),
        (
            "Friends: a@b, C <c@d>; e@f",
            [
                *(addr("Friends", None), addr("a", "b"), addr("c", "d", "C")),
                *(addr(None, None), addr("e", "f")),
            ],
        ),
        ("Open group: a@b", [addr("Open group", None), addr("a", "b"), addr(None, None)]),
        ("a@b.c <broken", [addr("broken", "", "a@b.c")]),
        ("J <j@x> trailing junk, k@y", [addr("j", "x", "J"), addr("k", "y")]),
        ("", []),
        ("(just a comment)", []),
    ],
)
def test_parse_address_list(value: str, expected: list[EnvelopeAddress]) -> None:
    assert list(parse_address_list(value)) == expected


def test_unterminated_quote_swallows_the_rest_of_the_list() -> None:
    assert parse_address_list('"unterminated <u@x>, v@y') == (addr('"unterminated <u@x>, v@y', ""),)


def test_parse_content_type() -> None:
    assert parse_content_type('Text/Plain; Charset="UTF-8"; format=flowed') == (
        "text",
        "plain",
        (("charset", "UTF-8"), ("format", "flowed")),
    )
    # RFC 2045 §5.1 example: comments are not part of the value.
    assert parse_content_type("text/plain; charset=us-ascii (Plain text)") == (
        "text",
        "plain",
        US_ASCII,
    )
    # Quoted values keep their ";" and "(" and lose their escapes.
    assert parse_content_type('multipart/mixed; boundary="a;b(c)\\"d"') == (
        "multipart",
        "mixed",
        (("boundary", 'a;b(c)"d'),),
    )
    # Unquoted boundaries with "=" are illegal but common.
    assert parse_content_type("multipart/mixed; boundary=----=_Part_0_1.2") == (
        "multipart",
        "mixed",
        (("boundary", "----=_Part_0_1.2"),),
    )
    assert parse_content_type("text / plain ;; junk; =x; a=") == (
        "text",
        "plain",
        (("a", ""),),
    )
    assert parse_content_type("text") is None


def test_rfc2231_continuations_and_charsets() -> None:
    assert parse_params(['name*0="long "', "name*2=end", "name*1=middle-"]) == (
        ("name", "long middle-end"),
    )
    assert parse_params(["title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A"]) == (
        ("title", "This is ***fun***"),
    )
    # RFC 2231 §4.1 example: mixed encoded and literal sections.
    assert parse_params(
        [
            "title*0*=us-ascii'en'This%20is%20even%20more%20",
            "title*1*=%2A%2A%2Afun%2A%2A%2A%20",
            'title*2="isn\'t it!"',
        ]
    ) == (("title", "This is even more ***fun*** isn't it!"),)
    # The extended form replaces a plain one of the same name.
    assert parse_params(["filename=fallback.txt", "filename*=utf-8''caf%C3%A9.txt"]) == (
        ("filename", "café.txt"),
    )
    # Unknown charset or undecodable octets: kept raw under name*, next to the plain one.
    assert parse_params(["filename=f.txt", "filename*=x-unknown''%E9"]) == (
        ("filename", "f.txt"),
        ("filename*", "x-unknown''%E9"),
    )
    assert parse_params(["filename*=utf-8''%E9"]) == (("filename*", "utf-8''%E9"),)
    assert parse_params(["filename*=no-quotes"]) == (("filename*", "no-quotes"),)
    assert parse_params(["n*=base64''aGk="]) == (("n*", "base64''aGk="),)  # not a text codec


def test_disposition_language_encoding() -> None:
    assert parse_disposition("Attachment; FILENAME=a.txt") == (
        "attachment",
        (("filename", "a.txt"),),
    )
    assert parse_disposition("; filename=a") is None
    assert parse_language(" , ") is None
    assert parse_language("en-GB,fr") == ("en-GB", "fr")
    assert parse_encoding(None) == "7bit"
    assert parse_encoding("") == "7bit"
    assert parse_encoding(" QUOTED-Printable ") == "quoted-printable"


def test_split_multipart_ranges() -> None:
    body = b"pre\r\n--b\r\nA\r\n--b\r\n\r\nB\r\n--b--\r\nepi"
    assert [body[s:e] for s, e in split_multipart(body, 0, len(body), b"--b")] == [
        b"A",
        b"\r\nB",
    ]
    assert split_multipart(body, 0, len(body), b"--b", limit=1) == [(10, len(body))]
