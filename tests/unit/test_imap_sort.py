"""IMAP SORT (RFC 5256) with DISPLAYFROM/DISPLAYTO (RFC 5957): parsing, base subject, order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from posthorn.imap.search import Needs
from posthorn.imap.sort import base_subject, format_sort, needs, parse_sort, run_sort
from posthorn.imap.values import ParseError, Refused
from tests.unit.test_imap_search import args, make, message


def test_parse_sort() -> None:
    q = parse_sort(args("(REVERSE DATE subject) UTF-8 SEEN"))
    assert q.criteria == (("DATE", True), ("SUBJECT", False))
    assert q.search.charset == "UTF-8"
    assert q.search.return_opts is None
    q = parse_sort(args("RETURN (MIN COUNT) (ARRIVAL) US-ASCII ALL"))
    assert q.search.return_opts == ("MIN", "COUNT")
    assert needs(q) == Needs()
    assert needs(parse_sort(args("(DISPLAYFROM) UTF-8 BODY x"))) == Needs(info=True, body=True)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "(DATE)",
        "(DATE) UTF-8",
        "() UTF-8 ALL",
        "(REVERSE) UTF-8 ALL",
        "(DATE REVERSE) UTF-8 ALL",
        "(REVERSE REVERSE DATE) UTF-8 ALL",
        "(BOGUS) UTF-8 ALL",
        "DATE UTF-8 ALL",
        "((DATE)) UTF-8 ALL",
        "RETURN (DATE) UTF-8 ALL",
    ],
)
def test_parse_sort_errors(text: str) -> None:
    with pytest.raises(ParseError):
        parse_sort(args(text))


def test_parse_sort_bad_charset() -> None:
    with pytest.raises(Refused):
        parse_sort(args("(DATE) ISO-2022-JP ALL"))


@pytest.mark.parametrize(
    ("subject", "base", "refwd"),
    [
        ("Hello", "Hello", False),
        ("Re: Hello", "Hello", True),
        ("RE:  re: Fwd:Hello", "Hello", True),
        ("Fw: hello (fwd)", "hello", True),
        ("Hello (fwd) (FWD)  ", "Hello", True),
        ("Hello   \t  world ", "Hello world", False),
        ("[list] Re: topic", "topic", True),
        ("Re[2]: topic", "topic", True),
        ("Reply: topic", "Reply: topic", False),
        ("Re [2]: topic", "topic", True),
        ("[list] topic", "topic", False),
        ("[only blob]", "[only blob]", False),
        ("[fwd: Re: inner]", "inner", True),
        ("Re: [fwd: [list] Re: inner] (fwd)", "inner", True),
        ("=?utf-8?q?Re=3A_Gr=C3=BC=C3=9Fe?=", "Grüße", True),
        ("", "", False),
        (None, "", False),
        ("Re:", "", True),
    ],
)
def test_base_subject(subject: str | None, base: str, refwd: bool) -> None:
    assert base_subject(subject) == (base, refwd)


async def sorted_seqs(query: str, messages: list[bytes], **kw: object) -> list[int]:
    cands, ctx = make(messages, **kw)  # type: ignore[arg-type]
    return [c.seq for c in await run_sort(parse_sort(args(query)), cands, ctx)]


async def test_sort_by_subject_then_sequence() -> None:
    msgs = [
        message("Re: beta"),
        message("alpha"),
        message("[list] Beta"),
        message("Fwd: Alpha"),
        message(None),
    ]
    assert await sorted_seqs("(SUBJECT) UTF-8 ALL", msgs) == [5, 2, 4, 1, 3]
    assert await sorted_seqs("(REVERSE SUBJECT) UTF-8 ALL", msgs) == [1, 3, 2, 4, 5]
    assert await sorted_seqs("(SUBJECT) UTF-8 NOT 2", msgs) == [5, 4, 1, 3]


async def test_sort_by_date_uses_utc_and_falls_back_to_internal_date() -> None:
    msgs = [
        message(date="Mon, 01 Jan 2024 10:00:00 +0000"),
        message(date="Mon, 01 Jan 2024 11:00:00 +0200"),  # 09:00 UTC
        message(date="garbage"),  # internal date 2024-03-10 15:00
        message(date="Tue, 05 Mar 2024 10:00:00 +0000"),
        message(date="Mon, 01 Jan 2024 10:00:00 +0000"),  # tie with 1: sequence order
    ]
    assert await sorted_seqs("(DATE) UTF-8 ALL", msgs) == [2, 1, 5, 4, 3]
    assert await sorted_seqs("(REVERSE DATE) UTF-8 ALL", msgs) == [3, 4, 1, 5, 2]


async def test_sort_by_arrival_and_size() -> None:
    msgs = [message(body="x" * n) for n in (30, 10, 20, 10)]
    dates = {1: datetime(2024, 1, 3, tzinfo=UTC), 2: datetime(2024, 1, 1, tzinfo=UTC)}
    dates |= {3: datetime(2024, 1, 2, tzinfo=UTC), 4: datetime(2024, 1, 1, tzinfo=UTC)}
    assert await sorted_seqs("(ARRIVAL) UTF-8 ALL", msgs, dates=dates) == [2, 4, 3, 1]
    assert await sorted_seqs("(SIZE) UTF-8 ALL", msgs) == [2, 4, 3, 1]
    assert await sorted_seqs("(REVERSE SIZE) UTF-8 ALL", msgs) == [1, 3, 2, 4]
    assert await sorted_seqs("(SIZE REVERSE ARRIVAL) UTF-8 ALL", msgs) == [4, 2, 3, 1]


async def test_sort_by_address_mailbox_and_display() -> None:
    msgs = [
        message(sender="Zed <adam@example.org>", to="Bob <zoe@x>"),
        message(sender="adam <Zack@example.org>", to="undisclosed:;"),
        message(sender="=?utf-8?q?=C3=84rger?= <m@example.org>", to="Ann <ann@x>, b@y"),
        message(sender="bea@example.org", to="group: carl@x;"),
    ]
    assert await sorted_seqs("(FROM) UTF-8 ALL", msgs) == [1, 4, 3, 2]
    assert await sorted_seqs("(TO) UTF-8 ALL", msgs) == [2, 3, 4, 1]  # no address sorts first
    assert await sorted_seqs("(DISPLAYFROM) UTF-8 ALL", msgs) == [2, 3, 4, 1]
    assert await sorted_seqs("(DISPLAYTO) UTF-8 ALL", msgs) == [2, 3, 1, 4]
    assert await sorted_seqs("(CC FROM) UTF-8 ALL", msgs) == [1, 4, 3, 2]


def test_format_sort() -> None:
    cands, _ = make([message()] * 6)
    picked = [cands[4], cands[1], cands[2], cands[5]]
    q = parse_sort(args("(DATE) UTF-8 ALL"))
    assert format_sort(picked, tag="t", uid=False, query=q) == b"* SORT 5 2 3 6\r\n"
    assert format_sort(picked, tag="t", uid=True, query=q) == b"* SORT 15 12 13 16\r\n"
    assert format_sort([], tag="t", uid=False, query=q) == b"* SORT\r\n"
    q = parse_sort(args("RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL"))
    assert (
        format_sort(picked, tag="t", uid=False, query=q)
        == b'* ESEARCH (TAG "t") MIN 5 MAX 6 COUNT 4 ALL 5,2:3,6\r\n'
    )
    assert format_sort([], tag="t", uid=True, query=q) == b'* ESEARCH (TAG "t") UID COUNT 0\r\n'
