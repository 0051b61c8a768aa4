"""Hypothesis fuzzing of the SEARCH/SORT/THREAD argument parsers: whatever token tree a client
sends, they answer with a query, `ParseError` (BAD) or `Refused` (NO), nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from posthorn.imap.search import (
    Candidate,
    decode_words,
    format_search,
    header_contains,
    message_contains,
    parse_search,
    run_search,
)
from posthorn.imap.sort import parse_sort
from posthorn.imap.thread import parse_thread
from posthorn.imap.values import Atom, ParseError, Refused, String, Value
from posthorn.mail.mime import parse_message
from posthorn.store.base import MessageMeta
from tests.fuzz.budget import budget

FUZZ = budget(400)

WORDS = [
    "ALL", "ANSWERED", "BCC", "BEFORE", "BODY", "CC", "DELETED", "DRAFT", "FLAGGED", "FROM",
    "HEADER", "KEYWORD", "LARGER", "NEW", "NOT", "OLD", "ON", "OR", "RECENT", "SEEN",
    "SENTBEFORE", "SENTON", "SENTSINCE", "SINCE", "SMALLER", "SUBJECT", "TEXT", "TO", "UID",
    "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNKEYWORD", "UNSEEN", "MODSEQ",
    "OLDER", "YOUNGER", "RETURN", "CHARSET", "MIN", "MAX", "COUNT", "SAVE", "UTF-8",
    "US-ASCII", "KOI8-R", "REVERSE", "DATE", "ARRIVAL", "DISPLAYFROM", "REFERENCES",
    "ORDEREDSUBJECT", "priv", "shared", "1", "0", "*", "$", "1:*", "2,4:6", "4294967296",
    "1-Jan-2024", "31-Feb-2024", "9999999999999999999999", "\\Seen", "$Label", "",
]  # fmt: skip

atoms = st.one_of(
    st.sampled_from(WORDS),
    st.text(alphabet="0123456789:,*$-", max_size=12),
    st.text(max_size=8),
).map(Atom)
strings = st.binary(max_size=16).map(String) | st.sampled_from(
    [String(b""), String(b"1-Jan-2024"), String("é".encode()), String(b"\xff\xfe")]
)
values: st.SearchStrategy[Value] = st.recursive(
    atoms | strings,
    lambda inner: st.lists(inner, max_size=5).map(tuple),
    max_leaves=40,
)
arg_lists = st.lists(values, max_size=12).map(tuple)

RAW = b"From: a@b\r\nSubject: =?utf-8?q?x?=\r\nDate: bogus\r\n\r\nbody\r\n"
META = MessageMeta(7, 3, frozenset({"\\Seen"}), datetime(2024, 1, 1, tzinfo=UTC), len(RAW))
META_INFO = MessageMeta(8, 4, frozenset(), META.internal_date, len(RAW), 0, parse_message(RAW))


class Ctx:
    largest_seq = 2
    largest_uid = 8
    saved = [7]

    async def headers(self, uids: object) -> dict[int, bytes]:
        return {7: RAW, 8: RAW}

    async def message(self, uid: int) -> bytes:
        return RAW


@FUZZ
@given(arg_lists)
def test_parse_search_only_raises_protocol_errors(tokens: tuple[Value, ...]) -> None:
    try:
        q = parse_search(tokens)
    except (ParseError, Refused):
        return
    # whatever parses also runs and formats
    cands = [Candidate(1, META), Candidate(2, META_INFO)]
    found = asyncio.run(run_search(q, cands, Ctx()))
    line = format_search(found, tag="t", uid=True, query=q, esearch=True)
    assert line == b"" or line.endswith(b"\r\n")


@FUZZ
@given(arg_lists)
def test_parse_sort_and_thread_only_raise_protocol_errors(tokens: tuple[Value, ...]) -> None:
    for parse in (parse_sort, parse_thread):
        with contextlib.suppress(ParseError, Refused):
            parse(tokens)


@FUZZ
@given(st.lists(st.sampled_from(WORDS) | st.just("("), min_size=1, max_size=60))
def test_keyword_soup(words: list[str]) -> None:
    """Long flat runs of real key names: the likeliest way to reach deep argument handling."""
    tokens: tuple[Value, ...] = tuple(Atom(w) for w in words)
    with contextlib.suppress(ParseError, Refused):
        parse_search(tokens)


@FUZZ
@given(
    st.binary(max_size=300) | st.sampled_from([RAW, b"Subject: =?utf-8?b?w6k?=\r\n\tx\r\n"]),
    st.text(max_size=6),
    st.text(alphabet="=?QqBb_abc\u00e9 \t", max_size=40),
)
def test_matching_and_decoding_are_total(block: bytes, needle: str, words: str) -> None:
    header_contains(block, "subject", needle.casefold())
    decode_words(words)
    meta = MessageMeta(1, 1, frozenset(), META.internal_date, len(block), 0, parse_message(block))
    message_contains(block, meta, needle.casefold(), header=True)
