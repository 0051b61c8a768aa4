"""mboxrd: splitting, From_ quoting both ways, dates, state headers to flags and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthorn.mail import mbox
from posthorn.mail.mbox import Chunk, MboxError

MBOX = (
    b"From alice@example.test Thu Mar 30 23:59:59 1995\n"
    b"Subject: one\n"
    b"Status: RO\n"
    b"X-Status: AF\n"
    b"X-Keywords: $Label1, work\n"
    b"\n"
    b">From the start\n"
    b">>From deeper\n"
    b">not From\n"
    b" From indented\n"
    b"\n"
    b"From MAILER-DAEMON Mon Jan  2 03:04:05 2006\n"
    b"Subject: two\n"
    b"\n"
    b"no final newline"
)


def chunks(data: bytes, block: int = 1 << 20) -> list[Chunk]:
    return list(mbox.split([data[i : i + block] for i in range(0, len(data), block)]))


@pytest.mark.parametrize("block", [1, 2, 7, 8, 100, 1 << 20])
def test_split_any_block_size(block: int) -> None:
    got = chunks(MBOX, block)
    assert [c.from_line for c in got] == [
        b"From alice@example.test Thu Mar 30 23:59:59 1995",
        b"From MAILER-DAEMON Mon Jan  2 03:04:05 2006",
    ]
    assert got[0].offset == 0 and got[1].offset == MBOX.index(b"From MAILER")
    assert got[0].body.endswith(b" From indented\n")  # the separating empty line is dropped
    assert got[1].body == b"Subject: two\n\nno final newline"
    assert got[1].end == len(MBOX)


def test_parse_messages() -> None:
    one, two = (mbox.parse_chunk(c) for c in chunks(MBOX))
    assert one.data == (
        b"Subject: one\r\n\r\nFrom the start\r\n>From deeper\r\n>not From\r\n From indented\r\n"
    )
    assert one.flags == {"\\Seen", "\\Answered", "\\Flagged", "$Label1", "work"}
    assert one.internal_date == datetime(1995, 3, 30, 23, 59, 59, tzinfo=UTC)
    assert one.sender == "alice@example.test"
    assert two.data == b"Subject: two\r\n\r\nno final newline\r\n"
    assert two.flags == frozenset()


def test_from_needs_an_empty_line_before_it() -> None:
    data = b"From a Thu Mar 30 23:59:59 1995\nSubject: x\n\nline\nFrom here on, body\n"
    (only,) = chunks(data)
    assert mbox.parse_chunk(only).data.endswith(b"From here on, body\r\n")


def test_crlf_files() -> None:
    data = MBOX.replace(b"\n", b"\r\n")
    one, two = (mbox.parse_chunk(c) for c in chunks(data, 5))
    assert one.data.startswith(b"Subject: one\r\n\r\nFrom the start\r\n")
    assert two.data == b"Subject: two\r\n\r\nno final newline\r\n"


def test_quote_unquote() -> None:
    body = b"From a\n>From b\n>>From c\nFromage\n> From d\nx From e\n"
    quoted = mbox.quote(body)
    assert quoted == b">From a\n>>From b\n>>>From c\nFromage\n> From d\nx From e\n"
    assert mbox.unquote(quoted) == body


@given(st.lists(st.sampled_from([b"From ", b">", b"x", b"\n", b"\r\n", b" "]), max_size=30))
def test_quoting_round_trips(parts: list[bytes]) -> None:
    body = b"".join(parts)
    assert mbox.unquote(mbox.quote(body)) == body
    assert b"\nFrom " not in b"\n" + mbox.quote(body)


def test_junk_and_broken_chunks() -> None:
    data = b"not an mbox\n\nFrom x Thu Mar 30 23:59:59 1995\nno header here\n\n"
    junk, bad = chunks(data)
    with pytest.raises(MboxError, match="no 'From ' line"):
        mbox.parse_chunk(junk)
    with pytest.raises(MboxError, match="not a message"):
        mbox.parse_chunk(bad)
    assert chunks(b"\n\n") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thu Mar 30 23:59:59 1995", datetime(1995, 3, 30, 23, 59, 59, tzinfo=UTC)),
        ("Mon Jan  2 03:04:05 2006", datetime(2006, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("Mon Jan 2 03:04 2006", datetime(2006, 1, 2, 3, 4, tzinfo=UTC)),
        ("Mon Jan  2 03:04:05 2006 +0100", datetime(2006, 1, 2, 2, 4, 5, tzinfo=UTC)),
        ("Mon Jan  2 03:04:05 -0200 2006", datetime(2006, 1, 2, 5, 4, 5, tzinfo=UTC)),
        ("Mon Jan  2 03:04:05 PST 2006 remote from x", datetime(2006, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("Mon, 2 Jan 2006 03:04:05 +0000", datetime(2006, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("whenever", None),
        ("Mon Foo  2 03:04:05 2006", None),
        ("Mon Feb 31 03:04:05 2006", None),
    ],
)
def test_from_line_dates(text: str, expected: datetime | None) -> None:
    assert mbox.parse_asctime(text) == expected


def test_date_header_when_the_from_line_has_none() -> None:
    data = b"From x\nDate: Tue, 3 Jan 2006 04:05:06 +0200\nSubject: s\n\nbody\n"
    (c,) = chunks(data)
    assert mbox.parse_chunk(c).internal_date == datetime(
        2006, 1, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2))
    )


def test_state_fields_removed_with_continuations() -> None:
    data = (
        b"Subject: s\r\nX-Keywords: a\r\n b\r\nStatus: O\r\nStatus: RO\r\n"
        b"X-Mozilla-Status: 0005\r\nTo: t\r\n\r\nStatus: RO\r\n"
    )
    kept, fields = mbox.take_state_fields(data)
    assert kept == b"Subject: s\r\nTo: t\r\n\r\nStatus: RO\r\n"  # the body is not touched
    assert fields[b"status"] == b"O"  # the first copy counts
    assert fields[b"x-keywords"] == b"a b"
    assert mbox.flags_from_fields(fields) == {"a", "b", "\\Seen", "\\Flagged"}


def test_status_flags() -> None:
    def flags(**fields: str) -> frozenset[str]:
        return mbox.flags_from_fields(
            {k.replace("_", "-").encode(): v.encode() for k, v in fields.items()}
        )

    assert flags(status="RO") == {"\\Seen"}
    assert flags(status="O") == frozenset()
    assert flags(x_status="ADFT") == {"\\Answered", "\\Deleted", "\\Flagged", "\\Draft"}
    assert flags(x_mozilla_status="000b") == {"\\Seen", "\\Answered", "\\Deleted"}
    assert flags(x_keywords="ok (bad) \\Seen") == {"ok"}


def test_format_then_parse_round_trip() -> None:
    stored = b"Return-Path: <bounce@remote.test>\r\nSubject: s\r\n\r\nFrom me\r\n>From you\r\n\r\n"
    flags = frozenset({"\\Seen", "\\Draft", "\\Deleted", "$Forwarded"})
    when = datetime(2026, 11, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=1)))
    entry = mbox.format_message(stored, flags, when)
    assert entry == (
        b"From bounce@remote.test Tue Nov  3 03:05:06 2026\n"
        b"Return-Path: <bounce@remote.test>\nSubject: s\n"
        b"Status: RO\nX-Status: DT\nX-Keywords: $Forwarded\n\n"
        b">From me\n>>From you\n\n\n"
    )
    (c,) = chunks(entry + entry[:-1])[:1]
    back = mbox.parse_chunk(c)
    assert (back.data, back.flags, back.internal_date) == (stored, flags, when)


@pytest.mark.parametrize(
    ("head", "sender"),
    [
        (b"Return-Path: <a@b.test>\r\n", "a@b.test"),
        (b"Return-Path: <>\r\n", "MAILER-DAEMON"),
        (b"Subject: none\r\n", "MAILER-DAEMON"),
        (b"Return-Path: a b\r\n", "MAILER-DAEMON"),
    ],
)
def test_envelope_sender(head: bytes, sender: str) -> None:
    assert mbox.envelope_sender(head + b"\r\nbody\r\n") == sender


def test_line_ends() -> None:
    assert mbox.to_crlf(b"a\nb\r\nc") == b"a\r\nb\r\nc\r\n"
    assert mbox.to_crlf(b"a\rb\n") == b"a\rb\r\n"  # a bare CR is not a line end
    assert mbox.to_crlf(b"") == b""
    assert mbox.to_lf(b"a\r\nb\r\n") == b"a\nb\n"
